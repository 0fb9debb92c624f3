"""Choose the accelerator: KVM only where it really boots guests, TCG otherwise.

A readable ``/dev/kvm`` is not enough: on this machine the device exists but the
CPU shows no vmx/svm flags (a nested host without nested virtualization) and
guests hang under it. The probe:

1. no ``/dev/kvm`` (or not openable)       -> tcg;
2. no ``vmx``/``svm`` in /proc/cpuinfo     -> tcg, without trying (an explicit
                                              ``kvm`` request is refused too);
3. boot the guest kernel under KVM with no initramfs and ``panic=-1 reboot=t``:
   it panics ("unable to mount root fs") and reboots, ending QEMU. If that
   happens within PROBE_TIMEOUT and the console shows the panic, KVM works.

The verdict and its reason are cached in ``<cache>/accel.json``, keyed by the
kernel file and the QEMU binary (path, size, mtime), so only the first run pays.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from berth.errors import NotFound, UsageError
from berth.runtime.vm.kernel import SETUP_HINT
from berth.runtime.vm.machine import QEMU

PROBE_TIMEOUT = 15.0
ACCELS = ("auto", "kvm", "tcg")


def _cpu_has_virt() -> bool:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return "vmx" in flags or "svm" in flags
    return False


def _kvm_openable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if not path:
        raise NotFound(f"find {QEMU}: not installed; {SETUP_HINT}")
    return path


def _identity(kernel: Path, qemu: str) -> str:
    parts = []
    for p in (kernel, Path(qemu)):
        st = p.stat()
        parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _boot_under_kvm(kernel: Path, qemu: str) -> tuple[bool, str]:
    import tempfile  # only on a probe (cache miss): keep it off the start-up path

    with tempfile.TemporaryDirectory(prefix="berth-kvm-probe-") as d:
        log = Path(d) / "console.log"
        argv = [qemu, "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "128",
                "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                "-serial", f"file:{log}", "-kernel", str(kernel),
                "-append", "console=ttyS0 panic=-1 reboot=t"]
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return False, f"a KVM guest did not finish booting within {PROBE_TIMEOUT:.0f} s"
        text = log.read_text(errors="replace") if log.exists() else ""
        if res.returncode == 0 and "Kernel panic" in text:
            return True, "a KVM guest booted"
        why = (res.stderr.strip().splitlines() or ["no kernel output"])[-1]
        return False, f"a KVM guest failed: {why}"


def default_cache_dir() -> Path:
    """Where VM artefacts are cached: ``$BERTH_VM_CACHE`` or /var/lib/berth/vm-cache."""
    return Path(os.environ.get("BERTH_VM_CACHE", "/var/lib/berth/vm-cache"))


def probe(kernel: Path | None = None, cache_dir: Path | None = None) -> tuple[str, str]:
    """``(accel, reason)``: what ``auto`` picks on this host, and why (cached).

    For ``berth system info``: ``probe()`` with no arguments uses the default guest
    kernel and cache.
    """
    if kernel is None:
        from berth.runtime.vm.kernel import default_kernel_path

        kernel = default_kernel_path()
    cache_dir = cache_dir or default_cache_dir()
    if not _kvm_openable():
        return "tcg", "no usable /dev/kvm"
    if not _cpu_has_virt():
        return "tcg", "/dev/kvm exists but the CPU has no vmx/svm flags (KVM guests hang here)"
    qemu = qemu_binary()
    ident = _identity(kernel, qemu)
    cache = cache_dir / "accel.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("identity") == ident:
            return cached["accel"], cached["reason"] + " (cached)"
    except (OSError, ValueError, KeyError):
        pass
    ok, reason = _boot_under_kvm(kernel, qemu)
    accel = "kvm" if ok else "tcg"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".accel.{os.getpid()}")
    tmp.write_text(json.dumps({"identity": ident, "accel": accel, "reason": reason}))
    os.replace(tmp, cache)
    return accel, reason


def check_requested(requested: str) -> None:
    """Refuse an accelerator request that cannot be honoured, without probing
    (the engine calls this before it writes anything).

    Raises:
        UsageError: not auto|kvm|tcg, or kvm without a usable /dev/kvm.
    """
    if requested not in ACCELS:
        raise UsageError(f"choose accelerator: {requested!r} is not one of {', '.join(ACCELS)}")
    if requested == "kvm":
        if not _kvm_openable():
            raise UsageError("choose accelerator kvm: /dev/kvm is missing or not usable")
        if not _cpu_has_virt():
            # QEMU would abort in kvm_buf_set_msrs or the guest hang (see the docstring)
            raise UsageError("choose accelerator kvm: the CPU has no vmx/svm flags (KVM guests hang here); "
                             "use tcg or auto")


def choose(requested: str, kernel: Path, cache_dir: Path) -> tuple[str, str]:
    """The accelerator for ``requested`` (auto|kvm|tcg) and the reason for it."""
    check_requested(requested)
    if requested != "auto":
        return requested, "requested"
    return probe(kernel, cache_dir)

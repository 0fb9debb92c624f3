"""The vm mode booted directly with QEMU: the guest kernel from /boot, the image as initramfs.

Used while the engine's VM backend (``berth run --isolation vm``) is not
installed. The guest boots ``-M microvm,acpi=off`` with ``reboot=t`` and its
init ends with ``reboot -f`` (the combination that has not hung under TCG on the
build hosts, see DESIGN.md); every boot has a timeout anyway.
"""

import glob
import os
import re
import shlex
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import BerthError, RuntimeFailure

from . import procs
from .image import ImageRef
from .initramfs import init_archive, write_image_archive
from .launch import Launched, RunResult, run_timed
from .modes import IDLE_ARGV, package_of

EXIT_RE = re.compile(rb"\n?@@BERTH-EXIT (\d+)@@")
GUEST_MEM_MB = 256
# The serial console's tty turns "\n" into "\r\n" (onlcr).
SERIAL_BEGIN = b"@@BERTH-BEGIN@@\r\n"

INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
ip link set lo up 2>/dev/null
hostname berth
echo '@@BERTH-BEGIN@@'
{cmd}
rc=$?
printf '\\n@@BERTH-EXIT %d@@\\n' "$rc"
reboot -f
"""


def guest_kernel() -> str | None:
    """The newest Debian kernel in /boot (``linux-image-cloud-amd64``)."""
    found = sorted(glob.glob("/boot/vmlinuz-*"))
    return found[-1] if found else None


def accel_probe() -> tuple[str, str]:
    """(accel, reason): the VM backend's probe when installed (it boots a KVM guest once and
    caches the answer), else /dev/kvm plus the CPU's vmx/svm flags."""
    kernel = guest_kernel()
    try:
        from berth.runtime.vm.accel import probe  # the VM backend (vm branch)

        if kernel:
            cache = Path(os.environ.get("BERTH_VM_CACHE", "/var/lib/berth/vm-cache"))
            return probe(Path(kernel), cache)
    except ImportError:
        pass
    except BerthError as e:  # e.g. no QEMU: no VM at all, the caller reports why
        return "tcg", str(e)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if not os.path.exists("/dev/kvm"):
        return "tcg", "no /dev/kvm"
    if not re.search(r"\b(vmx|svm)\b", flags):
        return "tcg", "/dev/kvm present but the CPU shows no vmx/svm (nested virtualization off)"
    return "kvm", "/dev/kvm and vmx/svm present"


@dataclass
class VMInstance:
    launched: Launched
    initrd: Path
    t_ready: float = 0.0
    cpu_at_ready: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    def host_pids(self) -> list[int]:
        return procs.descendants(self.launched.pid)

    def disk_bytes(self) -> int:
        # The instance's only file is its per-run init archive; the guest's writes stay in its RAM.
        return procs.du_bytes(self.initrd) if self.initrd.exists() else 0

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.launched.kill()
        self.launched.reap()
        self.initrd.unlink(missing_ok=True)


class QemuVMDriver:
    name = "vm"

    def __init__(self, workdir: Path):
        self.workdir = workdir / "vm"
        self.kernel = guest_kernel()
        self.accel, self.accel_reason = accel_probe()
        self.via = f"qemu-system-x86_64 microvm, {self.accel}"

    def available(self) -> tuple[bool, str]:
        if shutil.which("qemu-system-x86_64") is None:
            return False, "qemu-system-x86_64 is not installed (Debian: qemu-system-x86)"
        if self.kernel is None:
            return False, "no guest kernel in /boot (Debian: linux-image-cloud-amd64)"
        return True, ""

    def host_requirements(self) -> list[str]:
        out = []
        for path in (shutil.which("qemu-system-x86_64"), self.kernel):
            pkg = package_of(path) if path else None
            if pkg:
                out.append(pkg)
        return out

    def _image_archive(self, image: ImageRef) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", image.ref)
        path = self.workdir / f"{key}.cpio"
        if not path.exists():
            write_image_archive(image.layers, path)
        return path

    def forget_cache(self, image: ImageRef) -> None:
        """Drop the cached image archive so the next run (the cold one) rebuilds it."""
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", image.ref)
        (self.workdir / f"{key}.cpio").unlink(missing_ok=True)

    def _initrd(self, image: ImageRef, argv: list[str]) -> Path:
        base = self._image_archive(image)
        path = self.workdir / f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}.cpio"
        with open(path, "wb") as out, open(base, "rb") as src:
            shutil.copyfileobj(src, out)
            out.write(init_archive(INIT.format(cmd=shlex.join(argv))))
        return path

    def _argv(self, initrd: Path) -> list[str]:
        return [
            "qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", self.accel,
            "-m", str(GUEST_MEM_MB), "-smp", "1", "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", str(self.kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0 reboot=t panic=-1 quiet loglevel=0 rdinit=/init",
        ]

    def run(self, image: ImageRef, argv: list[str], *, timeout: float) -> RunResult:
        t0 = time.perf_counter()
        initrd = self._initrd(image, argv)
        prep = time.perf_counter() - t0
        try:
            res = run_timed(self._argv(initrd), timeout, begin=SERIAL_BEGIN)
        finally:
            initrd.unlink(missing_ok=True)
        # Building the image archive (cold runs) and the per-run archive is part of starting this VM.
        res.add_prep(prep)
        raw = res.stdout.replace("\r\n", "\n").encode()
        m = EXIT_RE.search(raw)
        if m:
            res.stdout, res.exit_code = raw[: m.start()].decode(errors="replace"), int(m.group(1))
        elif not res.timed_out:
            res.exit_code = res.exit_code or 125
        return res

    def start_idle(self, image: ImageRef, *, timeout: float = 60.0) -> VMInstance:
        initrd = self._initrd(image, IDLE_ARGV)
        lp = Launched(self._argv(initrd), begin=SERIAL_BEGIN)
        inst = VMInstance(lp, initrd)
        if not lp.pump(lambda out: b"ready" in out, lp.t0 + timeout):
            inst.stop()
            raise RuntimeFailure(f"start idle VM: guest not ready within {timeout:.0f}s")
        inst.t_ready = time.perf_counter() - lp.t0
        inst.cpu_at_ready = procs.cpu_seconds(inst.host_pids())
        return inst

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

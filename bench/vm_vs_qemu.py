"""berth's microVM run-to-exit of `true` against a bare QEMU boot doing the same work.

Peer: ``qemu-system-x86_64 -M microvm,acpi=off -kernel <cloud kernel> -initrd <busybox
initramfs whose /init mounts /proc, runs true, reboot -f>`` (as in checks/05-vm).
berth: a fresh Python process doing VMInstance.create + start + wait + delete of a
busybox bundle whose process is `true` (cache warm: initramfs, ext4 base, accel).
Also the memory of an idle VM (QEMU's RSS and PSS with the guest booted and
idling in `sleep`). Prints medians and the ratio (target: berth <= 1.20 x bare).

    .venv/bin/python bench/vm_vs_qemu.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from berth.image.busybox import make_rootfs
from berth.runtime.vm.accel import choose
from berth.runtime.vm.kernel import default_kernel_path

RUN_ONE = """
import sys
from pathlib import Path
from berth.runtime.vm.instance import VMInstance
cfg = {"process": {"args": ["true"], "env": ["PATH=/bin"], "cwd": "/"}}
vm = VMInstance.create("bench", cfg, Path(sys.argv[1]), Path(sys.argv[2]), cache_dir=Path(sys.argv[3]))
vm.start()
code = vm.wait()
vm.delete()
sys.exit(code)
"""


def bare_initrd(work: Path) -> Path:
    root = make_rootfs(work / "initroot")
    init = root / "init"
    init.write_text("#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox true\n/bin/busybox reboot -f\n")
    init.chmod(0o755)
    out = work / "initrd.gz"
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files, capture_output=True, check=True).stdout
    out.write_bytes(subprocess.run(["gzip", "-1"], input=cpio, capture_output=True, check=True).stdout)
    return out


def time_runs(argv_fn, runs: int) -> list[float]:
    ts = []
    for i in range(runs):
        t = time.perf_counter()
        res = subprocess.run(argv_fn(i), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ts.append((time.perf_counter() - t) * 1000)
        if res.returncode != 0:
            sys.exit(f"bench run failed: {res.stderr.decode()[-500:]}")
    return ts


def idle_memory(rootfs: Path, work: Path, cache: Path) -> dict:
    from berth.runtime.vm.instance import VMInstance

    cfg = {"process": {"args": ["sh", "-c", "echo up; exec sleep 300"], "env": ["PATH=/bin"], "cwd": "/"}}
    vm = VMInstance.create("bench-idle", cfg, rootfs, work / "idle", cache_dir=cache)
    out = io.BytesIO()
    try:
        vm.start(stdout=out)
        for _ in range(300):
            if out.getvalue():
                break
            time.sleep(0.05)
        time.sleep(1.0)
        fields = {}
        with open(f"/proc/{vm.pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss"):
                    fields[k] = int(v.split()[0]) // 1024
        return fields
    finally:
        vm.kill()
        vm.delete(force=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    kernel = default_kernel_path()
    work = Path(tempfile.mkdtemp(prefix="berth-bench-vm-"))
    try:
        cache = work / "cache"
        rootfs = make_rootfs(work / "rootfs")
        accel, reason = choose("auto", kernel, cache)
        initrd = bare_initrd(work)
        bare = ["qemu-system-x86_64", "-M", f"microvm,acpi=off,accel={accel}", "-cpu", "max" if accel == "tcg" else "host",
                "-m", "256", "-nodefaults", "-no-user-config", "-nographic", "-serial", "null", "-kernel", str(kernel),
                "-initrd", str(initrd), "-append", "console=ttyS0 quiet panic=-1 reboot=t", "-no-reboot"]
        ours = lambda i: [sys.executable, "-c", RUN_ONE, str(rootfs), str(work / f"s{i}"), str(cache)]  # noqa: E731
        time_runs(ours, 1)  # warm the caches (initramfs, ext4 base); not counted
        # Interleaved, so both sides see the same background load.
        theirs_ms, ours_ms = [], []
        for i in range(args.runs):
            theirs_ms += time_runs(lambda _: bare, 1)
            ours_ms += time_runs(lambda _, i=i: ours(i), 1)
        t, o = statistics.median(theirs_ms), statistics.median(ours_ms)
        print(f"accelerator: {accel} ({reason})")
        print(f"bare qemu boot (microvm,acpi=off, busybox init: true; reboot -f): median {t:.0f} ms  {[round(x) for x in theirs_ms]}")
        print(f"berth VM run-to-exit of `true` (fresh python: create+start+wait+delete): median {o:.0f} ms  {[round(x) for x in ours_ms]}")
        print(f"ratio berth/bare: {o / t:.2f} (target <= 1.20)")
        mem = idle_memory(rootfs, work, cache)
        print(f"idle VM (256 MiB guest, QEMU process): RSS {mem.get('Rss')} MiB, PSS {mem.get('Pss')} MiB")
        print("idle container: not measured here (needs the engine); compare with `berth compare`")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())

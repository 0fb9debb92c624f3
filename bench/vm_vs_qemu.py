"""berth's microVM run-to-exit of `true` against a bare QEMU boot doing the same work.

Peer: ``qemu-system-x86_64 -M microvm,acpi=off -kernel <cloud kernel> -initrd <busybox
initramfs whose /init mounts /proc, runs true, reboot -f>`` (as in checks/05-vm).
berth: a fresh Python process doing VMInstance.create + start + wait + delete of a
busybox bundle whose process is `true` (cache warm: initramfs, ext4 base, accel).
Also the memory of an idle VM against an idle container, both started with the engine
(``berth run -d``, busybox ``sleep``) in the same run: RSS and PSS of the instance's
berth-monitor and every process under it (container: the workload; VM: the VM's
monitor, QEMU, virtiofsd), with the per-process split and the ratio.
Prints medians and the ratio (target: berth <= 1.20 x bare).

    .venv/bin/python bench/vm_vs_qemu.py [--runs 5]
"""

from __future__ import annotations

import argparse
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


def _tree(top: int) -> list[int]:
    """``top`` and all its descendants (from /proc/*/stat's ppid)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [top]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _rollup(pid: int) -> tuple[str, int, int]:
    """(comm, RSS KiB, PSS KiB) of one process."""
    with open(f"/proc/{pid}/comm") as f:
        comm = f.read().strip()
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == "Rss":
                rss = int(v.split()[0])
            elif k == "Pss":
                pss = int(v.split()[0])
    return comm, rss, pss


def idle_instance_memory(berth: list[str], root: Path, isolation: str) -> dict:
    """RSS/PSS (KiB) of everything berth keeps for one idle instance, started with
    the engine (``berth run -d``): its berth-monitor and all that monitor's
    descendants (container: the workload; VM: the VM's monitor, QEMU, virtiofsd)."""
    import json

    r = subprocess.run([*berth, "--root", str(root), "run", "-d", "--network", "none", "--isolation", isolation,
                        "busybox", "sh", "-c", "echo up; exec sleep 1000"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"berth run -d --isolation {isolation} failed: {r.stderr.strip()}")
    cid = r.stdout.strip()
    try:
        for _ in range(600):
            if "up" in subprocess.run([*berth, "--root", str(root), "logs", cid], capture_output=True,
                                      text=True).stdout:
                break
            time.sleep(0.05)
        time.sleep(1.0)  # let the guest (or the container) settle into its sleep
        monitor = json.loads((root / "containers" / cid / "status.json").read_text())["monitor_pid"]
        parts: dict[str, list[int]] = {}
        for pid in _tree(monitor):
            try:
                comm, rss, pss = _rollup(pid)
            except OSError:  # exited meanwhile
                continue
            acc = parts.setdefault(comm, [0, 0])
            acc[0] += rss
            acc[1] += pss
        return {"rss": sum(v[0] for v in parts.values()), "pss": sum(v[1] for v in parts.values()),
                "parts": {k: (v[0], v[1]) for k, v in sorted(parts.items())}}
    finally:
        subprocess.run([*berth, "--root", str(root), "rm", "-f", cid], capture_output=True)


def idle_memory(work: Path, cache: Path) -> tuple[dict, dict]:
    """An idle container and an idle VM (256 MiB guest) of the same busybox image, one
    engine root, measured in the same run."""
    venv = Path(sys.executable).parent
    berth = [str(venv / "berth")]
    os.environ["BERTH_VM_CACHE"] = str(cache)
    os.environ.setdefault("BERTH_RUNTIME", str(venv / "berth-runtime"))
    root = work / "engine"
    try:
        subprocess.run([*berth, "--root", str(root), "image", "bootstrap", "busybox"], capture_output=True, check=True)
        return idle_instance_memory(berth, root, "container"), idle_instance_memory(berth, root, "vm")
    finally:
        subprocess.run([*berth, "--root", str(root), "system", "prune"], capture_output=True)
        for p in (root / "containers").glob("*/rootfs"):
            subprocess.run(["umount", "-l", str(p)], capture_output=True)
        subprocess.run([*berth, "--root", str(root), "system", "reset", "--force"], capture_output=True)


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
        ctr, vm = idle_memory(work, cache)
        for what, m in (("idle container", ctr), ("idle VM (256 MiB guest)", vm)):
            parts = ", ".join(f"{k} {r / 1024:.1f}/{p / 1024:.1f}" for k, (r, p) in m["parts"].items())
            print(f"{what}: RSS {m['rss'] / 1024:.1f} MiB, PSS {m['pss'] / 1024:.1f} MiB  (RSS/PSS MiB: {parts})")
        print(f"ratio idle VM/container: RSS {vm['rss'] / ctr['rss']:.0f}x, PSS {vm['pss'] / ctr['pss']:.0f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())

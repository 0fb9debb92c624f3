"""berth run --rm busybox true, end to end, against runc run (and podman when present);
and the host memory (PSS) berth keeps alive per idle container at 1 and 20 containers.

    .venv/bin/python bench/engine_vs_runc.py [-n RUNS]

Targets (issue 4): berth <= 3x runc run; <= 0.5x podman run --rm; <= 2 MiB PSS per idle
container at 20. The OCI runtime is $BERTH_RUNTIME or the venv's berth-runtime.
Prints medians and ratios; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
BERTH = str(VENV_BIN / "berth")


def median_ms(argv: list[str], runs: int, env=None, warmup: int = 2) -> float:
    times = []
    for i in range(runs + warmup):
        t = time.perf_counter()
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        dt = (time.perf_counter() - t) * 1000
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode().strip()}")
        if i >= warmup:
            times.append(dt)
    return statistics.median(times)


def runc_bundle(tmp: Path) -> Path:
    from berth.image.busybox import make_rootfs

    b = tmp / "bundle"
    make_rootfs(b / "rootfs")
    subprocess.run(["runc", "spec"], cwd=b, check=True)
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    (b / "config.json").write_text(json.dumps(cfg))
    return b


def pss_kib(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def kept_alive_pss(root: Path, n: int) -> tuple[float, int]:
    """Start n idle containers; PSS (KiB) of every process berth keeps for them."""
    ids = []
    try:
        for _ in range(n):
            ids.append(subprocess.run([BERTH, "--root", str(root), "run", "-d", "--network", "none", "busybox",
                                       "sleep", "3600"], capture_output=True, text=True, check=True).stdout.strip())
        time.sleep(0.5)
        total, procs = 0, 0
        for cid in ids:
            st = json.loads((root / "containers" / cid / "status.json").read_text())
            total += pss_kib(st["monitor_pid"])
            procs += 1
        # anything else of berth still alive (a Python CLI, berth-runtime) counts too
        out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        for line in out.splitlines()[1:]:
            pid, _, args = line.strip().partition(" ")
            if str(root) in args and "berth-monitor" not in args:
                total += pss_kib(int(pid))
                procs += 1
        return total / n, procs
    finally:
        for cid in ids:
            subprocess.run([BERTH, "--root", str(root), "rm", "-f", cid], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=15)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    root = tmp / "root"
    try:
        runtime = os.environ.get("BERTH_RUNTIME") or str(VENV_BIN / "berth-runtime")
        print(f"runtime: {runtime}")
        subprocess.run([BERTH, "--root", str(root), "image", "bootstrap", "busybox"], capture_output=True)
        ours = median_ms([BERTH, "--root", str(root), "run", "--rm", "--network", "none", "busybox", "/bin/true"],
                         a.runs)
        ours_default = median_ms([BERTH, "--root", str(root), "run", "--rm", "busybox", "/bin/true"], a.runs)
        b = runc_bundle(tmp)
        runc = median_ms(["sh", "-c", f"runc --root {tmp}/runc run --bundle {b} r$$"], a.runs)
        print(f"berth run --rm --network none busybox /bin/true: {ours:7.1f} ms (median of {a.runs})")
        print(f"berth run --rm busybox /bin/true (default net):  {ours_default:7.1f} ms")
        print(f"runc run (same rootfs, /bin/true):               {runc:7.1f} ms")
        print(f"ratio berth/runc: {ours / runc:.2f} (target <= 3.00); default network: {ours_default / runc:.2f}")
        if shutil.which("podman"):
            pod = podman_ms(tmp, a.runs)
            if pod:
                print(f"podman run --rm (runc, --network=none):          {pod:7.1f} ms")
                print(f"ratio berth/podman: {ours / pod:.2f} (target <= 0.50)")
        else:
            print("podman: not installed, skipped (to compare: apt-get install --no-install-recommends podman;"
                  " scripts/apt.d/engine.txt says why set-up does not)")
        t0 = time.perf_counter()
        subprocess.run([BERTH, "--version"], capture_output=True)
        print(f"berth CLI start-up (--version): {(time.perf_counter() - t0) * 1000:.1f} ms")
        for n in (1, 20):
            per, procs = kept_alive_pss(root, n)
            print(f"idle containers: {n:2d}: PSS kept alive by berth {per / 1024:.2f} MiB per container "
                  f"({procs} processes; target <= 2 MiB at 20)")
    finally:
        subprocess.run([BERTH, "--root", str(root), "system", "reset", "--force"], capture_output=True)
        subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def podman_ms(tmp: Path, runs: int) -> float | None:
    from berth.image.busybox import make_rootfs

    store = tmp / "podman"
    rootfs = tmp / "podrootfs"
    make_rootfs(rootfs)
    tar = tmp / "busybox.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    base = ["podman", "--root", str(store / "root"), "--runroot", str(store / "run"),
            "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    if subprocess.run(base + ["import", str(tar), "berth-bench-busybox"], capture_output=True).returncode != 0:
        print("podman: import failed; skipped")
        return None
    argv = base + ["run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit",
                   "nproc=1024:1024", "--network=none", "berth-bench-busybox", "/bin/true"]
    try:
        return median_ms(argv, runs)
    except SystemExit as e:
        print(f"podman: {e}; skipped")
        return None
    finally:
        subprocess.run(base + ["system", "reset", "-f"], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())

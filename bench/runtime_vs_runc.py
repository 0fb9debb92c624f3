#!/usr/bin/env python3
"""berth-runtime vs runc on the same busybox bundle (a benchmark, not a test).

1. ``run`` of /bin/true, N times each, interleaved (berth, runc, runc, berth,
   ...: the order alternates) so that load from other work on the machine
   hits both alike and neither always runs second; then N times
   each back to back (as checks/02-runtime does); medians and ratios.
2. Start of 50 detached containers (create + start of ``sleep``), then their
   deletion, both ways; total wall time of each phase.

Both use the bundle's config.json from ``berth-runtime spec`` (docker's
defaults: 14 capabilities, seccomp profile, masked paths, pids limit), with
args replaced; each runtime gets its own --root in a temp dir.

With ``--trace``, berth-runtime also runs N times with BERTH_RUNTIME_TRACE
and the median time of each mark of its timeline (ms after the launch) is
printed: where a container start goes (P0, P1, P2 and the cgroup priming).
Each figure also reports the CPU time (user+sys of the runtime and the
container, from rusage), which load from other work disturbs less than wall
time.

Usage: .venv/bin/python bench/runtime_vs_runc.py [-n 30] [--containers 50] [--trace]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BERTH = os.path.join(os.path.dirname(HERE), ".venv", "bin", "berth-runtime")


def bundle(tmp: str, args: list[str]) -> str:
    from berth.image.busybox import make_rootfs

    b = os.path.join(tmp, "bundle")
    os.makedirs(b)
    make_rootfs(os.path.join(b, "rootfs"))
    subprocess.run([BERTH, "spec", "--bundle", b], check=True)
    set_args(b, args)
    return b


def set_args(b: str, args: list[str]) -> None:
    p = os.path.join(b, "config.json")
    with open(p) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = args
    cfg["process"]["terminal"] = False
    with open(p, "w") as f:
        json.dump(cfg, f)


CPU: dict[str, list[float]] = {}


def timed(cmd: list[str], env: dict | None = None) -> float:
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = (time.perf_counter() - t) * 1000
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode().strip()}")
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000
    CPU.setdefault(os.path.basename(cmd[0]), []).append(cpu)
    return dt


def trace_phases(base: list[str], b: str, tmp: str, n: int) -> None:
    """Median time of each BERTH_RUNTIME_TRACE mark, in ms after the launch."""
    marks: dict[str, list[float]] = {}
    order: list[str] = []
    path = os.path.join(tmp, "trace")
    for i in range(n + 2):
        if os.path.exists(path):
            os.unlink(path)
        t0 = time.monotonic_ns()  # the runtime's marks use the same clock
        dt = timed(base + ["run", "--bundle", b, f"t{os.getpid()}-{i}"],
                   env=dict(os.environ, BERTH_RUNTIME_TRACE=path))
        if i < 2:
            continue
        with open(path) as f:
            for line in f:
                _pid, ns, what = line.rstrip("\n").split(" ", 2)
                if what not in marks:
                    order.append(what)
                marks.setdefault(what, []).append((int(ns) - t0) / 1e6)
        marks.setdefault("(wall)", []).append(dt)
    rows = sorted(order, key=lambda w: statistics.median(marks[w])) + ["(wall)"]
    print(f"berth-runtime run /bin/true timeline, median of {n} (ms after launch):")
    for w in rows:
        print(f"  {statistics.median(marks[w]):6.2f}  {w}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30, help="runs of each runtime (after 3 warm-ups)")
    ap.add_argument("--containers", type=int, default=50, help="detached containers to start")
    ap.add_argument("--trace", action="store_true", help="print berth-runtime's timeline too")
    a = ap.parse_args()
    if not shutil.which("runc"):
        sys.exit("runc is not installed (apt-get install runc)")
    tmp = tempfile.mkdtemp(prefix="bench-rt-")
    try:
        b = bundle(tmp, ["/bin/true"])
        roots = {"berth-runtime": [BERTH, "--root", os.path.join(tmp, "berth")],
                 "runc": ["runc", "--root", os.path.join(tmp, "runc")]}
        times: dict[str, list[float]] = {k: [] for k in roots}
        names = list(roots)
        for i in range(a.n + 3):
            # ABBA: the order alternates, since the second of a pair runs
            # while the first one's teardown (netns, cgroup) is still going
            for name in names if i % 2 == 0 else names[::-1]:
                base = roots[name]
                dt = timed(base + ["run", "--bundle", b, f"b{os.getpid()}-{i}"])
                if i >= 3:
                    times[name].append(dt)
        mb, mr = statistics.median(times["berth-runtime"]), statistics.median(times["runc"])
        print(f"run /bin/true, interleaved, median of {a.n}: berth-runtime {mb:.1f} ms, "
              f"runc {mr:.1f} ms, ratio {mb / mr:.2f}")
        cb, cr = statistics.median(CPU["berth-runtime"]), statistics.median(CPU["runc"])
        print(f"  CPU time (user+sys, median): berth-runtime {cb:.1f} ms, runc {cr:.1f} ms, "
              f"ratio {cb / cr:.2f}")
        # Back to back, as checks/02-runtime measures: each runtime after itself.
        seq: dict[str, list[float]] = {}
        for name, base in roots.items():
            seq[name] = [timed(base + ["run", "--bundle", b, f"s{os.getpid()}-{i}"])
                         for i in range(a.n + 2)][2:]
        sb, sr = statistics.median(seq["berth-runtime"]), statistics.median(seq["runc"])
        print(f"run /bin/true, back to back, median of {a.n}: berth-runtime {sb:.1f} ms, "
              f"runc {sr:.1f} ms, ratio {sb / sr:.2f}")

        if a.trace:
            trace_phases(roots["berth-runtime"], b, tmp, a.n)

        set_args(b, ["/bin/sleep", "600"])
        for name, base in roots.items():
            ids = [f"d{os.getpid()}-{i}" for i in range(a.containers)]
            t = time.perf_counter()
            for cid in ids:
                subprocess.run(base + ["create", "--bundle", b, cid], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                subprocess.run(base + ["start", cid], check=True)
            start_ms = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            for cid in ids:
                subprocess.run(base + ["delete", "--force", cid], check=True)
            del_ms = (time.perf_counter() - t) * 1000
            times[name + " detached"] = [start_ms, del_ms]
        sb, db = times["berth-runtime detached"]
        sr, dr = times["runc detached"]
        print(f"{a.containers} detached containers, create+start: berth-runtime {sb:.0f} ms, "
              f"runc {sr:.0f} ms, ratio {sb / sr:.2f}")
        print(f"{a.containers} detached containers, delete --force: berth-runtime {db:.0f} ms, "
              f"runc {dr:.0f} ms, ratio {db / dr:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

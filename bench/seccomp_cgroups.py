"""Benchmark: the container runtime library's per-container costs.

Prints medians over N runs of:
- loading docker's default seccomp profile (about 350 rules, 3 arches) in a
  fresh forked child, compiled by libseccomp each time (runc's way), and from
  berth's compiled-program cache (the ratio is berth-cached / libseccomp);
- creating a container cgroup, applying the default limits (memory, cpu,
  pids, the device list) and destroying it, on this host's layout.

Run as root: .venv/bin/python bench/seccomp_cgroups.py [N]
"""

from __future__ import annotations

import json  # noqa: F401 - the runtime has parsed config.json already
import os
import shutil
import statistics
import sys
import tempfile
import time

import berth._sys.seccomp  # noqa: F401 - and loaded ctypes (namespaces)
from berth.runtime.container import cgroups, seccomp
from berth.runtime.container.seccomp_profile import default_profile
from berth.runtime.container.spec import default_spec


def time_in_child(fn) -> float:
    """Seconds ``fn`` took in a forked child (the child keeps its filter)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            t = time.perf_counter()
            fn()
            os.write(w, repr(time.perf_counter() - t).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 100)
    os.close(r)
    os.waitpid(pid, 0)
    return float(out)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    prof = default_profile()
    rules = len(prof["syscalls"][0]["names"]) + len(prof["syscalls"]) - 1
    cache = tempfile.mkdtemp(prefix="berth-bench-seccomp-")
    try:
        plain = [time_in_child(lambda: seccomp.load(prof)) for _ in range(n)]
        time_in_child(lambda: seccomp.load(prof, cache_dir=cache + "/c"))  # fill the cache
        cached = [time_in_child(lambda: seccomp.load(prof, cache_dir=cache + "/c")) for _ in range(n)]
    finally:
        shutil.rmtree(cache)
    p, c = statistics.median(plain) * 1e3, statistics.median(cached) * 1e3
    print(f"seccomp default profile ({rules} rules), load in a fresh child, median of {n}:")
    print(f"  libseccomp compile+load (runc's way): {p:6.2f} ms")
    print(f"  berth cached program:                 {c:6.2f} ms   ratio {c / p:.2f}")

    resources = default_spec()["linux"]["resources"]
    resources = dict(resources, memory={"limit": 256 << 20}, cpu={"shares": 512, "quota": 50000, "period": 100000})
    times = []
    for i in range(n):
        t = time.perf_counter()
        cg = cgroups.open_cgroup(f"/berth-bench-{os.getpid()}-{i}", "bench")
        cg.create()
        try:
            cg.apply(resources)
        finally:
            cg.destroy()
        times.append(time.perf_counter() - t)
    print(f"cgroup open+create+apply+destroy ({cgroups.detect().mode}), median of {n}: "
          f"{statistics.median(times) * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

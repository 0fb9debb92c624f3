"""Measure every row of the table for one mode, through its driver only.

Each row is measured on its own: a row that fails is recorded in the mode's
``errors`` with one line, and the other rows still run. Order matters for the
startup row: the cold run comes first, after the driver forgot its caches.
"""

import math
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from . import procs
from .image import ImageRef
from .modes import ModeDriver
from .probe import HostMarker, parse
from .score import findings, score

Progress = Callable[[str], None]


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0-100) of ``xs`` (numpy's default method)."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def dist(xs: list[float]) -> dict:
    return {"p50": percentile(xs, 50), "p95": percentile(xs, 95), "min": min(xs), "max": max(xs),
            "samples": xs}


def mem_available() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def installed_size(pkg: str) -> int | None:
    """Bytes a Debian package occupies once installed (dpkg's Installed-Size, in KiB)."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${Installed-Size}", pkg], capture_output=True, text=True)
    return int(r.stdout) * 1024 if r.returncode == 0 and r.stdout.strip().isdigit() else None


class ModeMeasurer:
    def __init__(self, driver: ModeDriver, image: ImageRef, argv: list[str], host: dict,
                 marker: HostMarker, timeout: float, progress: Progress):
        self.d, self.image, self.argv, self.host = driver, image, argv, host
        self.marker, self.timeout, self.progress = marker, timeout, progress
        self.out: dict = {"available": True, "reason": None, "via": driver.via, "errors": {}}

    def _row(self, name: str, fn: Callable[[], dict]) -> None:
        self.progress(f"{self.d.name}: {name}")
        try:
            self.out[name] = fn()
        except Exception as e:  # noqa: BLE001 - one row failing must not lose the others
            self.out[name] = None
            self.out["errors"][name] = f"{type(e).__name__}: {e}".splitlines()[0][:300]

    def probe(self) -> dict:
        res = self.d.run(self.image, self.marker.probe_argv(), timeout=self.timeout)
        if res.timed_out or "kernel=" not in res.stdout:
            raise RuntimeError(f"probe did not report (exit {res.exit_code}): {res.stderr.strip()[-200:]}")
        f = findings(parse(res.stdout), self.host)
        p = parse(res.stdout)
        self.out["virtualization"] = {
            "kernel_release": f["kernel_release"], "host_kernel": f["host_kernel"],
            "pid1": p.get("pid1", ""), "cpus": int(p.get("nproc") or 0),
            "cpuinfo_cpus": int(p.get("cpuinfo_cpus") or 0),
            "memtotal_bytes": int(p.get("memtotal_kb") or 0) * 1024,
            "level": "shared host kernel" if f["host_kernel"] else "own kernel",
        }
        s, rules = score(f)
        return {"score": s, "max_score": 10, "rules": rules, "findings": f}

    def startup(self, runs: int) -> dict:
        self.d.forget_cache(self.image)
        cold = self.d.run(self.image, self.argv, timeout=self.timeout)
        warm = [self.d.run(self.image, self.argv, timeout=self.timeout) for _ in range(runs)]
        bad = [r for r in [cold, *warm] if r.timed_out]
        if bad:
            raise RuntimeError(f"workload timed out after {self.timeout:.0f}s")
        self._cpu = [r.cpu_seconds for r in warm]

        def first(r):  # a workload printing nothing: first output = exit
            return r.t_first_output if r.t_first_output is not None else r.t_exit

        return {
            "cold": {"first_output_s": first(cold), "exit_s": cold.t_exit},
            "warm": {"first_output_s": dist([first(r) for r in warm]), "exit_s": dist([r.t_exit for r in warm])},
            "runs": runs, "exit_code": warm[-1].exit_code, "stdout_head": warm[-1].stdout[:200],
        }

    def resources(self) -> dict:
        inst = self.d.start_idle(self.image, timeout=self.timeout)
        try:
            time.sleep(0.3)  # let the runtime's own set-up settle before weighing
            pids = inst.host_pids()
            per = [{"pid": p, "comm": procs.comm(p), "pss_bytes": procs.pss_bytes([p])} for p in pids]
            disk = inst.disk_bytes()
        finally:
            inst.stop()
        cpu_runs = getattr(self, "_cpu", [])
        return {
            "idle_memory_bytes": sum(x["pss_bytes"] for x in per),
            "idle_processes": per,
            "start_cpu_seconds": inst.cpu_at_ready,
            "run_cpu_seconds": percentile(cpu_runs, 50) if cpu_runs else None,
            "ready_s": inst.t_ready,
            "image_disk_bytes": self.image.size_bytes,
            "instance_disk_bytes": disk,
        }

    def scalability(self, k: int, budget: int | None = None) -> dict:
        started: list = []
        t0 = time.perf_counter()
        with ThreadPoolExecutor(k) as pool:
            futs = [pool.submit(self.d.start_idle, self.image, timeout=self.timeout) for _ in range(k)]
            errs = []
            for f in futs:
                try:
                    started.append(f.result())
                except Exception as e:  # noqa: BLE001 - stop the ones that did start, then report
                    errs.append(e)
        t_start = time.perf_counter() - t0
        try:
            mem = procs.pss_bytes([p for i in started for p in i.host_pids()])
        finally:
            t1 = time.perf_counter()
            with ThreadPoolExecutor(max(1, len(started))) as pool:
                list(pool.map(lambda i: i.stop(), started))
            t_stop = time.perf_counter() - t1
        if errs:
            raise RuntimeError(f"{len(errs)} of {k} instances failed to start: {errs[0]}")
        source = "given" if budget else "MemAvailable"
        budget = budget or mem_available()
        per = mem / k if k else 0
        return {
            "k": k, "start_all_s": t_start, "stop_all_s": t_stop, "memory_all_bytes": mem,
            "memory_per_instance_bytes": int(per),
            "fit_in_budget": {"budget_bytes": budget, "instances": int(budget // per) if per else None,
                              "computed": True,
                              "rule": f"budget ({source}) / measured PSS per instance with K running"},
        }

    def portability(self) -> dict:
        pkgs = [{"name": n, "installed_bytes": installed_size(n)} for n in self.d.host_requirements()]
        return {
            "image_bytes": self.image.size_bytes, "fetch_bytes": self.image.fetch_bytes,
            "host_packages": pkgs, "host_bytes": sum(p["installed_bytes"] or 0 for p in pkgs),
        }

    def all(self, runs: int, scale: int, budget: int | None = None) -> dict:
        self._row("isolation", self.probe)
        if self.out["isolation"] is None:
            self.out["virtualization"] = None
        self._row("startup", lambda: self.startup(runs))
        self._row("resources", self.resources)
        self._row("scalability", lambda: self.scalability(scale, budget))
        self._row("portability", self.portability)
        return self.out

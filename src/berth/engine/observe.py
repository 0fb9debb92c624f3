"""``top`` and ``stats``: a running container's processes and resource use,
read from its cgroups (v1 or v2, detected at run time) and /proc."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from berth.errors import Conflict

CG = Path("/sys/fs/cgroup")


def _unified() -> bool:
    return (CG / "cgroup.controllers").exists()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _int(path: Path) -> int:
    t = _read(path).strip()
    return int(t) if t.isdigit() else 0


def cgroup_dirs(cid: str) -> dict[str, Path]:
    if _unified():
        d = CG / "berth" / cid
        return {k: d for k in ("cpu", "memory", "pids")}
    return {"cpu": CG / "cpuacct" / "berth" / cid, "memory": CG / "memory" / "berth" / cid,
            "pids": CG / "pids" / "berth" / cid, "blkio": CG / "blkio" / "berth" / cid}


def _block_io(cid: str) -> tuple[int, int]:
    """Bytes read and written by the container (docker's BLOCK I/O column)."""
    rd = wr = 0
    if _unified():
        for line in _read(CG / "berth" / cid / "io.stat").splitlines():
            for kv in line.split()[1:]:
                k, _, v = kv.partition("=")
                rd += int(v) if k == "rbytes" else 0
                wr += int(v) if k == "wbytes" else 0
        return rd, wr
    d = cgroup_dirs(cid)["blkio"]
    text = _read(d / "blkio.throttle.io_service_bytes_recursive") or _read(d / "blkio.throttle.io_service_bytes")
    for line in text.splitlines():
        f = line.split()
        if len(f) == 3 and f[2].isdigit():
            rd += int(f[2]) if f[1] == "Read" else 0
            wr += int(f[2]) if f[1] == "Write" else 0
    return rd, wr


def host_memory() -> int:
    """MemTotal in bytes: docker's limit column for a container without -m."""
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def container_pids(engine, rec: dict) -> list[int]:
    d = cgroup_dirs(rec["Id"])["pids"]
    text = _read(d / "cgroup.procs")
    pids = [int(x) for x in text.split()]
    if not pids:
        rs = engine.run_state(rec)
        if rs.pid:
            pids = [rs.pid]
    return pids


def top(engine, rec: dict, ps_args: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """docker top: ps -ef columns for the container's processes; with
    ``ps_args`` (``top C -o pid,comm``), host ``ps`` with them, rows of the container only."""
    rs = engine.run_state(rec)
    if rs.status not in ("running", "paused"):
        raise Conflict(f"top container {rec['Name']}: container is not running")
    pids = container_pids(engine, rec)
    if ps_args:
        from berth.errors import UsageError

        p = subprocess.run(["ps", *ps_args], capture_output=True, text=True)
        lines = p.stdout.splitlines()
        if p.returncode != 0:
            why = (p.stderr.strip().splitlines() or ["failed"])[0]
            raise UsageError(f"top container {rec['Name']}: ps {' '.join(ps_args)}: {why}")
        if not lines or "PID" not in lines[0].split():
            raise UsageError(f"top container {rec['Name']}: ps {' '.join(ps_args)}: the output needs a PID column")
        titles = lines[0].split()
        col = titles.index("PID")
        want = {str(x) for x in pids}
        rows = [ln.split(None, len(titles) - 1) for ln in lines[1:]]
        return titles, [r for r in rows if len(r) > col and r[col] in want]
    out = subprocess.run(["ps", "-o", "user,pid,ppid,c,stime,tty,time,cmd", "-p", ",".join(map(str, pids))],
                         capture_output=True, text=True).stdout.splitlines()
    titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = [ln.split(None, 7) for ln in out[1:]]
    return titles, rows


def _cpu_ns(cid: str) -> int:
    d = cgroup_dirs(cid)["cpu"]
    if _unified():
        for line in _read(d / "cpu.stat").splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) * 1000
        return 0
    return _int(d / "cpuacct.usage")


def stats(engine, rec: dict, interval: float = 0.2) -> dict[str, Any]:
    """One sample: cpu %, memory usage/limit, pids, network bytes."""
    cid = rec["Id"]
    rs = engine.run_state(rec)
    out = {"cpu_percent": 0.0, "memory_usage": 0, "memory_limit": 0, "pids": 0, "net_rx": 0, "net_tx": 0,
           "block_read": 0, "block_write": 0, "status": rs.status}
    if rs.status not in ("running", "paused"):
        return out
    d = cgroup_dirs(cid)
    c0, t0 = _cpu_ns(cid), time.monotonic()
    time.sleep(interval)
    c1, t1 = _cpu_ns(cid), time.monotonic()
    out["cpu_percent"] = 100.0 * (c1 - c0) / ((t1 - t0) * 1e9)
    if _unified():
        out["memory_usage"] = _int(d["memory"] / "memory.current")
        lim = _read(d["memory"] / "memory.max").strip()
        out["memory_limit"] = int(lim) if lim.isdigit() else 0
    else:
        out["memory_usage"] = _int(d["memory"] / "memory.usage_in_bytes")
        lim = _int(d["memory"] / "memory.limit_in_bytes")
        out["memory_limit"] = lim if lim < (1 << 62) else 0
    out["pids"] = _int(d["pids"] / "pids.current")
    out["block_read"], out["block_write"] = _block_io(cid)
    if rec.get("Isolation") == "vm":  # the VM's monitor shares the host's netns: count its tap
        from berth.engine.vminfo import net_bytes

        out["net_rx"], out["net_tx"] = net_bytes(engine, rec)
    elif rs.pid:
        for line in _read(Path(f"/proc/{rs.pid}/net/dev")).splitlines()[2:]:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                continue
            f = rest.split()
            if len(f) >= 9:
                out["net_rx"] += int(f[0])
                out["net_tx"] += int(f[8])
    return out


def pss_kib(pid: int) -> int:
    """Proportional set size of a process (KiB), from smaps_rollup."""
    for line in _read(Path(f"/proc/{pid}/smaps_rollup")).splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


__all__ = ["top", "stats", "pss_kib", "os"]

"""What a set of host processes costs: memory (PSS), CPU time, and the process tree.

Memory is the proportional set size from ``/proc/PID/smaps_rollup`` (pages
shared with other processes count by their share), so summing it over an
instance's processes does not count the shared busybox or QEMU text twice.
"""

import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def parent(pid: int) -> int | None:
    f = _stat_fields(pid)
    return int(f[1]) if f else None


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process on the host right now."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        f = _stat_fields(int(entry))
        if f is not None:
            kids.setdefault(int(f[1]), []).append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, as seen from the host."""
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def pss_bytes(pids: list[int]) -> int:
    """Sum of PSS over ``pids`` (processes that exited meanwhile count 0)."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def _threads_ns(pid: int) -> int:
    """CPU time of the live threads of ``pid`` in ns (schedstat: exact, where ticks are 10 ms)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def cpu_seconds(pids: list[int]) -> float:
    """CPU used so far by live ``pids`` and the children they reaped.

    Per process: the larger of utime+stime (clock ticks, includes exited threads)
    and its live threads' schedstat (exact), plus cutime+cstime of reaped children.
    """
    total = 0.0
    for pid in pids:
        f = _stat_fields(pid)
        if f is None:
            continue
        # stat fields 14-17 (utime stime cutime cstime) are f[11:15] once pid and comm are cut.
        utime, stime, cutime, cstime = (int(x) for x in f[11:15])
        own = max((utime + stime) / CLK_TCK, _threads_ns(pid) / 1e9)
        total += own + (cutime + cstime) / CLK_TCK
    return total


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def wait_gone(pids: list[int], timeout: float) -> bool:
    """Wait until none of ``pids`` exists; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") for p in pids):
            return True
        time.sleep(0.02)
    return False


def du_bytes(path: str | os.PathLike) -> int:
    """Disk blocks used under ``path`` (hard links counted once), like ``du -s -B1``."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_blocks * 512
    try:
        total += os.lstat(path).st_blocks * 512
    except OSError:
        pass
    return total

"""Reading json-file logs: tail, since, timestamps, and follow across rotation.

The monitor writes ``container.log`` and rotates it to ``.1`` … ``.N-1``; the
reader concatenates the rotated files oldest first. ``follow`` keeps reading
the live file and, when its inode changes (rotated away), finishes the old
descriptor before switching to the new file, so no line is lost or repeated.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from berth.engine._record import record


@record
class LogEntry:
    stream: str
    data: bytes
    time: str


def parse_time(ts: str) -> float:
    """RFC 3339 with nanoseconds -> epoch seconds (float)."""
    ts = ts.rstrip("Z")
    main, _, frac = ts.partition(".")
    dt = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S")
    import calendar

    return calendar.timegm(dt.timetuple()) + float("0." + (frac or "0"))


def parse_since(text: str) -> float:
    """docker's --since: a unix timestamp, RFC 3339, or a duration (10m, 1h30m)."""
    import re

    from berth.errors import UsageError

    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", t)
    if m and any(m.groups()):
        h, mi, s = (int(g or 0) for g in m.groups())
        return time.time() - (h * 3600 + mi * 60 + s)
    try:
        return parse_time(t)
    except ValueError:
        raise UsageError(f"invalid --since {text!r}: expected a timestamp, RFC 3339 time or duration like 10m") from None


def _decode(line: bytes) -> LogEntry | None:
    try:
        rec = json.loads(line.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return LogEntry(rec.get("stream", "stdout"), rec.get("log", "").encode("utf-8", errors="surrogateescape"),
                    rec.get("time", ""))


def log_files(path: Path, max_file: int) -> list[Path]:
    files = [Path(f"{path}.{i}") for i in range(max_file - 1, 0, -1)]
    return [f for f in files if f.exists()] + ([path] if path.exists() else [])


def read_logs(path: Path, max_file: int, tail: int | None = None, since: float | None = None,
              follow: bool = False, alive: Callable[[], bool] | None = None) -> Iterator[LogEntry]:
    """Entries of a container's log; with ``follow`` keep going while ``alive()``."""
    entries: deque | list
    entries = deque(maxlen=tail) if tail is not None and tail >= 0 else []
    live_fd = None
    for f in log_files(path, max_file):
        try:
            fh = open(f, "rb")
        except OSError:
            continue
        for line in fh:
            e = _decode(line)
            if e and (since is None or parse_time(e.time) >= since):
                entries.append(e)
        if f == path:
            live_fd = fh
        else:
            fh.close()
    if tail == 0:
        entries.clear()
    yield from entries
    if not follow:
        if live_fd:
            live_fd.close()
        return
    pending = b""
    queue: list = []  # rotated files still to read, oldest first
    while True:
        if live_fd is None:
            if queue:
                live_fd = queue.pop(0)
            else:
                try:
                    live_fd = open(path, "rb")
                except OSError:
                    if alive and not alive():
                        return
                    time.sleep(0.1)
                    continue
        chunk = live_fd.read(65536)
        if chunk:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                e = _decode(line)
                if e:
                    yield e
            continue
        if queue:  # a rotated file read to its end: on to the next newer one
            live_fd.close()
            live_fd = None
            continue
        # at the end: rotated away? then read every newer file in order
        try:
            rotated = os.stat(path).st_ino != os.fstat(live_fd.fileno()).st_ino
        except OSError:
            rotated = True
        if rotated:
            old_ino = os.fstat(live_fd.fileno()).st_ino
            live_fd.close()
            live_fd, pending = None, b""
            queue = _newer_files(path, max_file, old_ino)
            continue
        if alive and not alive():
            # one last read for lines written just before the exit
            rest = live_fd.read()
            for line in (pending + rest).split(b"\n"):
                e = _decode(line)
                if e:
                    yield e
            live_fd.close()
            return
        time.sleep(0.05)


def _newer_files(path: Path, max_file: int, old_ino: int) -> list:
    """Open the files written after the one with inode ``old_ino``, oldest first
    (opened together, so a further rotation cannot take them away)."""
    fhs = []
    for f in log_files(path, max_file):
        try:
            fhs.append(open(f, "rb"))
        except OSError:
            pass
    inos = [os.fstat(fh.fileno()).st_ino for fh in fhs]
    start = inos.index(old_ino) + 1 if old_ino in inos else 0
    for fh in fhs[:start]:
        fh.close()
    return fhs[start:]

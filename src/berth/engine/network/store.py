"""Files under ``<root>/networks``: atomic JSON records and one lock.

Every change to a network record, its IP allocations or the firewall happens
under one ``flock`` on ``<root>/networks/.lock``, so concurrent CLI
invocations serialise. Records are written to a temporary file, fsync'd and
renamed over the old one: a crash leaves either the old or the new record.
"""

from __future__ import annotations

import _thread
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path


def write_json_atomic(path: Path, data: object, durable: bool = True) -> None:
    """Replace ``path`` by rename. ``durable=False`` skips the fsync (0.3-6 ms
    here) for files that are rewritten before they are next needed anyway."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # dumps in one go: json's C encoder (dump, or any indent, is pure Python)
    text = json.dumps(data, sort_keys=True) + "\n"
    with open(tmp, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def write_in_place(path: Path, text: str) -> None:
    """Replace a file's content without replacing the file.

    The engine bind-mounts hosts and resolv.conf files into containers; a
    bind mount pins the inode, so a rename would leave the container reading
    the old file. Truncate and write the whole text in one write instead.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        data = text.encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the networks lock of ``root`` (re-entrant within one thread)."""
    root.mkdir(parents=True, exist_ok=True)
    held = _held.__dict__.setdefault("roots", {})
    if held.get(root):
        held[root] += 1
        try:
            yield
        finally:
            held[root] -= 1
        return
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held[root] = 1
        try:
            yield
        finally:
            held.pop(root, None)
    finally:
        os.close(fd)


_held = _thread._local()  # (not threading's: one import fewer on every run)

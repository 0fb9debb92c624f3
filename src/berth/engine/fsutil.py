"""Paths inside a container's root filesystem, resolved as the container would.

A container controls its own files, including symlinks. Resolving
``rootfs + path`` with the host's resolver lets a symlink such as
``/data -> /`` or ``../../..`` escape into the host: the CVE-2018-15664 class
(``docker cp`` racing or following container symlinks). ``resolve_in_root``
walks the path one component at a time, expanding each symlink relative to
the container's root and clamping ``..`` at that root, like
filepath-securejoin. The result is a host path that cannot leave ``root``
unless the tree is changed concurrently; ``open_in_root`` closes that race for
single files by re-checking with O_NOFOLLOW on the last component and
verifying the opened file still lies under ``root``.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from berth.errors import UsageError

MAX_SYMLINKS = 255


def resolve_in_root(root: str | os.PathLike, path: str, follow_last: bool = True) -> Path:
    """Host path of container path ``path``, every symlink resolved inside ``root``."""
    root = os.path.realpath(root)
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        cand = os.path.join(root, *done, part)
        is_last = not todo
        if os.path.islink(cand) and (follow_last or not is_last):
            links += 1
            if links > MAX_SYMLINKS:
                raise UsageError(f"resolve {path} in container: too many levels of symbolic links")
            target = os.readlink(cand)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(part)
    return Path(root, *done)


def container_path(root: str | os.PathLike, host_path: str | os.PathLike) -> str:
    """The container path of a host path under ``root``."""
    rel = os.path.relpath(host_path, os.path.realpath(root))
    return "/" + ("" if rel == "." else rel)


def is_within(root: str | os.PathLike, host_path: str | os.PathLike) -> bool:
    root = os.path.realpath(root)
    real = os.path.realpath(host_path)
    return real == root or real.startswith(root.rstrip("/") + "/")


def read_file_in_root(root: str | os.PathLike, path: str, limit: int = 1 << 20) -> str | None:
    """Read a small text file of the container (e.g. /etc/passwd); None when absent."""
    p = resolve_in_root(root, path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not is_within(root, f"/proc/self/fd/{fd}"):
            return None
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


def norm(path: str) -> str:
    p = posixpath.normpath("/" + path)
    return "/" + p.lstrip("/")

"""Removing a directory tree, for the engine, the image store and the runtime.

Not shutil's rmtree: importing shutil (with zlib, bz2 and lzma) costs ~1.5 ms
of every ``berth run --rm`` and ``berth-runtime delete``.
"""

from __future__ import annotations

import errno
import os


def remove_tree(path: str | os.PathLike, ignore_errors: bool = False) -> None:
    """``rm -rf PATH``; a missing path is fine.

    Like shutil.rmtree's fd-based walk, each directory is opened O_NOFOLLOW
    relative to its parent, so nothing swapped in for a directory (a symlink
    planted in a container's upper layer) is followed out of the tree.
    ``ignore_errors``: remove what can be removed, as rmtree's.
    """
    path = os.fspath(path)
    parent, name = os.path.split(path.rstrip("/") or "/")
    try:
        dfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # (nor its parent)
    except OSError:
        if ignore_errors:
            return
        raise
    try:
        _remove_at(dfd, name, ignore_errors)
    finally:
        os.close(dfd)


def _remove_at(dfd: int, name: str, ignore_errors: bool) -> None:
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            os.unlink(name, dir_fd=dfd)  # a file, or a symlink (not followed)
            return
        try:
            with os.scandir(fd) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            for child, is_dir in entries:
                if is_dir:
                    _remove_at(fd, child, ignore_errors)
                else:
                    try:
                        os.unlink(child, dir_fd=fd)
                    except FileNotFoundError:
                        pass
                    except OSError:
                        if not ignore_errors:
                            raise
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dfd)
    except FileNotFoundError:
        pass
    except OSError:
        if not ignore_errors:
            raise

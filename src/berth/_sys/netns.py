"""Network namespaces: create one pinned at a path, enter one, remove it.

A network namespace lives as long as a process is in it or a file is bound to
it. ``create_netns`` pins a fresh namespace with a bind mount of
``/proc/thread-self/ns/net`` onto an empty file, as ``ip netns add`` does, so
the engine can wire the network before the workload starts (podman does the
same) and the OCI runtime joins it through ``linux.namespaces[].path``.

``setns(CLONE_NEWNET)`` and ``unshare(CLONE_NEWNET)`` act on the calling
*thread* only (the network namespace is a per-task attribute), so everything
here runs in a short-lived helper thread: the caller's threads never change
namespace, even if a step fails half-way.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
from collections.abc import Callable

from berth._sys import check, libc

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h

libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_void_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def setns(fd: int, nstype: int, what: str) -> None:
    """``setns(2)`` for the calling thread."""
    check(libc.setns(fd, nstype), f"setns {what}")


def unshare(flags: int) -> None:
    """``unshare(2)`` for the calling thread."""
    check(libc.unshare(flags), "unshare")


def bind_mount(src: str, dst: str) -> None:
    check(libc.mount(src.encode(), dst.encode(), None, MS_BIND, None),
          f"bind mount {src} on {dst}")


def umount_detach(path: str) -> None:
    check(libc.umount2(path.encode(), MNT_DETACH), f"umount {path}")


def _in_thread(fn: Callable[[], object]) -> object:
    """Run ``fn`` in a fresh thread and return its result or raise its error.

    The thread may change its own network namespace freely; it ends when
    ``fn`` returns, so no other thread is ever left in the wrong namespace.
    """
    from berth import threads

    return threads.run(fn)


def run_in_netns(path: str, fn: Callable[[], object]) -> object:
    """Call ``fn()`` in a thread that has joined the network namespace at ``path``.

    ``path`` is a pinned namespace file or ``/proc/PID/ns/net``. Sockets made
    by ``fn`` stay bound to that namespace after it returns (a socket's
    namespace is fixed when it is created), which is how the caller gets a
    netlink socket inside a container without entering it.
    """
    def enter() -> object:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd, CLONE_NEWNET, path)
        finally:
            os.close(fd)
        return fn()

    return _in_thread(enter)


def create_netns(path: str) -> None:
    """Create a new, empty network namespace pinned at ``path``.

    ``path`` must not exist; its directory must. On failure nothing is left:
    the file is removed and the namespace (held by nothing) is freed.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def make() -> None:
        unshare(CLONE_NEWNET)
        bind_mount("/proc/thread-self/ns/net", path)

    try:
        _in_thread(make)
    except BaseException:
        os.unlink(path)
        raise


def remove_netns(path: str) -> None:
    """Unpin and delete the namespace file at ``path``; a missing file is fine.

    A lazy unmount frees the namespace once the last process in it is gone.
    """
    try:
        umount_detach(path)
    except OSError as exc:
        # EINVAL: not a mount point (a half-made namespace); ENOENT: gone.
        if exc.errno not in (22, 2):
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def is_netns(path: str) -> bool:
    """True when ``path`` is a network namespace file (pinned or /proc/PID/ns/net).

    ``NS_GET_NSTYPE`` (an ioctl on nsfs files, Linux 4.11) answers exactly;
    any other file fails the ioctl.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)

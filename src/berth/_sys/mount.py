"""Mounts: mount(2), umount2(2), pivot_root(2), openat2(2) with RESOLVE_IN_ROOT."""

import ctypes
import os

from berth._sys import check, libc

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_MACHINE = os.uname().machine
# pivot_root is old, so its number differs by architecture; openat2 is in the shared table.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}.get(_MACHINE, 155)
_SYS_OPENAT2 = 437



class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None, what: str | None = None) -> None:
    """mount(2). ``what`` names the mount in the error (the target is often a /proc/self/fd path)."""
    r = libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data) if data else None)
    if r == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {what or (str(source) + ' on ' + target)}: {os.strerror(err)}")


def umount2(target: str, flags: int = 0) -> None:
    check(libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    r = libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old))
    check(r, f"pivot_root {new_root}")


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` with RESOLVE_* restrictions."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = libc.syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), _b(path), ctypes.byref(how),
                      ctypes.c_size_t(ctypes.sizeof(how)))
    if fd == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"open {path}: {os.strerror(err)}", path)
    return fd


def fd_path(fd: int) -> str:
    """The /proc/self/fd path that mount(2) follows to exactly the inode open on ``fd``."""
    return f"/proc/self/fd/{fd}"

"""File-system calls the stdlib lacks: openat2(2) and renameat2(2).

``openat2`` with ``RESOLVE_IN_ROOT`` makes the kernel resolve every path
component (``..`` and symlinks, absolute ones included) as if ``dirfd`` were
``/``: nothing a layer tar plants can make a later path leave the layer
directory (Linux >= 5.6). ``renameat2`` with ``RENAME_NOREPLACE`` commits an
unpacked directory only if nothing took its name meanwhile.
"""

import ctypes
import os
import platform

from berth._sys import libc

# openat2(2) and renameat2(2) numbers; 437 is in the unified table all arches share.
_SYS_OPENAT2 = 437
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "riscv64": 276}.get(platform.machine(), -1)

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

RENAME_NOREPLACE = 1 << 0


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """Open ``path`` relative to ``dirfd`` under the ``resolve`` rules; return the fd.

    Raises:
        OSError: with the kernel's errno (ENOSYS before Linux 5.6, EXDEV when a
        ``RESOLVE_BENEATH`` path tried to leave ``dirfd``).
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    ret = libc.syscall(
        _SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how)
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"openat2 {path}: {os.strerror(err)}", path)
    return ret


def renameat2(olddirfd: int, old: str, newdirfd: int, new: str, flags: int) -> None:
    """``renameat2(2)``; with ``RENAME_NOREPLACE`` fails with EEXIST if ``new`` exists."""
    if _SYS_RENAMEAT2 < 0:
        raise OSError(38, f"renameat2 {old} to {new}: not supported on {platform.machine()}")
    ret = libc.syscall(
        _SYS_RENAMEAT2, olddirfd, os.fsencode(old), newdirfd, os.fsencode(new), ctypes.c_uint(flags)
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"rename {old} to {new}: {os.strerror(err)}", new)

"""Capabilities: capget/capset(2) (version 3) and the bounding/ambient prctls."""

import ctypes
import os

from berth._sys import check, libc
from berth._sys.proc import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    prctl,
)

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number this kernel knows (read once: call it
    before pivot_root, the container may have no /proc)."""
    global _last_cap
    if _last_cap is None:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            _last_cap = int(f.read())
    return _last_cap


def bounding_has(cap: int) -> bool:
    return prctl(PR_CAPBSET_READ, cap) == 1


def drop_bounding(cap: int) -> None:
    prctl(PR_CAPBSET_DROP, cap)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's three capability sets (64-bit masks)."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i, shift in ((0, 0), (1, 32)):
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    check(libc.capset(ctypes.byref(hdr), data), "capset")


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of ``pid`` (0: the caller)."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_Data * 2)()
    check(libc.capget(ctypes.byref(hdr), data), f"capget {pid or os.getpid()}")
    return tuple(data[0].__getattribute__(n) | (data[1].__getattribute__(n) << 32)
                 for n in ("effective", "permitted", "inheritable"))  # type: ignore[return-value]


def ambient_clear() -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def ambient_raise(cap: int) -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)

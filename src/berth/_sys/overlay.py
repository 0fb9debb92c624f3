"""mount(2) and umount2(2), as the image layer uses them for overlayfs rootfs.

A thin wrapper kept apart from ``_sys/mount.py`` (the runtime's): same calls,
no shared state.
"""

import ctypes
import os

from berth._sys import check, libc

MNT_DETACH = 2
MS_NODEV = 4
MS_NOSUID = 2

# private function objects (libc["x"] makes a new one): argtypes set here cannot
# clash with another module's view of libc.mount
_mount = libc["mount"]
_mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_umount2 = libc["umount2"]
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str | None = None) -> None:
    """``mount(2)``; raises ``OSError`` naming the target."""
    check(
        _mount(
            os.fsencode(source),
            os.fsencode(target),
            os.fsencode(fstype),
            flags,
            os.fsencode(data) if data is not None else None,
        ),
        f"mount {fstype} on {target}",
    )


def umount2(target: str, flags: int = 0) -> None:
    """``umount2(2)``; raises ``OSError`` naming the target."""
    check(_umount2(os.fsencode(target), flags), f"umount {target}")

"""mount(2)/umount2(2) for the engine's overlay root filesystems."""

import ctypes
import os

from berth._sys import check, libc

MNT_DETACH = 2

libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount_overlay(lower: list[str], upper: str, work: str, target: str) -> None:
    """Mount an overlay at ``target``; ``lower`` is given lowest layer first."""
    # overlayfs lists lowerdir top-most first
    opts = f"lowerdir={':'.join(reversed(lower))},upperdir={upper},workdir={work}"
    check(libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, opts.encode()),
          f"mount overlay on {target}")


def umount(target: str, detach: bool = False) -> None:
    """Unmount ``target`` (lazily with ``detach``)."""
    check(libc.umount2(os.fsencode(target), MNT_DETACH if detach else 0), f"umount {target}")

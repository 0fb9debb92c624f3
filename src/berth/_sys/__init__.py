"""The only package that calls libc (through ctypes).

Everything above ``_sys`` deals in Python values and ``OSError``; everything
here is a thin, typed wrapper over one system call, raising ``OSError`` with
errno and a message naming the operation and its object.
Submodules by subsystem: ``ns`` (unshare/setns), ``mount``, ``caps``,
``seccomp`` (libseccomp), ``proc`` (prctl and process attributes).
"""

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> int:
    """Raise ``OSError`` naming ``what`` when a libc call returned -1."""
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret

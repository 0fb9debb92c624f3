"""Process attributes: prctl(2), hostnames, close_range(2), pid start times."""

import ctypes
import os

from berth._sys import check, libc

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYS_CLOSE_RANGE = 436  # same number on every architecture (new syscall table)
CLOSE_RANGE_CLOEXEC = 1 << 2

_ul = ctypes.c_ulong


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); raises ``OSError`` on failure.

    Arguments are wrapped per call: ``libc`` is shared, so setting argtypes on
    it would break other modules' calls (seccomp passes a pointer).
    """
    return check(libc.prctl(ctypes.c_int(option), _ul(arg2), _ul(arg3), _ul(arg4), _ul(arg5)),
                 f"prctl {option}")


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_dumpable(on: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if on else 0)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_keepcaps(on: bool) -> None:
    prctl(PR_SET_KEEPCAPS, 1 if on else 0)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def sethostname(name: str) -> None:
    b = name.encode()
    check(libc.sethostname(b, len(b)), f"sethostname {name}")


def setdomainname(name: str) -> None:
    b = name.encode()
    check(libc.setdomainname(b, len(b)), f"setdomainname {name}")


def cloexec_from(first: int) -> None:
    """Mark every fd >= ``first`` close-on-exec (close_range(2), CLOSE_RANGE_CLOEXEC)."""
    r = libc.syscall(_SYS_CLOSE_RANGE, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                     ctypes.c_uint(CLOSE_RANGE_CLOEXEC))
    if r == -1:  # kernel < 5.11: walk /proc/self/fd instead
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= first:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if gone or a zombie.

    Together with the pid it names one process across pid reuse.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])

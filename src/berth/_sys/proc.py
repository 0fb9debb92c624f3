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


# getrlimit(2) resource numbers (asm-generic; same on x86_64, arm64, riscv64, s390x, ppc64le)
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) (ctypes: the ``resource`` module would be one more import per container)."""
    lim = _Rlimit(soft & 0xFFFFFFFFFFFFFFFF, hard & 0xFFFFFFFFFFFFFFFF)
    check(libc.setrlimit(ctypes.c_int(resource), ctypes.byref(lim)), f"setrlimit {resource}")

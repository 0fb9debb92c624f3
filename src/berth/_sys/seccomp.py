"""Thin ctypes wrapper over libseccomp (Debian's libseccomp.so.2).

Only the calls berth needs to build and load one filter:
``seccomp_init``, ``seccomp_arch_add``, ``seccomp_attr_set``,
``seccomp_rule_add_array`` (with ``struct scmp_arg_cmp``),
``seccomp_syscall_resolve_name``, ``seccomp_load`` and ``seccomp_release``.
libseccomp returns ``-errno`` on failure; every wrapper turns that into an
``OSError`` naming the call and its object. The library is opened lazily, on
first use, so importing this module costs nothing.
"""

from __future__ import annotations

import ctypes
import os

# Actions (seccomp.h): the low 16 bits of ERRNO/TRACE carry the data.
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_KILL = ACT_KILL_THREAD
ACT_TRAP = 0x00030000
ACT_NOTIFY = 0x7FC00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000


def act_errno(errno: int) -> int:
    return _ACT_ERRNO | (errno & 0xFFFF)


def act_trace(msg: int) -> int:
    return _ACT_TRACE | (msg & 0xFFFF)


# enum scmp_compare
CMP_NE, CMP_LT, CMP_LE, CMP_EQ, CMP_GE, CMP_GT, CMP_MASKED_EQ = range(1, 8)

# enum scmp_filter_attr
ATTR_ACT_DEFAULT = 1
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3
ATTR_CTL_TSYNC = 4
ATTR_API_TSKIP = 5
ATTR_CTL_LOG = 6
ATTR_CTL_SSB = 7
ATTR_CTL_OPTIMIZE = 8

NR_SCMP_ERROR = -1  # seccomp_syscall_resolve_name: unknown name


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """libseccomp.so.2, loaded and prototyped on first use."""
    global _lib
    if _lib is None:
        try:
            so = ctypes.CDLL("libseccomp.so.2")
        except OSError as e:
            raise OSError(2, f"load libseccomp.so.2: {e} (apt-get install libseccomp2)") from None
        vp, u32, i, ui = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint
        so.seccomp_init.argtypes, so.seccomp_init.restype = [u32], vp
        so.seccomp_release.argtypes, so.seccomp_release.restype = [vp], None
        so.seccomp_arch_add.argtypes, so.seccomp_arch_add.restype = [vp, u32], i
        so.seccomp_arch_native.argtypes, so.seccomp_arch_native.restype = [], u32
        so.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        so.seccomp_arch_resolve_name.restype = u32
        so.seccomp_attr_set.argtypes, so.seccomp_attr_set.restype = [vp, i, u32], i
        so.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        so.seccomp_syscall_resolve_name.restype = i
        so.seccomp_rule_add_array.argtypes = [vp, u32, i, ui, ctypes.POINTER(ArgCmp)]
        so.seccomp_rule_add_array.restype = i
        so.seccomp_load.argtypes, so.seccomp_load.restype = [vp], i
        so.seccomp_export_bpf.argtypes, so.seccomp_export_bpf.restype = [vp, i], i
        so.seccomp_version.argtypes = []
        so.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
        _lib = so
    return _lib


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


def arch_resolve(name: str) -> int:
    """libseccomp arch token for a name like "x86_64"; 0 if unknown."""
    return lib().seccomp_arch_resolve_name(name.encode())


def arch_native() -> int:
    return lib().seccomp_arch_native()


def syscall_resolve(name: str) -> int:
    """Syscall number on the native arch (negative pseudo-number if it only
    exists on other arches); ``NR_SCMP_ERROR`` if libseccomp does not know it."""
    return lib().seccomp_syscall_resolve_name(name.encode())


def version() -> str:
    """libseccomp's version, e.g. "2.5.4"."""
    v = lib().seccomp_version().contents
    return ".".join(str(x) for x in v)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def load_bpf(prog: bytes) -> None:
    """Install a classic-BPF seccomp program (``struct sock_filter`` array, as
    ``Filter.export_bpf`` wrote it) with prctl(PR_SET_SECCOMP, FILTER).

    Like seccomp_load it needs no_new_privs or CAP_SYS_ADMIN.
    """
    from . import check, libc

    if not prog or len(prog) % 8 or len(prog) // 8 > 0xFFFF:
        raise OSError(22, f"load seccomp program: bad length {len(prog)}")
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    ul = ctypes.c_ulong
    ret = libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ul(SECCOMP_MODE_FILTER), ctypes.byref(fprog), ul(0), ul(0))
    check(ret, "prctl(PR_SET_SECCOMP)")


class Filter:
    """One libseccomp filter context; ``release()`` (or ``with``) frees it."""

    def __init__(self, default_action: int) -> None:
        self._ctx = lib().seccomp_init(default_action)
        if not self._ctx:
            raise OSError(22, f"seccomp_init(0x{default_action:x}): invalid default action")

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._ctx:
            lib().seccomp_release(self._ctx)
            self._ctx = None

    def arch_add(self, token: int, name: str) -> None:
        ret = lib().seccomp_arch_add(self._ctx, token)
        if ret != -17:  # -EEXIST: already present (the native arch always is)
            _check(ret, f"seccomp_arch_add {name}")

    def attr_set(self, attr: int, value: int) -> None:
        _check(lib().seccomp_attr_set(self._ctx, attr, value), f"seccomp_attr_set {attr}={value}")

    def rule_add(self, action: int, nr: int, args: list[tuple[int, int, int, int]], what: str) -> None:
        """Add one rule; ``args`` are (index, op, value, valueTwo), ANDed together."""
        arr = (ArgCmp * len(args))(*[ArgCmp(a, op, v1, v2) for a, op, v1, v2 in args]) if args else None
        _check(lib().seccomp_rule_add_array(self._ctx, action, nr, len(args), arr), f"seccomp_rule_add {what}")

    def export_bpf(self, fd: int) -> None:
        """Write the compiled program (struct sock_filter[]) to ``fd``."""
        _check(lib().seccomp_export_bpf(self._ctx, fd), "seccomp_export_bpf")

    def load(self) -> None:
        """Install the filter in the calling thread (seccomp(2) / prctl)."""
        _check(lib().seccomp_load(self._ctx), "seccomp_load")

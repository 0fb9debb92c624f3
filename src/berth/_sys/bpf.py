"""Thin ctypes wrappers over bpf(2): just what cgroup v2 device filters need.

BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program, and attaching,
querying and detaching programs on a cgroup directory fd (BPF_CGROUP_DEVICE).
Each raises ``OSError`` naming the command and its object; a failed program
load includes the kernel verifier's log.
"""

from __future__ import annotations

import ctypes
import os

from . import check, libc

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "s390x": 351, "ppc64le": 361, "ppc64": 361}

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
    ]


class _AttachAttr(ctypes.Structure):
    _fields_ = [
        ("target_fd", ctypes.c_uint32),
        ("attach_bpf_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("replace_bpf_fd", ctypes.c_uint32),
    ]


class _QueryAttr(ctypes.Structure):
    _fields_ = [
        ("target_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("query_flags", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("prog_ids", ctypes.c_uint64),
        ("prog_cnt", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class _GetFdAttr(ctypes.Structure):
    _fields_ = [("prog_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


# A private function object (libc["..."] makes a new one), so that setting its
# restype cannot disturb other modules' use of libc.syscall.
_syscall = libc["syscall"]
_syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Structure, what: str) -> int:
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"{what}: bpf(2) number unknown for {os.uname().machine}")
    ret = _syscall(ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    return check(ret, what)


def prog_load_cgroup_device(insns: bytes, name: str = "berth_dev") -> int:
    """Load a BPF_PROG_TYPE_CGROUP_DEVICE program; returns its fd."""
    buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(1 << 16)
    attr = _ProgLoadAttr(
        prog_type=BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt=len(insns) // 8,
        insns=ctypes.addressof(buf),
        license=ctypes.addressof(lic),
        log_level=1,
        log_size=len(log),
        log_buf=ctypes.addressof(log),
        prog_name=name.encode()[:15],
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD) device filter")
    except OSError as e:
        detail = log.value.decode(errors="replace").strip().replace("\n", "; ")
        raise OSError(e.errno, f"{e.strerror}{': ' + detail[-300:] if detail else ''}") from None


def prog_attach(cgroup_fd: int, prog_fd: int, what: str) -> None:
    attr = _AttachAttr(cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0)
    _bpf(BPF_PROG_ATTACH, attr, f"bpf(BPF_PROG_ATTACH) {what}")


def prog_detach(cgroup_fd: int, prog_fd: int, what: str) -> None:
    attr = _AttachAttr(cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, 0, 0)
    _bpf(BPF_PROG_DETACH, attr, f"bpf(BPF_PROG_DETACH) {what}")


def prog_query(cgroup_fd: int, what: str) -> list[int]:
    """IDs of the device programs attached directly to the cgroup."""
    ids = (ctypes.c_uint32 * 64)()
    attr = _QueryAttr(cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64, 0)
    _bpf(BPF_PROG_QUERY, attr, f"bpf(BPF_PROG_QUERY) {what}")
    return list(ids[: attr.prog_cnt])


def prog_fd_by_id(prog_id: int) -> int:
    return _bpf(BPF_PROG_GET_FD_BY_ID, _GetFdAttr(prog_id, 0, 0), f"bpf(BPF_PROG_GET_FD_BY_ID) {prog_id}")

"""Device access control on cgroup v2: an eBPF device filter.

cgroup v2 has no devices controller; the kernel instead runs the
BPF_PROG_TYPE_CGROUP_DEVICE programs attached to the cgroup (and its
ancestors) on every open/mknod of a device node, and refuses with EPERM when
one returns 0. This module turns linux.resources.devices into such a program,
with the same meaning as the v1 devices controller (so a config behaves the
same on both), and attaches it with BPF_F_ALLOW_MULTI: programs the container
may attach to its own sub-cgroups can only restrict further.

Semantics, as the v1 controller's (security/device_cgroup.c) and runc's:
rules are applied in order to a state of (default, exceptions). A type "a"
rule resets everything: allow → allow by default, deny → deny by default, no
exceptions. Any other rule that agrees with the default removes its access
bits from an exception with the same type/major/minor; one that disagrees
adds them. In deny-by-default mode an access is allowed when one exception
covers all of it; in allow-by-default mode it is denied when an exception
covers any of it. The state starts deny-by-default (the v1 backend writes
"a" to devices.deny first, for the same result).
"""

from __future__ import annotations

import os
import struct

from berth.errors import RuntimeFailure

DEVICE_FILTER = True

_TYPES = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

Exception_ = tuple[str, "int | None", "int | None"]  # (type, major, minor); None = any


def parse_rule(text: str) -> tuple[str, int | None, int | None, int]:
    """"c 1:3 rwm" → ("c", 1, 3, 0b111)."""
    typ, nums, access = text.split()
    major, minor = nums.split(":")
    acc = 0
    for ch in access:
        acc |= _ACCESS[ch]
    return typ, None if major == "*" else int(major), None if minor == "*" else int(minor), acc


def emulate(rules: list[tuple[bool, str]]) -> tuple[bool, dict[Exception_, int]]:
    """Apply v1-style rules in order; returns (allow_by_default, exceptions)."""
    default_allow = False
    exc: dict[Exception_, int] = {}
    for allow, text in rules:
        typ, major, minor, acc = parse_rule(text)
        if typ == "a":
            default_allow, exc = allow, {}
            continue
        key = (typ, major, minor)
        if allow == default_allow:
            left = exc.get(key, 0) & ~acc
            if left:
                exc[key] = left
            else:
                exc.pop(key, None)
        else:
            exc[key] = exc.get(key, 0) | acc
    return default_allow, exc


# -- eBPF code generation -----------------------------------------------------
def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDX_W = 0x61  # dst = *(u32 *)(src + off)
_AND_K = 0x57  # dst &= imm (64-bit)
_RSH_K = 0x77  # dst >>= imm
_MOV_K = 0xB7  # dst = imm
_MOV_X = 0xBF  # dst = src
_JNE_K = 0x55  # if dst != imm goto +off
_JEQ_K = 0x15  # if dst == imm goto +off
_EXIT = 0x95


def program(rules: list[tuple[bool, str]]) -> bytes:
    """The device filter for ``rules`` (list of (allow, "type major:minor access"))."""
    default_allow, exc = emulate(rules)
    # struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
    out = [
        _insn(_LDX_W, 2, 1, 0),
        _insn(_AND_K, 2, imm=0xFFFF),  # r2 = device type
        _insn(_LDX_W, 3, 1, 0),
        _insn(_RSH_K, 3, imm=16),  # r3 = requested access bits
        _insn(_LDX_W, 4, 1, 4),  # r4 = major
        _insn(_LDX_W, 5, 1, 8),  # r5 = minor
    ]
    verdict = 0 if default_allow else 1  # what a matching exception decides
    for (typ, major, minor), acc in sorted(exc.items(), key=lambda kv: str(kv[0])):
        block: list[tuple] = [(_JNE_K, 2, 0, None, _TYPES[typ])]
        block.append((_MOV_X, 1, 3, 0, 0))
        if default_allow:
            # denied if the request touches any excepted bit: (r3 & acc) != 0
            block.append((_AND_K, 1, 0, 0, acc))
            block.append((_JEQ_K, 1, 0, None, 0))
        else:
            # allowed only if the exception covers all of it: (r3 & ~acc) == 0
            block.append((_AND_K, 1, 0, 0, ~acc & 0x7))
            block.append((_JNE_K, 1, 0, None, 0))
        if major is not None:
            block.append((_JNE_K, 4, 0, None, major))
        if minor is not None:
            block.append((_JNE_K, 5, 0, None, minor))
        block.append((_MOV_K, 0, 0, 0, verdict))
        block.append((_EXIT, 0, 0, 0, 0))
        n = len(block)
        for i, (code, dst, src, off, imm) in enumerate(block):
            # a mismatch jumps past the rest of this block, to the next rule
            out.append(_insn(code, dst, src, n - i - 1 if off is None else off, imm))
    out.append(_insn(_MOV_K, 0, imm=1 if default_allow else 0))
    out.append(_insn(_EXIT))
    return b"".join(out)


def attach(cgroup_dir: str, rules: list[tuple[bool, str]]) -> None:
    """Enforce ``rules`` on the cgroup, replacing the filter we attached before."""
    from berth._sys import bpf

    insns = program(rules)
    try:
        dfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise RuntimeFailure(f"open cgroup {cgroup_dir}: {os.strerror(e.errno)}") from None
    try:
        old = bpf.prog_query(dfd, cgroup_dir)
        pfd = bpf.prog_load_cgroup_device(insns)
        try:
            bpf.prog_attach(dfd, pfd, cgroup_dir)
        finally:
            os.close(pfd)
        # Only after the new filter is in place: never a moment without one.
        for prog_id in old:
            ofd = bpf.prog_fd_by_id(prog_id)
            try:
                bpf.prog_detach(dfd, ofd, cgroup_dir)
            finally:
                os.close(ofd)
    except OSError as e:
        raise RuntimeFailure(f"device filter for {cgroup_dir}: {e.strerror}") from None
    finally:
        os.close(dfd)


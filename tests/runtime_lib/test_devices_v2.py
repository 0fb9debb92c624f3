"""linux.resources.devices on cgroup v2: the eBPF device filter.

The filter is attached for real to a cgroup in this host's unified
hierarchy (BPF device programs need no v2 controller), and checked by
opening device nodes from a process inside it. Its processes stay in the
root v1 devices cgroup (allow all), so the eBPF program alone decides.
"""

from __future__ import annotations

import os

import pytest

from berth._sys import bpf
from berth.runtime.container import cgroups
from berth.runtime.container.cgroups.devices_v2 import emulate, program
from berth.runtime.container.spec import DEFAULT_DEVICE_RULES

UNIFIED = cgroups.detect().unified
DENY_ALL = {"allow": False, "access": "rwm"}

OPEN_PROBE = """
import errno, os
for spec in {cases!r}:
    path, flags = spec
    try:
        os.close(os.open(path, getattr(os, flags) | os.O_NONBLOCK))
        print(path, flags, "ok")
    except OSError as e:
        print(path, flags, errno.errorcode[e.errno])
"""


def c(major, minor, access="rwm", allow=True, typ="c"):
    return {"allow": allow, "type": typ, "major": major, "minor": minor, "access": access}


def test_emulation_matches_v1_semantics():
    assert emulate([(False, "a *:* rwm"), (True, "c 1:3 rwm")]) == (False, {("c", 1, 3): 7})
    # a later deny of part of an allowed device removes only those bits
    assert emulate([(False, "a *:* rwm"), (True, "c 1:5 rwm"), (False, "c 1:5 w")]) == (False, {("c", 1, 5): 3})
    # "a" resets everything that came before
    assert emulate([(True, "c 1:3 rwm"), (True, "a *:* rwm"), (False, "b 8:* rwm")]) == (True, {("b", 8, None): 7})
    assert len(program([(False, "a *:* rwm")])) == 8 * 8  # prologue + "return deny"


def opens(cg, procs, cases) -> list[str]:
    p = procs.python(OPEN_PROBE.format(cases=cases))
    cg.add(p.pid)
    rc, out, err = procs.go(p)
    assert rc == 0, err
    return out.splitlines()


def test_deny_by_default_allows_only_listed_devices_and_access(v2cg, procs):
    v2cg.apply({"devices": [DENY_ALL, c(1, 3), c(1, 5, "r")]})
    assert opens(v2cg, procs, [("/dev/null", "O_RDWR"), ("/dev/zero", "O_RDONLY"), ("/dev/zero", "O_WRONLY"), ("/dev/full", "O_RDONLY")]) == [
        "/dev/null O_RDWR ok",
        "/dev/zero O_RDONLY ok",
        "/dev/zero O_WRONLY EPERM",
        "/dev/full O_RDONLY EPERM",
    ]


def test_allow_by_default_denies_listed_devices(v2cg, procs):
    v2cg.apply({"devices": [{"allow": True, "access": "rwm"}, c(1, 5, allow=False), c(1, 7, "w", allow=False)]})
    assert opens(v2cg, procs, [("/dev/null", "O_RDWR"), ("/dev/zero", "O_RDONLY"), ("/dev/full", "O_RDONLY"), ("/dev/full", "O_WRONLY")]) == [
        "/dev/null O_RDWR ok",
        "/dev/zero O_RDONLY EPERM",
        "/dev/full O_RDONLY ok",
        "/dev/full O_WRONLY EPERM",
    ]


def test_default_spec_devices_refuse_host_block_devices(v2cg, procs):
    block = next((f"/dev/{n}" for n in sorted(os.listdir("/dev")) if n.startswith("loop") and n[4:].isdigit()), None)
    if block is None:
        pytest.skip("no /dev/loopN block device to probe")
    v2cg.apply({"devices": [DENY_ALL, *DEFAULT_DEVICE_RULES]})
    got = opens(v2cg, procs, [(block, "O_RDONLY"), ("/dev/null", "O_RDWR"), ("/dev/urandom", "O_RDONLY")])
    assert got == [f"{block} O_RDONLY EPERM", "/dev/null O_RDWR ok", "/dev/urandom O_RDONLY ok"]


def test_control_without_a_filter_the_probes_succeed(v2cg, procs):
    """Proves the probes can tell: with no device rules nothing is refused."""
    got = opens(v2cg, procs, [("/dev/zero", "O_WRONLY"), ("/dev/full", "O_RDONLY")])
    assert got == ["/dev/zero O_WRONLY ok", "/dev/full O_RDONLY ok"]


def test_reapply_replaces_the_filter_instead_of_stacking(v2cg, procs):
    v2cg.apply({"devices": [DENY_ALL, c(1, 3)]})
    v2cg.apply({"devices": [DENY_ALL, c(1, 3), c(1, 5)]})
    fd = os.open(v2cg.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(bpf.prog_query(fd, v2cg.dir)) == 1
    finally:
        os.close(fd)
    assert opens(v2cg, procs, [("/dev/zero", "O_RDWR")]) == ["/dev/zero O_RDWR ok"]


def test_features_report_ebpf_device_filter():
    assert cgroups.features()["org.berth.v2Devices"] == "ebpf"

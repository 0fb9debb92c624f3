"""The cgroup v2 backend: conversions, and the real unified hierarchy.

On this hybrid host the v2 hierarchy (/sys/fs/cgroup/unified) has no
controllers enabled for children, so the v2 code path is exercised for what
needs none: create, join, list, freeze (cgroup.freeze), kill (cgroup.kill),
cpu.stat accounting, destroy — and its errors when a controller is missing.
Controllers are never enabled here (that would change the host's tree).
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from rtlib_helpers import unique_name

from berth.errors import ConfigError, RuntimeFailure
from berth.runtime.container import cgroups
from berth.runtime.container.cgroups import Cgroup
from berth.runtime.container.cgroups.v2 import (
    V2Cgroup,
    blkio_weight_to_io_weight,
    cpu_max,
    shares_to_weight,
    swap_to_v2,
)

UNIFIED = cgroups.detect().unified


def test_cpu_weight_from_shares_uses_runcs_formula():
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39  # docker's default shares → 39, as runc
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(0) == 0  # unset


def test_io_weight_from_blkio_weight():
    assert blkio_weight_to_io_weight(10) == 1
    assert blkio_weight_to_io_weight(500) == 4950
    assert blkio_weight_to_io_weight(1000) == 10000


def test_swap_conversion():
    MiB = 1 << 20
    assert swap_to_v2(96 * MiB, 64 * MiB) == 32 * MiB  # v2 limits swap alone
    assert swap_to_v2(-1, 64 * MiB) == -1
    assert swap_to_v2(None, -1) == -1  # unlimited memory → unlimited swap
    assert swap_to_v2(None, 64 * MiB) is None
    assert swap_to_v2(64 * MiB, 64 * MiB) == 0  # no swap at all
    with pytest.raises(ConfigError, match="below the memory limit"):
        swap_to_v2(32 * MiB, 64 * MiB)
    with pytest.raises(ConfigError, match="without a memory limit"):
        swap_to_v2(32 * MiB, None)


def test_cpu_max_line():
    assert cpu_max(50000, 100000) == "50000 100000"
    assert cpu_max(-1, None) == "max 100000"
    assert cpu_max(None, 200000) == "max 200000"
    assert cpu_max(None, None) is None


def test_v2_join_list_freeze_thaw_destroy(v2cg, procs):
    p = procs.sleep()
    v2cg.add(p.pid)
    with open(f"/proc/{p.pid}/cgroup") as f:
        assert f"0::{v2cg.path}" in f.read().splitlines()
    assert v2cg.pids() == [p.pid]
    v2cg.freeze()
    assert v2cg.is_frozen()
    with open(os.path.join(v2cg.dir, "cgroup.events")) as f:
        assert "frozen 1" in f.read().splitlines()
    v2cg.thaw()
    assert not v2cg.is_frozen()
    st = v2cg.stats()
    json.dumps(st)
    assert st["cpu"]["usage_ns"] is not None
    assert st["memory"]["usage"] is None  # no memory controller here: reported as absent


def test_v2_kill_all_sigkill_uses_cgroup_kill(v2cg, procs):
    a, b = procs.sleep(), procs.sleep()
    v2cg.add(a.pid)
    v2cg.add(b.pid)
    v2cg.kill_all(signal.SIGKILL)
    assert a.wait(timeout=10) == -signal.SIGKILL and b.wait(timeout=10) == -signal.SIGKILL


def test_v2_kill_all_other_signal_freezes_and_signals(v2cg, procs):
    p = procs.sleep()
    v2cg.add(p.pid)
    v2cg.kill_all(signal.SIGTERM)
    assert p.wait(timeout=10) == -signal.SIGTERM
    assert not v2cg.is_frozen()


def test_v2_missing_controller_is_named(v2cg):
    with pytest.raises(RuntimeFailure, match=r"write 1048576 to .*/memory.max: the memory controller is not enabled") as e:
        v2cg.apply({"memory": {"limit": 1 << 20}})
    assert "\n" not in str(e.value)
    with pytest.raises(RuntimeFailure, match="pids controller is not enabled"):
        v2cg.apply({"pids": {"limit": 10}})


@pytest.mark.parametrize(
    "unified, match",
    [
        ({"cgroup.procs": "1"}, "core cgroup"),
        ({"../memory.max": "1"}, "not a cgroup interface file"),
        ({"memory": "1"}, "not a cgroup interface file"),
        ({"memory.max": 5}, "expected a string"),
    ],
)
def test_v2_unified_rejects_non_interface_keys(v2cg, unified, match):
    with pytest.raises(ConfigError, match=match):
        v2cg.apply({"unified": unified})


def test_v2_realtime_and_net_cls_are_refused(v2cg):
    with pytest.raises(ConfigError, match="realtime"):
        v2cg.apply({"cpu": {"realtimeRuntime": 1000}})
    with pytest.raises(ConfigError, match="net_cls"):
        v2cg.apply({"network": {"classID": 7}})


def test_v2_state_round_trip_then_destroy(procs):
    mnt = UNIFIED[0]
    name = unique_name()
    c = V2Cgroup("/" + name, os.path.join(mnt, name), mnt, controllers=frozenset())
    c.create()
    try:
        os.mkdir(os.path.join(c.dir, "inner"))
        again = Cgroup.from_state(json.loads(json.dumps(c.to_state())))
        assert isinstance(again, V2Cgroup) and again.to_state() == c.to_state()
        again.destroy()
        assert not os.path.exists(c.dir)
    finally:
        c.destroy()


def test_features_say_whether_v2_devices_are_enforced():
    f = cgroups.features()
    assert f["v1"] and f["v2"]
    assert f["org.berth.v2Devices"] in ("ebpf", "not-enforced")


def test_v2_sigkill_reaches_a_frozen_cgroup(v2cg, procs):
    p = procs.sleep()
    v2cg.add(p.pid)
    v2cg.freeze()
    v2cg.kill_all(signal.SIGKILL)
    assert p.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.parametrize(
    "memory, match",
    [
        ({"limit": 4096}, r"below the minimum"),
        ({"limit": 0}, r"0 is not a limit"),
        ({"swap": 1 << 30}, r"without a memory limit"),
        ({"limit": "1g"}, r"expected an integer"),
    ],
)
def test_v2_memory_config_errors_come_before_any_write(v2cg, memory, match):
    with pytest.raises(ConfigError, match=match):
        v2cg.apply({"memory": memory})

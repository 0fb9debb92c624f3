"""Container cgroups on this host's real hierarchies (hybrid: v1 + bare v2).

Limits are applied, read back from the kernel's files, and enforced on real
child processes: an OOM kill, EAGAIN from fork at the pids limit, EPERM
opening a denied device.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from rtlib_helpers import unique_name

from berth.errors import ConfigError, RuntimeFailure
from berth.runtime.container import cgroups
from berth.runtime.container.cgroups import Cgroup, parse_mountinfo, resolve_path

LAYOUT = cgroups.detect()
pytestmark = pytest.mark.skipif(
    LAYOUT.mode not in ("v1", "hybrid"), reason="v1/hybrid host needed for these tests"
)

MiB = 1 << 20


def rd(d: str, name: str) -> str:
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def test_detects_hybrid_layout_of_this_host():
    assert LAYOUT.mode == "hybrid"
    for c in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"):
        assert c in LAYOUT.v1
    assert LAYOUT.unified == ("/sys/fs/cgroup/unified", "/")


def test_mountinfo_parsing_of_pure_v2_and_comounted_v1():
    v2 = parse_mountinfo("30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    assert v2.mode == "v2" and v2.unified == ("/sys/fs/cgroup", "/") and not v2.v1
    v1 = parse_mountinfo(
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "33 31 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "34 31 0:31 / /x/rootfs/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    )
    assert v1.mode == "v1"
    assert set(v1.v1) == {"cpu,cpuacct", "name=systemd"}  # the mount outside /sys/fs/cgroup is ignored


def test_cgroups_path_validation():
    assert resolve_path(None, "abc") == ("/berth/abc", True)
    assert resolve_path("/a/./b/", "x") == ("/a/b", True)
    assert resolve_path("a/b", "x") == ("a/b", False)
    for bad, why in [
        ("/a/../../etc", "'..'"),
        ("../x", "'..'"),
        ("system.slice:docker:abc", "systemd"),
        ("/", "root"),
        ("/a\0b", "NUL"),
    ]:
        with pytest.raises(ConfigError, match=why) as e:
            resolve_path(bad, "x")
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        resolve_path(None, "../x")


def test_relative_path_is_under_own_cgroup_in_each_hierarchy():
    own = cgroups.own_cgroups()
    c = cgroups.open_cgroup("rel/abc", "x")  # not created
    for key, d in c.dirs.items():
        assert d == os.path.join(LAYOUT.v1[key][0] + own[key].rstrip("/"), "rel/abc")


def test_apply_writes_every_limit_and_reads_back(cg):
    cg.apply(
        {
            "memory": {"limit": 64 * MiB, "swap": 96 * MiB, "reservation": 32 * MiB, "swappiness": 10},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 42},
            "blockIO": {},
        }
    )
    mem = cg.controller_dir("memory")
    assert rd(mem, "memory.limit_in_bytes") == str(64 * MiB)
    assert rd(mem, "memory.memsw.limit_in_bytes") == str(96 * MiB)
    assert rd(mem, "memory.soft_limit_in_bytes") == str(32 * MiB)
    assert rd(mem, "memory.swappiness") == "10"
    cpu = cg.controller_dir("cpu")
    assert rd(cpu, "cpu.shares") == "512"
    assert rd(cpu, "cpu.cfs_quota_us") == "50000"
    assert rd(cpu, "cpu.cfs_period_us") == "100000"
    assert rd(cg.controller_dir("cpuset"), "cpuset.cpus") == "0"
    assert rd(cg.controller_dir("pids"), "pids.max") == "42"
    # lowering memory below the current memsw limit must write in the right order
    cg.apply({"memory": {"limit": 16 * MiB, "swap": 16 * MiB}})
    assert rd(mem, "memory.memsw.limit_in_bytes") == str(16 * MiB)
    cg.apply({"memory": {"limit": -1}, "pids": {"limit": -1}})
    assert int(rd(mem, "memory.limit_in_bytes")) > 1 << 60
    assert rd(cg.controller_dir("pids"), "pids.max") == "max"


def test_process_joins_every_hierarchy_including_unified(cg, procs):
    p = procs.sleep()
    cg.add(p.pid)
    with open(f"/proc/{p.pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, key, path = line.split(":", 2)
        assert path == cg.path, line  # v1 hierarchies, name=systemd and "0::" (unified)
    assert cg.pids() == [p.pid]


def test_freeze_and_thaw(cg, procs):
    p = procs.sleep()
    cg.add(p.pid)
    cg.freeze()
    assert cg.is_frozen()
    assert rd(cg.controller_dir("freezer"), "freezer.state") == "FROZEN"
    cg.thaw()
    assert not cg.is_frozen()
    assert rd(cg.controller_dir("freezer"), "freezer.state") == "THAWED"


def test_kill_all_signals_every_process_even_when_frozen(cg, procs):
    a, b = procs.sleep(), procs.sleep()
    cg.add(a.pid)
    cg.add(b.pid)
    cg.kill_all(signal.SIGTERM)
    assert a.wait(timeout=10) == -signal.SIGTERM and b.wait(timeout=10) == -signal.SIGTERM
    assert not cg.is_frozen()


def test_stats_report_usage_limits_and_pids(cg, procs):
    cg.apply({"memory": {"limit": 200 * MiB}, "pids": {"limit": 50}})
    p = procs.python("x = b'1' * (30 << 20)\nsum(range(2_000_000))\nprint('done', flush=True)\nsys.stdin.read()")
    cg.add(p.pid)
    p.stdin.write(b"g")
    p.stdin.flush()
    assert p.stdout.readline() == b"done\n"
    st = cg.stats()
    json.dumps(st)
    assert st["memory"]["limit"] == 200 * MiB
    assert st["memory"]["usage"] >= 30 * MiB
    assert st["memory"]["max_usage"] >= st["memory"]["usage"]
    assert st["cpu"]["usage_ns"] > 0
    assert st["pids"] == {"current": 1, "limit": 50}
    assert st["memory"]["oom_kill"] == 0 and not cg.oom_killed()


def test_memory_hog_is_oom_killed_and_reported(cg, procs):
    cg.apply({"memory": {"limit": 20 * MiB, "swap": 20 * MiB}})
    p = procs.python("x = b'1' * (100 << 20)\nprint('survived')")
    cg.add(p.pid)
    rc, out, _ = procs.go(p)
    assert rc == -signal.SIGKILL and "survived" not in out
    assert cg.oom_killed()
    assert cg.stats()["memory"]["oom_kill"] >= 1


def test_fork_beyond_pids_limit_gets_eagain(cg, procs):
    cg.apply({"pids": {"limit": 5}})
    code = """
import os, errno, time
kids = []
try:
    for _ in range(20):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        kids.append(pid)
    print("no limit", len(kids))
except OSError as e:
    print(errno.errorcode[e.errno], len(kids))
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
"""
    p = procs.python(code)
    cg.add(p.pid)
    rc, out, err = procs.go(p)
    assert rc == 0, err
    assert out.split() == ["EAGAIN", "4"]  # 1 parent + 4 children = the limit of 5


def test_device_rules_enforced_by_v1_devices_controller(cg, procs):
    cg.apply(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            ]
        }
    )
    assert rd(cg.controller_dir("devices"), "devices.list") == "c 1:3 rwm"
    code = """
import errno
for dev in ("/dev/null", "/dev/zero"):
    try:
        open(dev, "rb").close()
        print(dev, "ok")
    except OSError as e:
        print(dev, errno.errorcode[e.errno])
"""
    p = procs.python(code)
    cg.add(p.pid)
    rc, out, err = procs.go(p)
    assert rc == 0, err
    assert out.splitlines() == ["/dev/null ok", "/dev/zero EPERM"]


def test_memory_limit_below_current_usage_is_a_clear_error(cg, procs):
    p = procs.python("x = b'1' * (30 << 20)\nprint('ready', flush=True)\nsys.stdin.read()")
    cg.add(p.pid)
    p.stdin.write(b"g")
    p.stdin.flush()
    assert p.stdout.readline() == b"ready\n"
    with pytest.raises(ConfigError, match=r"memory.limit: 1048576 is below the current usage \d+ of /sys/fs/cgroup/memory/") as e:
        cg.apply({"memory": {"limit": 1 * MiB}})
    assert "\n" not in str(e.value)


def test_kernel_refusal_names_value_and_file(cg):
    f = os.path.join(cg.controller_dir("cpuset"), "cpuset.cpus")
    with pytest.raises(RuntimeFailure) as e:
        cg.apply({"cpu": {"cpus": "zz"}})
    assert str(e.value) == f"write zz to {f}: Invalid argument"


@pytest.mark.parametrize(
    "resources, match",
    [
        ({"memory": {"limit": "64m"}}, r"linux.resources.memory.limit: expected an integer"),
        ({"memory": {"limit": 0}}, r"memory.limit: 0 is not a limit"),
        ({"memory": {"limit": 64 * MiB, "swap": 32 * MiB}}, r"swap: .* is below the memory limit"),
        ({"memory": {"limit": 4096}}, r"memory.limit: 4096 is below the minimum 1048576"),
        ({"memory": {"swap": 32 * MiB}}, r"cannot limit swap without a memory limit"),
        ({"memory": {"limit": 32 * MiB, "reservation": 64 * MiB}}, r"reservation: .* is above the memory limit"),
        ({"pids": {"limit": True}}, r"pids.limit: expected an integer"),
        ({"cpu": {"shares": 1 << 20}}, r"cpu.shares: .* out of range"),
        ({"devices": [{"allow": True, "type": "x"}]}, r"devices\[0\].type"),
        ({"devices": [{"allow": True, "access": "rwx"}]}, r"devices\[0\].access"),
        ({"unified": {"memory.high": "1"}}, r"unified: needs cgroup v2"),
        ({"bogus": 1}, r"unknown field 'bogus'"),
    ],
)
def test_bad_resources_are_one_line_config_errors(cg, resources, match):
    with pytest.raises(ConfigError, match=match) as e:
        cg.apply(resources)
    assert "\n" not in str(e.value)


def test_state_round_trip_and_destroy_removes_every_dir(procs):
    c = cgroups.open_cgroup("/" + unique_name(), "x")
    c.create()
    try:
        # a sub-cgroup the container made itself, in two hierarchies
        os.mkdir(os.path.join(c.controller_dir("memory"), "inner"))
        os.mkdir(os.path.join(c.unified, "inner"))
        p = procs.sleep()
        c.add(p.pid)
        again = Cgroup.from_state(json.loads(json.dumps(c.to_state())))
        assert again.pids() == [p.pid] and again.to_state() == c.to_state()
        again.kill_all(signal.SIGKILL)
        p.wait(timeout=10)
        again.destroy()  # the just-killed task may still hold the css: EBUSY is retried
        dirs = [*c.dirs.values(), c.unified]
        assert len(dirs) == len(LAYOUT.v1) + 1
        for d in dirs:
            assert not os.path.exists(d), d
        again.destroy()  # idempotent
    finally:
        procs.cleanup()
        c.destroy()


def test_create_fills_cpuset_of_new_levels_so_tasks_can_join(procs):
    top = unique_name()
    c = cgroups.open_cgroup(f"/{top}/a/b", "x")
    try:
        c.create()
        parent = cgroups.detect().v1["cpuset"][0]
        for sub in (top, f"{top}/a", f"{top}/a/b"):
            assert rd(os.path.join(parent, sub), "cpuset.cpus") == rd(parent, "cpuset.cpus")
            assert rd(os.path.join(parent, sub), "cpuset.mems") == rd(parent, "cpuset.mems")
        p = procs.sleep()
        c.add(p.pid)
    finally:
        procs.cleanup()
        c.destroy()
        for d in (*c.mounts.values(), "/sys/fs/cgroup/unified"):
            for sub in (f"{top}/a", top):
                if os.path.isdir(os.path.join(d, sub)):
                    os.rmdir(os.path.join(d, sub))


def test_from_state_rejects_garbage():
    with pytest.raises(ConfigError, match="unknown version"):
        Cgroup.from_state({"version": "v9"})
    with pytest.raises(ConfigError, match="missing field"):
        Cgroup.from_state({"version": "v1", "path": "/x"})


def test_sigkill_reaches_a_paused_container(cg, procs):
    p = procs.sleep()
    cg.add(p.pid)
    cg.freeze()
    cg.kill_all(signal.SIGKILL)
    assert p.wait(timeout=10) == -signal.SIGKILL


def test_other_signals_leave_a_paused_container_paused(cg, procs):
    p = procs.sleep()
    cg.add(p.pid)
    cg.freeze()
    cg.kill_all(signal.SIGTERM)
    assert cg.is_frozen() and p.poll() is None
    cg.thaw()
    assert p.wait(timeout=10) == -signal.SIGTERM  # delivered on thaw


def test_failed_create_is_one_line_and_leaves_nothing():
    # "memory.limit_in_bytes" is a file in the memory hierarchy only: the
    # directories made in the hierarchies before it must be removed again.
    top = unique_name()
    c = cgroups.open_cgroup(f"/{top}/memory.limit_in_bytes/x", "x")
    try:
        with pytest.raises(RuntimeFailure, match=r"^create cgroup /sys/fs/cgroup/memory/.*: Not a directory$"):
            c.create()
        for m in (*c.mounts.values(), c.unified):
            assert not os.path.exists(os.path.join(m, top)), m
    finally:
        for m in (*c.mounts.values(), "/sys/fs/cgroup/unified"):
            for sub in (f"{top}/memory.limit_in_bytes/x", f"{top}/memory.limit_in_bytes", top):
                if os.path.isdir(os.path.join(m, sub)):
                    os.rmdir(os.path.join(m, sub))

"""What a process sees from inside a container with berth's defaults
(``berth-runtime spec``): docker's 14 capabilities, no_new_privs, seccomp,
its own hostname and PID 1, masked and read-only /proc and /sys, and cgroup
limits that are read back and enforced."""

import json
import os

from rt_helpers import one_line_error

DOCKER_CAPS = "00000000a80425fb"


def run_sh(rt, bundle, script, edit=None):
    bundle.set(["/bin/sh", "-c", script], edit=edit)
    return rt("run", "--bundle", str(bundle.path), rt.new_id())


def test_default_capabilities_no_new_privs_and_seccomp_filter(rt, bundle):
    r = run_sh(rt, bundle, "cat /proc/self/status")
    assert r.returncode == 0, r.stderr
    status = dict(line.split(":\t", 1) for line in r.stdout.splitlines() if ":\t" in line)
    assert status["CapEff"].strip() == DOCKER_CAPS
    assert status["CapPrm"].strip() == DOCKER_CAPS
    assert status["CapBnd"].strip() == DOCKER_CAPS
    assert status["CapInh"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


def test_hostname_pid1_and_mount_table(rt, bundle):
    r = run_sh(rt, bundle, "hostname; echo $$; cat /proc/mounts")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "berth" and lines[1] == "1"
    mounts = {f[1]: f for f in (line.split() for line in lines[2:])}
    assert mounts["/"][3].startswith("rw")
    assert mounts["/proc"][2] == "proc"
    assert mounts["/dev"][2] == "tmpfs" and mounts["/dev/pts"][2] == "devpts"
    assert mounts["/sys"][2] == "sysfs" and mounts["/sys"][3].startswith("ro")
    for p in ("/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"):
        if os.path.exists(p):  # this kernel may lack some (no CONFIG_MAGIC_SYSRQ)
            assert mounts[p][3].startswith("ro"), p
    for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/acpi"):
        if os.path.exists(p):
            assert p in mounts, f"{p} is not masked"
    assert "/proc/keys" in mounts and "/sys/firmware" in mounts
    # the host's mounts are gone
    assert not any(m.startswith(("/work", "/tmp/pytest")) for m in mounts)


def test_readonly_root_from_config(rt, bundle):
    r = run_sh(rt, bundle, "touch /x 2>&1; echo rc=$?",
               edit=lambda c: c["root"].update(readonly=True))
    assert "Read-only file system" in r.stdout and "rc=1" in r.stdout


def test_default_devices_and_links(rt, bundle):
    r = run_sh(rt, bundle, "ls -l /dev; echo x > /dev/null && head -c 4 /dev/zero | wc -c")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for name, majmin in (("null", "1,   3"), ("zero", "1,   5"), ("full", "1,   7"), ("random", "1,   8"),
                         ("urandom", "1,   9"), ("tty", "5,   0")):
        line = next(line for line in out.splitlines() if line.endswith(" " + name))
        assert line.startswith("crw-rw-rw-") and majmin in line, line
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("ptmx", "pts/ptmx")):
        assert f"{link} -> {target}" in out
    assert out.splitlines()[-1].strip() == "4"


def test_container_cannot_create_namespaces_or_mount(rt, bundle):
    r = run_sh(rt, bundle, "unshare -m true 2>&1; echo u=$?; unshare -n true 2>&1; echo n=$?; "
               "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>&1; echo m=$?")
    assert "u=1" in r.stdout and "n=1" in r.stdout and "m=255" in r.stdout or "m=1" in r.stdout, r.stdout
    assert r.stdout.count("Operation not permitted") >= 2, r.stdout


def test_container_cannot_write_proc_sys_sys_or_cgroup_files(rt, bundle):
    r = run_sh(rt, bundle, "echo evil > /proc/sys/kernel/hostname; echo a=$?; "
               "echo 1 > /sys/kernel/profiling; echo b=$?; "
               "echo max > /sys/fs/cgroup/pids/pids.max; echo c=$?; "
               "echo 1 > /proc/sysrq-trigger; echo d=$?")
    for k in "abcd":
        assert f"{k}=1" in r.stdout or f"{k}=2" in r.stdout, r.stdout
    assert r.stderr.count("Read-only file system") >= 3, r.stderr
    assert open("/proc/sys/kernel/hostname").read().strip() != "evil"


def test_seccomp_rule_makes_syscall_fail_with_eperm(rt, bundle):
    def edit(c):  # take mkdir out of the allowlist: the default action (EPERM) applies
        for rule in c["linux"]["seccomp"]["syscalls"]:
            rule["names"] = [n for n in rule["names"] if n not in ("mkdir", "mkdirat")] or ["getpid"]
    r = run_sh(rt, bundle, "mkdir /tmp/blocked; echo rc=$?; touch /tmp/allowed; echo t=$?", edit=edit)
    assert "Operation not permitted" in r.stderr and "rc=1" in r.stdout and "t=0" in r.stdout
    assert not (bundle.rootfs / "tmp" / "blocked").exists()


def test_default_seccomp_profile_blocks_keyctl_and_bpf_class_calls(rt, bundle):
    # busybox has no keyctl; but the default profile must deny these names
    sc = bundle.config["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for rule in sc["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
               for n in rule["names"]}
    for name in ("keyctl", "bpf", "perf_event_open", "kexec_load", "open_by_handle_at",
                 "userfaultfd", "io_uring_setup", "unshare", "setns", "mount"):
        assert name not in allowed, name


def test_pids_limit_is_read_back_and_stops_a_fork_bomb(rt, bundle):
    def edit(c):
        c["linux"]["resources"]["pids"] = {"limit": 16}
    script = ("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
              "i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done; "
              "ls /proc | grep -c '^[0-9]'")
    r = run_sh(rt, bundle, script, edit=edit)
    lines = r.stdout.split()
    assert lines[0] == "16"
    assert int(lines[-1]) <= 16  # 60 forks attempted, the kernel stopped them at the limit
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr


def test_memory_hog_is_oom_killed_and_reported(rt, bundle):
    def edit(c):
        c["linux"]["resources"]["memory"] = {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}
    bundle.set(["/bin/sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
                "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"], edit=edit)
    cid = rt.new_id()
    r = rt("run", "--bundle", str(bundle.path), cid)
    assert r.stdout.splitlines()[0] == str(32 * 1024 * 1024)
    assert "survived" not in r.stdout
    assert r.returncode == 137 or "out of memory" in r.stderr, (r.returncode, r.stderr)


def test_oom_kill_shows_in_state_of_detached_container(rt, bundle):
    import time

    def edit(c):
        c["linux"]["resources"]["memory"] = {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}
    bundle.set(["/bin/sh", "-c", "exec tail -c 200000000 /dev/zero"], edit=edit)
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    deadline = time.monotonic() + 30
    while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    st = rt.state(cid)
    assert st["status"] == "stopped" and st.get("oomKilled") is True, st


def test_rlimit_applied(rt, bundle):
    r = run_sh(rt, bundle, "ulimit -n")
    assert r.stdout.strip() == str(bundle.config["process"]["rlimits"][0]["soft"])


def test_user_umask_and_additional_groups(rt, bundle):
    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 7], "umask": 0o077}
    r = run_sh(rt, bundle, "id -u; id -g; id -G; umask; grep CapEff /proc/self/status", edit=edit)
    lines = r.stdout.split("\n")
    assert lines[0] == "1000" and lines[1] == "1000"
    assert set(lines[2].split()) == {"1000", "5", "7"}
    assert lines[3] == "0077"
    # like docker: a non-root user keeps no capabilities across exec (no ambient set)
    assert lines[4].split()[1] == "0000000000000000"


def test_sysctl_in_own_namespace_applied_and_host_one_refused(rt, bundle):
    r = run_sh(rt, bundle, "cat /proc/sys/kernel/msgmax",
               edit=lambda c: c["linux"].__setitem__("sysctl", {"kernel.msgmax": "4096"}))
    assert r.stdout.strip() == "4096", r.stderr
    bundle.set(edit=lambda c: c["linux"].__setitem__("sysctl", {"kernel.core_pattern": "|/evil"}))
    before = open("/proc/sys/kernel/core_pattern").read()
    err = one_line_error(rt("run", "--bundle", str(bundle.path), rt.new_id()))
    assert "kernel.core_pattern" in err
    assert open("/proc/sys/kernel/core_pattern").read() == before


def test_user_namespace_with_mappings(rt, bundle, tmp_path):
    base = 100000 + (os.getpid() % 1000) * 65536

    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": base, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": base, "size": 65536}]
    # The mapped root must be able to reach its rootfs (pytest's dirs are 0700).
    p = tmp_path
    while str(p) != "/tmp":
        os.chmod(p, 0o755)
        p = p.parent
    os.chown(bundle.rootfs, base, base)
    r = run_sh(rt, bundle, "id -u; cat /proc/self/uid_map", edit=edit)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(base), "65536"]


def test_state_json_written_atomically(rt, bundle):
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    d = rt.root / cid
    assert sorted(p.name for p in d.iterdir()) == ["exec.fifo", "state.json"]  # no temp files
    st = json.loads((d / "state.json").read_text())
    assert st["pid"] == rt.state(cid)["pid"]


def test_cgroup_namespace_is_rooted_at_the_container_cgroup(rt, bundle):
    """P2 unshares its cgroup namespace only after P0 placed it in the
    container's cgroup: inside, every hierarchy shows "/" and the cgroup
    mount shows the container's own limits."""
    r = run_sh(rt, bundle, "cat /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(line.endswith(":/") for line in lines[:-1]), lines
    assert lines[-1] == "2048"


def test_trace_shows_cgroup_placement_before_exec(rt, bundle, tmp_path):
    import subprocess

    from rt_helpers import RUNTIME

    trace = tmp_path / "trace"
    env = dict(os.environ, BERTH_RUNTIME_TRACE=str(trace))
    r = subprocess.run([RUNTIME, "--root", str(rt.root), "run", "--bundle", str(bundle.path),
                        rt.new_id()], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    marks = [line.split(None, 2)[2] for line in trace.read_text().splitlines()]
    order = ["cgroup created", "cgroup added", "P2 in cgroup", "P2 ready", "P2 execve", "deleted"]
    assert [m for m in marks if m in order] == order

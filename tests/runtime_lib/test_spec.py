"""``default_spec``: the config.json ``berth-runtime spec`` writes."""

from __future__ import annotations

import json

from berth.runtime.container import seccomp
from berth.runtime.container.cgroups._base import device_rule
from berth.runtime.container.seccomp_profile import ALLOWED, default_profile
from berth.runtime.container.spec import default_spec

# capability numbers from linux/capability.h (only the ones docker grants + a few)
CAP_BITS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}  # fmt: skip


def mask(names: list[str]) -> int:
    m = 0
    for n in names:
        m |= 1 << CAP_BITS[n]
    return m


def test_default_spec_is_json_and_round_trips():
    s = default_spec()
    assert json.loads(json.dumps(s)) == s
    assert s["ociVersion"].startswith("1.")
    assert s["process"]["args"] == ["sh"]
    assert default_spec(["/bin/true", "x"])["process"]["args"] == ["/bin/true", "x"]


def test_capabilities_are_exactly_dockers_capeff():
    caps = default_spec()["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        assert len(caps[kind]) == 14
        assert mask(caps[kind]) == 0x00000000A80425FB  # docker's CapEff/CapBnd
    assert not caps.get("inheritable") and not caps.get("ambient")


def test_process_defaults():
    p = default_spec()["process"]
    assert p["noNewPrivileges"] is True
    assert p["terminal"] is False
    assert p["user"] == {"uid": 0, "gid": 0} and p["cwd"] == "/"
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert any(e.startswith("PATH=") for e in p["env"])


def test_masked_and_readonly_paths_are_dockers():
    lx = default_spec()["linux"]
    for name in ("acpi", "asound", "kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug", "scsi"):
        assert f"/proc/{name}" in lx["maskedPaths"]
    assert "/sys/firmware" in lx["maskedPaths"] and "/sys/devices/virtual/powercap" in lx["maskedPaths"]
    assert sorted(lx["readonlyPaths"]) == sorted(f"/proc/{n}" for n in ("bus", "fs", "irq", "sys", "sysrq-trigger"))


def test_mounts_sys_and_cgroup_read_only_and_dev_options():
    mounts = {m["destination"]: m for m in default_spec()["mounts"]}
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} <= set(mounts)
    for d in ("/sys", "/sys/fs/cgroup"):
        assert {"ro", "nosuid", "noexec", "nodev"} <= set(mounts[d]["options"])
    assert set(mounts["/dev"]["options"]) >= {"nosuid", "strictatime", "mode=755", "size=65536k"}
    assert set(mounts["/dev/pts"]["options"]) >= {"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}


def test_namespaces_pids_limit_and_devices():
    lx = default_spec()["linux"]
    assert sorted(n["type"] for n in lx["namespaces"]) == sorted(["pid", "network", "ipc", "uts", "mount", "cgroup"])
    assert lx["resources"]["pids"]["limit"] == 2048
    devs = lx["resources"]["devices"]
    assert devs[0] == {"allow": False, "access": "rwm"}  # deny everything first
    rules = [device_rule(d, i) for i, d in enumerate(devs)]
    allowed = {text for allow, text in rules[1:] if allow}
    assert {"c 1:3 rwm", "c 1:5 rwm", "c 1:9 rwm", "c 5:2 rwm", "c 136:* rwm", "c *:* m", "b *:* m"} <= allowed
    assert not any(t.startswith("b") and t.endswith("rwm") for t in allowed)  # no block device access


def test_seccomp_profile_is_deny_by_default_and_blocks_the_escapes():
    sc = default_spec()["linux"]["seccomp"]
    seccomp.validate(sc)
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and sc["defaultErrnoRet"] == 1
    assert sc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = set()
    for r in sc["syscalls"]:
        if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args"):
            allowed.update(r["names"])
    for name in (
        "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "kexec_load", "kexec_file_load",
        "open_by_handle_at", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
        "unshare", "setns", "mount", "umount2", "pivot_root", "clone", "clone3", "personality",
        "fsopen", "fsmount", "move_mount", "init_module", "finit_module", "reboot", "swapon", "syslog",
    ):  # fmt: skip
        assert name not in allowed, name
    assert {"read", "write", "execve", "chroot", "arch_prctl", "ptrace"} <= allowed
    assert len(allowed) > 300
    clone = [r for r in sc["syscalls"] if r["names"] == ["clone"]]
    assert clone[0]["args"] == [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    clone3 = [r for r in sc["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_profile_resolution_per_arch_and_kernel():
    arm = default_profile("aarch64", "6.1.0")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "set_tls" in arm["syscalls"][0]["names"] and "arch_prctl" not in arm["syscalls"][0]["names"]
    old = default_profile("x86_64", "4.4.0-1-amd64")
    assert "ptrace" not in old["syscalls"][0]["names"]  # ptrace could bypass seccomp before 4.8
    s390 = default_profile("s390x", "6.1")
    assert [r for r in s390["syscalls"] if r["names"] == ["clone"]][0]["args"][0]["index"] == 1
    assert not any(n.startswith("io_uring") for n in ALLOWED)

"""linux.seccomp through libseccomp, loaded for real in forked children.

Each filter is installed in a child the test throws away (``in_child``);
the child makes raw syscalls with ctypes and reports return value and errno.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal

import pytest
from rtlib_helpers import in_child

from berth.errors import ConfigError
from berth.runtime.container import seccomp
from berth.runtime.container.seccomp_profile import default_profile

# x86_64 syscall numbers used by the probes
NR = {
    "personality": 135,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "bpf": 321,
    "perf_event_open": 298,
    "unshare": 272,
    "setns": 308,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "open_by_handle_at": 304,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "clone": 56,
    "clone3": 435,
    "getpid": 39,
    "socket": 41,
    "fsopen": 430,
    "init_module": 175,
    "reboot": 169,
    "syslog": 103,
}
pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's")

CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
SIGCHLD = 17


def syscall(name: str, *args: int) -> tuple[int, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args])
    if ret == 0 and name == "clone":
        os._exit(0)  # a clone that got through: the copy must not run the test on
    return ret, ctypes.get_errno()


def probe(cfg: dict, calls: list[tuple]) -> dict:
    """Load ``cfg`` in a child, make ``calls``; {label: errno name or "ok"}."""

    def child():
        seccomp.load(cfg)
        out = []
        for label, name, *args in calls:
            ret, err = syscall(name, *args)
            out.append(f"{label}={'ok' if ret >= 0 else errno.errorcode.get(err, err)}")
        return " ".join(out)

    status, text = in_child(child)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, text
    return dict(kv.split("=", 1) for kv in text.split())


def test_blocked_syscall_gets_eperm_and_others_still_work():
    cfg = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["keyctl", "unshare"], "action": "SCMP_ACT_ERRNO"}],
    }
    got = probe(cfg, [("keyctl", "keyctl", 0), ("unshare", "unshare", CLONE_NEWNS), ("getpid", "getpid")])
    assert got == {"keyctl": "EPERM", "unshare": "EPERM", "getpid": "ok"}


def test_argument_condition_blocks_personality_except_zero():
    cfg = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EACCES,
                "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}],
            }
        ],
    }
    got = probe(cfg, [("p0", "personality", 0), ("p8", "personality", 8), ("pq", "personality", 0xFFFFFFFF)])
    assert got == {"p0": "ok", "p8": "EACCES", "pq": "EACCES"}


def test_conditions_on_the_same_argument_are_ored_like_runc():
    # two EQ conditions on arg 0: either value is blocked (two rules)
    cfg = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 0x20000, "op": "SCMP_CMP_EQ"},
                ],
            }
        ],
    }
    got = probe(cfg, [("a", "personality", 8), ("b", "personality", 0x20000), ("c", "personality", 0)])
    assert got == {"a": "EPERM", "b": "EPERM", "c": "ok"}


def test_masked_eq_blocks_namespace_flags_of_clone():
    profile = default_profile()
    got = probe(
        profile,
        [
            ("newuser", "clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
            ("newns", "clone", CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0),
        ],
    )
    assert got == {"newuser": "EPERM", "newns": "EPERM"}


def test_unknown_syscall_names_are_skipped_like_runc():
    cfg = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall_xyz", "keyctl"], "action": "SCMP_ACT_ERRNO"}],
    }
    assert probe(cfg, [("k", "keyctl", 0)]) == {"k": "EPERM"}


def test_kill_process_action_kills_with_sigsys():
    cfg = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_KILL_PROCESS"}]}

    def child():
        seccomp.load(cfg)
        syscall("keyctl", 0)
        return "survived"

    status, text = in_child(child)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, text


def test_log_and_trace_actions_load():
    # LOG allows (and audits); TRACE with no tracer attached fails with ENOSYS.
    cfg = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
            {"names": ["keyctl"], "action": "SCMP_ACT_TRACE", "errnoRet": 3},
        ],
    }
    assert probe(cfg, [("g", "getpid"), ("k", "keyctl", 0)]) == {"g": "ok", "k": "ENOSYS"}


DEFAULT_BLOCKED = [
    ("keyctl", 0),
    ("add_key", 0, 0, 0, 0, 0),
    ("request_key", 0, 0, 0, 0),
    ("bpf", 0, 0, 0),
    ("perf_event_open", 0, 0, 0, 0, 0),
    ("unshare", CLONE_NEWNS),
    ("setns", 0, 0),
    ("mount", 0, 0, 0, 0, 0),
    ("umount2", 0, 0),
    ("pivot_root", 0, 0),
    ("kexec_load", 0, 0, 0, 0),
    ("kexec_file_load", 0, 0, 0, 0, 0),
    ("open_by_handle_at", 0, 0, 0),
    ("userfaultfd", 0),
    ("io_uring_setup", 0, 0),
    ("fsopen", 0, 0),
    ("init_module", 0, 0, 0),
    ("reboot", 0, 0, 0, 0),
    ("syslog", 0, 0, 0),
    ("personality", 0x0400000),  # READ_IMPLIES_EXEC
]


def test_default_profile_blocks_the_dangerous_syscalls_with_eperm():
    calls = [(c[0], *c) for c in DEFAULT_BLOCKED]
    calls += [("clone3", "clone3", 0, 0), ("getpid", "getpid"), ("personality0", "personality", 0)]
    calls += [("vsock", "socket", 40, 1, 0), ("unix", "socket", 1, 1, 0)]
    got = probe(default_profile(), calls)
    expected = {c[0]: "EPERM" for c in DEFAULT_BLOCKED}
    # clone3 → ENOSYS so libc falls back to clone; vsock sockets are refused
    expected.update(clone3="ENOSYS", getpid="ok", personality0="ok", vsock="EPERM", unix="ok")
    assert got == expected


def test_default_profile_still_runs_normal_busybox_commands(tmp_path):
    busybox = "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("busybox-static not installed")
    out_path = tmp_path / "out"
    script = "echo ok; ls / >/dev/null && echo ls-ok; cat /proc/self/status | grep Seccomp:; unshare -n true || echo unshare-refused"

    def child():
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        seccomp.load(default_profile())
        os.execv(busybox, ["sh", "-c", script])

    status, text = in_child(child)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, text
    out = out_path.read_text()
    assert "ok\nls-ok\n" in out
    assert "Seccomp:\t2" in out
    assert "Operation not permitted" in out and "unshare-refused" in out


@pytest.mark.parametrize(
    "cfg, match",
    [
        ("x", r"linux.seccomp: expected an object"),
        ({}, r"defaultAction: missing"),
        ({"defaultAction": "SCMP_ACT_BOGUS"}, r"unknown seccomp action 'SCMP_ACT_BOGUS'"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, r"SCMP_ACT_NOTIFY needs a seccomp agent"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, r"errnoRet: only valid with"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}, r"unknown architecture 'SCMP_ARCH_Z80'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, r"unsupported flag"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}, r"listenerPath"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "colour": "red"}, r"unknown field 'colour'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]}, r"syscalls\[0\].names"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}, r"syscalls\[0\].action: missing"),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]},
            r"syscalls\[0\].errnoRet: only valid",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]},
            r"syscalls\[0\].args\[0\].index",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_LIKE"}]}]},
            r"unknown operator 'SCMP_CMP_LIKE'",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
            r"args\[0\].value",
        ),
    ],
)
def test_validate_rejects_bad_configs_in_one_line(cfg, match):
    with pytest.raises(ConfigError, match=match) as e:
        seccomp.validate(cfg)
    assert "\n" not in str(e.value)


def test_validate_accepts_the_default_profile_and_runtime_spec_flags():
    seccomp.validate(default_profile())
    seccomp.validate(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
        }
    )


def test_control_without_the_profile_the_probes_do_not_get_eperm():
    """Proves the probes above can fail: unfiltered, none of them is EPERM."""
    safe = ["keyctl", "bpf", "perf_event_open", "setns", "mount", "umount2", "pivot_root", "io_uring_setup"]
    calls = [(c[0], *c) for c in DEFAULT_BLOCKED if c[0] in safe]
    got = probe({"defaultAction": "SCMP_ACT_ALLOW"}, calls)
    assert len(got) == len(safe) and "EPERM" not in got.values(), got


def _allow_all_program(tmp_path) -> bytes:
    f = seccomp.build({"defaultAction": "SCMP_ACT_ALLOW"})
    path = tmp_path / "allow-all.bpf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        f.export_bpf(fd)
    finally:
        os.close(fd)
        f.release()
    return path.read_bytes()


def test_compiled_program_cache_is_used_and_enforces(tmp_path):
    cache = str(tmp_path / "cache")
    prof = default_profile()
    assert probe_cached(prof, cache) == {"k": "EPERM", "g": "ok"}  # miss: compiles, stores
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].endswith(".bpf")
    assert os.stat(cache).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(cache, files[0])).st_mode & 0o777 == 0o600
    assert probe_cached(prof, cache) == {"k": "EPERM", "g": "ok"}  # hit: loads the stored program


def test_seccomp_cache_writable_by_others_is_not_trusted(tmp_path):
    cache = str(tmp_path / "cache")
    prof = default_profile()
    probe_cached(prof, cache)
    (entry,) = os.listdir(cache)
    path = os.path.join(cache, entry)
    # an attacker who could write the cache swaps in an allow-everything program
    os.chmod(path, 0o600)
    with open(path, "wb") as f:
        f.write(_allow_all_program(tmp_path))
    os.chmod(path, 0o666)
    assert probe_cached(prof, cache)["k"] == "EPERM"  # world-writable file: ignored
    os.chmod(path, 0o600)
    os.chmod(cache, 0o777)
    assert probe_cached(prof, cache)["k"] == "EPERM"  # world-writable dir: ignored
    os.chmod(cache, 0o700)
    assert probe_cached(prof, cache)["k"] == "ok"  # control: the swapped file is what a trusted cache holds


def probe_cached(cfg: dict, cache: str) -> dict:
    def child():
        seccomp.load(cfg, cache_dir=cache)
        return f"k={'ok' if syscall('keyctl', 0)[1] != errno.EPERM else 'EPERM'} g={'ok' if syscall('getpid')[0] > 0 else 'fail'}"

    status, text = in_child(child)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, text
    return dict(kv.split("=", 1) for kv in text.split())


def test_features_list_what_validate_accepts():
    f = seccomp.features()
    assert "SCMP_ACT_NOTIFY" not in f["actions"] and "SCMP_ACT_ERRNO" in f["actions"]
    for flag in f["supportedFlags"]:
        seccomp.validate({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]})
    for arch in f["archs"]:
        seccomp.validate({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch]})


def test_filter_flags_are_applied_and_the_filter_still_enforces():
    cfg = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}],
    }
    assert probe(cfg, [("k", "keyctl", 0)]) == {"k": "EPERM"}


def test_seccomp_program_with_flags_is_not_cached(tmp_path):
    # flags are seccomp(2) arguments, not part of the program: a cached
    # program loaded with prctl would silently drop them
    cache = str(tmp_path / "cache")
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}
    assert seccomp.program(prof, cache) is None
    assert seccomp.program({"defaultAction": "SCMP_ACT_ALLOW"}, cache)
    assert len(os.listdir(cache)) == 1

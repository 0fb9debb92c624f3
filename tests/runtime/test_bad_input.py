"""Bad input: one line on stderr, a non-zero exit, no traceback, nothing left behind."""

import json
import os
import signal
import subprocess
import time

import pytest
from rt_helpers import RUNTIME, one_line_error

from berth.errors import UsageError
from berth.runtime.container.state import check_id


def assert_nothing_left(rt, cid):
    assert not (rt.root / cid).exists()
    for h in ("pids", "memory", "unified"):
        assert not os.path.exists(f"/sys/fs/cgroup/{h}/berth/{cid}"), h


def test_missing_bundle_and_missing_config(rt, tmp_path):
    cid = rt.new_id()
    assert "no config.json" in one_line_error(rt("run", "--bundle", str(tmp_path / "nope"), cid)) \
        or "not a directory" in one_line_error(rt("run", "--bundle", str(tmp_path / "nope"), cid))
    (tmp_path / "b").mkdir()
    assert "no config.json" in one_line_error(rt("create", "--bundle", str(tmp_path / "b"), cid))
    assert_nothing_left(rt, cid)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"ociVersion": "1.0.2", "process": ', "\x00"])
def test_malformed_config_json(rt, bundle, text):
    (bundle.path / "config.json").write_text(text)
    cid = rt.new_id()
    one_line_error(rt("create", "--bundle", str(bundle.path), cid))
    assert_nothing_left(rt, cid)


@pytest.mark.parametrize("edit,needle", [
    (lambda c: c["process"].__setitem__("args", "/bin/true"), "process.args must be an array"),
    (lambda c: c["process"].__setitem__("args", []), "process.args must not be empty"),
    (lambda c: c["process"]["user"].__setitem__("uid", "0"), "process.user.uid must be an integer"),
    (lambda c: c["process"].__setitem__("terminal", 1), "process.terminal must be a boolean"),
    (lambda c: c.pop("ociVersion"), "ociVersion is required"),
    (lambda c: c["process"].__setitem__("cwd", "relative"), "absolute"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "unknown namespace type"),
    (lambda c: c["mounts"].append({"destination": "rel", "type": "tmpfs"}), "must be absolute"),
    (lambda c: c["linux"]["seccomp"].__setitem__("defaultAction", "SCMP_ACT_BOGUS"), "seccomp"),
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_BOGUS"), "CAP_BOGUS"),
    (lambda c: c["linux"]["resources"]["pids"].__setitem__("limit", "many"), "pids"),
])
def test_wrong_types_and_values_in_config(rt, bundle, edit, needle):
    bundle.set(edit=edit)
    cid = rt.new_id()
    err = one_line_error(rt("create", "--bundle", str(bundle.path), cid))
    assert needle in err
    assert_nothing_left(rt, cid)


@pytest.mark.parametrize("cid", ["", "../x", "/", "a/b", "x" * 1025, "..", "a b", "é"])
def test_invalid_ids_are_refused(rt, bundle, cid):
    err = one_line_error(rt("create", "--bundle", str(bundle.path), cid))
    assert "container ID" in err
    assert not rt.root.exists() or os.listdir(rt.root) in ([], [".seccomp"])


def test_id_with_nul_is_refused():
    # argv cannot carry NUL; the API check refuses it
    with pytest.raises(UsageError):
        check_id("a\0b")


def test_duplicate_id(rt, bundle):
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    pid = rt.state(cid)["pid"]
    assert "already exists" in one_line_error(rt.create(bundle, cid))
    assert rt.state(cid)["pid"] == pid  # the first container is untouched


def test_start_of_a_container_that_is_not_created(rt, bundle):
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    assert "does not exist" in one_line_error(rt("start", cid))
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    assert "running, not created" in one_line_error(rt("start", cid))
    rt("kill", cid, "KILL", check=True)
    deadline = time.monotonic() + 10
    while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "stopped, not created" in one_line_error(rt("start", cid))
    assert "not running" in one_line_error(rt("kill", cid))


def test_missing_rootfs(rt, bundle):
    os.rename(bundle.rootfs, bundle.path / "elsewhere")
    cid = rt.new_id()
    assert "root filesystem" in one_line_error(rt("run", "--bundle", str(bundle.path), cid))
    assert_nothing_left(rt, cid)


def test_missing_executable_exits_127_and_leaves_nothing(rt, bundle):
    bundle.set(["/no/such/program"])
    cid = rt.new_id()
    r = rt("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 127
    assert "executable file not found" in one_line_error(r)
    assert_nothing_left(rt, cid)
    bundle.set(["no-such-program-in-path"])
    r = rt.create(bundle, cid)
    assert r.returncode == 127 and "$PATH" in one_line_error(r)
    assert_nothing_left(rt, cid)


def test_non_executable_exits_126(rt, bundle):
    bundle.set(["/etc/passwd"])
    r = rt("run", "--bundle", str(bundle.path), rt.new_id())
    assert r.returncode == 126
    one_line_error(r)


def test_rlimit_above_host_ceiling_is_a_clear_error(rt, bundle):
    bundle.set(edit=lambda c: c["process"].__setitem__("rlimits", [
        {"type": "RLIMIT_NOFILE", "soft": 1 << 30, "hard": 1 << 30}]))
    cid = rt.new_id()
    err = one_line_error(rt("run", "--bundle", str(bundle.path), cid))
    assert "RLIMIT_NOFILE" in err
    assert_nothing_left(rt, cid)


def test_unknown_command_and_flags(rt):
    assert "not a berth-runtime command" in one_line_error(rt("frobnicate"))
    assert "unknown flag --bogus" in one_line_error(rt("--bogus", "list"))
    assert "unknown flag --nope" in one_line_error(rt("create", "--nope", "x"))
    assert "missing container ID" in one_line_error(rt("state"))
    assert "--log-format" in one_line_error(rt("--log-format", "xml", "list"))


def test_runtime_killed_mid_create_leaves_a_cleanable_container(rt, bundle, tmp_path):
    """The CLI is SIGKILLed while a prestart hook runs (init forked, waiting):
    list never shows the container running, delete --force cleans up all of it."""
    hook = tmp_path / "slow-hook"
    hook.write_text("#!/bin/sh\nsleep 30\n")
    hook.chmod(0o755)
    bundle.set(edit=lambda c: c.__setitem__("hooks", {"prestart": [{"path": str(hook)}]}))
    cid = rt.new_id()
    p = subprocess.Popen([RUNTIME, "--root", str(rt.root), "create", "--bundle", str(bundle.path), cid],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = json.loads(rt("state", cid).stdout or "{}")
        if st.get("pid"):
            break
        time.sleep(0.02)
    init = st["pid"]
    assert st["status"] in ("creating", "created")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    listed = {s["id"]: s for s in json.loads(rt("list", "--format", "json", check=True).stdout)}
    assert listed[cid]["status"] != "running"
    assert rt("delete", "--force", cid).returncode == 0
    assert_nothing_left(rt, cid)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{init}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{init}")

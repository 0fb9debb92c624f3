"""The command line itself: --version, help, features, spec, --log."""

import json

from rt_helpers import one_line_error


def test_version(rt):
    r = rt("--version", check=True)
    assert r.stdout.startswith("berth-runtime version ") and "spec: 1." in r.stdout


def test_help_lists_the_commands(rt):
    out = rt("--help", check=True).stdout
    for c in ("create", "start", "state", "kill", "delete", "run", "exec", "list", "ps",
              "pause", "resume", "spec", "features"):
        assert f"  {c} " in out


def test_features_is_json(rt):
    f = json.loads(rt("features", check=True).stdout)
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert "user" in f["linux"]["namespaces"]
    assert "rbind" in f["mountOptions"]


def test_spec_writes_default_config_once(rt, tmp_path):
    assert rt("spec", "--bundle", str(tmp_path), check=True).returncode == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["process"]["noNewPrivileges"] is True
    assert cfg["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "already exists" in one_line_error(rt("spec", "--bundle", str(tmp_path)))


def test_errors_also_go_to_the_json_log(rt, tmp_path):
    log = tmp_path / "log.json"
    one_line_error(rt("--log", str(log), "--log-format", "json", "state", "nosuch"))
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "nosuch" in entry["msg"]


def test_runc_global_flags_are_accepted(rt):
    assert rt("--systemd-cgroup", "--debug", "list", check=True).returncode == 0

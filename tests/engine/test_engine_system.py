"""system info/df/prune, version, help texts, attach."""

import json
import subprocess
import time

from engine_helpers import BERTH

VERBS = ["run", "create", "start", "stop", "restart", "kill", "rm", "ps", "logs", "exec", "inspect", "wait",
         "top", "stats", "cp", "port", "rename", "pause", "unpause", "attach", "export"]


def test_every_command_has_help(berth):
    top = berth.out("--help")
    for v in VERBS + ["container", "volume", "network", "system", "version", "info"]:
        assert f"\n  {v} " in top, v
    for v in VERBS:
        r = berth(v, "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: berth"), v
    for group in ("container", "volume", "network", "system"):
        assert berth(group, "--help").returncode == 0


def test_info_version_df(berth):
    info = json.loads(berth.out("system", "info", "--format", "json"))
    assert info["CgroupVersion"] in ("1", "2") and "container" in info["Isolation"]
    v = json.loads(berth.out("version", "--format", "json"))
    assert v["Version"] and v["Runtime"]
    df = berth.out("system", "df")
    assert "Containers" in df and "Local Volumes" in df


def test_attach_to_running_container_and_exit_code(berth):
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "sleep 1; echo late; exit 6").strip()
    r = subprocess.run([BERTH, "--root", str(berth.root), "attach", cid], capture_output=True, text=True, timeout=30)
    assert r.stdout == "late\n"
    assert r.returncode == 6


def test_wait_prints_exit_code(berth):
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "exit 9").strip()
    assert berth.out("wait", cid) == "9\n"


def test_restart_command_restarts(berth):
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "echo boot; sleep 60").strip()
    berth.out("restart", "-t", "1", cid)
    for _ in range(50):
        if berth.out("logs", cid) == "boot\nboot\n":
            break
        time.sleep(0.1)
    assert berth.out("logs", cid) == "boot\nboot\n"
    assert berth.status(cid)["Status"] == "running"


def test_system_reset_removes_everything_of_the_root_the_default_bridge_included(tmp_path, venv_bin):
    root = tmp_path / "root"

    def b(*args):
        return subprocess.run([str(venv_bin / "berth"), "--root", str(root), *args], capture_output=True, text=True)

    assert b("image", "bootstrap", "busybox").returncode == 0
    assert b("network", "create", "resetnet").returncode == 0
    assert b("volume", "create", "resetvol").returncode == 0
    assert b("run", "-d", "busybox", "sleep", "60").returncode == 0
    bridge = json.loads(b("network", "inspect", "bridge").stdout)[0]["Options"]["com.docker.network.bridge.name"]
    table = "berth_" + bridge.removeprefix("berth")
    assert bridge in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    r = b("system", "reset")  # refuses without --force, touching nothing
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and b("ps", "-q").stdout.strip()
    r = b("system", "reset", "--force")
    assert r.returncode == 0, r.stderr
    assert b("ps", "-a", "-q").stdout == "" and b("images", "-q").stdout == ""
    assert "resetvol" not in b("volume", "ls").stdout and "resetnet" not in b("network", "ls").stdout
    assert bridge not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert table not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout

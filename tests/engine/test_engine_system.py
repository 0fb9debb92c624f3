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

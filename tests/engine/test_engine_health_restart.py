"""docker's health start period, the "restarting" state, and exec's 126 for a bad -w.

Health probes run every second here; every wait is a bounded poll for an
event (a probe recorded, a state reached), never a timed assertion.
"""

import hashlib
import json
import os
import shutil

import pytest
from engine_helpers import wait_for

from berth.errors import CannotInvoke

PROBE = "test -e /tmp/ok"
HOUR_NS = 3600 * 10**9


def _health(berth, cid: str) -> dict:
    return berth.status(cid).get("Health") or {}


def _probes(berth, cid: str) -> int:
    """How many probe results the log holds (docker keeps the last five)."""
    return len(_health(berth, cid).get("Log") or [])


def test_start_period_failures_do_not_count_until_a_first_success(berth):
    # retries 1: without the start period the first failure would make it unhealthy
    cid = berth.out("run", "-d", "--health-cmd", PROBE, "--health-interval", "1s", "--health-retries", "1",
                    "--health-start-period", "1h", "busybox", "sleep", "300").strip()
    hc = json.loads(berth.out("inspect", cid))[0]["Config"]["Healthcheck"]
    assert hc["StartPeriod"] == HOUR_NS and hc["Retries"] == 1
    assert wait_for(lambda: _probes(berth, cid) >= 2, timeout=30)
    h = _health(berth, cid)
    assert h["Status"] == "starting" and h["FailingStreak"] == 0
    # the failures are logged, just not counted
    assert {e["ExitCode"] for e in h["Log"]} == {1} and all(e["Start"] <= e["End"] for e in h["Log"])
    assert "(health: starting)" in berth.out("ps", "-f", f"id={cid}")
    # a success within the start period makes it healthy at once
    berth.out("exec", cid, "touch", "/tmp/ok")
    assert wait_for(lambda: _health(berth, cid).get("Status") == "healthy", timeout=30)
    # after a success, failures count even within the start period (docker)
    berth.out("exec", cid, "rm", "/tmp/ok")
    assert wait_for(lambda: _health(berth, cid).get("Status") == "unhealthy", timeout=30)
    assert _health(berth, cid)["FailingStreak"] >= 1
    assert "(unhealthy)" in berth.out("ps", "-f", f"id={cid}")
    # the log keeps docker's last five results, oldest first
    assert wait_for(lambda: _probes(berth, cid) == 5, timeout=30)
    starts = [e["Start"] for e in _health(berth, cid)["Log"]]
    assert starts == sorted(starts) and _probes(berth, cid) == 5


def test_api_healthcheck_start_period_in_nanoseconds_against_none(client, berth):
    def run(**hc):
        return client.containers.run("busybox", "sleep 300", detach=True, healthcheck={
            "test": ["CMD-SHELL", PROBE], "interval": 10**9, "retries": 1, **hc})

    held = run(start_period=HOUR_NS)
    plain = run()
    assert held.attrs["Config"]["Healthcheck"]["StartPeriod"] == HOUR_NS
    assert plain.attrs["Config"]["Healthcheck"]["StartPeriod"] == 0
    # the same failing probe: unhealthy at its first failure without a start period ...
    assert wait_for(lambda: _health(berth, plain.id).get("Status") == "unhealthy", timeout=30)
    # ... and still starting after as many failures with one
    assert wait_for(lambda: _probes(berth, held.id) >= 2, timeout=30)
    held.reload()
    assert held.attrs["State"]["Health"]["Status"] == "starting"
    with pytest.raises(Exception, match="cannot be negative"):
        client.containers.create("busybox", "true", healthcheck={"test": "true", "start_period": -1})


def test_health_flag_errors_are_one_line(berth):
    r = berth("create", "--health-cmd", "true", "--health-start-period", "soon", "busybox", "true")
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "--health-start-period" in r.stderr
    # docker: --no-healthcheck conflicts with every --health-* option, not just the command
    r = berth("create", "--no-healthcheck", "--health-start-period", "5s", "busybox", "true")
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "conflicts" in r.stderr


def test_health_cmd_none_is_a_command_as_in_docker(berth):
    # docker's CLI turns --health-cmd NONE into CMD-SHELL NONE (only --no-healthcheck disables)
    cid = berth.out("create", "--health-cmd", "NONE", "busybox", "true").strip()
    assert json.loads(berth.out("inspect", cid))[0]["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "NONE"]


def _image_with_healthcheck(berth, tmp_path, tag: str, healthcheck: dict) -> None:
    """Save busybox as an OCI layout, add a HEALTHCHECK to its config, load it as ``tag``."""
    src = tmp_path / "oci"
    berth.out("save", "--format", "oci-dir", "-o", str(src), "busybox")
    blobs = src / "blobs" / "sha256"

    def put(obj: dict) -> tuple[str, int]:
        data = json.dumps(obj).encode()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest, len(data)

    index = json.loads((src / "index.json").read_text())
    desc = index["manifests"][0]
    manifest = json.loads((blobs / desc["digest"][7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    config["config"]["Healthcheck"] = healthcheck
    manifest["config"]["digest"], manifest["config"]["size"] = put(config)
    desc["digest"], desc["size"] = put(manifest)
    desc["annotations"] = {"io.containerd.image.name": f"docker.io/library/{tag}:latest",
                           "org.opencontainers.image.ref.name": "latest"}
    (src / "index.json").write_text(json.dumps(index))
    berth.out("load", "-i", str(src))
    shutil.rmtree(src)


def test_image_healthcheck_start_period_is_honoured_and_no_healthcheck_drops_it(berth, tmp_path):
    tag = f"hcimage{os.getpid()}"
    _image_with_healthcheck(berth, tmp_path, tag, {
        "Test": ["CMD-SHELL", PROBE], "Interval": 10**9, "Retries": 1, "StartPeriod": HOUR_NS})
    try:
        cid = berth.out("run", "-d", tag, "sleep", "300").strip()
        assert json.loads(berth.out("inspect", cid))[0]["Config"]["Healthcheck"]["StartPeriod"] == HOUR_NS
        assert wait_for(lambda: _probes(berth, cid) >= 2, timeout=30)
        assert _health(berth, cid)["Status"] == "starting"
        off = berth.out("create", "--no-healthcheck", tag, "true").strip()
        d = json.loads(berth.out("inspect", off))[0]
        assert d["Config"]["Healthcheck"] is None and "Health" not in d["State"]
    finally:
        for c in berth.out("ps", "-aq", "--no-trunc", "-f", f"ancestor={tag}").split():
            berth("rm", "-f", c)
        berth("rmi", tag)


def _read_state(engine_root, cid: str) -> dict | None:
    try:
        return json.loads((engine_root / "containers" / cid / "status.json").read_text())
    except (OSError, ValueError):
        return None  # between the monitor's renames: read again


def test_crash_to_restart_is_restarting_never_exited(berth, engine_root):
    # watch the monitor's record closely through three restarts: between a
    # crash and its restart the state is "restarting", "exited" only at the end
    cid = berth.out("run", "-d", "--restart", "on-failure:3", "busybox", "sh", "-c", "echo run; exit 1").strip()
    seen = []
    assert wait_for(lambda: (st := _read_state(engine_root, cid)) is not None and (
        seen.append((st["state"], st["restart_count"])) or
        (st["state"] == "exited" and not os.path.exists(f"/proc/{st['monitor_pid']}/status"))),
        timeout=60, step=0.001)
    states = [s for s, _ in seen]
    final = len(states)
    while final and states[final - 1] == "exited":
        final -= 1
    assert states[-1] == "exited" and "restarting" in states
    assert "exited" not in states[:final], [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    counts = [n for s, n in seen if s == "restarting"]
    assert counts == sorted(counts) and set(counts) <= {1, 2, 3}
    d = json.loads(berth.out("inspect", cid))[0]
    assert d["RestartCount"] == 3 and d["State"]["ExitCode"] == 1 and not d["State"]["Restarting"]
    assert berth.out("logs", cid) == "run\n" * 4


def test_restarting_is_shown_by_ps_and_inspect_and_stop_ends_the_backoff(berth):
    cid = berth.out("run", "-d", "--restart", "always", "busybox", "sh", "-c", "exit 1").strip()
    # the backoff doubles from 100 ms: polling catches the restarting state
    st = wait_for(lambda: (lambda s: s if s["Status"] == "restarting" else None)(berth.status(cid)), timeout=30)
    assert st, berth.status(cid)
    assert st["Restarting"] is True and st["Running"] is True and st["ExitCode"] == 1 and st["Pid"] == 0
    assert wait_for(lambda: berth.out("ps", "-a", "--format", "{{.Status}}", "-f", f"id={cid}").startswith(
        "Restarting (1)"), timeout=30)
    # docker's ps lists restarting containers without -a, and filters on the state
    assert wait_for(lambda: cid in berth.out("ps", "-q", "--no-trunc", "-f", "status=restarting"), timeout=30)
    assert json.loads(berth.out("inspect", cid))[0]["RestartCount"] >= 1
    berth.out("stop", "-t", "1", cid)
    d = json.loads(berth.out("inspect", cid))[0]
    assert d["State"]["Status"] == "exited" and d["State"]["Restarting"] is False
    assert d["State"]["ExitCode"] in (1, 137, 143)
    # the monitor is gone, so the count is final
    mon = _read_state(berth.root, cid)["monitor_pid"]
    assert wait_for(lambda: not os.path.exists(f"/proc/{mon}/status") or
                    open(f"/proc/{mon}/status").read().find("State:\tZ") >= 0, timeout=10)
    assert json.loads(berth.out("inspect", cid))[0]["RestartCount"] == d["RestartCount"]


def test_api_sees_restarting_and_kill_cancels_the_restart(client, berth):
    c = client.containers.run("busybox", "sh -c 'exit 2'", detach=True, restart_policy={"Name": "always"})

    def restarting():
        c.reload()
        return c.status == "restarting"

    assert wait_for(restarting, timeout=30)
    assert c.attrs["State"]["Restarting"] is True and c.attrs["RestartCount"] >= 1
    # docker: nothing runs during the backoff, so kill succeeds by cancelling the restart
    c.kill()
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["Restarting"] is False
    assert c.attrs["State"]["ExitCode"] in (2, 137)


def test_exec_bad_workdir_is_126_missing_command_127_non_executable_126(berth):
    cid = berth.out("run", "-d", "--tmpfs", "/scratch", "busybox", "sleep", "300").strip()
    for wd in ("/missing", "/etc/passwd", "/etc/../missing"):
        r = berth("exec", "-w", wd, cid, "pwd")
        assert r.returncode == 126, (wd, r.stderr)
        assert r.stderr.count("\n") == 1 and wd in r.stderr and r.stdout == ""
    # paths the rootfs cannot answer for (mounts) are not judged from the host's view
    assert berth.out("exec", "-w", "/scratch", cid, "pwd") == "/scratch\n"
    assert berth.out("exec", "-w", "/proc/sys", cid, "pwd") == "/proc/sys\n"
    berth.out("exec", cid, "mkdir", "/made-inside")
    assert berth.out("exec", "-w", "/made-inside", cid, "pwd") == "/made-inside\n"
    r = berth("exec", cid, "no-such-cmd")
    assert r.returncode == 127 and r.stderr.count("\n") == 1
    r = berth("exec", cid, "/etc/passwd")
    assert r.returncode == 126 and r.stderr.count("\n") == 1
    r = berth("exec", cid, "/etc")
    assert r.returncode == 126 and r.stderr.count("\n") == 1


def test_api_exec_run_bad_workdir_raises_cannot_invoke(client, berth):
    c = client.containers.run("busybox", "sleep 300", detach=True)
    with pytest.raises(CannotInvoke) as e:
        c.exec_run("pwd", workdir="/missing")
    assert e.value.exit_code == 126
    assert c.exec_run("pwd", workdir="/tmp").output == b"/tmp\n"

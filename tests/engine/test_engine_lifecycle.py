"""Detached containers: logs, exec, stop/kill, restart policies, pause, crashes."""

import json
import os
import signal
import time


def wait_for(pred, timeout=20.0, step=0.05):
    """Poll ``pred`` (not a timing assertion: a bound on waiting for an event)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def test_detached_logs_and_exec(berth):
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "echo ready; echo warn >&2; exec sleep 60").strip()
    assert len(cid) == 64
    assert wait_for(lambda: "ready" in berth.out("logs", cid))
    r = berth("logs", cid)
    assert r.stdout == "ready\n" and r.stderr == "warn\n"
    r = berth("exec", cid, "sh", "-c", "echo from-exec; exit 3")
    assert r.returncode == 3 and r.stdout == "from-exec\n"
    r = berth("exec", "-e", "X=1", "-w", "/tmp", "-u", "nobody", cid, "sh", "-c", 'echo "$X $(pwd) $(id -u)"')
    assert r.stdout.strip() == "1 /tmp 65534"
    assert berth("exec", cid, "no-such-cmd").returncode == 127
    r = berth("logs", "-t", "--tail", "1", cid)
    assert r.stdout == "" and r.stderr.split(" ", 1)[0].endswith("Z") and r.stderr.endswith(" warn\n")


def test_exec_into_stopped_container_is_an_engine_error(berth):
    cid = berth.out("run", "-d", "busybox", "true").strip()
    berth("wait", cid)
    r = berth("exec", cid, "true")
    assert r.returncode == 125
    assert "not running" in r.stderr and r.stderr.count("\n") == 1


def test_stop_sends_sigterm_then_sigkill_after_timeout(berth):
    # the shell ignores TERM, so only the SIGKILL after -t ends it: 128+9
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.1; done").strip()
    wait_for(lambda: "up" in berth.out("logs", cid))
    berth.out("stop", "-t", "1", cid)
    st = berth.status(cid)
    assert st["Status"] == "exited" and st["ExitCode"] == 137


def test_stop_graceful_exit_code(berth):
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "trap 'exit 0' TERM; echo up; while :; do sleep 0.1; done").strip()
    wait_for(lambda: "up" in berth.out("logs", cid))
    berth.out("stop", cid)
    assert berth.status(cid)["ExitCode"] == 0


def test_kill_with_signal(berth):
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "trap 'exit 5' USR1; echo up; while :; do sleep 0.1; done").strip()
    wait_for(lambda: "up" in berth.out("logs", cid))
    berth.out("kill", "-s", "USR1", cid)
    wait_for(lambda: berth.status(cid)["Status"] == "exited")
    assert berth.status(cid)["ExitCode"] == 5
    cid = berth.out("run", "-d", "busybox", "sleep", "60").strip()
    berth.out("kill", cid)
    assert berth.status(cid)["ExitCode"] == 128 + signal.SIGKILL


def test_restart_policy_on_failure_max_two(berth):
    cid = berth.out("run", "-d", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3").strip()
    d = wait_for(lambda: (lambda x: x if x["State"]["Status"] == "exited" and x["RestartCount"] == 2 else None)(
        json.loads(berth.out("inspect", cid))[0]), timeout=30)
    assert d, berth.out("inspect", cid)
    assert d["State"]["ExitCode"] == 3
    assert berth.out("logs", cid) == "run\n" * 3


def test_restart_always_is_stopped_by_stop(berth):
    cid = berth.out("run", "-d", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 1").strip()
    assert wait_for(lambda: json.loads(berth.out("inspect", cid))[0]["RestartCount"] >= 1, timeout=30)
    berth.out("stop", "-t", "2", cid)
    assert wait_for(lambda: berth.status(cid)["Status"] == "exited")
    n = json.loads(berth.out("inspect", cid))[0]["RestartCount"]
    time.sleep(1)
    assert json.loads(berth.out("inspect", cid))[0]["RestartCount"] == n


def test_log_rotation_caps_disk_under_a_flood(berth, engine_root):
    cid = berth.out("run", "-d", "--log-opt", "max-size=64k", "--log-opt", "max-file=2", "busybox",
                    "sh", "-c", "yes flood-flood-flood | head -c 3000000; echo done").strip()
    assert wait_for(lambda: berth.status(cid)["Status"] == "exited", timeout=60)
    logs = list((engine_root / "containers" / cid).glob("container.log*"))
    total = sum(p.stat().st_size for p in logs)
    assert len(logs) <= 2
    assert total <= 2 * 64 * 1024 + 16 * 1024 * 6
    r = berth("logs", "--tail", "1", cid)
    assert r.returncode == 0 and r.stdout.endswith("done\n") and r.stdout.count("\n") == 1


def test_logs_follow_reads_until_exit_across_rotation(berth):
    cid = berth.out("run", "-d", "--log-opt", "max-size=4k", "--log-opt", "max-file=3", "busybox",
                    "sh", "-c", "sleep 0.5; i=0; while [ $i -lt 400 ]; do echo line$i; i=$((i+1)); "
                    "[ $((i % 20)) = 0 ] && sleep 0.1; done").strip()
    r = berth("logs", "-f", cid, timeout=60)
    lines = r.stdout.split()
    assert lines[-1] == "line399"
    # consecutive: nothing lost or repeated while the file rotated under the reader
    nums = [int(x[4:]) for x in lines]
    # a paced writer (the 12 KiB window never overflows) loses nothing
    assert nums == list(range(400))


def test_ps_filters_quiet_and_format(berth):
    tag = f"t{os.getpid()}"
    a = berth.out("run", "-d", "--name", f"{tag}-a", "-l", f"grp={tag}", "busybox", "sleep", "60").strip()
    b = berth.out("run", "-d", "--name", f"{tag}-b", "-l", f"grp={tag}", "busybox", "true").strip()
    berth("wait", b)
    assert berth.out("ps", "-q", "--no-trunc", "-f", f"label=grp={tag}").split() == [a]
    assert set(berth.out("ps", "-aq", "--no-trunc", "-f", f"label=grp={tag}").split()) == {a, b}
    assert berth.out("ps", "-aq", "--no-trunc", "-f", "status=exited", "-f", f"name={tag}-b").split() == [b]
    out = berth.out("ps", "-f", f"name={tag}-a", "--format", "{{.ID}} {{.Names}} {{.State}}")
    assert out.split() == [a[:12], f"{tag}-a", "running"]
    rows = [json.loads(x) for x in berth.out("ps", "-a", "--format", "json", "-f", f"label=grp={tag}").splitlines()]
    assert {r["Names"] for r in rows} == {f"{tag}-a", f"{tag}-b"}
    table = berth.out("ps", "-f", f"name={tag}-a")
    assert table.split("\n")[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert berth("ps", "-f", "bogus=1").returncode == 125
    r = berth("ps", "-f", f"name={tag}-a", "--format", "{{.Nope}}")
    assert r.returncode == 125 and "unknown field" in r.stderr


def test_id_prefix_name_and_rename(berth):
    cid = berth.out("create", "--name", f"orig{os.getpid()}", "busybox", "true").strip()
    assert json.loads(berth.out("inspect", cid[:8]))[0]["Id"] == cid
    berth.out("rename", f"orig{os.getpid()}", f"renamed{os.getpid()}")
    assert json.loads(berth.out("inspect", f"renamed{os.getpid()}"))[0]["Name"] == f"/renamed{os.getpid()}"
    r = berth("inspect", "nosuchcontainer")
    assert r.returncode == 125 and "no such container" in r.stderr


def test_pause_and_unpause(berth):
    cid = berth.out("run", "-d", "busybox", "sleep", "60").strip()
    berth.out("pause", cid)
    assert berth.status(cid)["Status"] == "paused"
    assert berth("exec", cid, "true").returncode == 125
    berth.out("unpause", cid)
    assert berth.status(cid)["Status"] == "running"
    assert berth("exec", cid, "true").returncode == 0


def test_monitor_death_shows_exited_unknown_and_rm_cleans(berth, engine_root):
    cid = berth.out("run", "-d", "busybox", "sleep", "300").strip()
    st = json.loads((engine_root / "containers" / cid / "status.json").read_text())
    os.kill(st["monitor_pid"], signal.SIGKILL)
    assert wait_for(lambda: berth.status(cid)["Status"] == "exited")
    assert berth.status(cid)["ExitCode"] == -1
    assert "Exited (unknown)" in berth.out("ps", "-a", "-f", f"id={cid}")
    pid = st["pid"]
    berth.out("rm", cid)
    assert not (engine_root / "containers" / cid).exists()
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                    open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z", timeout=10)


def test_top_and_stats(berth):
    cid = berth.out("run", "-d", "-m", "32m", "busybox", "sleep", "60").strip()
    top = berth.out("top", cid)
    assert "sleep 60" in top and top.split()[0] == "UID"
    s = berth.out("stats", "--no-stream", "--format", "json", cid)
    row = json.loads(s)
    assert row["PIDs"] >= 1 and "32" in row["MemUsage"] or "MiB" in row["MemUsage"] or "MB" in row["MemUsage"]


def test_health_check_becomes_healthy(berth):
    cid = berth.out("run", "-d", "--health-cmd", "test -e /tmp/ok", "--health-interval", "1s",
                    "busybox", "sh", "-c", "touch /tmp/ok; sleep 60").strip()
    assert wait_for(lambda: berth.status(cid).get("Health", {}).get("Status") == "healthy", timeout=20)
    assert "(healthy)" in berth.out("ps", "-f", f"id={cid}")


def test_system_prune_removes_crash_leftovers(berth, engine_root):
    # a crash between mkdir and the database insert leaves an orphan directory
    orphan = engine_root / "containers" / ("f" * 64)
    orphan.mkdir(parents=True)
    (orphan / "config.json").write_text("{}")
    r = berth("system", "prune", "-f")
    assert r.returncode == 0
    assert not orphan.exists()


def test_oom_kill_is_recorded(berth):
    cid = berth.out("run", "-d", "-m", "8m", "busybox", "sh", "-c",
                    "x=$(head -c 64m /dev/zero | tr '\\0' a); echo survived").strip()
    assert berth.out("wait", cid) == "137\n"
    st = berth.status(cid)
    assert st["OOMKilled"] is True and st["ExitCode"] == 137


def test_exec_detached(berth):
    cid = berth.out("run", "-d", "busybox", "sleep", "60").strip()
    r = berth("exec", "-d", cid, "sh", "-c", "sleep 0.2; echo done > /tmp/marker")
    assert r.returncode == 0
    assert wait_for(lambda: berth("exec", cid, "cat", "/tmp/marker").stdout == "done\n")


def test_concurrent_creates_with_one_name_end_in_one_conflict(berth):
    import subprocess

    from engine_helpers import BERTH

    name = f"race{os.getpid()}"
    procs = [subprocess.Popen([BERTH, "--root", str(berth.root), "create", "--name", name, "busybox", "true"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0] + [125] * 5
    assert all("already in use" in err for rc, err in results if rc)
    # and the losers left nothing on disk
    dirs = list((berth.root / "containers").iterdir())
    ids = berth.ids()
    assert all(d.name in ids for d in dirs)


def test_instant_exit_of_detached_container_is_recorded(berth):
    # the container can exit before the runtime's `run --detach` returns; the
    # monitor reaps it then and must still record its status
    for code in range(3):
        cid = berth.out("run", "-d", "--network", "none", "busybox", "sh", "-c", f"exit {code}").strip()
        assert berth("wait", cid, timeout=30).stdout == f"{code}\n"


def test_concurrent_starts_make_one_monitor(berth):
    import subprocess

    from engine_helpers import BERTH

    cid = berth.out("create", "busybox", "sleep", "60").strip()
    procs = [subprocess.Popen([BERTH, "--root", str(berth.root), "start", cid], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(4)]
    assert [p.wait() for p in procs] == [0] * 4
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert sum(1 for line in out.splitlines() if "berth-monitor" in line and f"--id {cid}" in line) == 1
    procs = [subprocess.Popen([BERTH, "--root", str(berth.root), "rm", "-f", cid], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(3)]
    assert sorted(p.wait() for p in procs) == [0, 125, 125]
    assert cid not in berth.ids()

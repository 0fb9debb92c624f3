"""The start path with berth's own runtime: the engine forks, creates and
starts the container in-process, and the fork execs berth-monitor, which
adopts the running init (no runtime interpreter per start). With another
runtime the monitor runs ``RUNTIME run --detach`` itself. Both must behave
the same; these tests pin what the adoption could get wrong.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import BERTH

RUNTIME = str(Path(sys.executable).parent / "berth-runtime")


def _trace_marks(path: Path) -> list[str]:
    return [ln.split(None, 2)[2] for ln in path.read_text().splitlines()] if path.exists() else []


def _leftover_cgroups(cid: str) -> list[str]:
    base = Path("/sys/fs/cgroup")
    return [str(p) for p in [base / "berth" / cid, *base.glob(f"*/berth/{cid}")] if p.exists()]


def test_run_rm_starts_no_runtime_interpreter_and_leaves_nothing(berth, engine_root, tmp_path):
    trace = tmp_path / "trace"
    env = dict(os.environ, BERTH_RUNTIME_TRACE=str(trace))
    r = subprocess.run([BERTH, "--root", str(engine_root), "run", "--rm", "busybox", "sh", "-c", "echo hi; exit 3"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert (r.returncode, r.stdout) == (3, "hi\n"), r.stderr
    marks = _trace_marks(trace)
    assert "exec done" in marks  # the runtime's code ran (in the engine's fork) ...
    assert "main" not in marks  # ... but no berth-runtime CLI started, not even for delete
    assert _runtime_states(engine_root) == set()


def _runtime_states(root: Path) -> set[str]:
    d = root / "runtime"
    return {n for n in os.listdir(d) if not n.startswith(".")} if d.exists() else set()  # .seccomp: a cache


def test_adopted_container_keeps_output_written_before_the_monitor_reads(berth):
    # the container runs before the monitor exists: what it writes meanwhile
    # waits in the pipe (more than a pipe's 64 KiB here), none of it lost
    name = f"flood{os.getpid()}"
    r = berth("run", "--name", name, "busybox", "seq", "1", "30000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(i) for i in range(1, 30001)]
    logged = berth.out("logs", name).split()
    assert len(logged) == 30000 and logged[-1] == "30000"


def test_instant_exit_before_adoption_is_reaped_with_its_code(berth):
    # /bin/true may be gone before the monitor blocks SIGCHLD: its zombie is found
    for code in (0, 7):
        cid = berth.out("run", "-d", "busybox", "sh", "-c", f"exit {code}").strip()
        assert berth.out("wait", cid).strip() == str(code)
        state = berth.status(cid)
        assert state["Status"] == "exited" and state["ExitCode"] == code
        berth.out("rm", cid)
        assert _leftover_cgroups(cid) == []


def test_detached_container_has_the_monitor_as_parent(berth):
    cid = berth.out("run", "-d", "busybox", "sleep", "60").strip()
    pid = berth.status(cid)["Pid"]
    ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert Path(f"/proc/{ppid}/comm").read_text().strip() == "berth-monitor"
    berth.out("rm", "-f", cid)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_port_conflict_found_while_creating_stops_the_start_cleanly(berth, engine_root):
    # the network is connected while the container is created; when that
    # fails (host port taken) the created container never starts
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        before = _runtime_states(engine_root)
        r = berth("run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "echo", "should-not-run")
        assert r.returncode == 125 and "should-not-run" not in r.stdout
        assert r.stderr.count("\n") == 1 and str(port) in r.stderr, r.stderr
        assert _runtime_states(engine_root) <= before  # no runtime state left
    finally:
        s.close()


@pytest.fixture
def foreign_runtime(tmp_path):
    """A runtime the engine does not know as its own (a wrapper script):
    the monitor then runs ``run --detach`` and ``delete`` as processes."""
    w = tmp_path / "other-runtime"
    w.write_text(f"#!/bin/sh\nexec {RUNTIME} \"$@\"\n")
    w.chmod(0o755)
    return str(w)


def test_foreign_runtime_takes_the_monitors_path(berth, engine_root, tmp_path, foreign_runtime):
    trace = tmp_path / "trace"
    env = dict(os.environ, BERTH_RUNTIME=foreign_runtime, BERTH_RUNTIME_TRACE=str(trace))

    def run(*args):
        return subprocess.run([BERTH, "--root", str(engine_root), *args], capture_output=True, text=True,
                              env=env, timeout=60)

    r = run("run", "--rm", "busybox", "sh", "-c", "echo hi; exit 5")
    assert (r.returncode, r.stdout) == (5, "hi\n"), r.stderr
    assert "main" in _trace_marks(trace)  # the runtime's CLI ran
    r = run("run", "--rm", "busybox", "/no/such")
    assert r.returncode == 127 and r.stderr.count("\n") == 1
    cid = run("run", "-d", "busybox", "sleep", "60").stdout.strip()
    assert berth.status(cid)["Status"] == "running"
    assert run("rm", "-f", cid).returncode == 0
    assert _leftover_cgroups(cid) == []


def test_run_name_clash_found_while_creating_leaves_nothing(berth, engine_root):
    # run stores its record (and so checks the name) while the container is
    # being created: a clash stops the start, and nothing of it remains
    name = f"taken{os.getpid()}"
    first = berth.out("run", "-d", "--name", name, "busybox", "sleep", "60").strip()
    before = set(os.listdir(engine_root / "containers"))
    netns_before = set(os.listdir(engine_root / "netns"))
    links_before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.count("\n")
    for extra in ([], ["-d"], ["--rm"]):
        r = berth("run", *extra, "--name", name, "busybox", "echo", "should-not-run")
        assert r.returncode == 125 and "should-not-run" not in r.stdout
        assert r.stderr.count("\n") == 1 and "already in use" in r.stderr, r.stderr
    assert set(os.listdir(engine_root / "containers")) == before
    assert set(os.listdir(engine_root / "netns")) == netns_before
    assert _runtime_states(engine_root) == {first}
    links_after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.count("\n")
    assert links_after == links_before
    assert berth.out("ps", "-a", "-q", "--no-trunc", "--filter", f"name={name}").split() == [first]


def test_run_on_an_unknown_network_fails_before_the_start_and_leaves_nothing(berth, engine_root):
    # run looks its network up while the container is being created (create
    # does it at once); either way: docker's error, exit 125, nothing left
    def listing(sub: str) -> set[str]:
        d = engine_root / sub
        return set(os.listdir(d)) if d.exists() else set()

    before = (listing("containers"), listing("netns"), listing("netfiles"))
    for verb in ("run", "create"):
        r = berth(verb, "--network", f"nosuch{os.getpid()}", "busybox", "echo", "should-not-run")
        assert r.returncode == 125 and "should-not-run" not in r.stdout
        assert r.stderr.count("\n") == 1 and "not found" in r.stderr, r.stderr
    assert (listing("containers"), listing("netns"), listing("netfiles")) == before


def test_api_caller_with_threads_takes_the_monitors_path(client, tmp_path, monkeypatch):
    # forking a process whose other threads may hold a lock can deadlock the
    # child: with a thread running, the API launches the monitor instead
    import threading

    trace = tmp_path / "trace"
    monkeypatch.setenv("BERTH_RUNTIME_TRACE", str(trace))
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        out = client.containers.run("busybox", ["echo", "from-a-threaded-caller"], remove=True)
    finally:
        stop.set()
        t.join()
    assert out == b"from-a-threaded-caller\n"
    assert "main" in _trace_marks(trace)  # the runtime's CLI ran (in the monitor)


def test_prune_leaves_a_container_whose_start_holds_its_lock(berth, engine_root):
    # a run stores its row only while its container is created: until then a
    # prune must not take its directory for a crash's leftover
    import fcntl

    cid = "f" * 64
    (engine_root / "containers" / cid).mkdir(parents=True)
    (engine_root / "locks").mkdir(exist_ok=True)
    fd = os.open(engine_root / "locks" / cid, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        berth.out("system", "prune", "-f")
        assert (engine_root / "containers" / cid).is_dir()
    finally:
        os.close(fd)
    berth.out("system", "prune", "-f")  # unlocked now: a leftover
    assert not (engine_root / "containers" / cid).exists()

"""create / start / state / kill / delete / run / list / ps / pause / resume / exec."""

import json
import os
import subprocess
import time

import pytest
from rt_helpers import one_line_error


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_run_prints_output_and_returns_container_exit_code(rt, bundle):
    bundle.set(["/bin/sh", "-c", "echo hello; exit 3"])
    r = rt("run", "--bundle", str(bundle.path), rt.new_id())
    assert (r.stdout, r.returncode) == ("hello\n", 3)
    assert os.listdir(rt.root) == [".seccomp"]  # run deletes the container after it exits


def _popen_run(rt, bundle, cid):
    from rt_helpers import RUNTIME

    return subprocess.Popen([RUNTIME, "--root", str(rt.root), "run", "--bundle", str(bundle.path), cid],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_run_killed_by_signal_exits_128_plus_signal(rt, bundle):
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    p = _popen_run(rt, bundle, cid)
    try:
        assert wait_for(lambda: rt("state", cid).returncode == 0 and rt.state(cid)["status"] == "running")
        assert rt("kill", cid, "KILL").returncode == 0
        assert p.wait(timeout=30) == 137
    finally:
        p.kill()
        p.wait()
    assert not (rt.root / cid).exists()


def test_run_forwards_signals_to_the_container(rt, bundle):
    bundle.set(["/bin/sh", "-c", "trap 'exit 5' TERM; touch /tmp/ready; while true; do sleep 0.05; done"])
    cid = rt.new_id()
    p = _popen_run(rt, bundle, cid)
    try:
        assert wait_for((bundle.rootfs / "tmp" / "ready").exists)
        p.terminate()
        assert p.wait(timeout=30) == 5
    finally:
        p.kill()
        p.wait()


def test_create_start_state_kill_delete_across_invocations(rt, bundle, tmp_path):
    out = tmp_path / "out"
    bundle.set(["/bin/sh", "-c", "echo started; exec sleep 600"])
    cid = rt.new_id()
    with open(out, "w") as f:
        assert rt.create(bundle, cid, stdout=f).returncode == 0
    st = rt.state(cid)
    assert st["status"] == "created" and st["pid"] > 0 and st["id"] == cid
    assert st["bundle"] == str(bundle.path) and st["ociVersion"].startswith("1.")
    assert out.read_text() == ""  # waiting for start: the process has not run yet
    assert rt("start", cid).returncode == 0
    assert wait_for(lambda: out.read_text() == "started\n")
    assert rt.state(cid)["status"] == "running"
    one_line_error(rt("start", cid))  # not created any more
    assert rt("kill", cid, "KILL").returncode == 0
    assert wait_for(lambda: rt.state(cid)["status"] == "stopped")
    assert rt.state(cid)["pid"] == 0
    assert "not running" in one_line_error(rt("kill", cid))
    assert rt("delete", cid).returncode == 0
    assert "does not exist" in one_line_error(rt("state", cid))
    assert not (rt.root / cid).exists()


def test_kill_accepts_signal_names_and_numbers(rt, bundle):
    bundle.set(["/bin/sh", "-c", "trap 'exit 42' USR1; while true; do sleep 0.1; done"])
    for sig in ("USR1", "SIGUSR1", "10"):
        cid = rt.new_id()
        assert rt.create(bundle, cid).returncode == 0
        rt("start", cid, check=True)
        time.sleep(0.3)  # let the shell install its trap
        assert rt("kill", cid, sig).returncode == 0
        assert wait_for(lambda cid=cid: rt.state(cid)["status"] == "stopped")
    one_line_error(rt("kill", cid, "NOSUCHSIG"))


def test_kill_all_signals_every_process_of_the_container(rt, bundle):
    # PID 1 ignores TERM (no handler); its children do not
    bundle.set(["/bin/sh", "-c", "sleep 600 & sleep 601 & wait"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    assert wait_for(lambda: len(json.loads(rt("ps", "--format", "json", cid).stdout)) == 3)
    assert rt("kill", "--all", cid, "TERM").returncode == 0
    assert wait_for(lambda: rt.state(cid)["status"] == "stopped")


def test_delete_of_running_container_needs_force(rt, bundle):
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    assert "--force" in one_line_error(rt("delete", cid))
    pid = rt.state(cid)["pid"]
    assert rt("delete", "--force", cid).returncode == 0
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not (rt.root / cid).exists()


def test_delete_of_created_container_kills_its_init(rt, bundle):
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    pid = rt.state(cid)["pid"]
    assert rt("delete", cid).returncode == 0
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"))


def test_list_table_and_json(rt, bundle):
    bundle.set(["/bin/sleep", "600"])
    a, b = rt.new_id(), rt.new_id()
    rt.create(bundle, a, check=True)
    rt.create(bundle, b, check=True)
    rt("start", b, check=True)
    table = rt("list", check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[a][2] == "created" and rows[b][2] == "running"
    js = {s["id"]: s for s in json.loads(rt("list", "--format", "json", check=True).stdout)}
    assert js[a]["status"] == "created" and js[b]["status"] == "running"
    assert sorted(rt("list", "-q", check=True).stdout.split()) == sorted([a, b])


def test_ps_lists_the_container_processes(rt, bundle):
    bundle.set(["/bin/sh", "-c", "sleep 600 & exec sleep 601"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    init = rt.state(cid)["pid"]
    assert wait_for(lambda: len(json.loads(rt("ps", "--format", "json", cid).stdout)) == 2)
    pids = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
    assert init in pids
    table = rt("ps", cid, check=True).stdout
    assert "sleep 601" in table and "sleep 600" in table


def test_pause_freezes_and_resume_thaws(rt, bundle):
    bundle.set(["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; done"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    counter = bundle.rootfs / "tmp" / "n"
    assert wait_for(counter.exists)
    assert rt("pause", cid).returncode == 0
    assert rt.state(cid)["status"] == "paused"
    time.sleep(0.1)
    a = counter.read_text()
    time.sleep(0.3)
    assert counter.read_text() == a  # frozen: no progress
    one_line_error(rt("pause", cid))
    assert rt("resume", cid).returncode == 0
    assert rt.state(cid)["status"] == "running"
    assert wait_for(lambda: counter.read_text() != a)
    assert rt("delete", "--force", cid).returncode == 0


def test_exec_joins_the_namespaces_and_cgroup_of_the_container(rt, bundle):
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    init = rt.state(cid)["pid"]
    r = rt("exec", cid, "--", "/bin/sh", "-c",
           "for n in mnt pid net ipc uts cgroup; do readlink /proc/self/ns/$n; done; hostname; echo $$")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    want = [os.readlink(f"/proc/{init}/ns/{n}") for n in ("mnt", "pid", "net", "ipc", "uts", "cgroup")]
    assert lines[:6] == want
    assert lines[6] == "berth"
    assert int(lines[7]) > 1  # a new process in the container's pid namespace
    # same cgroup as the init (seen from the host: read the exec'd process's file)
    r = rt("exec", "-d", "--pid-file", str(bundle.path / "exec.pid"), cid, "--", "/bin/sleep", "30")
    assert r.returncode == 0, r.stderr
    epid = int((bundle.path / "exec.pid").read_text())
    assert open(f"/proc/{epid}/cgroup").read() == open(f"/proc/{init}/cgroup").read()
    assert epid in json.loads(rt("ps", "--format", "json", cid).stdout)


def test_exec_env_cwd_user_and_exit_code(rt, bundle):
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    r = rt("exec", "--env", "FOO=bar", "--cwd", "/tmp", "--user", "65534:65534", cid, "--",
           "/bin/sh", "-c", "echo $FOO; pwd; id -u; id -g; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout.split() == ["bar", "/tmp", "65534", "65534"]
    one_line_error(rt("exec", cid, "--", "/no/such/binary"))
    assert rt("exec", cid, "--", "/no/such/binary").returncode == 127


def test_exec_with_process_json(rt, bundle, tmp_path):
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    proc = dict(bundle.config["process"], args=["/bin/sh", "-c", "echo from-json $X"],
                env=["X=1", "PATH=/bin"])
    (tmp_path / "p.json").write_text(json.dumps(proc))
    r = rt("exec", "--process", str(tmp_path / "p.json"), cid)
    assert (r.returncode, r.stdout) == (0, "from-json 1\n"), r.stderr


def test_pid_file_names_the_init(rt, bundle, tmp_path):
    cid = rt.new_id()
    pf = tmp_path / "pid"
    rt.create(bundle, cid, "--pid-file", str(pf), check=True)
    assert int(pf.read_text()) == rt.state(cid)["pid"]


def test_hooks_get_state_on_stdin_in_order(rt, bundle, tmp_path):
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\necho \"$1 $(cat)\" >> {log}\n")
    script.chmod(0o755)

    def hook(name):
        return [{"path": str(script), "args": ["hook.sh", name], "timeout": 10}]

    bundle.set(["/bin/true"], edit=lambda c: c.__setitem__("hooks", {
        n: hook(n) for n in ("prestart", "createRuntime", "poststart", "poststop")}))
    cid = rt.new_id()
    r = rt("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 0, r.stderr
    entries = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [e[0] for e in entries] == ["prestart", "createRuntime", "poststart", "poststop"]
    for name, data in entries:
        st = json.loads(data)
        assert st["id"] == cid and st["bundle"] == str(bundle.path)
        if name != "poststop":
            assert st["pid"] > 0


def test_runtime_hooks_run_in_the_hosts_pid_namespace(rt, bundle, tmp_path):
    """The runtime's own children (prestart, poststart, poststop hooks) run in
    the host's pid namespace, never in the container's: whoever unshares
    CLONE_NEWPID for the init must not be P0 itself (or must go back)."""
    log = tmp_path / "pidns.log"
    script = tmp_path / "pidns-hook.sh"
    script.write_text(f"#!/bin/sh\necho \"$1 $(readlink /proc/self/ns/pid)\" >> {log}\n")
    script.chmod(0o755)
    bundle.set(["/bin/true"], edit=lambda c: c.__setitem__("hooks", {
        n: [{"path": str(script), "args": ["hook.sh", n]}] for n in ("prestart", "poststart", "poststop")}))
    r = rt("run", "--bundle", str(bundle.path), rt.new_id())
    assert r.returncode == 0, r.stderr
    ours = os.readlink("/proc/self/ns/pid")
    seen = dict(line.split(" ", 1) for line in log.read_text().splitlines())
    assert seen == {n: ours for n in ("prestart", "poststart", "poststop")}


def test_container_hooks_run_inside_the_container(rt, bundle, tmp_path):
    """createContainer runs in the container's namespaces before pivot_root (path
    on the host); startContainer after it, path and effects inside the rootfs."""
    log = tmp_path / "create.log"
    script = tmp_path / "create-hook.sh"
    script.write_text(f"#!/bin/sh\n(readlink /proc/self/ns/uts; cat) > {log}\n")
    script.chmod(0o755)
    (bundle.rootfs / "start-hook.sh").write_text("#!/bin/sh\ncat > /tmp/start-state\n")
    (bundle.rootfs / "start-hook.sh").chmod(0o755)
    bundle.set(["/bin/cat", "/tmp/start-state"], edit=lambda c: c.__setitem__("hooks", {
        "createContainer": [{"path": str(script)}],
        "startContainer": [{"path": "/start-hook.sh"}]}))
    cid = rt.new_id()
    r = rt("run", "--bundle", str(bundle.path), cid)
    assert r.returncode == 0, r.stderr
    uts, state = log.read_text().split("\n", 1)
    assert uts.startswith("uts:[") and uts != os.readlink("/proc/self/ns/uts")  # the container's
    assert json.loads(state)["id"] == cid
    started = json.loads(r.stdout)
    assert started["id"] == cid and started["status"] == "running" and started["pid"] > 0


def test_failing_prestart_hook_fails_create_and_leaves_nothing(rt, bundle):
    bundle.set(edit=lambda c: c.__setitem__("hooks", {"prestart": [{"path": "/bin/false"}]}))
    cid = rt.new_id()
    r = rt.create(bundle, cid)
    assert "prestart hook /bin/false" in one_line_error(r)
    assert not (rt.root / cid).exists()


def test_console_socket_receives_the_pty_master(rt, bundle, tmp_path):
    import socket

    sock_path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    bundle.set(["/bin/sh", "-c", "tty; stty size; echo done"],
               edit=lambda c: c["process"].update(terminal=True, consoleSize={"height": 30, "width": 100}))
    cid = rt.new_id()
    try:
        r = rt.create(bundle, cid, "--console-socket", sock_path)
        assert r.returncode == 0, r.stderr
        conn, _ = srv.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        assert len(fds) == 1
        master = fds[0]
        rt("start", cid, check=True)
        out = b""
        deadline = time.monotonic() + 10
        while b"done" not in out and time.monotonic() < deadline:
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        text = out.decode()
        assert "/dev/pts/0" in text and "30 100" in text, text
        os.close(master)
        conn.close()
    finally:
        srv.close()


def test_foreground_run_and_exec_with_terminal_proxy_our_stdio(rt, bundle):
    bundle.set(["/bin/sh", "-c", "tty; read line; echo got $line; exit 4"],
               edit=lambda c: c["process"].update(terminal=True))
    r = rt("run", "--bundle", str(bundle.path), rt.new_id(), input="hello\n")
    assert r.returncode == 4, r.stderr
    out = r.stdout.replace("\r", "")
    assert "/dev/pts/0" in out and "got hello" in out
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    r = rt("exec", "-t", cid, "--", "/bin/sh", "-c", "tty")
    assert r.returncode == 0 and "/dev/pts/" in r.stdout, r


@pytest.mark.parametrize("flag", ["--no-pivot"])
def test_no_pivot_runs_with_chroot(rt, bundle, flag):
    bundle.set(["/bin/sh", "-c", "echo ok"])
    r = rt("run", flag, "--bundle", str(bundle.path), rt.new_id())
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr


def test_detached_run_keeps_running(rt, bundle):
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    r = rt("run", "-d", "--bundle", str(bundle.path), cid, stdout=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert rt.state(cid)["status"] == "running"


def test_namespace_path_joins_an_existing_namespace(rt, bundle, busybox_rootfs_template, tmp_path):
    import shutil

    from rt_helpers import Bundle

    bundle.set(["/bin/sleep", "600"])
    a = rt.new_id()
    rt.create(bundle, a, check=True)
    rt("start", a, check=True)
    pid = rt.state(a)["pid"]
    other = Bundle(tmp_path / "other")
    other.path.mkdir()
    shutil.copytree(busybox_rootfs_template, other.rootfs, symlinks=True)
    cfg = bundle.config
    for ns in cfg["linux"]["namespaces"]:
        if ns["type"] in ("network", "ipc"):
            ns["path"] = f"/proc/{pid}/ns/{'net' if ns['type'] == 'network' else 'ipc'}"
    cfg["process"]["args"] = ["/bin/sh", "-c", "for n in net ipc uts; do readlink /proc/self/ns/$n; done"]
    other.write(cfg)
    r = rt("run", "--bundle", str(other.path), rt.new_id())
    assert r.returncode == 0, r.stderr
    net, ipc, uts = r.stdout.split()
    assert net == os.readlink(f"/proc/{pid}/ns/net") and ipc == os.readlink(f"/proc/{pid}/ns/ipc")
    assert uts != os.readlink(f"/proc/{pid}/ns/uts")  # not listed with a path: a new one
    cfg["linux"]["namespaces"][0]["path"] = "/proc/999999999/ns/pid"
    other.write(cfg)
    assert "namespace" in one_line_error(rt("run", "--bundle", str(other.path), rt.new_id()))


def test_created_init_is_not_a_child_of_the_caller(bundle, tmp_path):
    """create (in-process, as a Python program would call it) leaves the init
    reparented away from the caller: were it our child, it would stay a
    zombie after exiting, and a zombie's pid and start time look alive."""
    from berth.runtime.container import ops, state

    root = str(tmp_path / "state")
    cid = f"t-{os.getpid()}-inproc"
    bundle.set(["/bin/true"])
    ops.create(root, cid, str(bundle.path))
    try:
        pid = state.read(root, cid)["pid"]
        assert pid > 0
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    finally:
        ops.delete(root, cid, force=True)

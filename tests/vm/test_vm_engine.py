"""`berth run --isolation vm` end to end: engine -> berth-monitor -> berth-runtime -> this backend."""

import json
import os
import platform
import subprocess

import pytest

pytestmark = pytest.mark.vm


@pytest.fixture
def engine(tmp_path, vm_cache, venv_bin):
    root = tmp_path / "engine"
    env = dict(os.environ, BERTH_VM_CACHE=str(vm_cache), BERTH_RUNTIME=str(venv_bin / "berth-runtime"))

    def berth(*args, timeout=120, path=None):
        return subprocess.run([str(venv_bin / "berth"), "--root", str(root), *args], capture_output=True,
                              text=True, env=env if path is None else dict(env, PATH=path), timeout=timeout,
                              stdin=subprocess.DEVNULL)

    berth.root = root

    assert berth("image", "bootstrap", "busybox").returncode == 0
    yield berth
    for cid in berth("ps", "-a", "-q", "--no-trunc").stdout.split():
        berth("rm", "-f", cid)
    berth("system", "prune", "--volumes")
    for p in (root / "containers").glob("*/rootfs"):
        subprocess.run(["umount", "-l", str(p)], capture_output=True)
    berth("system", "reset", "--force")  # the root's default bridge, taps' network and nft table


def test_engine_run_exec_stop_rm_of_a_vm(engine):
    r = engine("run", "--rm", "--isolation", "vm", "busybox", "sh", "-c", "uname -r; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout.strip() and r.stdout.strip() != platform.release()

    name = f"vmt{os.getpid()}"
    r = engine("run", "-d", "--isolation", "vm", "--name", name, "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    r = engine("exec", name, "sh", "-c", "echo in-guest $(uname -r); exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout.startswith("in-guest ") and platform.release() not in r.stdout
    info = json.loads(engine("inspect", name).stdout)[0]
    assert info["State"]["Running"]
    cid = info["Id"]

    def qemus():
        ps = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
        return [line for line in ps.splitlines() if cid in line]

    assert len(qemus()) == 1  # the VM's QEMU runs, named by the container's state directory
    assert engine("stop", "-t", "5", name).returncode == 0
    assert not json.loads(engine("inspect", name).stdout)[0]["State"]["Running"]
    assert engine("rm", name).returncode == 0
    assert qemus() == []


@pytest.mark.net
def test_vm_reaches_a_container_by_name_on_a_user_network_and_publishes_a_port(engine):
    import time
    import urllib.request

    net, c, v = f"vmn{os.getpid()}", f"web{os.getpid()}", f"vweb{os.getpid()}"
    assert engine("network", "create", net).returncode == 0
    try:
        r = engine("run", "-d", "--name", c, "--network", net, "busybox", "httpd", "-f", "-p", "8080", "-h", "/etc")
        assert r.returncode == 0, r.stderr
        # A VM on the same bridge network: the engine's tap, address and /etc/hosts reach the guest.
        r = engine("run", "--rm", "--isolation", "vm", "--network", net, "busybox",
                   "sh", "-c", f"wget -q -O - http://{c}:8080/hostname")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == json.loads(engine("inspect", c).stdout)[0]["Id"][:12]
        # -p publishes a VM's port as it does a container's (loopback only).
        port = 20000 + os.getpid() % 20000
        r = engine("run", "-d", "--name", v, "--isolation", "vm", "-p", f"127.0.0.1:{port}:8080",
                   "busybox", "httpd", "-f", "-p", "8080", "-h", "/etc")
        assert r.returncode == 0, r.stderr
        vid = json.loads(engine("inspect", v).stdout)[0]["Id"][:12]
        body, err = None, None
        for _ in range(60):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2).read().decode()
                break
            except OSError as e:
                err = e
                time.sleep(0.5)
        assert body is not None, err
        assert body.strip() == vid
    finally:
        engine("rm", "-f", c)
        engine("rm", "-f", v)
        engine("network", "rm", net)


def _refused(r) -> str:
    """The one stderr line of a refused command (exit 125, no traceback)."""
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_bad_vm_flags_and_missing_qemu_or_kernel_fail_in_one_line_leaving_nothing(engine, tmp_path):
    before = set(os.listdir(engine.root / "containers")) if (engine.root / "containers").exists() else set()
    assert "auto, kvm or tcg" in _refused(engine("run", "--rm", "--isolation", "vm", "--accel", "hvf",
                                                 "busybox", "true"))
    line = _refused(engine("create", "--isolation", "vm", "--kernel", str(tmp_path / "no-vmlinuz"), "busybox"))
    assert "no-vmlinuz" in line and "scripts/setup.sh" in line
    assert "--isolation vm" in _refused(engine("create", "--kernel", "/boot/x", "busybox"))
    assert "--isolation vm" in _refused(engine("run", "--rm", "--accel", "tcg", "busybox", "true"))
    # QEMU is looked up on PATH: without it the error names the set-up command
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    line = _refused(engine("run", "--rm", "--isolation", "vm", "busybox", "true", path=str(empty)))
    assert "qemu-system-x86_64" in line and "scripts/setup.sh" in line
    if not any(f in open("/proc/cpuinfo").read() for f in (" vmx", " svm")):
        # /dev/kvm may exist here, but KVM guests hang without vmx/svm: refused up front
        assert "vmx/svm" in _refused(engine("run", "--rm", "--isolation", "vm", "--accel", "kvm", "busybox", "true"))
    assert engine("ps", "-a", "-q").stdout.strip() == ""
    after = set(os.listdir(engine.root / "containers")) if (engine.root / "containers").exists() else set()
    assert after == before


def test_python_api_refuses_bad_vm_arguments(engine, tmp_path):
    from berth.engine.client import Client
    from berth.errors import NotFound, UsageError

    client = Client(engine.root)
    with pytest.raises(UsageError):
        client.containers.create("busybox", "true", isolation="vm", accel="hvf")
    with pytest.raises(NotFound) as exc:
        client.containers.create("busybox", "true", isolation="vm", kernel=tmp_path / "none")
    assert "scripts/setup.sh" in str(exc.value)
    with pytest.raises(UsageError):
        client.containers.create("busybox", "true", kernel="/boot/x")
    assert client.containers.list(all=True) == []


def test_vm_lifecycle_parity_from_the_cli(engine, vm_cache, venv_bin, monkeypatch):
    """One VM (booted twice) through ps, logs, inspect, stats, top, exec, kill -s,
    stop (graceful signal, then kill after -t), wait, start, kill and rm."""
    import glob
    import time

    from berth.engine.client import Client
    from berth.engine.observe import stats

    monkeypatch.setenv("BERTH_VM_CACHE", str(vm_cache))
    monkeypatch.setenv("BERTH_RUNTIME", str(venv_bin / "berth-runtime"))
    kernel = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"))[-1]
    name = f"vml{os.getpid()}"
    client = Client(engine.root)
    # The Python API with the VM keyword arguments; the CLI does the rest.
    c = client.containers.run("busybox", ["sh", "-c", 'echo out; echo err >&2; trap "echo got-term" TERM; '
                                          'trap "echo got-usr1" USR1; while :; do sleep 1; done'],
                              detach=True, name=name, isolation="vm", kernel=kernel, accel="tcg",
                              mem_limit="200m", cpus=2)

    def logs_until(text):
        for _ in range(200):
            r = engine("logs", name)
            if text in r.stdout:
                return r
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared in the logs: {r.stdout!r} {r.stderr!r}")

    r = logs_until("out")
    assert "err" in r.stderr and "err" not in r.stdout
    assert engine("ps", "--filter", "isolation=vm", "--format", "{{.Names}}").stdout.split() == [name]

    vm = json.loads(engine("inspect", name).stdout)[0]["VM"]
    assert vm["Isolation"] == "vm" and vm["Accelerator"] == "tcg" and vm["AcceleratorReason"] == "requested"
    assert vm["Kernel"] == kernel and vm["GuestKernelRelease"] == kernel.split("vmlinuz-", 1)[1]
    assert vm["MemoryMB"] == 200 and vm["CPUs"] == 2

    r = engine("exec", name, "sh", "-c", "nproc; grep MemTotal /proc/meminfo; exit 3")
    assert r.returncode == 3, r.stderr
    nproc, meminfo = r.stdout.splitlines()
    assert nproc == "2" and 150 * 1024 < int(meminfo.split()[1]) <= 200 * 1024

    # stats read QEMU's cgroup (guest RAM + the VMM's allowance) and the tap
    s = stats(client.engine, client.engine.get(name))
    assert s["status"] == "running" and 0 < s["memory_usage"] <= s["memory_limit"]
    assert s["memory_limit"] > 200 << 20 and s["pids"] >= 1
    r = engine("stats", "--no-stream", name)
    assert r.returncode == 0 and name in r.stdout, r.stderr
    assert "qemu-system" in engine("top", name).stdout

    # kill -s: the signal reaches the workload through the agent, the VM keeps running
    assert engine("kill", "-s", "USR1", name).returncode == 0
    logs_until("got-usr1")
    assert json.loads(engine("inspect", name).stdout)[0]["State"]["Running"]

    # stop: SIGTERM through the agent (the workload traps it and goes on), then QEMU
    # is killed after -t; a concurrent `wait` sees the exit status
    waiter = subprocess.Popen([str(venv_bin / "berth"), "--root", str(engine.root), "wait", name],
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert engine("stop", "-t", "2", name).returncode == 0
        assert waiter.communicate(timeout=60)[0].strip() == "137"
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    logs_until("got-term")
    info = json.loads(engine("inspect", name).stdout)[0]
    assert not info["State"]["Running"] and info["State"]["ExitCode"] == 137
    assert info["VM"]["Accelerator"] == "tcg" and info["VM"]["GuestKernelRelease"]  # kept after the exit
    cid = info["Id"]
    assert cid == c.id
    assert not [p for p in subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True,
                                          text=True).stdout.splitlines() if cid in p]

    # start boots it again; kill (SIGKILL) ends QEMU at once
    assert engine("start", name).returncode == 0
    assert engine("exec", name, "true").returncode == 0
    assert engine("kill", name).returncode == 0
    assert engine("wait", name).stdout.strip() == "137"
    assert engine("rm", name).returncode == 0
    assert not [p for p in subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True,
                                          text=True).stdout.splitlines() if cid in p]
    assert not (engine.root / "containers" / cid).exists()


def test_system_info_says_which_accelerator_and_why(engine):
    r = engine("system", "info")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("VMAccelerator: "))
    name, _, why = line.removeprefix("VMAccelerator: ").partition(" ")
    assert name in ("kvm", "tcg") and why.startswith("(") and len(why) > 3, line
    acc = json.loads(engine("system", "info", "--format", "json").stdout)["VMAccelerator"]
    assert acc["Name"] == name and acc["Reason"]
    if not any(f in open("/proc/cpuinfo").read() for f in (" vmx", " svm")):
        assert name == "tcg" and "vmx/svm" in acc["Reason"]

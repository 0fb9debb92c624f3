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

    def berth(*args, timeout=120):
        return subprocess.run([str(venv_bin / "berth"), "--root", str(root), *args], capture_output=True,
                              text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)

    assert berth("image", "bootstrap", "busybox").returncode == 0
    yield berth
    for cid in berth("ps", "-a", "-q", "--no-trunc").stdout.split():
        berth("rm", "-f", cid)
    berth("system", "prune", "--volumes")
    for p in (root / "containers").glob("*/rootfs"):
        subprocess.run(["umount", "-l", str(p)], capture_output=True)


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

"""The OCI-shaped verbs (create/start/state/kill/delete), each from its own process."""

import json
import subprocess
import sys
import time

import pytest

from berth.runtime.vm import agent_protocol as ap
from berth.runtime.vm import initramfs
from berth.runtime.vm.state import sock_dir_for

pytestmark = pytest.mark.vm


def verb(root, expr, stdout=None, cache=None, stderr=None):
    code = f"import json,sys; from berth.runtime.vm import oci; r = {expr}; print(json.dumps(r)) if r else None"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "BERTH_VM_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-c", code], stdout=stdout or subprocess.PIPE, stderr=stderr or subprocess.PIPE,
                          text=True, env=env, timeout=120)


def make_bundle(tmp_path, rootfs, args):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    config = {
        "ociVersion": "1.0.2",
        "process": {"args": args, "env": ["PATH=/bin:/usr/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": "ocivm",
        "annotations": {"org.berth.isolation": "vm", "org.berth.vm.memory": "160"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
    }
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def test_create_start_state_delete_across_processes(tmp_path, busybox_rootfs_template, vm_cache):
    root = tmp_path / "root"
    bundle = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", "uname -r; hostname; exit 5"])
    # The VM's monitor inherits the caller's stdio (as runc's container process does),
    # so files, not pipes whose EOF would never come.
    out, err = open(tmp_path / "out", "w"), open(tmp_path / "err", "w")
    r = verb(root, f"oci.create({str(bundle)!r}, 'c1', {str(root)!r})", stdout=out, stderr=err, cache=vm_cache)
    try:
        assert r.returncode == 0, (tmp_path / "err").read_text()
        st = json.loads(verb(root, f"oci.state({str(root)!r}, 'c1')", cache=vm_cache).stdout)
        assert st["status"] == "created" and st["pid"] > 0
        assert st["annotations"]["org.berth.isolation"] == "vm"
        assert verb(root, f"oci.start({str(root)!r}, 'c1')", cache=vm_cache).returncode == 0
        for _ in range(600):
            st = json.loads(verb(root, f"oci.state({str(root)!r}, 'c1')", cache=vm_cache).stdout)
            if st["status"] == "stopped":
                break
            time.sleep(0.1)
        assert st["status"] == "stopped" and st["exit_code"] == 5
        lines = [x for x in (tmp_path / "out").read_text().splitlines() if not x.startswith("{")]  # create's own print
        assert lines[1:] == ["ocivm"] and lines[0] != subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    finally:
        verb(root, f"oci.delete({str(root)!r}, 'c1', force=True)", cache=vm_cache)
    assert not (root / "c1").exists() and not sock_dir_for(root / "c1").exists()


def test_create_refuses_bad_id_and_missing_bundle(tmp_path, vm_cache):
    r = verb(tmp_path, f"oci.create({str(tmp_path)!r}, '../x', {str(tmp_path)!r})", cache=vm_cache)
    assert r.returncode != 0 and "container id" in r.stderr
    r = verb(tmp_path, f"oci.create({str(tmp_path / 'nope')!r}, 'x', {str(tmp_path)!r})", cache=vm_cache)
    assert r.returncode != 0 and "no config.json" in r.stderr


def test_protocol_frames_round_trip_and_oversize_is_refused():
    import socket

    a, b = socket.socketpair()
    ca, cb = ap.Channel(a), ap.Channel(b)
    data = bytes(range(256)) * 200  # 51200 bytes: four frames
    ca.send(ap.encode_data(ap.STDOUT, 9, data) + ap.encode_json(ap.EXIT, 9, {"status": 3}))
    got = b""
    while True:
        f = cb.recv()
        if f.type == ap.EXIT:
            break
        assert f.stream == 9 and len(f.payload) <= ap.MAX_PAYLOAD
        got += f.payload
    assert got == data and f.json() == {"status": 3}
    with pytest.raises(ValueError):
        ap.encode(ap.STDIN, 1, b"x" * (ap.MAX_PAYLOAD + 1))
    a.sendall(bytes([ap.STDOUT]) + (1).to_bytes(4, "big") + (ap.MAX_PAYLOAD + 1).to_bytes(4, "big"))
    with pytest.raises(ConnectionError):
        cb.recv()


def test_initramfs_is_newc_with_agent_as_init(tmp_path):
    data = initramfs.build_cpio(b"\x7fELFagent", [("core", "virtio.ko", b"mod")])
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True).stdout.decode().split()
    assert {"init", "dev/console", "lib/modules/virtio.ko", "modules.list"} <= set(listing)
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "init", "modules.list"], input=data, cwd=out, check=True)
    assert (out / "init").read_bytes() == b"\x7fELFagent"
    assert (out / "modules.list").read_text() == "core /lib/modules/virtio.ko\n"


def test_berth_runtime_runs_an_annotated_bundle_as_a_vm(tmp_path, busybox_rootfs_template, vm_cache, venv_bin):
    bundle = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", "uname -r; exit 7"])
    root = tmp_path / "root"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "BERTH_VM_CACHE": str(vm_cache)}
    r = subprocess.run([str(venv_bin / "berth-runtime"), "--root", str(root), "run", "--bundle", str(bundle), "v1"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120)
    host = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    assert r.returncode == 7, r.stderr
    assert r.stdout.strip() and r.stdout.strip() != host
    assert "cloud-amd64" in r.stdout
    assert not (root / "v1").exists()


def test_ops_verbs_drive_a_detached_vm(tmp_path, busybox_rootfs_template, vm_cache):
    root = tmp_path / "root"
    bundle = make_bundle(tmp_path, busybox_rootfs_template, ["sleep", "300"])
    out, err = open(tmp_path / "out", "w"), open(tmp_path / "err", "w")
    code = ("from berth.runtime.vm import ops; import sys; "
            f"ops.run({str(root)!r}, 'd1', {str(bundle)!r}, detach=True)")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "BERTH_VM_CACHE": str(vm_cache)}
    r = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=err, env=env, timeout=120)
    try:
        assert r.returncode == 0, (tmp_path / "err").read_text()
        r = verb(root, f"__import__('berth.runtime.vm.ops').runtime.vm.ops.get_state({str(root)!r}, 'd1')", cache=vm_cache)
        st = json.loads(r.stdout)
        assert st["status"] == "running"
        r = verb(root, f"__import__('berth.runtime.vm.ops').runtime.vm.ops.exec_process({str(root)!r}, 'd1', "
                       "{'args': ['sh', '-c', 'exit 4'], 'cwd': '/', 'env': ['PATH=/bin']})", cache=vm_cache)
        assert json.loads(r.stdout) == 4, r.stderr
        assert verb(root, f"__import__('berth.runtime.vm.ops').runtime.vm.ops.kill({str(root)!r}, 'd1', 'TERM')",
                    cache=vm_cache).returncode == 0
        for _ in range(300):
            if json.loads(verb(root, f"oci.state({str(root)!r}, 'd1')", cache=vm_cache).stdout)["status"] == "stopped":
                break
            time.sleep(0.1)
        st = json.loads(verb(root, f"oci.state({str(root)!r}, 'd1')", cache=vm_cache).stdout)
        assert st["status"] == "stopped" and st["exit_code"] == 143
    finally:
        verb(root, f"oci.delete({str(root)!r}, 'd1', force=True)", cache=vm_cache)
    assert not (root / "d1").exists()


def test_state_pid_is_a_process_that_exits_with_the_workloads_status(tmp_path, busybox_rootfs_template, vm_cache):
    # What an engine's monitor (a subreaper, like conmon) relies on: reaping the state's
    # pid yields the workload's exit status.
    root = tmp_path / "root"
    bundle = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", "exit 9"])
    code = f"""
import os, sys
from berth.runtime.vm import oci
st = oci.create({str(bundle)!r}, "p1", {str(root)!r}, pid_file={str(tmp_path / "pid")!r})
assert int(open({str(tmp_path / "pid")!r}).read()) == st["pid"] != st["qemu_pid"]
oci.start({str(root)!r}, "p1")
_, status = os.waitpid(st["pid"], 0)
oci.delete({str(root)!r}, "p1")
print(os.waitstatus_to_exitcode(status))
"""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "BERTH_VM_CACHE": str(vm_cache)}
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        r = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=err, env=env, timeout=120)
    assert r.returncode == 0, (tmp_path / "err").read_text()
    assert (tmp_path / "out").read_text().split()[-1] == "9"
    assert not (root / "p1").exists()


def test_terminal_bundle_hands_a_pty_to_the_console_socket(tmp_path, busybox_rootfs_template, vm_cache):
    import os
    import socket as so

    root = tmp_path / "root"
    bundle = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", "tty; echo done"])
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = True
    (bundle / "config.json").write_text(json.dumps(cfg))
    sock_path = tmp_path / "console.sock"
    srv = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(1)
    code = (f"from berth.runtime.vm import oci; oci.create({str(bundle)!r}, 't1', {str(root)!r}, "
            f"console_socket={str(sock_path)!r}); oci.start({str(root)!r}, 't1')")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "BERTH_VM_CACHE": str(vm_cache)}
    with open(tmp_path / "err", "w") as err:
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        try:
            conn, _ = srv.accept()
            _, fds, _, _ = so.recv_fds(conn, 100, 1)
            assert p.wait(120) == 0, (tmp_path / "err").read_text()
            got = b""
            while b"done\r\n" not in got:
                try:
                    chunk = os.read(fds[0], 4096)
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
            assert b"/dev/pts/0" in got and b"done\r\n" in got
        finally:
            if p.poll() is None:
                p.kill()
            verb(root, f"oci.delete({str(root)!r}, 't1', force=True)", cache=vm_cache)


def test_guest_text_cannot_inject_terminal_escapes():
    assert ap.printable("exec \x1b]0;pwned\x07 foo: No such file") == "exec ?]0;pwned? foo: No such file"
    assert len(ap.printable("x" * 10000)) == 512

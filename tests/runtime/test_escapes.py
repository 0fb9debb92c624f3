"""Known container escapes, each defended; the test names say what they prove.

CVE-2019-5736 (/proc/self/exe overwrite), CVE-2024-21626 (leaked fd as cwd),
CVE-2019-16884 / CVE-2021-30465 / CVE-2025-31133 (symlinks in the image
redirecting mounts), and the default confinement of a container's root.
"""

import hashlib
import os
import subprocess
import sys
import time

from rt_helpers import RUNTIME, one_line_error


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_runtime_interpreter_not_reachable_through_proc_exe_of_created_init(rt, bundle):
    """Before start, the container's PID 1 is still our (forked) interpreter:
    it is non-dumpable, so /proc/1/exe cannot be opened, read or written from
    a process exec'd into the container (CVE-2019-5736)."""
    interp = os.path.realpath(sys.executable)
    before = _digest(interp)
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    r = rt("exec", cid, "--", "/bin/sh", "-c",
           "echo pwned >> /proc/1/exe; echo w=$?; cat /proc/1/exe > /dev/null; echo r=$?; "
           "readlink /proc/1/exe; echo l=$?; "
           "for f in /proc/1/fd/*; do readlink $f && echo leaked; cat $f </dev/null && echo leaked; done")
    assert "w=1" in r.stdout and "r=1" in r.stdout and "l=1" in r.stdout, r
    assert "leaked" not in r.stdout, r
    assert "Permission denied" in r.stderr
    assert _digest(interp) == before


def test_started_container_runs_the_workload_binary_not_the_runtime(rt, bundle):
    """After start PID 1 is the workload itself (exec'd directly): no runtime
    process or interpreter remains in the container to attack."""
    bundle.set(["/bin/sleep", "600"])
    cid = rt.new_id()
    rt.create(bundle, cid, check=True)
    rt("start", cid, check=True)
    time.sleep(0.1)
    r = rt("exec", cid, "--", "/bin/sh", "-c", "for p in /proc/[0-9]*; do readlink $p/exe; done")
    exes = set(r.stdout.split())
    assert exes == {"/bin/busybox"}, exes
    init = rt.state(cid)["pid"]
    assert os.readlink(f"/proc/{init}/exe").endswith("/bin/busybox")


def test_only_stdio_file_descriptors_reach_the_container(rt, bundle, tmp_path):
    """A host fd inherited by the runtime (here fd 7 on a host directory) is
    not open in the container (CVE-2024-21626)."""
    bundle.set(["/bin/sh", "-c", "cd /proc/self/fd && echo *"])
    # the shell opens fd 7 on a host directory and execs the runtime with it
    r = subprocess.run(["/bin/sh", "-c", f'exec 7<"{tmp_path}" && exec "$@"', "sh", RUNTIME,
                        "--root", str(rt.root), "run", "--bundle", str(bundle.path), rt.new_id()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # 0-2, and the directory fd ls/echo itself holds while listing (if any)
    assert set(r.stdout.split()) <= {"0", "1", "2", "3"}, r.stdout
    assert "7" not in r.stdout.split()


def test_preserve_fds_passes_exactly_the_requested_fds(rt, bundle, tmp_path):
    f = tmp_path / "passed"
    f.write_text("through fd 3\n")
    bundle.set(["/bin/sh", "-c", "cat <&3; ls /proc/self/fd/4 2>/dev/null && echo fd4-leaked"])
    r = subprocess.run(["/bin/sh", "-c", f'exec 3<"{f}" 4<"{f}" && exec "$@"', "sh", RUNTIME,
                        "--root", str(rt.root), "run", "--preserve-fds", "1",
                        "--bundle", str(bundle.path), rt.new_id()],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "through fd 3\n", r.stderr


def test_cwd_magic_link_to_leaked_fd_is_refused(rt, bundle):
    bundle.set(["/bin/pwd"], edit=lambda c: c["process"].update(cwd="/proc/self/fd/3"))
    cid = rt.new_id()
    err = one_line_error(rt("run", "--bundle", str(bundle.path), cid))
    assert "cwd /proc/self/fd/3" in err
    assert not (rt.root / cid).exists()


def test_cwd_with_dotdot_is_refused(rt, bundle):
    bundle.set(["/bin/pwd"], edit=lambda c: c["process"].update(cwd="/../../../../tmp"))
    err = one_line_error(rt("run", "--bundle", str(bundle.path), rt.new_id()))
    assert "cwd" in err


def test_cwd_symlink_to_host_path_stays_inside_rootfs(rt, bundle, tmp_path):
    host_dir = tmp_path / "host-secret"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host data\n")
    os.symlink(str(host_dir), bundle.rootfs / "escape")  # absolute host path inside the image
    bundle.set(["/bin/sh", "-c", "pwd; ls"], edit=lambda c: c["process"].update(cwd="/escape"))
    r = rt("run", "--bundle", str(bundle.path), rt.new_id())
    # resolved inside the rootfs: the directory does not exist there -> refused, never the host one
    assert "secret" not in r.stdout
    if r.returncode != 0:
        assert "cwd /escape" in one_line_error(r)


def test_symlink_in_image_cannot_redirect_a_bind_mount_onto_the_host(rt, bundle, tmp_path):
    """CVE-2021-30465 class: /mnt in the image links to a host directory; the
    mount lands at that path *inside* the rootfs, the host dir is untouched."""
    host_target = tmp_path / "host-target"
    host_target.mkdir()
    src = tmp_path / "volume"
    src.mkdir()
    (src / "payload").write_text("from volume\n")
    (bundle.rootfs / "mnt").rmdir() if (bundle.rootfs / "mnt").exists() else None
    os.symlink(str(host_target), bundle.rootfs / "mnt")

    def edit(c):
        c["mounts"].append({"destination": "/mnt/data", "type": "bind", "source": str(src),
                            "options": ["rbind", "rw"]})
    bundle.set(["/bin/sh", "-c", "cat /mnt/data/payload; echo x > /mnt/data/written"], edit=edit)
    r = rt("run", "--bundle", str(bundle.path), rt.new_id())
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from volume\n"
    assert list(host_target.iterdir()) == []  # nothing was created or mounted on the host path
    assert (bundle.rootfs / str(host_target).lstrip("/") / "data").is_dir()  # it went in-root
    assert (src / "written").exists()


def test_proc_destination_that_is_a_symlink_is_refused(rt, bundle, tmp_path):
    """CVE-2019-16884 class: /proc in the image is a link (here to a host
    directory): mounting procfs through it is refused."""
    (bundle.rootfs / "proc").rmdir()
    os.symlink(str(tmp_path), bundle.rootfs / "proc")
    cid = rt.new_id()
    err = one_line_error(rt("run", "--bundle", str(bundle.path), cid))
    assert "symlink" in err and "/proc" in err
    assert not (rt.root / cid).exists()


def test_dev_symlink_in_image_cannot_put_devices_on_the_host(rt, bundle, tmp_path):
    host_dev = tmp_path / "hostdev"
    host_dev.mkdir()
    (bundle.rootfs / "dev").rmdir()
    os.symlink(str(host_dev), bundle.rootfs / "dev")
    bundle.set(["/bin/sh", "-c", "ls /dev/null"])
    r = rt("run", "--bundle", str(bundle.path), rt.new_id())
    assert r.returncode == 0, r.stderr
    assert list(host_dev.iterdir()) == []


def test_masked_paths_use_a_verified_null_device_not_the_images(rt, bundle, tmp_path):
    """CVE-2025-31133 class: with the image's own /dev (no tmpfs), /dev/null
    in the image links to a host-sensitive file. berth replaces the node and
    masks with a verified 1:3 device; the link target is never bound."""
    target = tmp_path / "sensitive"
    target.write_text("must not be exposed or masked\n")
    os.symlink(str(target), bundle.rootfs / "dev" / "null")

    def edit(c):
        c["mounts"] = [m for m in c["mounts"] if m["destination"] not in ("/dev", "/dev/pts", "/dev/shm", "/dev/mqueue")]
    bundle.set(["/bin/sh", "-c", "ls -l /dev/null; cat /proc/keys | wc -c"], edit=edit)
    r = rt("run", "--bundle", str(bundle.path), rt.new_id())
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("crw-rw-rw-") and r.stdout.split()[-1] == "0"
    assert target.read_text() == "must not be exposed or masked\n"


def test_masking_refuses_a_null_device_that_is_not_one(rt, bundle, tmp_path):
    """If /dev comes from a bind mount whose "null" is a regular file, masking
    fails closed instead of binding that file over /proc paths."""
    fake_dev = tmp_path / "fakedev"
    fake_dev.mkdir()
    (fake_dev / "null").write_text("not a device\n")

    def edit(c):
        c["mounts"] = [m for m in c["mounts"] if not m["destination"].startswith("/dev")]
        c["mounts"].append({"destination": "/dev", "type": "bind", "source": str(fake_dev),
                            "options": ["rbind"]})
    bundle.set(["/bin/true"], edit=edit)
    cid = rt.new_id()
    err = one_line_error(rt("run", "--bundle", str(bundle.path), cid))
    assert "null" in err
    assert not (rt.root / cid).exists()

"""cp (both ways, symlink-safe), volumes, export."""

import io
import os
import tarfile


def test_cp_both_directions(berth, tmp_path):
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "mkdir -p /srv/d; echo inside > /srv/d/f; sleep 60").strip()
    host = tmp_path / "h.txt"
    host.write_text("from-host\n")
    berth.out("cp", str(host), f"{cid}:/tmp/")
    assert berth.out("exec", cid, "cat", "/tmp/h.txt") == "from-host\n"
    import time

    for _ in range(50):
        if berth("exec", cid, "test", "-f", "/srv/d/f").returncode == 0:
            break
        time.sleep(0.1)
    berth.out("cp", f"{cid}:/srv/d", str(tmp_path / "out"))
    assert (tmp_path / "out" / "f").read_text() == "inside\n"


def test_cp_into_container_symlink_cannot_write_outside_rootfs(berth, tmp_path):
    # CVE-2018-15664 class: the container points /escape at the host's tree;
    # berth must resolve it inside the container's root, not on the host.
    target = tmp_path / "victim"
    target.mkdir()
    cid = berth.out("create", "busybox", "true").strip()
    # plant the symlinks in the container's filesystem (as a process in it could)
    rootfs = berth.root / "containers" / cid / "rootfs"
    os.symlink(str(target), rootfs / "escape")          # absolute link to a host path
    os.symlink("../../../../../../../../" + str(target).lstrip("/"), rootfs / "dotdot")
    src = tmp_path / "payload"
    src.write_text("pwned\n")
    # the link's target does not exist inside the container: refused, host untouched
    r = berth("cp", str(src), f"{cid}:/escape/payload")
    assert r.returncode != 0 and list(target.iterdir()) == []
    # once it exists inside the container, that is where the file lands
    (rootfs / str(target).lstrip("/")).mkdir(parents=True)
    berth.out("cp", str(src), f"{cid}:/escape/payload")
    berth.out("cp", str(src), f"{cid}:/dotdot/payload2")
    assert list(target.iterdir()) == []
    inside = rootfs / str(target).lstrip("/")
    assert (inside / "payload").read_text() == "pwned\n"
    assert (inside / "payload2").read_text() == "pwned\n"


def test_cp_from_container_symlink_is_copied_as_a_link_not_followed(berth, tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("host only\n")
    cid = berth.out("create", "busybox", "true").strip()
    rootfs = berth.root / "containers" / cid / "rootfs"
    os.symlink(str(secret), rootfs / "leak")
    berth.out("cp", f"{cid}:/leak", str(tmp_path / "got"))
    assert os.path.islink(tmp_path / "got")
    # and following it (-L) resolves inside the container, where it does not exist
    r = berth("cp", "-L", f"{cid}:/leak", str(tmp_path / "got2"))
    assert r.returncode != 0 and not (tmp_path / "got2").exists()


def test_named_volume_persists_and_in_use_volume_is_kept(berth):
    vol = f"vol{os.getpid()}"
    berth.out("volume", "create", vol)
    try:
        assert berth("run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c", "echo kept > /data/f").returncode == 0
        assert berth.out("run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "cat", "/data/f") == "kept\n"
        cid = berth.out("create", "-v", f"{vol}:/data", "busybox", "true").strip()
        r = berth("volume", "rm", vol)
        assert r.returncode == 125 and "in use" in r.stderr
        berth.out("rm", cid)
        assert vol in berth.out("volume", "ls", "-q").split()
    finally:
        berth("volume", "rm", vol)
    assert vol not in berth.out("volume", "ls", "-q").split()


def test_anonymous_volume_removed_with_rm_v(berth):
    cid = berth.out("create", "-v", "/anon", "busybox", "true").strip()
    name = __import__("json").loads(berth.out("inspect", cid))[0]["Mounts"][0]["Name"]
    assert name in berth.out("volume", "ls", "-q").split()
    berth.out("rm", "-v", cid)
    assert name not in berth.out("volume", "ls", "-q").split()


def test_export_is_a_tar_of_the_rootfs(berth, tmp_path):
    cid = berth.out("create", "busybox", "true").strip()
    out = tmp_path / "fs.tar"
    berth.out("export", "-o", str(out), cid)
    names = tarfile.open(out).getnames()
    assert "bin/busybox" in names
    r = berth("export", cid, input=b"")
    assert tarfile.open(fileobj=io.BytesIO(r.stdout.encode() if isinstance(r.stdout, str) else r.stdout))


def test_image_rm_refuses_an_image_a_container_uses(berth):
    tag = f"inuse{os.getpid()}:1"
    berth.out("image", "tag", "busybox", tag)
    cid = berth.out("run", "-d", "--network", "none", tag, "sleep", "60").strip()
    r = berth("image", "rm", tag)
    # the tag may go, but never the image and layers the container runs on
    assert berth("exec", cid, "ls", "/bin/busybox").returncode == 0
    r = berth("image", "rm", berth.status(cid) and __import__("json").loads(berth.out("inspect", cid))[0]["Image"])
    assert r.returncode == 125 and "use" in r.stderr, r.stderr
    assert berth("exec", cid, "ls", "/bin/busybox").returncode == 0

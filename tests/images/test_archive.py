"""save/load (docker-archive and OCI layout), import and export."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest
from image_helpers import assert_one_line_error, berth

from berth.errors import UsageError
from berth.image.archive import import_rootfs, load, merged_tree, save
from berth.image.blobs import DigestMismatch
from berth.image.store import ImageStore


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive", "oci-dir"])
def test_save_load_roundtrip_keeps_id_digest_and_tag(bb_store, tmp_path, fmt):
    src = bb_store.get("busybox")
    bb_store.tag("busybox", "mine/bb:2")
    out = tmp_path / ("dir" if fmt == "oci-dir" else "img.tar")
    save(bb_store, ["busybox", "mine/bb:2"], str(out), fmt=fmt)
    other = ImageStore(tmp_path / "o")
    lines = load(other, str(out))
    img = other.get("busybox")
    assert (img.id, img.digest) == (src.id, src.digest)
    assert sorted(img.repo_tags) == ["busybox:latest", "mine/bb:2"]
    assert lines[0].startswith("Loaded image: ")
    assert other.fsck() == []


def test_skopeo_reads_berths_archives(bb_store, tmp_path):
    save(bb_store, ["busybox"], str(tmp_path / "d.tar"))
    img = bb_store.get("busybox")
    # docker-archive layers are named by content (diff_id), OCI ones by blob digest
    for transport, want in (("docker-archive", img.diff_ids[0]), ("oci-archive", img.layers[0]["digest"])):
        out = subprocess.run(["skopeo", "inspect", f"{transport}:{tmp_path / 'd.tar'}"],
                             capture_output=True, text=True, check=True).stdout
        assert json.loads(out)["Layers"] == [want]


def test_load_of_a_skopeo_oci_layout(bb_store, tmp_path):
    save(bb_store, ["busybox"], str(tmp_path / "d.tar"))
    (tmp_path / "lay").mkdir()
    subprocess.run(["skopeo", "copy", f"docker-archive:{tmp_path / 'd.tar'}", f"oci:{tmp_path}/lay/img:x"],
                   capture_output=True, check=True)
    other = ImageStore(tmp_path / "o")
    # the layout is one level down, as the acceptance check loads it
    lines = load(other, str(tmp_path / "lay"))
    assert lines and other.list()[0].config["config"]["Cmd"] == ["sh"]


def test_load_of_a_docker_archive_with_plain_layer_tars(tmp_path):
    """What ``docker save`` (before 25) writes: <id>/layer.tar uncompressed, config <hex>.json."""
    import hashlib

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("hello")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
    layer = buf.getvalue()
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                      "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    chex = hashlib.sha256(cfg).hexdigest()
    files = {f"{chex}.json": cfg, "abc/layer.tar": layer, "abc/VERSION": b"1.0",
             "manifest.json": json.dumps([{"Config": f"{chex}.json", "RepoTags": ["old:style"],
                                           "Layers": ["abc/layer.tar"]}]).encode()}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for n, d in files.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(d)
            tf.addfile(ti, io.BytesIO(d))
    (tmp_path / "a.tar").write_bytes(out.getvalue())
    s = ImageStore(tmp_path / "r")
    assert load(s, str(tmp_path / "a.tar")) == ["Loaded image: old:style"]
    assert s.get("old:style").id == "sha256:" + chex


def test_load_rejects_a_tampered_blob_and_commits_nothing(bb_store, tmp_path):
    d = tmp_path / "lay"
    save(bb_store, ["busybox"], str(d), fmt="oci-dir")
    layer = d / "blobs" / "sha256" / bb_store.get("busybox").layers[0]["digest"][7:]
    data = bytearray(layer.read_bytes())
    data[100] ^= 0xFF
    layer.write_bytes(bytes(data))
    other = ImageStore(tmp_path / "o")
    with pytest.raises(DigestMismatch):
        load(other, str(d))
    assert other.list() == []


def test_load_refuses_paths_outside_the_archive(tmp_path):
    out = io.BytesIO()
    mani = json.dumps([{"Config": "../../../../etc/passwd", "RepoTags": ["x:1"], "Layers": []}]).encode()
    with tarfile.open(fileobj=out, mode="w") as tf:
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(mani)
        tf.addfile(ti, io.BytesIO(mani))
    (tmp_path / "evil.tar").write_bytes(out.getvalue())
    s = ImageStore(tmp_path / "r")
    with pytest.raises(UsageError, match="outside the archive"):
        load(s, str(tmp_path / "evil.tar"))
    assert s.list() == []


def test_load_of_garbage_is_one_line(tmp_path):
    (tmp_path / "junk").write_bytes(os.urandom(1000))
    r = berth(tmp_path / "r", "load", "-i", str(tmp_path / "junk"))
    assert_one_line_error(r, "not a tar archive")
    r = berth(tmp_path / "r", "load", "-i", str(tmp_path / "missing.tar"))
    assert_one_line_error(r, "no such file")


def test_import_of_a_plain_rootfs_tar(busybox_rootfs, tmp_path):
    t = tmp_path / "plain.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(t), "."], check=True)
    s = ImageStore(tmp_path / "r")
    img = import_rootfs(s, str(t), "chk-plain", changes=['CMD ["/bin/sh"]', "ENV A=1", "WORKDIR /tmp"])
    assert s.get("chk-plain").id == img.id
    assert img.config["config"] == {"Cmd": ["/bin/sh"], "Env": ["A=1"], "WorkingDir": "/tmp"}
    r = berth(tmp_path / "r", "import", str(t), "via-cli:1", check=True)
    assert r.stdout.decode().strip().startswith("sha256:")
    r = berth(tmp_path / "r", "import", "-", "from-stdin", input=t.read_bytes(), check=True)
    assert s.get("from-stdin").diff_ids == img.diff_ids


def test_import_of_a_non_tar_fails_with_one_line_and_stores_nothing(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"this is not a tar" * 100)
    r = berth(tmp_path / "r", "import", str(tmp_path / "x.tar"), "bad")
    assert_one_line_error(r, "not a valid tar")
    s = ImageStore(tmp_path / "r")
    assert s.list() == []
    assert not s.blob_dir.exists() or list(s.blob_dir.iterdir()) == []
    r = berth(tmp_path / "r", "import", str(tmp_path / "x.tar"), "BAD NAME")
    assert_one_line_error(r, "invalid")


def test_import_rejects_unknown_change(tmp_path, busybox_rootfs):
    t = tmp_path / "p.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(t), "."], check=True)
    with pytest.raises(UsageError, match="RUN"):
        import_rootfs(ImageStore(tmp_path / "r"), str(t), "x", changes=["RUN rm -rf /"])


def test_merged_tree_applies_whiteouts_and_opaque_dirs(tmp_path):
    low, up = tmp_path / "l", tmp_path / "u"
    for d in ("etc", "opq", "gone"):
        (low / d).mkdir(parents=True)
    (low / "etc" / "keep").write_text("k")
    (low / "etc" / "del").write_text("d")
    (low / "opq" / "old").write_text("o")
    (low / "gone" / "x").write_text("x")
    (up / "etc").mkdir(parents=True)
    (up / "opq").mkdir()
    (up / "opq" / "new").write_text("n")
    os.setxattr(up / "opq", "trusted.overlay.opaque", b"y")
    os.mknod(up / "etc" / "del", 0o600 | 0o020000, 0)   # overlay whiteout
    (up / ".wh.gone").write_text("")                      # OCI whiteout left as a file
    tree = merged_tree([low, up])
    assert "etc/keep" in tree and "etc/del" not in tree
    assert "opq/new" in tree and "opq/old" not in tree
    assert "gone" not in tree and "gone/x" not in tree
    assert tree["opq"] == str(up / "opq")


def test_export_writes_the_flattened_filesystem(bb_store, tmp_path):
    pytest.importorskip("berth.image.extract")
    r = berth(bb_store.root, "image", "export", "busybox", "-o", str(tmp_path / "fs.tar"), check=True)
    with tarfile.open(tmp_path / "fs.tar") as tf:
        names = set(tf.getnames())
    assert {"bin/busybox", "bin/sh", "etc/passwd"} <= names
    assert r.stdout == b""


def test_load_of_a_docker_archive_written_by_skopeo(bb_store, tmp_path):
    """skopeo's docker-archive is what ``docker save`` writes: plain layer tars, manifest.json."""
    save(bb_store, ["busybox"], str(tmp_path / "lay"), fmt="oci-dir")
    subprocess.run(["skopeo", "copy", f"oci:{tmp_path / 'lay'}",
                    f"docker-archive:{tmp_path / 'd.tar'}:peer/bb:7"], capture_output=True, check=True)
    other = ImageStore(tmp_path / "o")
    assert load(other, str(tmp_path / "d.tar")) == ["Loaded image: peer/bb:7"]
    img = other.get("peer/bb:7")
    assert img.id == bb_store.get("busybox").id
    assert img.diff_ids == bb_store.get("busybox").diff_ids

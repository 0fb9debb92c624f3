"""The content store: verified blobs, atomic index, refcounted removal, fsck, locks."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from berth.errors import Conflict, UsageError
from berth.image import mediatypes as mt
from berth.image.blobs import DigestMismatch, digest_bytes
from berth.image.bootstrap import bootstrap_busybox
from berth.image.store import ImageNotFound, ImageStore


def make_layer(store: ImageStore, files: dict[str, bytes]) -> dict:
    """A gzip layer blob holding ``files``; returns its descriptor with diff_id."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    plain = buf.getvalue()
    desc = store.put_blob(gzip.compress(plain, mtime=0), mt.OCI_LAYER_GZIP)
    desc["diff_id"] = digest_bytes(plain)
    return desc


def make_image(store: ImageStore, layers: list[dict], tags: list[str], cmd: str = "sh"):
    cfg = {"created": "2024-01-01T00:00:00Z", "config": {"Cmd": [cmd]}}
    return store.write_image(cfg, layers, tags)


def blob_names(store: ImageStore) -> set[str]:
    return {p.name for p in store.blob_dir.iterdir()} if store.blob_dir.exists() else set()


def test_put_blob_rejects_wrong_digest_and_keeps_nothing(store):
    with pytest.raises(DigestMismatch):
        store.put_blob(b"hello", "x", expected_digest=digest_bytes(b"other"))
    assert blob_names(store) == set()
    assert list(store.tmp_dir.iterdir()) == []


def test_put_blob_rejects_wrong_size(store):
    with pytest.raises(DigestMismatch, match="size"):
        store.put_blob(b"hello", "x", expected_digest=digest_bytes(b"hello"), expected_size=4)
    assert blob_names(store) == set()


def test_write_image_and_lookup_by_tag_id_prefix_and_digest(store):
    layer = make_layer(store, {"a": b"1"})
    img = make_image(store, [layer], ["app:1"])
    assert store.get("app:1").id == img.id
    assert store.get(img.id).id == img.id
    assert store.get(img.short_id).id == img.id
    assert store.get(img.id[7:11]).id == img.id
    assert img.repo_tags == ["app:1"]
    assert img.diff_ids == [layer["diff_id"]]
    assert img.config["config"]["Cmd"] == ["sh"]
    assert img.config["rootfs"]["diff_ids"] == [layer["diff_id"]]
    manifest = json.loads(store.read_blob(img.digest))
    assert manifest["mediaType"] == mt.OCI_MANIFEST and "diff_id" not in manifest["layers"][0]
    with pytest.raises(ImageNotFound, match="bootstrap busybox"):
        store.get("app:2")


def test_invalid_reference_is_rejected_before_touching_disk(tmp_path):
    s = ImageStore(tmp_path / "nothing")
    with pytest.raises(UsageError):
        s.get("Bad Ref!")
    with pytest.raises(UsageError):
        s.tag("x", "a/B:t!")
    assert not (tmp_path / "nothing").exists()


def test_rmi_keeps_a_layer_shared_with_another_image(store):
    shared = make_layer(store, {"base": b"shared"})
    a = make_image(store, [shared, make_layer(store, {"a": b"a"})], ["a:1"])
    b = make_image(store, [shared, make_layer(store, {"b": b"b"})], ["b:1"], cmd="b")
    store.remove("a:1")
    assert store.has_blob(shared["digest"])
    assert not store.has_blob(a.layers[1]["digest"])
    assert not store.has_blob(a.id)
    assert store.get("b:1").id == b.id
    store.remove("b:1")
    assert blob_names(store) == set()


def test_rmi_of_one_tag_keeps_the_image_until_its_last_name(store):
    img = make_image(store, [make_layer(store, {"a": b"1"})], ["x:1", "y:2"])
    assert store.remove("x:1") == ["Untagged: x:1"]
    assert store.get("y:2").id == img.id
    out = store.remove("y:2")
    assert out[-1] == f"Deleted: {img.id}"
    with pytest.raises(ImageNotFound):
        store.get(img.id)


def test_rmi_by_id_with_several_tags_needs_force(store):
    img = make_image(store, [make_layer(store, {"a": b"1"})], ["x:1", "y:2"])
    with pytest.raises(Conflict, match="multiple repositories"):
        store.remove(img.short_id)
    store.remove(img.short_id, force=True)
    assert store.list() == []


def test_image_in_use_by_a_container_is_never_removed(store):
    layer = make_layer(store, {"a": b"1"})
    img = make_image(store, [layer], ["used:1"])
    store.set_in_use_hook(lambda: {img.id})
    with pytest.raises(Conflict, match="used by a container"):
        store.remove("used:1")
    with pytest.raises(Conflict):
        store.remove(img.id)
    # force only untags: the layer the container runs on stays
    store.remove("used:1", force=True)
    assert store.get(img.id).repo_tags == []
    assert store.has_blob(layer["digest"])
    assert store.prune(all_images=True)[0] == []
    assert store.has_blob(layer["digest"])
    store.set_in_use_hook(lambda: ())
    gone, freed = store.prune()
    assert gone == [img.id] and freed > 0
    assert blob_names(store) == set()


def test_prune_removes_only_dangling_without_all(store):
    keep = make_image(store, [make_layer(store, {"k": b"k"})], ["keep:1"])
    old = make_image(store, [make_layer(store, {"o": b"o"})], ["t:1"], cmd="old")
    make_image(store, [make_layer(store, {"n": b"n"})], ["t:1"], cmd="new")  # t:1 moves
    assert store.get(old.id).repo_tags == []
    gone, _ = store.prune()
    assert gone == [old.id]
    assert store.get("keep:1").id == keep.id
    gone, _ = store.prune(all_images=True)
    assert len(gone) == 2 and store.list() == []


def test_fsck_detects_a_flipped_byte_and_repair_removes_it(store):
    layer = make_layer(store, {"f": os.urandom(4096)})
    img = make_image(store, [layer], ["f:1"])
    assert store.fsck() == []
    p = store.blob_path(layer["digest"])
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    problems = store.fsck()
    assert any("corrupt blob " + layer["digest"] in x for x in problems)
    assert p.exists()  # report only
    store.fsck(repair=True)
    assert not p.exists()
    with pytest.raises(ImageNotFound):
        store.get(img.id)
    assert store.fsck() == []



def test_bootstrap_busybox_is_deterministic(tmp_path):
    a = bootstrap_busybox(ImageStore(tmp_path / "a"))
    b = bootstrap_busybox(ImageStore(tmp_path / "b"))
    assert (a.id, a.digest) == (b.id, b.digest)
    assert a.repo_tags == ["busybox:latest"]
    assert a.config["config"]["Cmd"] == ["sh"]
    assert any(e.startswith("PATH=") for e in a.config["config"]["Env"])
    assert len(a.layers) == 1


def test_concurrent_writers_in_threads_leave_a_consistent_index(store):
    def work(i):
        layer = make_layer(store, {f"f{i}": str(i).encode()})
        return make_image(store, [layer], [f"c{i}:1"], cmd=str(i)).id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(work, range(16)))
    assert sorted(i.id for i in store.list()) == sorted(ids)
    assert store.fsck() == []


_WRITER = r"""
import sys, time
from berth.image.store import ImageStore
class Slow:
    def __init__(self): self.n = 0
    def read(self, n=-1):
        self.n += 1
        if self.n == 3:
            print("writing", flush=True)
        time.sleep(0.01)
        return b"x" * 65536
s = ImageStore(sys.argv[1])
s.put_blob(Slow(), "application/octet-stream")
"""


def test_kill_9_while_writing_a_blob_leaves_nothing_visible(store, root):
    keep = make_image(store, [make_layer(store, {"k": b"k"})], ["keep:1"])
    before = blob_names(store)
    p = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"writing\n"
        time.sleep(0.05)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert blob_names(store) == before
    assert [i.id for i in store.list()] == [keep.id]
    assert list(store.tmp_dir.iterdir())  # the partial file is only in tmp/
    store.collect()
    assert list(store.tmp_dir.iterdir()) == []
    assert store.get("keep:1").id == keep.id


def test_concurrent_bootstrap_processes_agree(root):
    cmd = [sys.executable, "-c",
           "import sys; from berth.image.store import ImageStore; "
           "from berth.image.bootstrap import bootstrap_busybox; "
           "print(bootstrap_busybox(ImageStore(sys.argv[1])).id)", str(root)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE) for _ in range(4)]
    outs = {p.communicate(timeout=60)[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outs) == 1
    s = ImageStore(root)
    assert len(s.list()) == 1 and s.fsck() == []


def test_disk_usage_counts_blobs(bb_store):
    du = bb_store.disk_usage()
    assert du["images"] == 1 and du["active"] == 0
    assert du["size"] >= bb_store.get("busybox").size > 0
    assert du["reclaimable"] > 0


def test_layer_dirs_unpack_once_and_are_shared_between_images(store):
    pytest.importorskip("berth.image.extract")
    shared = make_layer(store, {"etc/base": b"base"})
    a = make_image(store, [shared, make_layer(store, {"a": b"a"})], ["a:1"])
    b = make_image(store, [shared], ["b:1"], cmd="b")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda im: store.layer_dirs(im), [a, b, a, b]))
    assert results[0][0] == results[1][0] == store.layer_path(shared["diff_id"])
    assert (results[0][0] / "etc" / "base").read_bytes() == b"base"
    assert (results[0][1] / "a").read_bytes() == b"a"
    assert sorted(p.name for p in store.layer_dir.iterdir()) == sorted(
        d[7:] for d in {shared["diff_id"], a.diff_ids[1]})
    store.remove("a:1")
    assert [p.name for p in store.layer_dir.iterdir()] == [shared["diff_id"][7:]]


def test_layer_whose_content_does_not_match_its_diff_id_is_not_unpacked(store):
    pytest.importorskip("berth.image.extract")
    layer = make_layer(store, {"x": b"1"})
    layer["diff_id"] = digest_bytes(b"something else")
    img = make_image(store, [layer], ["lie:1"])
    with pytest.raises(DigestMismatch, match="diff_id"):
        store.layer_dirs(img)
    assert not store.layer_path(layer["diff_id"]).exists()
    assert list(store.tmp_dir.iterdir()) == []


def test_an_image_with_a_lost_manifest_does_not_break_listing(store):
    good = make_image(store, [make_layer(store, {"g": b"g"})], ["good:1"])
    bad = make_image(store, [make_layer(store, {"b": b"b"})], ["bad:1"], cmd="bad")
    store.blob_path(bad.digest).unlink()
    assert [i.id for i in store.list()] == [good.id]
    assert any(f"missing blob {bad.digest}" in p for p in store.fsck())

"""A container rootfs: overlayfs over extracted layers, or the copy fallback."""

import io
import os
import subprocess

import pytest
from layer_tars import LayerTar

from berth.image.extract import extract_layer
from berth.image.rootfs import COPY_MARKER, mount_rootfs, unmount_rootfs


def _mounted(path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


@pytest.fixture
def container_dir(tmp_path):
    d = tmp_path / f"ctr-{os.getpid()}"
    d.mkdir()
    yield d
    unmount_rootfs(d)  # even when the test failed


@pytest.fixture
def two_layers(tmp_path):
    base = (
        LayerTar()
        .dir("a")
        .file("a/x", b"x")
        .file("a/y", b"y")
        .dir("o")
        .file("o/old")
        .file("keep", b"k")
    )
    top = (
        LayerTar()
        .dir("a")
        .file("a/.wh.x")
        .dir("o")
        .file("o/.wh..wh..opq")
        .file("o/new", b"n")
        .file("top")
    )
    dirs = []
    for i, t in enumerate((base, top)):
        extract_layer(io.BytesIO(t.bytes()), tmp_path / f"layer{i}")
        dirs.append(tmp_path / f"layer{i}")
    return dirs


def _check_merged(rootfs):
    assert sorted(os.listdir(rootfs)) == ["a", "keep", "o", "top"]
    assert sorted(os.listdir(rootfs / "a")) == ["y"]
    assert sorted(os.listdir(rootfs / "o")) == ["new"]
    assert (rootfs / "keep").read_bytes() == b"k"


def test_rootfs_overlay_merges_whiteouts_and_opaque_dirs(two_layers, container_dir):
    rootfs = mount_rootfs(two_layers, container_dir)
    assert _mounted(rootfs) and not (container_dir / COPY_MARKER).exists()
    _check_merged(rootfs)
    (rootfs / "a/written").write_text("w")
    os.unlink(rootfs / "keep")
    assert (container_dir / "upper/a/written").read_text() == "w"
    assert (two_layers[0] / "keep").exists()  # a lower layer is never written
    assert mount_rootfs(two_layers, container_dir) == rootfs  # idempotent
    unmount_rootfs(container_dir)
    assert not _mounted(rootfs)
    assert sorted(os.listdir(container_dir)) == []
    unmount_rootfs(container_dir)  # idempotent


def test_rootfs_copy_fallback_applies_whiteouts(two_layers, container_dir, monkeypatch):
    monkeypatch.setenv("BERTH_NO_OVERLAY", "1")
    rootfs = mount_rootfs(two_layers, container_dir)
    assert not _mounted(rootfs) and (container_dir / COPY_MARKER).exists()
    _check_merged(rootfs)
    assert not any(p.is_char_device() for p in rootfs.rglob("*"))
    unmount_rootfs(container_dir)
    assert os.listdir(container_dir) == []


def test_rootfs_many_long_layer_paths_exceed_a_page_and_still_mount(tmp_path, container_dir):
    layers = []
    for i in range(70):
        d = tmp_path / ("layer-with-a-rather-long-directory-name-" + "x" * 20 + f"-{i:03d}")
        extract_layer(io.BytesIO(LayerTar().file(f"f{i}", str(i).encode()).bytes()), d)
        layers.append(d)
    assert len(":".join(map(str, layers))) > 4096
    rootfs = mount_rootfs(layers, container_dir)
    assert _mounted(rootfs)
    assert len(os.listdir(rootfs)) == 70 and (rootfs / "f69").read_text() == "69"


def test_rootfs_of_an_image_without_layers(container_dir):
    rootfs = mount_rootfs([], container_dir)
    assert os.listdir(rootfs) == []
    (rootfs / "new").write_text("n")
    unmount_rootfs(container_dir)
    assert os.listdir(container_dir) == []


def test_rootfs_layer_paths_with_overlay_separators(tmp_path, container_dir):
    # ':' and ',' separate overlayfs options: such paths go through short relative names
    layer = tmp_path / "odd:name,x"
    extract_layer(io.BytesIO(LayerTar().file("f", b"odd").bytes()), layer)
    rootfs = mount_rootfs([layer], container_dir)
    assert _mounted(rootfs) and (rootfs / "f").read_text() == "odd"


def _options(path) -> list[str]:
    """The mount's super options (the last field of its mountinfo line)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(path):
                return fields[-1].split(",")
    return []


def test_volatile_rootfs_is_mounted_volatile_and_survives_a_crash_leftover(two_layers, container_dir):
    # --rm containers skip the upper layer's sync; a volatile mount that was
    # never unmounted (a crash) leaves work/work/incompat/volatile behind,
    # which makes overlayfs refuse the dirs: mount_rootfs clears it
    rootfs = mount_rootfs(two_layers, container_dir, volatile=True)
    assert {"volatile", "fsync=volatile"} & set(_options(rootfs))  # (newer kernels show the latter)
    _check_merged(rootfs)
    subprocess.run(["umount", str(rootfs)], check=True)  # the dirs stay, as after a crash
    stale = container_dir / "work" / "work" / "incompat" / "volatile"
    stale.mkdir(parents=True, exist_ok=True)
    rootfs = mount_rootfs(two_layers, container_dir, volatile=True)
    assert os.path.ismount(rootfs) and not (container_dir / COPY_MARKER).exists()
    _check_merged(rootfs)
    unmount_rootfs(container_dir)
    rootfs = mount_rootfs(two_layers, container_dir)
    assert not {"volatile", "fsync=volatile"} & set(_options(rootfs))


def test_remove_tree_removes_everything_and_follows_no_symlink(tmp_path):
    from berth.fs import remove_tree

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_text("x")
    (tree / "locked").mkdir(mode=0o000)  # as overlayfs's work/work
    (tree / "locked").chmod(0o000)
    os.symlink(outside, tree / "link-to-dir")  # planted in an upper layer
    os.symlink(outside / "keep", tree / "a" / "link-to-file")
    os.mkfifo(tree / "fifo")
    remove_tree(tree)
    assert not tree.exists()
    assert (outside / "keep").read_text() == "k"  # nothing followed out of the tree
    remove_tree(tree)  # a missing tree is fine
    remove_tree(tmp_path / "no" / "such")  # nor its parent

"""Safe layer extraction: each hostile tar is rejected or neutralised."""

import io
import os
import stat
import tarfile

import pytest

from berth.image import extract as ex
from berth.image.extract import LayerError, Limits, apply_layer_flat, extract_layer


def _leftovers(box):
    """Everything in the box but the expected destination: must stay empty."""
    return sorted(p.name for p in box.iterdir() if p.name not in ("outside", "dest"))


def _meta(p):
    st = os.stat(p)
    return (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime)


def test_layer_roundtrip_keeps_owner_mode_mtime_links(box, layer):
    t = (
        layer()
        .dir("etc", mode=0o750, uid=12, gid=34, mtime=1_500_000_000)
        .file("etc/conf", b"hello", mode=0o640, uid=1000, gid=1001, mtime=1_400_000_000)
        .symlink("etc/link", "conf", uid=7, gid=8)
        .hardlink("etc/hard", "etc/conf")
        .device("fifo", tarfile.FIFOTYPE)
        .dir("empty", mode=0o1777)
    )
    stats = extract_layer(io.BytesIO(t.gz()), box / "dest")
    d = box / "dest"
    assert (d / "etc/conf").read_bytes() == b"hello"
    assert _meta(d / "etc/conf") == (0o640, 1000, 1001, 1_400_000_000)
    assert _meta(d / "etc") == (0o750, 12, 34, 1_500_000_000)
    st = os.stat(d / "etc/conf")
    lst = os.lstat(d / "etc/link")
    assert os.readlink(d / "etc/link") == "conf" and (lst.st_uid, lst.st_gid) == (7, 8)
    assert os.stat(d / "etc/hard").st_ino == st.st_ino
    assert stat.S_ISFIFO(os.lstat(d / "fifo").st_mode)
    assert stat.S_IMODE(os.stat(d / "empty").st_mode) == 0o1777
    assert stats.entries == 6
    assert _leftovers(box) == []


@pytest.mark.parametrize("codec", ["bytes", "gz", "zst"])
def test_layer_compression_detected_by_magic(box, layer, codec, tmp_path):
    data = getattr(layer().file("a/b", b"data" * 1000), codec)()
    src = tmp_path / "layer.bin"
    src.write_bytes(data)
    extract_layer(src, box / "dest")
    assert (box / "dest/a/b").read_bytes() == b"data" * 1000


def test_layer_dotdot_member_is_rejected_and_rolled_back(box, layer):
    t = layer().file("ok", b"1").file("../outside/pwned", b"x")
    with pytest.raises(LayerError, match=r"escapes the layer"):
        extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert not (box / "dest").exists()
    assert list((box / "outside").iterdir()) == []
    assert _leftovers(box) == []


def test_layer_absolute_member_lands_inside_layer(box, layer):
    target = box / "outside" / "abs"
    t = layer().file(str(target), b"x")
    extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert not target.exists()
    assert (box / "dest" / str(target).lstrip("/")).read_bytes() == b"x"


@pytest.mark.parametrize("link", ["ABS", "../outside", "../../../../../../../../../..{ABS}"])
def test_layer_symlink_cannot_redirect_write_outside_rootfs(box, layer, link):
    outside = str(box / "outside")
    t = layer().symlink("evil", link.replace("{ABS}", outside).replace("ABS", outside))
    t.file("evil/pwned", b"x")
    try:
        extract_layer(io.BytesIO(t.bytes()), box / "dest")
    except LayerError:
        assert not (box / "dest").exists()
    assert list((box / "outside").iterdir()) == []


def test_layer_symlink_to_root_keeps_writes_in_root(box, layer):
    # "etc -> /" then "etc/passwd": the kernel resolves "/" as the layer root
    t = layer().symlink("etc", "/").file("etc/passwd", b"mine")
    extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert (box / "dest/passwd").read_bytes() == b"mine"


def test_layer_symlink_then_same_name_file_replaces_link_not_target(box, layer):
    victim = box / "outside" / "victim"
    victim.write_bytes(b"orig")
    t = layer().symlink("f", str(victim)).file("f", b"new")
    extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert victim.read_bytes() == b"orig"
    assert (box / "dest/f").read_bytes() == b"new" and not (box / "dest/f").is_symlink()


def test_layer_hardlink_outside_layer_is_rejected(box, layer):
    victim = box / "outside" / "victim"
    victim.write_bytes(b"secret")
    for target in ("../outside/victim", str(victim)):
        t = layer().hardlink("h", target)
        with pytest.raises(LayerError):
            extract_layer(io.BytesIO(t.bytes()), box / "dest")
        assert not (box / "dest").exists()
    assert os.stat(victim).st_nlink == 1


def test_layer_hardlink_through_symlink_stays_in_layer(box, layer):
    victim = box / "outside" / "victim"
    victim.write_bytes(b"secret")
    t = layer().symlink("s", str(box / "outside")).hardlink("h", "s/victim")
    with pytest.raises(LayerError, match="does not exist"):
        extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert os.stat(victim).st_nlink == 1


def test_layer_device_nodes_skipped_by_default_kept_when_allowed(box, layer):
    t = layer().device("dev/mem", tarfile.CHRTYPE, 1, 1).device("dev/sda", tarfile.BLKTYPE, 8, 0)
    t.hardlink("dev/mem2", "dev/mem")
    data = t.bytes()
    stats = extract_layer(io.BytesIO(data), box / "dest")
    assert not os.path.lexists(box / "dest/dev/mem") and not os.path.lexists(box / "dest/dev/sda")
    assert sorted(stats.skipped_devices) == ["dev/mem", "dev/mem2", "dev/sda"]
    extract_layer(io.BytesIO(data), box / "dest2", limits=Limits(allow_devices=True))
    st = os.lstat(box / "dest2/dev/mem")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 1


def test_layer_setuid_setgid_stripped_by_default(box, layer):
    t = (
        layer()
        .file("su", b"x", mode=0o4755)
        .file("wall", b"y", mode=0o2755)
        .dir("shared", mode=0o2775)
    )
    data = t.bytes()
    stats = extract_layer(io.BytesIO(data), box / "dest")
    assert stat.S_IMODE(os.stat(box / "dest/su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(box / "dest/wall").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(box / "dest/shared").st_mode) == 0o2775  # dirs: inheritance only
    assert sorted(stats.stripped_setuid) == ["su", "wall"]
    extract_layer(io.BytesIO(data), box / "kept", limits=Limits(keep_setuid=True))
    assert stat.S_IMODE(os.stat(box / "kept/su").st_mode) == 0o4755


def test_layer_cannot_forge_overlay_xattrs(box, layer):
    t = layer().dir("d", xattrs={"trusted.overlay.opaque": "y", "user.note": "hi"})
    t.file(
        "f",
        b"x",
        xattrs={"security.capability": "\x01\x00\x00\x02", "trusted.overlay.redirect": "/x"},
    )
    stats = extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert os.listxattr(box / "dest/d") == ["user.note"]
    assert os.listxattr(box / "dest/f") == []
    assert len(stats.dropped_xattrs) == 3


def test_layer_whiteouts_become_overlay_marks(box, layer):
    t = (
        layer()
        .dir("a")
        .file("a/.wh.gone")
        .file("a/kept", b"k")
        .file("a/.wh.kept")
        .dir("b")
        .file("b/.wh..wh..opq")
    )
    t.file(".wh..wh.plnk")
    stats = extract_layer(io.BytesIO(t.bytes()), box / "dest")
    st = os.lstat(box / "dest/a/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (box / "dest/a/kept").read_bytes() == b"k"  # same-layer file is not whited out
    assert os.getxattr(box / "dest/b", "trusted.overlay.opaque") == b"y"
    assert not any(p.name.startswith(".wh.") for p in (box / "dest").rglob("*"))
    assert stats.whiteouts == ["a/gone", "a/kept"] and stats.opaque_dirs == ["b"]


@pytest.mark.parametrize(
    "name", [".wh.", "a/.wh.", ".wh..", ".wh...", ".wh.../x", "a/.wh.b/c", ".wh.x/y"]
)
def test_layer_hostile_whiteout_names_rejected(box, layer, name):
    t = layer().dir("a").file(name)
    with pytest.raises(LayerError):
        extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert _leftovers(box) == [] and not (box / "dest").exists()


def test_apply_flat_deletes_lower_entries_only(tmp_path, layer):
    root = tmp_path / "root"
    apply_layer_flat(
        io.BytesIO(layer().dir("a").file("a/x").file("a/y").dir("o").file("o/old").bytes()),
        root.mkdir() or root,
    )
    t = (
        layer()
        .file("a/.wh.x")
        .file("o/new", b"n")
        .file("o/.wh..wh..opq")
        .file("a/z")
        .file("a/.wh.z")
    )
    apply_layer_flat(io.BytesIO(t.bytes()), root)
    assert sorted(os.listdir(root / "a")) == ["y", "z"]
    assert sorted(os.listdir(root / "o")) == ["new"]


def test_layer_decompression_bomb_stopped_by_byte_limit(box, layer):
    bomb = layer().file("zeros", b"\0" * (4 << 20)).gz()
    assert len(bomb) < 64 << 10
    with pytest.raises(LayerError, match="larger than the limit"):
        extract_layer(io.BytesIO(bomb), box / "dest", limits=Limits(max_bytes=1 << 20))
    assert _leftovers(box) == []


def test_layer_many_tiny_files_stopped_by_entry_limit(box, layer):
    t = layer()
    for i in range(300):
        t.file(f"f{i}", b"")
    with pytest.raises(LayerError, match="more than 200 entries"):
        extract_layer(io.BytesIO(t.bytes()), box / "dest", limits=Limits(max_entries=200))
    assert _leftovers(box) == []
    assert Limits().max_entries < 1_000_000  # a million tiny files is refused by default


def test_layer_depth_and_length_limits(box, layer):
    deep = "/".join(["d"] * 40)
    with pytest.raises(LayerError, match="deeper than 32"):
        extract_layer(
            io.BytesIO(layer().file(deep).bytes()), box / "dest", limits=Limits(max_depth=32)
        )
    with pytest.raises(LayerError, match="over the limit of 100"):
        extract_layer(
            io.BytesIO(layer().file("x" * 200).bytes()),
            box / "dest",
            limits=Limits(max_path_len=100),
        )


def test_layer_huge_pax_header_refused_before_reading(box, layer):
    t = layer().file("f", b"x", xattrs={"user.big": "v" * (2 << 20)})
    with pytest.raises(LayerError, match="header of"):
        extract_layer(io.BytesIO(t.bytes()), box / "dest")


@pytest.mark.parametrize("codec", ["gz", "zst"])
def test_layer_truncated_compressed_stream_is_an_error(box, layer, codec):
    data = getattr(layer().file("a", os.urandom(200_000)).file("b", b"x"), codec)()
    for cut in (len(data) // 2, len(data) - 4):
        with pytest.raises(LayerError, match="corrupt or truncated|truncated"):
            extract_layer(io.BytesIO(data[:cut]), box / "dest")
        assert _leftovers(box) == [] and not (box / "dest").exists()


def test_layer_corrupt_gzip_is_an_error(box, layer):
    data = bytearray(layer().file("a", os.urandom(50_000)).gz())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(LayerError):
        extract_layer(io.BytesIO(bytes(data)), box / "dest")
    assert _leftovers(box) == []


def test_layer_dest_must_not_exist(box, layer):
    (box / "dest").mkdir()
    with pytest.raises(LayerError, match="already exists"):
        extract_layer(io.BytesIO(layer().file("a").bytes()), box / "dest")


def test_layer_without_openat2_refuses_symlinked_parents(box, layer, monkeypatch):
    monkeypatch.setattr(ex, "HAVE_OPENAT2", False)
    extract_layer(io.BytesIO(layer().dir("a").file("a/b/c", b"1").bytes()), box / "ok")
    assert (box / "ok/a/b/c").read_bytes() == b"1"
    t = layer().symlink("evil", str(box / "outside")).file("evil/pwned")
    with pytest.raises(LayerError, match="symlink|not a directory"):
        extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert list((box / "outside").iterdir()) == []


def test_layer_dir_replaces_symlink_and_file_replaces_dir(box, layer):
    t = (
        layer()
        .symlink("d", str(box / "outside"))
        .dir("d")
        .file("d/f")
        .dir("x")
        .file("x/y")
        .file("x", b"now a file")
    )
    extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert (box / "dest/d").is_dir() and not (box / "dest/d").is_symlink()
    assert (box / "dest/x").read_bytes() == b"now a file"
    assert list((box / "outside").iterdir()) == []


def test_layer_out_of_range_fields_are_a_layer_error(box, layer):
    t = layer()
    ti = tarfile.TarInfo("f")
    ti.mtime = 10**30  # PAX allows any number; utimensat does not
    t.tf.addfile(ti, io.BytesIO(b""))
    with pytest.raises(LayerError, match="member 'f'"):
        extract_layer(io.BytesIO(t.bytes()), box / "dest")
    t = layer()
    ti = tarfile.TarInfo("g")
    ti.uid = 2**40
    t.tf.addfile(ti, io.BytesIO(b""))
    with pytest.raises(LayerError, match="member 'g'"):
        extract_layer(io.BytesIO(t.bytes()), box / "dest")
    assert _leftovers(box) == []


def test_layer_file_capabilities_dropped_unless_kept(box, layer):
    cap = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # cap_net_raw+ep
    data = layer().file("ping", b"x", mode=0o755, xattrs={"security.capability": cap}).bytes()
    extract_layer(io.BytesIO(data), box / "dest")
    assert "security.capability" not in os.listxattr(box / "dest/ping")
    extract_layer(io.BytesIO(data), box / "kept", limits=Limits(keep_file_caps=True))
    assert os.getxattr(box / "kept/ping", "security.capability") == cap.encode("latin-1")

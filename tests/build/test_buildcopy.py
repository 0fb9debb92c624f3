"""COPY/ADD: docker's destination rules, in-root resolution on both sides."""

import io
import os
import tarfile

import pytest

from berth.image.buildcopy import CopyError, Owner, content_digest, copy, find_sources
from berth.image.ignore import IgnoreRules


@pytest.fixture
def ctx(tmp_path):
    c = tmp_path / "ctx"
    (c / "dir/sub").mkdir(parents=True)
    (c / "dir/sub/f").write_text("f")
    (c / "dir/g.txt").write_text("g")
    (c / "a.txt").write_text("a")
    os.chmod(c / "a.txt", 0o750)
    (c / "secret.key").write_text("s")
    return c


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "usr/bin").mkdir(parents=True)
    (r / "bin").symlink_to("/usr/bin")  # absolute, as in images: must resolve in the rootfs
    fd = os.open(r, os.O_RDONLY | os.O_DIRECTORY)
    yield r, fd
    os.close(fd)


def _copy(ctx, fd, srcs, dest, rules=None, **kw):
    sources = find_sources(ctx, srcs, rules, "COPY")
    kw.setdefault("owner", Owner())
    kw.setdefault("keep_owner", False)
    copy(sources, rules, dest, "/work", fd, **kw)


def test_copy_file_dir_contents_glob_and_workdir(ctx, root):
    r, fd = root
    _copy(ctx, fd, ["a.txt"], "/opt/a-renamed")
    _copy(ctx, fd, ["dir"], "/opt/d/")
    _copy(ctx, fd, ["*.txt", "dir/*.txt"], "rel/")
    assert (r / "opt/a-renamed").read_text() == "a"
    assert os.stat(r / "opt/a-renamed").st_mode & 0o777 == 0o750
    assert sorted(os.listdir(r / "opt/d")) == ["g.txt", "sub"]  # contents, not the dir
    assert sorted(os.listdir(r / "work/rel")) == ["a.txt", "g.txt"]


def test_copy_through_image_symlink_stays_in_rootfs(ctx, root, tmp_path):
    r, fd = root
    _copy(ctx, fd, ["a.txt"], "/bin/")
    assert (r / "usr/bin/a.txt").read_text() == "a"
    assert not os.path.exists("/usr/bin/a.txt")


def test_copy_source_symlink_cannot_read_host_files(ctx, root):
    r, fd = root
    (ctx / "escape").symlink_to("/etc")
    with pytest.raises(CopyError, match="no such file"):
        _copy(ctx, fd, ["escape/passwd"], "/x")
    with pytest.raises(CopyError, match="no such file"):
        _copy(ctx, fd, ["../../../etc/passwd"], "/x")
    assert not (r / "x").exists()


def test_copy_respects_ignore_file_and_exceptions(ctx, root):
    r, fd = root
    rules = IgnoreRules(["*.key", "dir/sub", "!dir/sub/f"])
    _copy(ctx, fd, ["."], "/all/", rules)
    assert sorted(os.listdir(r / "all")) == ["a.txt", "dir"]
    assert (r / "all/dir/sub/f").read_text() == "f"
    with pytest.raises(CopyError):
        _copy(ctx, fd, ["secret.key"], "/x", rules)


def test_copy_chown_and_owner_defaults(ctx, root):
    r, fd = root
    os.chown(ctx / "a.txt", 1234, 1234)
    _copy(ctx, fd, ["a.txt"], "/ctx-owned")
    assert (os.stat(r / "ctx-owned").st_uid, os.stat(r / "ctx-owned").st_gid) == (0, 0)
    _copy(ctx, fd, ["a.txt"], "/newdir/chowned", owner=Owner(7, 8))
    assert (os.stat(r / "newdir/chowned").st_uid, os.stat(r / "newdir").st_uid) == (7, 7)
    _copy(ctx, fd, ["a.txt"], "/kept", keep_owner=True)
    assert os.stat(r / "kept").st_uid == 1234


def test_add_unpacks_local_tar_safely(ctx, root):
    r, fd = root
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in ("inner/file", "../escape"):
            ti = tarfile.TarInfo(name)
            ti.size = 1
            tf.addfile(ti, io.BytesIO(b"x"))
    (ctx / "good.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(CopyError, match="escapes"):
        _copy(ctx, fd, ["good.tar.gz"], "/unpacked", unpack=True)
    assert not (r.parent / "escape").exists()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("inner/file")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    (ctx / "plain.tar").write_bytes(buf.getvalue())
    _copy(ctx, fd, ["plain.tar"], "/unpacked", unpack=True)
    assert (r / "unpacked/inner/file").read_text() == "x"
    _copy(ctx, fd, ["plain.tar"], "/notunpacked.tar")  # COPY never unpacks
    assert (r / "notunpacked.tar").read_bytes() == buf.getvalue()


def test_content_digest_changes_with_content_not_mtime(ctx):
    srcs = find_sources(ctx, ["dir"], None, "COPY")
    d1 = content_digest(srcs, None)
    os.utime(ctx / "dir/g.txt", (1, 1))
    assert content_digest(srcs, None) == d1
    (ctx / "dir/g.txt").write_text("changed")
    assert content_digest(srcs, None) != d1

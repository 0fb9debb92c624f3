"""An overlay upper directory becomes an OCI layer that extracts back the same."""

import gzip
import hashlib
import io
import os
import stat
import tarfile

from berth.image.extract import extract_layer
from berth.image.layerdiff import diff_to_blob, write_diff


def test_upper_whiteouts_and_opaque_become_oci_entries(tmp_path):
    up = tmp_path / "upper"
    (up / "etc").mkdir(parents=True)
    (up / "etc/new").write_text("n")
    os.chmod(up / "etc/new", 0o4755)
    os.link(up / "etc/new", up / "etc/again")
    os.mknod(up / "etc/gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    (up / "opq").mkdir()
    os.setxattr(up / "opq", "trusted.overlay.opaque", b"y")
    os.setxattr(up / "etc/new", "user.k", b"v")
    os.setxattr(up / "etc/new", "trusted.overlay.origin", b"junk")
    os.symlink("new", up / "etc/ln")
    buf = io.BytesIO()
    write_diff(up, buf)
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(buf.getvalue()))}
    assert sorted(members) == [
        "etc",
        "etc/.wh.gone",
        "etc/again",
        "etc/ln",
        "etc/new",
        "opq",
        "opq/.wh..wh..opq",
    ]
    assert members["etc/new"].islnk() or members["etc/again"].islnk()
    new = members["etc/new"] if members["etc/new"].isreg() else members["etc/again"]
    assert new.mode & 0o4000 and new.pax_headers == {"SCHILY.xattr.user.k": "v"}
    # and back: the same overlay marks come out of extraction
    dest = tmp_path / "back"
    extract_layer(io.BytesIO(buf.getvalue()), dest)
    assert os.lstat(dest / "etc/gone").st_rdev == 0 and stat.S_ISCHR(
        os.lstat(dest / "etc/gone").st_mode
    )
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert (dest / "etc/again").read_text() == "n"


def test_diff_blob_digests(tmp_path):
    up = tmp_path / "upper"
    up.mkdir()
    (up / "f").write_text("x")
    diff_id, digest, size, entries = diff_to_blob(up, tmp_path / "blob")
    data = (tmp_path / "blob").read_bytes()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest() and size == len(data)

    assert diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()
    assert entries == 1

"""A layer tar from an overlayfs upper directory (what a build step changed).

overlayfs records deletions in the upper directory as 0:0 character devices
and replaced directories with ``trusted.overlay.opaque=y``; OCI layers say the
same with ``.wh.NAME`` files and ``DIR/.wh..wh..opq`` (image-spec layer.md).
Entries are written in sorted order, owners numeric, hardlinks within the
upper kept as hardlinks; only ``user.*`` and ``security.capability`` xattrs are
carried (overlayfs' own ``trusted.overlay.*`` never leave the host).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from berth.image.extract import OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX

MEDIA_TYPE_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _xattrs(path: str) -> dict[str, str]:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        if name.startswith("user.") or name == "security.capability":
            value = os.getxattr(path, name, follow_symlinks=False)
            out[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    return out


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _whiteout(arcname: str, mtime: float) -> tarfile.TarInfo:
    head, _, name = arcname.rpartition("/")
    ti = tarfile.TarInfo(f"{head}/{WHITEOUT_PREFIX}{name}" if head else WHITEOUT_PREFIX + name)
    ti.mode, ti.mtime = 0o644, int(mtime)
    return ti


def write_diff(upper: Path, out: BinaryIO) -> int:
    """Write the OCI layer tar of ``upper`` to ``out``; return the number of entries."""
    count = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for top, dirs, files in os.walk(upper):
            dirs.sort()
            rel = os.path.relpath(top, upper)
            if rel != "." and _opaque(top):
                ti = tarfile.TarInfo(f"{rel}/{OPAQUE_MARKER}")
                ti.mode, ti.mtime = 0o644, int(os.lstat(top).st_mtime)
                tf.addfile(ti)
                count += 1
            for name in sorted(dirs + files):
                path = os.path.join(top, name)
                arc = name if rel == "." else f"{rel}/{name}"
                st = os.lstat(path)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    tf.addfile(_whiteout(arc, st.st_mtime))
                else:
                    ti = tf.gettarinfo(path, arcname=arc)
                    ti.uname = ti.gname = ""
                    ti.mtime = int(ti.mtime)  # whole seconds: no PAX mtime record
                    ti.pax_headers = _xattrs(path)
                    if ti.isreg():
                        with open(path, "rb") as f:
                            tf.addfile(ti, f)
                    else:
                        tf.addfile(ti)
                count += 1
    return count


class _Hashing:
    """A write-through file object that hashes what passes."""

    def __init__(self, inner: BinaryIO):
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def diff_to_blob(upper: Path, blob_path: Path) -> tuple[str, str, int, int]:
    """gzip the layer tar of ``upper`` into ``blob_path`` in one pass.

    Returns (diff_id, blob digest, blob size, entries).
    """
    with open(blob_path, "wb") as raw:
        outer = _Hashing(raw)
        with gzip.GzipFile(filename="", fileobj=outer, mode="wb", compresslevel=6, mtime=0) as gz:  # type: ignore[arg-type]
            inner = _Hashing(gz)  # type: ignore[arg-type]
            entries = write_diff(upper, inner)  # type: ignore[arg-type]
        raw.flush()
        os.fsync(raw.fileno())
    return inner.digest, outer.digest, outer.size, entries

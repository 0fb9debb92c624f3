"""Making layer blobs: a directory or a tarball in, a gzip'd layer blob out.

Both paths hash the uncompressed tar while writing it (that digest is the
layer's ``diff_id``) and compress in the same pass, so a layer is read once.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path
from typing import BinaryIO

from berth.errors import UsageError
from berth.image import mediatypes as mt
from berth.image.blobs import CHUNK, HashingWriter, new_temp
from berth.image.store import ImageStore, decompressed

GZIP_LEVEL = 6  # docker's default (gzip.DefaultCompression)


class _TeeReader:
    """Reads ``src`` and copies every byte read into ``sink`` (hashing + compressing)."""

    def __init__(self, src: BinaryIO, sink: HashingWriter):
        self.src, self.sink = src, sink

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data:
            self.sink.write(data)
        return data


def _compressed_sink(f: BinaryIO) -> tuple[gzip.GzipFile, HashingWriter, HashingWriter]:
    """(gzip stream, hasher of compressed bytes, hasher of plain bytes feeding the gzip)."""
    outer = HashingWriter(f)
    gz = gzip.GzipFile(filename="", fileobj=outer, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[arg-type]
    inner = HashingWriter(gz)  # type: ignore[arg-type]
    return gz, outer, inner


def _commit(store: ImageStore, f: BinaryIO, tmp: Path, outer: HashingWriter, inner: HashingWriter) -> dict:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    store.commit_temp_blob(tmp, outer.digest, outer.size, None, None, "store layer")
    return {
        "mediaType": mt.OCI_LAYER_GZIP,
        "digest": outer.digest,
        "size": outer.size,
        "diff_id": inner.digest,
    }


def layer_from_dir(store: ImageStore, src: Path, *, mtime: int | None = 0) -> dict:
    """Tar ``src`` (sorted names, owners as on disk, ``mtime`` forced unless None) into a layer.

    With a fixed ``mtime`` the same tree gives the same digest every time.
    Returns the layer descriptor with a ``diff_id`` key.
    """
    src = Path(src)
    with store.gc_lock.shared():  # keeps a collection from sweeping tmp/ under us
        return _layer_from_dir(store, src, mtime)


def _layer_from_dir(store: ImageStore, src: Path, mtime: int | None) -> dict:
    f, tmp = new_temp(store.tmp_dir, "layer-")
    try:
        gz, outer, inner = _compressed_sink(f)
        with tarfile.open(fileobj=inner, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]

            def norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
                if mtime is not None:
                    ti.mtime = mtime
                ti.uname = ti.gname = ""
                return ti

            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                rel = os.path.relpath(dirpath, src)
                for name in sorted(dirnames + filenames):
                    path = os.path.join(dirpath, name)
                    arc = name if rel == "." else f"{rel}/{name}"
                    tf.add(path, arcname=arc, recursive=False, filter=norm)
                # os.walk does not descend into symlinked dirs; they were added as links
        gz.close()
        return _commit(store, f, tmp, outer, inner)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise


def layer_from_tar(store: ImageStore, path: Path) -> dict:
    """A layer from a (gzip, zstd or plain) tarball, checked to be a tar, recompressed."""
    with store.gc_lock.shared():
        return _layer_from_tar(store, path)


def _layer_from_tar(store: ImageStore, path: Path) -> dict:
    try:
        raw = open(path, "rb")
    except FileNotFoundError as e:
        raise UsageError(f"import {path}: no such file") from e
    except IsADirectoryError as e:
        raise UsageError(f"import {path}: is a directory, want a tar archive") from e
    f, tmp = new_temp(store.tmp_dir, "layer-")
    try:
        with raw, decompressed(raw) as plain:
            gz, outer, inner = _compressed_sink(f)
            tee = _TeeReader(plain, inner)
            count = 0
            try:
                with tarfile.open(fileobj=tee, mode="r|") as tf:  # type: ignore[call-overload]
                    for _ in tf:
                        count += 1
                while tee.read(CHUNK):
                    pass
            except (tarfile.TarError, EOFError, OSError, ValueError) as e:
                raise UsageError(f"import {path}: not a valid tar archive: {e}") from e
            if count == 0:
                raise UsageError(f"import {path}: empty or not a tar archive")
            gz.close()
        return _commit(store, f, tmp, outer, inner)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise

"""Blob plumbing: digests, hashing streams and verified, atomic commits.

A blob reaches ``blobs/sha256/<hex>`` only through ``commit_verified``: bytes go
to a private temporary file, are hashed while written, fsync'd, checked against
the expected digest and size, and only then renamed into place (rename(2) is
atomic within a filesystem, so a reader sees the whole blob or none of it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from berth.errors import BerthError, UsageError
from berth.image.reference import check_digest

CHUNK = 1 << 20


class DigestMismatch(BerthError):
    """Content whose digest or size is not the one it was announced with."""


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    """The hex part of a ``sha256:`` digest, validated (it becomes a file name)."""
    return check_digest(digest).split(":", 1)[1]


def file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


class HashingWriter:
    """A file-like sink that hashes and counts what passes through to ``out``."""

    def __init__(self, out: BinaryIO | None):
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class HashingReader:
    """Wraps a readable stream, hashing and counting what is read from it."""

    def __init__(self, src: BinaryIO):
        self.src = src
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def new_temp(tmp_dir: Path, prefix: str = "blob-") -> tuple[BinaryIO, Path]:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", dir=tmp_dir)
    return os.fdopen(fd, "wb"), Path(name)


def commit_verified(
    tmp: Path,
    blob_dir: Path,
    digest: str,
    size: int,
    expected_digest: str | None,
    expected_size: int | None,
    what: str,
) -> Path:
    """Rename a fully written, fsync'd temp file to ``blob_dir/<hex>`` if it checks out."""
    try:
        if expected_digest is not None and digest != expected_digest:
            raise DigestMismatch(f"{what}: digest mismatch: expected {expected_digest}, got {digest}")
        if expected_size is not None and size != expected_size:
            raise DigestMismatch(f"{what}: size mismatch: expected {expected_size} bytes, got {size}")
        dest = blob_dir / hex_of(digest)
        blob_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        _fsync_dir(blob_dir)
        return dest
    finally:
        if tmp.exists():
            tmp.unlink()


def copy_stream(src: BinaryIO, out: HashingWriter) -> None:
    shutil.copyfileobj(src, out, CHUNK)  # type: ignore[arg-type]


def write_temp_from(src: BinaryIO | Path | bytes, tmp_dir: Path) -> tuple[Path, str, int]:
    """Copy ``src`` to an fsync'd temp file; return (path, digest, size)."""
    f, tmp = new_temp(tmp_dir)
    try:
        with f:
            w = HashingWriter(f)
            if isinstance(src, bytes):
                w.write(src)
            elif isinstance(src, (str, os.PathLike)):
                try:
                    with open(src, "rb") as s:
                        copy_stream(s, w)
                except FileNotFoundError as e:
                    raise UsageError(f"read blob {src}: no such file") from e
            else:
                copy_stream(src, w)
            f.flush()
            os.fsync(f.fileno())
        return tmp, w.digest, w.size
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` whole or not at all: temp file, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(name, mode)
        os.replace(name, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise

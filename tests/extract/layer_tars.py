"""Builders of (hostile) layer tars, written with the stdlib's tarfile."""

import gzip
import io
import tarfile

import zstandard


class LayerTar:
    """An in-memory tar; each add_* appends one member exactly as given."""

    def __init__(self, fmt: int = tarfile.PAX_FORMAT):
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=fmt)

    def _info(
        self,
        name: str,
        type_: bytes,
        mode: int,
        uid: int = 0,
        gid: int = 0,
        mtime: int = 1_600_000_000,
    ):
        ti = tarfile.TarInfo(name)
        ti.type = type_
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.mtime = mtime
        return ti

    def file(self, name: str, data: bytes = b"x", mode: int = 0o644, **kw) -> "LayerTar":
        ti = self._info(
            name, tarfile.REGTYPE, mode, **{k: v for k, v in kw.items() if k != "xattrs"}
        )
        ti.size = len(data)
        if "xattrs" in kw:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in kw["xattrs"].items()}
        self.tf.addfile(ti, io.BytesIO(data))
        return self

    def dir(self, name: str, mode: int = 0o755, **kw) -> "LayerTar":
        ti = self._info(
            name, tarfile.DIRTYPE, mode, **{k: v for k, v in kw.items() if k != "xattrs"}
        )
        if "xattrs" in kw:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in kw["xattrs"].items()}
        self.tf.addfile(ti)
        return self

    def symlink(self, name: str, target: str, **kw) -> "LayerTar":
        ti = self._info(name, tarfile.SYMTYPE, 0o777, **kw)
        ti.linkname = target
        self.tf.addfile(ti)
        return self

    def hardlink(self, name: str, target: str) -> "LayerTar":
        ti = self._info(name, tarfile.LNKTYPE, 0o644)
        ti.linkname = target
        self.tf.addfile(ti)
        return self

    def device(
        self, name: str, type_: bytes = tarfile.CHRTYPE, major: int = 1, minor: int = 3
    ) -> "LayerTar":
        ti = self._info(name, type_, 0o666)
        ti.devmajor, ti.devminor = major, minor
        self.tf.addfile(ti)
        return self

    def bytes(self) -> bytes:
        self.tf.close()
        return self.buf.getvalue()

    def gz(self) -> bytes:
        return gzip.compress(self.bytes(), compresslevel=1)

    def zst(self) -> bytes:
        return zstandard.ZstdCompressor().compress(self.bytes())

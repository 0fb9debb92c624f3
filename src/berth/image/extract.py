"""Safe extraction of one OCI image layer (a tar, plain, gzip or zstd).

A layer is hostile input: it may name ``../../etc/passwd``, plant a symlink and
then write through it, hardlink a host file, create device nodes, set the
setuid bit, forge overlayfs xattrs, or expand to terabytes. So the stdlib's
``tarfile`` is used only to *parse* (streaming, ``r|``: no seeking, so a layer
can come straight from a socket) and every file-system effect is made here:

- Member names are cleaned: a leading ``/`` is dropped (as GNU tar and docker
  do), any ``..`` component is rejected, as are names over the length or depth
  limit.
- Every parent directory is opened with ``openat2(RESOLVE_IN_ROOT)``: the
  kernel resolves symlinks and ``..`` as if the layer directory were ``/``, so
  a symlink planted by an earlier member (``evil -> /etc``) can only ever lead
  inside the layer. The last component is created with ``O_EXCL|O_NOFOLLOW``
  after removing what was there, so nothing is ever written *through* a link.
  Without openat2 (Linux < 5.6) each component is walked with ``O_NOFOLLOW``
  and a symlink in a parent path is refused.
- Hardlink targets are cleaned and resolved the same way, so they can only
  name files already extracted in this layer.
- Device nodes (char/block) are skipped unless ``Limits.allow_devices``; FIFOs
  are harmless and kept.
- setuid/setgid bits of files and ``security.capability`` xattrs are stripped
  unless kept by the policy. berth runs containers with no-new-privileges (as
  ``docker --security-opt no-new-privileges``), under which such bits grant
  nothing anyway, so stripping them costs a default container nothing and
  protects anyone who later runs the files outside one.
- Only ``user.*`` xattrs (and ``security.capability`` if kept) are applied:
  ``trusted.overlay.*`` would let a layer forge overlayfs whiteouts, opaque
  dirs, redirects and metacopy files.
- Limits (``Limits``) bound the uncompressed stream, the entry count, the path
  depth and length, and the size of a single PAX/GNU long-name header (which
  ``tarfile`` reads into memory).
- A truncated or corrupt gzip/zstd stream is an error even if the tar inside
  ended cleanly: the compressed stream is read to its end so that its trailer
  (CRC, frame end) is checked.

OCI whiteouts (image-spec ``layer.md``): ``.wh.NAME`` deletes NAME from lower
layers, ``.wh..wh..opq`` makes its directory opaque. ``extract_layer`` unpacks
one layer into its own directory, to be used as an overlayfs lower layer, so it
records them as overlayfs does: a 0:0 character device for a whiteout, the
``trusted.overlay.opaque=y`` xattr for an opaque dir. ``apply_layer_flat``
applies a layer onto an existing tree instead, deleting what the whiteouts
name (for export and for the VM's disk image). Whiteouts never apply to
entries of their own layer (image-spec: "files that are present in the same
layer as a whiteout file can only be hidden by whiteout files in subsequent
layers"). Names like ``.wh.``, ``.wh..``, ``.wh...`` and a whiteout used as a
directory (``.wh.x/y``) are rejected; other ``.wh..wh.*`` (aufs metadata) are
ignored.

Extraction into a fresh directory is atomic: the layer is built in a temporary
directory beside ``dest`` and renamed into place (``RENAME_NOREPLACE``) only
when complete; any failure removes the temporary directory entirely.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zstandard

from berth._sys import files as sysfiles
from berth.errors import BerthError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_RESOLVE = sysfiles.RESOLVE_IN_ROOT | sysfiles.RESOLVE_NO_MAGICLINKS | sysfiles.RESOLVE_NO_XDEV
_COPY_CHUNK = 1 << 20
# zstd input is fed in small pieces: zstandard's decompressobj has no output
# bound, and one RLE block can expand ~40000x; 4 KiB caps a step near 170 MiB.
_ZSTD_IN_CHUNK = 4096


class LayerError(BerthError):
    """A layer that is corrupt, hostile or over a limit; nothing was kept."""


@dataclass(frozen=True)
class Limits:
    """What one layer may contain; every bound is per layer.

    The defaults accept real images (the largest public ones have a few
    hundred thousand files and a few GiB per layer) and stop bombs: a million
    tiny files, a tar that decompresses to terabytes, paths nested to exhaust
    the stack or the kernel's PATH_MAX.
    """

    max_bytes: int = 16 << 30  # uncompressed tar stream, headers included
    max_entries: int = 500_000
    max_depth: int = 256  # path components
    max_path_len: int = 4096  # PATH_MAX
    max_meta_bytes: int = 1 << 20  # one PAX or GNU long-name header (read into memory)
    allow_devices: bool = False  # char/block nodes; FIFOs are always kept
    keep_setuid: bool = False  # setuid/setgid bits on non-directories
    keep_file_caps: bool = False  # security.capability xattrs


@dataclass
class ExtractStats:
    """What an extraction did, for logs and tests."""

    entries: int = 0
    bytes: int = 0  # uncompressed tar stream read
    skipped_devices: list[str] = field(default_factory=list)
    stripped_setuid: list[str] = field(default_factory=list)
    dropped_xattrs: list[str] = field(default_factory=list)
    whiteouts: list[str] = field(default_factory=list)
    opaque_dirs: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the byte stream


class _Chain:
    """Bytes already read (for the magic) followed by the rest of a stream."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._rest.read(n - len(data))
            return data
        return self._rest.read(n)


class _Zstd:
    """A zstd decoder that notices a truncated last frame (stream_reader does not)."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._dec = zstandard.ZstdDecompressor().decompressobj()
        self._buf = bytearray()
        self._done = False

    def read(self, n: int = -1) -> bytes:
        want = n if n >= 0 else 1 << 62
        while len(self._buf) < want and not self._done:
            chunk = self._raw.read(_ZSTD_IN_CHUNK)
            if not chunk:
                self._done = True
                if not self._dec.eof:
                    raise LayerError("truncated zstd stream")
                break
            if self._dec.eof:  # a further frame (zstd streams may be concatenated)
                self._dec = zstandard.ZstdDecompressor().decompressobj()
            out = self._dec.decompress(chunk)
            while self._dec.eof and self._dec.unused_data:
                rest = self._dec.unused_data
                self._dec = zstandard.ZstdDecompressor().decompressobj()
                out += self._dec.decompress(rest)
            self._buf += out
        data = bytes(self._buf[:want])
        del self._buf[:want]
        return data


class _Bounded:
    """Counts the uncompressed bytes and stops at ``Limits.max_bytes``."""

    def __init__(self, inner, limit: int):
        self._inner = inner
        self._limit = limit
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self.total += len(data)
        if self.total > self._limit:
            raise LayerError(f"layer is larger than the limit of {self._limit} bytes uncompressed")
        return data


def _decompressed(raw: BinaryIO) -> BinaryIO:
    head = raw.read(4)
    chained = _Chain(head, raw)
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=chained, mode="rb")  # type: ignore[arg-type]
    if head.startswith(ZSTD_MAGIC):
        return _Zstd(chained)  # type: ignore[return-value]
    return chained  # type: ignore[return-value]


_META_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


def _tarinfo_class(limit: int) -> type[tarfile.TarInfo]:
    class BoundedTarInfo(tarfile.TarInfo):
        # tarfile reads a PAX or GNU long-name header whole into memory: bound it first.
        def _proc_member(self, tf):  # type: ignore[override]
            if self.type in _META_TYPES and self.size > limit:
                raise LayerError(f"tar header of {self.size} bytes is over the limit of {limit}")
            return super()._proc_member(tf)

    return BoundedTarInfo


# ---------------------------------------------------------------- the unpacker


def _clean(name: str, limits: Limits, what: str = "member") -> str:
    """A member name as a relative path with no ``..``; "" for the layer root."""
    if len(name) > limits.max_path_len:
        raise LayerError(
            f"{what} name of {len(name)} bytes is over the limit of {limits.max_path_len}"
        )
    if "\x00" in name:
        raise LayerError(f"{what} {name!r}: NUL in name")
    parts = []
    for c in name.split("/"):  # a leading "/" gives "" and is dropped, as GNU tar does
        if c in ("", "."):
            continue
        if c == "..":
            raise LayerError(f"{what} {name!r} escapes the layer ('..' in its path)")
        parts.append(c)
    if len(parts) > limits.max_depth:
        raise LayerError(f"{what} {name!r} is nested deeper than {limits.max_depth}")
    return "/".join(parts)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _have_openat2() -> bool:
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        os.close(sysfiles.openat2(root, ".", os.O_PATH, _RESOLVE))
    except OSError:
        return False
    finally:
        os.close(root)
    return True


HAVE_OPENAT2 = _have_openat2()


def open_dir_in_root(root_fd: int, rel: str) -> int:
    """An O_PATH fd of directory ``rel`` below ``root_fd``; symlinks resolve inside it.

    Raises:
        FileNotFoundError: a component is missing.
        LayerError: a component is not a directory (or, without openat2, a symlink).
    """
    if not rel:
        return os.dup(root_fd)
    try:
        if HAVE_OPENAT2:
            return sysfiles.openat2(root_fd, rel, os.O_PATH | os.O_DIRECTORY, _RESOLVE)
        fd = os.dup(root_fd)
        try:
            for comp in rel.split("/"):
                flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                nfd = os.open(comp, flags, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except OSError:
            os.close(fd)
            raise
        return fd
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP and not HAVE_OPENAT2:
            raise LayerError(
                f"path {rel!r} goes through a symlink (not allowed without openat2)"
            ) from None
        if e.errno in (errno.ENOTDIR, errno.ELOOP, errno.EXDEV):
            raise LayerError(f"{rel!r} is not a directory inside the layer") from None
        raise


def make_dirs_in_root(root_fd: int, rel: str, mode: int = 0o755, on_create=None) -> int:
    """Like ``open_dir_in_root``, creating missing directories (``mode``, owned by us).

    ``on_create(path)`` is called for each directory made.
    """
    try:
        return open_dir_in_root(root_fd, rel)
    except FileNotFoundError:
        pass
    up, _, base = rel.rpartition("/")
    pfd = make_dirs_in_root(root_fd, up, mode, on_create)
    try:
        # implicit parents are root-owned 0755, as docker makes them
        os.mkdir(base, mode, dir_fd=pfd)
    except FileExistsError:
        raise LayerError(f"{rel!r} is a dangling symlink or not a directory") from None
    finally:
        os.close(pfd)
    if on_create:
        on_create(rel)
    return open_dir_in_root(root_fd, rel)


class _Unpacker:
    """Applies tar members to the directory open as ``root_fd``."""

    def __init__(self, root_fd: int, limits: Limits, overlay: bool):
        self.root = root_fd
        self.limits = limits
        self.overlay = overlay  # whiteouts as overlayfs marks (else: delete)
        self.stats = ExtractStats()
        self.is_root = os.geteuid() == 0
        self._cache: tuple[str, int] | None = None  # the last parent directory opened
        self._stale = False  # something was removed: the cached path may now differ
        self._dirs: list[tuple[str, int]] = []  # (path, mtime) set once all is written
        self._skipped: set[str] = set()
        # flat mode: what this layer made, which its own whiteouts must not delete
        self._created: set[str] | None = None if overlay else set()

    # -- resolving paths inside the layer

    def _open_dir(self, rel: str) -> int:
        return open_dir_in_root(self.root, rel)

    def _parent(self, rel: str) -> int:
        """The (cached) fd of directory ``rel``, creating missing directories."""
        if rel == "":
            return self.root
        if self._stale:
            self._drop_cache()
        if self._cache and self._cache[0] == rel:
            return self._cache[1]
        fd = make_dirs_in_root(self.root, rel, on_create=self._made)
        self._drop_cache()
        self._cache = (rel, fd)
        return fd

    def _drop_cache(self) -> None:
        self._stale = False
        if self._cache:
            os.close(self._cache[1])
            self._cache = None

    def _made(self, rel: str) -> None:
        if self._created is not None:
            self._created.add(rel)

    def _remove(self, pfd: int, base: str, keep_dir: bool = False) -> bool:
        """Remove what is at ``base``; True if it is a directory that was kept."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        # a cached parent may have been (or gone through) what was removed; the
        # fd itself stays open for the member being applied (its parent is intact)
        self._stale = True
        return False

    # -- metadata

    def _mode(self, m: tarfile.TarInfo, path: str) -> int:
        mode = m.mode & 0o7777
        if mode & 0o6000 and not m.isdir() and not self.limits.keep_setuid:
            self.stats.stripped_setuid.append(path)
            mode &= ~0o6000
        return mode

    def _xattrs(self, fd: int, m: tarfile.TarInfo, path: str) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr.") :]
            ok = name.startswith("user.") or (
                name == "security.capability" and self.limits.keep_file_caps
            )
            if not ok:
                self.stats.dropped_xattrs.append(f"{path}:{name}")
                continue
            os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))

    def _own_fd(self, fd: int, m: tarfile.TarInfo, path: str) -> None:
        # chown first: it clears setuid bits and file capabilities (chown(2))
        if self.is_root:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, self._mode(m, path))
        self._xattrs(fd, m, path)

    # -- members

    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.stats.entries += 1
        if self.stats.entries > self.limits.max_entries:
            raise LayerError(f"layer has more than {self.limits.max_entries} entries")
        path = _clean(m.name, self.limits)
        if path == "":
            if m.isdir():  # the layer's root directory itself
                self._own_fd(self.root, m, ".")
                self._dirs.append(("", int(m.mtime)))
            return
        parent, _, base = path.rpartition("/")
        if parent and any(c.startswith(WHITEOUT_PREFIX) for c in parent.split("/")):
            raise LayerError(f"member {m.name!r}: a whiteout cannot be a directory")
        if base.startswith(WHITEOUT_PREFIX):
            return self._whiteout(parent, base, m)
        if m.issparse():
            raise LayerError(f"member {m.name!r}: sparse files are not supported")
        pfd = self._parent(parent)
        if m.isreg():
            self._file(tf, m, pfd, base, path)
        elif m.isdir():
            self._dir(m, pfd, base, path)
        elif m.issym():
            if len(m.linkname) > self.limits.max_path_len:
                raise LayerError(
                    f"member {m.name!r}: symlink target over {self.limits.max_path_len} bytes"
                )
            self._remove(pfd, base)
            os.symlink(m.linkname, base, dir_fd=pfd)
            self._finish_node(m, pfd, base, path, chmod=False)
        elif m.islnk():
            self._hardlink(m, pfd, base, path)
        elif m.ischr() or m.isblk():
            if not self.limits.allow_devices:
                self.stats.skipped_devices.append(path)
                self._skipped.add(path)
                return
            self._remove(pfd, base)
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            self._finish_node(m, pfd, base, path)
        elif m.isfifo():
            self._remove(pfd, base)
            os.mkfifo(base, 0o600, dir_fd=pfd)
            self._finish_node(m, pfd, base, path)
        else:
            raise LayerError(f"member {m.name!r}: unsupported tar entry type {m.type!r}")

    def _file(
        self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, base: str, path: str
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(base, flags, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, base)
            fd = os.open(base, flags, 0o600, dir_fd=pfd)
        self._made(path)
        with open(fd, "wb", buffering=0, closefd=True) as out:
            src = tf.extractfile(m)
            if src is not None and m.size:
                shutil.copyfileobj(src, out, _COPY_CHUNK)
            self._own_fd(fd, m, path)
            os.utime(fd, ns=(int(m.mtime * 1e9),) * 2)

    def _dir(self, m: tarfile.TarInfo, pfd: int, base: str, path: str) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            if not self._remove(pfd, base, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=pfd)
        self._made(path)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            self._own_fd(fd, m, path)
        finally:
            os.close(fd)
        self._dirs.append((path, int(m.mtime)))

    def _finish_node(
        self, m: tarfile.TarInfo, pfd: int, base: str, path: str, chmod: bool = True
    ) -> None:
        """Owner, mode and mtime of a node that cannot be opened (symlink, device, FIFO)."""
        self._made(path)
        if self.is_root:
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:  # we just made it and nothing else writes here: no link to follow
            os.chmod(base, self._mode(m, path), dir_fd=pfd)
        os.utime(base, ns=(int(m.mtime * 1e9),) * 2, dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, m: tarfile.TarInfo, pfd: int, base: str, path: str) -> None:
        target = _clean(m.linkname, self.limits, "hardlink target")
        if target in self._skipped:  # a link to a device the policy skipped
            self.stats.skipped_devices.append(path)
            return
        if target == "" or any(c.startswith(WHITEOUT_PREFIX) for c in target.split("/")):
            raise LayerError(f"member {m.name!r}: bad hardlink target {m.linkname!r}")
        if target == path:
            return
        tparent, _, tbase = target.rpartition("/")
        try:
            tfd = self._open_dir(tparent) if tparent else os.dup(self.root)
        except FileNotFoundError:
            raise LayerError(
                f"member {m.name!r}: hardlink target {m.linkname!r} does not exist"
            ) from None
        try:
            self._remove(pfd, base)
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(
                f"member {m.name!r}: hardlink target {m.linkname!r} does not exist"
            ) from None
        except PermissionError:  # link(2) to a directory
            raise LayerError(f"member {m.name!r}: cannot hardlink to {m.linkname!r}") from None
        finally:
            os.close(tfd)
        self._made(path)

    def _whiteout(self, parent: str, base: str, m: tarfile.TarInfo) -> None:
        if base == OPAQUE_MARKER:
            return self._opaque(parent)
        if base.startswith(WHITEOUT_PREFIX * 2):
            return  # other aufs metadata (.wh..wh.plnk, ...): meaningless here
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise LayerError(f"member {m.name!r}: whiteout of an invalid name")
        target = f"{parent}/{name}" if parent else name
        self.stats.whiteouts.append(target)
        pfd = self._parent(parent)
        if self.overlay:
            if _exists(pfd, name):
                return  # made by this very layer: a whiteout does not hide it
            os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
        elif target not in self._created:  # type: ignore[operator]
            self._remove(pfd, name)

    def _opaque(self, parent: str) -> None:
        self.stats.opaque_dirs.append(parent or ".")
        pfd = self._parent(parent)
        if self.overlay:
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
            try:
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
            return
        for child in os.listdir(f"/proc/self/fd/{pfd}"):
            if (f"{parent}/{child}" if parent else child) not in self._created:  # type: ignore[operator]
                self._remove(self._parent(parent), child)

    def finish(self) -> None:
        """Directory mtimes, last: writing into a directory changes its mtime."""
        self._drop_cache()
        for path, mtime in reversed(self._dirs):
            parent, _, base = path.rpartition("/")
            try:
                if path == "":
                    os.utime(self.root, (mtime, mtime))
                    continue
                pfd = self._open_dir(parent) if parent else os.dup(self.root)
            except (OSError, LayerError):
                continue  # replaced by a later member
            try:
                os.utime(base, (mtime, mtime), dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            finally:
                os.close(pfd)

    def run(self, src: BinaryIO) -> ExtractStats:
        stream = _Bounded(_decompressed(src), self.limits.max_bytes)
        tf = tarfile.open(
            fileobj=stream,  # type: ignore[arg-type]
            mode="r|",
            tarinfo=_tarinfo_class(self.limits.max_meta_bytes),
            errorlevel=2,
        )
        try:
            while (m := tf.next()) is not None:
                try:
                    self.member(tf, m)
                except OSError as e:
                    raise LayerError(f"member {m.name!r}: {e.strerror or e}") from None
                except (ValueError, OverflowError) as e:  # mtime, ids or mode out of range
                    raise LayerError(f"member {m.name!r}: {e}") from None
                tf.members.clear()  # stream mode keeps every TarInfo otherwise
            # read the compressed stream to its end: checks the gzip CRC / zstd frame end
            while stream.read(_COPY_CHUNK):
                pass
            self.finish()
        finally:
            self._drop_cache()
        self.stats.bytes = stream.total
        return self.stats


_STREAM_ERRORS = (tarfile.TarError, EOFError, zlib.error, zstandard.ZstdError, gzip.BadGzipFile)


def _unpack(
    src: BinaryIO | str | os.PathLike, root_fd: int, limits: Limits, overlay: bool
) -> ExtractStats:
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as f:
            return _unpack(f, root_fd, limits, overlay)
    try:
        return _Unpacker(root_fd, limits, overlay).run(src)
    except _STREAM_ERRORS as e:
        raise LayerError(f"corrupt or truncated layer: {e}") from None


def extract_layer(
    src: BinaryIO | str | os.PathLike, dest: str | os.PathLike, *, limits: Limits | None = None
) -> ExtractStats:
    """Unpack one layer tar into the new directory ``dest``, as an overlayfs lower layer.

    ``src`` is a path or a binary stream (read sequentially; gzip, zstd or
    plain tar, detected by magic). Whiteouts become overlayfs whiteouts (see
    the module doc). ``dest`` appears only complete; on any error nothing is
    left.

    Raises:
        LayerError: ``dest`` exists, or the layer is corrupt, hostile or over
        ``limits``; names the offending member.
    """
    limits = limits or Limits()
    dest = Path(dest)
    if os.path.lexists(dest):
        raise LayerError(f"extract layer into {dest}: already exists")
    tmp = tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    try:
        root_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chmod(root_fd, 0o755)  # mkdtemp's 0700 unless the layer sets "./"
            try:
                stats = _unpack(src, root_fd, limits, overlay=True)
            except LayerError as e:
                raise LayerError(f"extract layer into {dest}: {e}") from None
        finally:
            os.close(root_fd)
        try:
            sysfiles.renameat2(-100, tmp, -100, str(dest), sysfiles.RENAME_NOREPLACE)
        except FileExistsError:
            raise LayerError(f"extract layer into {dest}: already exists") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats


def apply_layer_flat(
    src: BinaryIO | str | os.PathLike, dest_dir: str | os.PathLike, *, limits: Limits | None = None
) -> ExtractStats:
    """Apply a layer on top of the tree ``dest_dir``, deleting what its whiteouts name.

    Used to flatten an image (export, a VM's disk image). Not atomic: apply
    into a scratch tree and discard it on error.

    Raises:
        LayerError: the layer is corrupt, hostile or over ``limits``.
    """
    fd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _unpack(src, fd, limits or Limits(), overlay=False)
    except LayerError as e:
        raise LayerError(f"apply layer onto {dest_dir}: {e}") from None
    finally:
        os.close(fd)


def open_layer_stream(src: BinaryIO) -> io.BufferedIOBase:
    """The uncompressed tar stream of a layer (gzip, zstd or plain), for digesting."""
    return _decompressed(src)  # type: ignore[return-value]

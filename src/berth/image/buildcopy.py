"""COPY and ADD: files from the build context (or another stage) into a rootfs.

Sources are resolved with ``openat2(RESOLVE_IN_ROOT)`` below their root (the
context directory or the other stage's merged rootfs): a symlink in the
context that points at ``/etc`` reads the context's ``etc``, never the host's
(docker sends the context as a tar, so its symlinks never reach the host
either). Inside a copied directory symlinks are copied as symlinks.
Destinations are written below the target rootfs the same way, so a symlink
in the image (``/usr/local/bin -> /tmp``) is followed as the container would
see it, never onto the host; the final component is replaced, never written
through.

docker's rules: several sources or a destination ending in ``/`` mean a
directory; a source directory copies its contents; a relative destination is
relative to WORKDIR; missing directories are made 0755; files from the
context are owned 0:0, files from a stage keep their owner, ``--chown``
overrides both; modes and mtimes are kept (``--chmod`` overrides the mode).
ADD also unpacks local tar archives (plain, gzip, bzip2, xz, zstd) into the
destination directory; ADD from a URL is refused (berth builds offline).
"""

from __future__ import annotations

import bz2
import glob
import hashlib
import lzma
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from berth._sys import files as sysfiles
from berth.errors import UsageError
from berth.image.extract import (
    GZIP_MAGIC,
    ZSTD_MAGIC,
    LayerError,
    Limits,
    apply_layer_flat,
    make_dirs_in_root,
    open_dir_in_root,
)
from berth.image.ignore import IgnoreRules

_MAGIC = set("*?[")


class CopyError(UsageError):
    """A COPY/ADD source that does not exist, escapes its root, or cannot be written."""


@dataclass
class Source:
    rel: str  # path below its root, as resolved (no symlinks left)
    real: str  # host path (below the root) to read from


def _clean(path: str) -> str:
    parts = []
    for c in path.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            if parts:
                parts.pop()
            continue  # ".." at the root stays at the root, as in the container
        parts.append(c)
    return "/".join(parts)


def _real_in_root(root: Path, rel: str) -> str:
    """The host path of ``rel`` resolved inside ``root`` (symlinks included)."""
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        resolve = sysfiles.RESOLVE_IN_ROOT | sysfiles.RESOLVE_NO_MAGICLINKS
        fd = sysfiles.openat2(rfd, rel or ".", os.O_PATH, resolve)
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    finally:
        os.close(rfd)


def find_sources(
    root: Path, patterns: list[str], rules: IgnoreRules | None, what: str
) -> list[Source]:
    """The sources ``patterns`` name below ``root`` (globs expanded, ignored files left out).

    Raises:
        CopyError: a pattern that matches nothing.
    """
    out: list[Source] = []
    for pat in patterns:
        rel = _clean(pat)
        if _MAGIC & set(rel):
            matches = sorted(glob.glob(rel, root_dir=root, include_hidden=True))
            matches = [m for m in matches if not (rules and rules.excluded(m))]
        else:
            matches = [rel] if not (rules and rules.excluded(rel)) else []
        found = False
        for m in matches:
            try:
                real = _real_in_root(root, m)
            except FileNotFoundError:
                continue
            except OSError as e:  # a symlink loop, a file used as a directory
                raise CopyError(f"{what}: {m}: {e.strerror} (resolved inside {root})") from None
            out.append(Source(m, real))
            found = True
        if not found:
            raise CopyError(f"{what}: {pat}: no such file or directory in {root}")
    return out


def walk_source(
    src: Source, rules: IgnoreRules | None
) -> Iterator[tuple[str, str, os.stat_result]]:
    """(path relative to the source, host path, lstat) of the source and what is below it."""
    st = os.stat(src.real)  # the source itself was resolved: follow it
    yield "", src.real, st
    if not stat.S_ISDIR(st.st_mode):
        return
    for top, dirs, files in os.walk(src.real):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            sub = os.path.relpath(path, src.real)
            # an excluded directory is still walked: a "!" exception may re-include below it
            if rules and rules.excluded(f"{src.rel}/{sub}" if src.rel else sub):
                continue
            yield sub, path, os.lstat(path)


def content_digest(sources: list[Source], rules: IgnoreRules | None) -> str:
    """A digest of what COPY reads (names, types, modes, contents; not mtimes): the cache key."""
    h = hashlib.sha256()
    for src in sources:
        for sub, path, st in walk_source(src, rules):
            h.update(
                f"{src.rel}\0{sub}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode()
            )
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            h.update(b"\n")
    return "sha256:" + h.hexdigest()


@dataclass
class Owner:
    uid: int | None = None  # None: keep the source's (stage) or 0 (context)
    gid: int | None = None


class Writer:
    """Writes below the rootfs open as ``root_fd``."""

    def __init__(self, root_fd: int, owner: Owner, keep_owner: bool, chmod: int | None):
        self.root = root_fd
        self.owner = owner
        self.keep_owner = keep_owner
        self.chmod = chmod

    def _ids(self, st: os.stat_result) -> tuple[int, int]:
        uid = (
            self.owner.uid if self.owner.uid is not None else (st.st_uid if self.keep_owner else 0)
        )
        gid = (
            self.owner.gid if self.owner.gid is not None else (st.st_gid if self.keep_owner else 0)
        )
        return uid, gid

    def _made_dir(self, rel: str) -> None:
        if self.owner.uid is not None:
            os.chown(
                rel, self.owner.uid, self.owner.gid or 0, dir_fd=self.root, follow_symlinks=False
            )

    def dir_fd(self, rel: str) -> int:
        try:
            return make_dirs_in_root(self.root, rel, on_create=self._made_dir)
        except LayerError as e:
            raise CopyError(str(e)) from None

    def put(self, dest_rel: str, host: str, st: os.stat_result) -> None:
        """Create ``dest_rel`` as a copy of ``host`` (file, dir, symlink, FIFO)."""
        parent, _, base = dest_rel.rpartition("/")
        pfd = self.dir_fd(parent)
        try:
            uid, gid = self._ids(st)
            mode = self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                self._dir(pfd, base, uid, gid, mode)
            else:
                self._replace(pfd, base)
                if stat.S_ISREG(st.st_mode):
                    self._file(pfd, base, host, uid, gid, mode)
                elif stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(host), base, dir_fd=pfd)
                    os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
                elif stat.S_ISFIFO(st.st_mode):
                    os.mkfifo(base, 0o600, dir_fd=pfd)
                    os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
                    os.chmod(base, mode, dir_fd=pfd)
                else:
                    return  # sockets and devices are not copied
            os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def _replace(self, pfd: int, base: str) -> None:
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise CopyError(f"cannot copy a file over the directory {base!r}")
        os.unlink(base, dir_fd=pfd)

    def _dir(self, pfd: int, base: str, uid: int, gid: int, mode: int) -> None:
        try:
            os.mkdir(base, 0o755, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(base, dir_fd=pfd)
                os.mkdir(base, 0o755, dir_fd=pfd)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def _file(self, pfd: int, base: str, host: str, uid: int, gid: int, mode: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            with open(host, "rb") as src:
                size = os.fstat(src.fileno()).st_size
                done = 0
                while done < size:  # sendfile(2): in-kernel, and works across file systems
                    n = os.sendfile(fd, src.fileno(), done, size - done)
                    if n == 0:
                        break
                    done += n
            os.fchown(fd, uid, gid)  # before chmod: chown clears setuid
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def is_archive(path: str) -> bool:
    """A local file ADD unpacks: a tar, plain or gzip/bzip2/xz/zstd-compressed."""
    try:
        with open(path, "rb") as f:
            head = f.read(512 + 8)
    except OSError:
        return False
    if head.startswith((GZIP_MAGIC, ZSTD_MAGIC, b"BZh", b"\xfd7zXZ\x00")):
        return True
    return head[257:262] == b"ustar"


def _open_archive(path: str):
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return open(path, "rb")  # plain, gzip and zstd: extract detects them


def copy(
    sources: list[Source],
    rules: IgnoreRules | None,
    dest: str,
    workdir: str,
    root_fd: int,
    *,
    owner: Owner,
    keep_owner: bool,
    chmod: int | None = None,
    unpack: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> None:
    """Copy ``sources`` to ``dest`` (docker's rules, see the module doc) in the rootfs ``root_fd``.

    Raises:
        CopyError: a missing source, a file over a directory, a bad archive.
    """
    as_dir = dest.endswith("/") or len(sources) > 1 or dest in (".", "")
    dest_rel = _clean(dest if dest.startswith("/") else f"{workdir}/{dest}")
    if not as_dir:  # an existing directory also takes the sources inside it
        try:
            os.close(open_dir_in_root(root_fd, dest_rel))
            as_dir = True
        except (OSError, LayerError):
            pass
    w = Writer(root_fd, owner, keep_owner, chmod)
    for src in sources:
        st = os.stat(src.real)
        if unpack and stat.S_ISREG(st.st_mode) and is_archive(src.real):
            dfd = w.dir_fd(dest_rel)
            try:
                with _open_archive(src.real) as stream:
                    apply_layer_flat(
                        stream, f"/proc/self/fd/{dfd}", limits=Limits(keep_setuid=True)
                    )
            except LayerError as e:
                raise CopyError(f"ADD {src.rel}: {e}") from None
            finally:
                os.close(dfd)
            continue
        if stat.S_ISDIR(st.st_mode):
            base_rel = dest_rel
        elif as_dir:
            base_rel = _clean(f"{dest_rel}/{os.path.basename(src.rel)}")
        else:
            base_rel = dest_rel
        for sub, host, est in walk_source(src, rules):
            target = _clean(f"{base_rel}/{sub}") if sub else base_rel
            if not target:  # the root itself: only its contents
                continue
            w.put(target, host, est)

"""``cp`` and ``export``: files between a container and the host, safely.

Container paths are resolved with ``fsutil.resolve_in_root`` so a symlink in
the container (``/out -> /``) cannot make berth read or write host files
(CVE-2018-15664 class). A running container is paused for the copy, as docker
does since that CVE, so it cannot swap a directory for a symlink between our
check and our use; each file is then opened with O_NOFOLLOW and each
directory re-resolved inside the root.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from berth.engine import fsutil
from berth.errors import NotFound, UsageError


def _split(arg: str) -> tuple[str | None, str]:
    if ":" in arg and not arg.startswith("/") and not arg.startswith("."):
        ref, _, path = arg.partition(":")
        return ref, path
    return None, arg


def _host_path_in(rec: dict, rootfs: Path, cpath: str, follow_last: bool) -> Path:
    """Host path for container path ``cpath``, honouring bind mounts and volumes."""
    cpath = fsutil.norm(cpath)
    best = None
    for m in rec.get("Mounts", []):
        dst = m["Destination"].rstrip("/") or "/"
        if m.get("Type") in ("bind", "volume") and (cpath == dst or cpath.startswith(dst + "/")):
            if best is None or len(dst) > len(best[0]):
                best = (dst, m["Source"])
    if best:
        rel = cpath[len(best[0]):] or "/"
        return fsutil.resolve_in_root(best[1], rel, follow_last)
    return fsutil.resolve_in_root(rootfs, cpath, follow_last)


class _Paused:
    def __init__(self, engine, rec):
        self.engine, self.rec, self.did = engine, rec, False

    def __enter__(self):
        if self.engine.run_state(self.rec).status == "running":
            self.did = self.engine._rt("pause", self.rec["Id"]).returncode == 0
        return self

    def __exit__(self, *exc):
        if self.did:
            self.engine._rt("resume", self.rec["Id"])


def copy(engine, src: str, dest: str, follow: bool = False, archive: bool = False) -> None:
    """docker cp in either direction."""
    sref, spath = _split(src)
    dref, dpath = _split(dest)
    if (sref is None) == (dref is None):
        raise UsageError("cp: exactly one of SRC and DEST must be CONTAINER:PATH")
    ref = sref or dref
    rec = engine.get(ref)
    cdir = engine.cdir(rec["Id"])
    rootfs = cdir / "rootfs"
    if not os.path.ismount(rootfs):
        from berth.engine import images

        images.mount_rootfs(images.get_image(str(engine.root), rec["ImageID"]), cdir)
    with _Paused(engine, rec):
        if sref:
            host_src = _host_path_in(rec, rootfs, spath, follow_last=follow)
            if not os.path.lexists(host_src):
                raise NotFound(f"cp: no such file or directory in container {rec['Name']}: {spath}")
            _copy_out(host_src, Path(dpath), spath)
        else:
            if not os.path.lexists(spath):
                raise NotFound(f"cp: no such file or directory: {spath}")
            _copy_in(rec, rootfs, Path(spath), dpath, archive)


def _copy_out(host_src: Path, dest: Path, spath: str) -> None:
    if str(dest) == "-":
        import sys

        with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as t:
            t.add(host_src, arcname=os.path.basename(spath.rstrip("/")) or ".", recursive=True)
        return
    if dest.is_dir():
        dest = dest / host_src.name
    if host_src.is_symlink():
        if os.path.lexists(dest):
            os.unlink(dest)
        os.symlink(os.readlink(host_src), dest)
    elif host_src.is_dir():
        # symlinks=True: links inside the tree are copied as links, never followed
        shutil.copytree(host_src, dest, symlinks=True, dirs_exist_ok=True)
    else:
        _copy_file_nofollow(host_src, dest)


def _copy_file_nofollow(src: Path, dst: Path) -> None:
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"cp: {src.name} is not a regular file")
        with os.fdopen(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                               st.st_mode & 0o7777), "wb") as out, os.fdopen(os.dup(fd), "rb") as inp:
            shutil.copyfileobj(inp, out)
    finally:
        os.close(fd)


def _copy_in(rec: dict, rootfs: Path, src: Path, cdest: str, archive: bool) -> None:
    cdest = fsutil.norm(cdest).replace('//', '/')
    target = _host_path_in(rec, rootfs, cdest, follow_last=True)
    if target.is_dir():
        cdest = cdest.rstrip("/") + "/" + src.name
    _put(rec, rootfs, src, cdest, archive)


def _put(rec: dict, rootfs: Path, src: Path, cpath: str, archive: bool) -> None:
    """Write host ``src`` at container path ``cpath``, re-resolving every level."""
    dst = _host_path_in(rec, rootfs, cpath, follow_last=False)
    parent = _host_path_in(rec, rootfs, os.path.dirname(cpath), follow_last=True)
    if not parent.is_dir() or not (fsutil.is_within(rootfs, parent) or
                                   any(fsutil.is_within(m["Source"], parent) for m in rec.get("Mounts", [])
                                       if m.get("Source"))):
        raise NotFound(f"cp: destination directory {os.path.dirname(cpath)} does not exist in the container")
    dst = parent / os.path.basename(cpath)
    if os.path.islink(dst):
        os.unlink(dst)  # replace a container symlink, never write through it
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        if not dst.is_dir():
            os.mkdir(dst, st.st_mode & 0o7777)
        for child in sorted(os.listdir(src)):
            _put(rec, rootfs, src / child, cpath.rstrip("/") + "/" + child, archive)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        _copy_file_nofollow(src, dst)
    else:
        return
    if archive:
        os.lchown(dst, st.st_uid, st.st_gid)


def export(engine, rec: dict, out: BinaryIO) -> None:
    """docker export: the container's root filesystem as a tar stream."""
    from berth.engine import images

    cdir = engine.cdir(rec["Id"])
    rootfs = cdir / "rootfs"
    if not os.path.ismount(rootfs):
        images.mount_rootfs(images.get_image(str(engine.root), rec["ImageID"]), cdir)
    with _Paused(engine, rec), tarfile.open(fileobj=out, mode="w|") as t:
        for entry in sorted(os.listdir(rootfs)):
            t.add(rootfs / entry, arcname=entry, recursive=True)

"""A container's root filesystem: overlayfs over the unpacked layers, or a copy.

Layout under the container's directory (all made here, all removed by
``unmount_rootfs``)::

    rootfs/   the merged view handed to the runtime
    upper/    the container's writes (overlayfs upperdir)
    work/     overlayfs workdir (same file system as upper/)
    lower/    short symlinks 0, 1, ... to the layers, when the mount options
              would not fit in a page (see below)
    empty/    the only lower layer of an image with no layers (scratch)

Layer directories are as ``extract.extract_layer`` makes them: whiteouts as
0:0 character devices and opaque dirs marked ``trusted.overlay.opaque=y``, so
overlayfs reads them natively.

The kernel copies mount(2) options into one page (``copy_mount_options``):
with 4 KiB pages and ~90-byte layer paths that is ~40 layers. Beyond that the
mount is made from a child process whose working directory is ``lower/``,
with options ``lowerdir=0:1:...,upperdir=../upper,workdir=../work``: the
kernel resolves relative paths against the caller's cwd, and a child keeps
the chdir from touching this (possibly threaded) process.

Without overlayfs (``BERTH_NO_OVERLAY=1``, or the mount fails, e.g. when the
engine root is itself on overlayfs) the layers are copied into ``rootfs/``
bottom-up, applying whiteouts. Hardlinks inside a layer become copies there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from berth._sys import overlay as sysov
from berth.errors import RuntimeFailure
from berth.fs import remove_tree

ROOTFS, UPPER, WORK, LOWER, EMPTY = "rootfs", "upper", "work", "lower", "empty"
COPY_MARKER = "rootfs.copied"  # says rootfs/ is a copy, and why
PAGE_LIMIT = os.sysconf("SC_PAGESIZE") - 1  # option string plus its NUL
_OURS = (ROOTFS, UPPER, WORK, LOWER, EMPTY, COPY_MARKER)


def mount_rootfs(layer_dirs: list[Path], container_dir: Path, volatile: bool = False) -> Path:
    """Make ``container_dir/rootfs`` the merged view of ``layer_dirs``; return it.

    Args:
        layer_dirs: unpacked layers, **bottom first** (the order of the image
            config's ``rootfs.diff_ids``).
        container_dir: the container's own directory (must exist).
        volatile: overlayfs's ``volatile`` (Linux 5.10): no sync of the upper
            layer, at unmount either; for a container removed when it exits
            (``--rm``), whose changes nobody reads after a crash.

    Raises:
        RuntimeFailure: the mount failed for another reason than missing
        overlayfs support and the copy fallback failed too.
    """
    container_dir = Path(container_dir)
    rootfs = container_dir / ROOTFS
    if os.path.ismount(rootfs) or (container_dir / COPY_MARKER).exists():
        return rootfs  # already made: idempotent
    for d in (ROOTFS, UPPER, WORK):
        (container_dir / d).mkdir(mode=0o755, exist_ok=True)
    if os.environ.get("BERTH_NO_OVERLAY") == "1":
        reason = "BERTH_NO_OVERLAY=1"
    else:
        try:
            _mount_overlay([Path(p) for p in layer_dirs], container_dir, volatile)
            return rootfs
        except OSError as e:
            reason = f"overlayfs unavailable ({e.strerror or e})"
    try:
        _clear(container_dir, keep=(ROOTFS,))
        for layer in layer_dirs:
            copy_layer_flat(Path(layer), rootfs)
        (container_dir / COPY_MARKER).write_text(reason + "\n")
    except OSError as e:
        raise RuntimeFailure(f"copy layers into {rootfs}: {e.strerror or e}") from None
    return rootfs


def unmount_rootfs(container_dir: Path, keep_upper: bool = False) -> None:
    """Unmount and remove what ``mount_rootfs`` made; a no-op if it is gone.

    ``keep_upper`` keeps ``upper/`` (a build step's changes, to make a layer of).

    A busy mount is detached lazily (``MNT_DETACH``): the runtime may still
    hold it in a dying container's mount namespace.

    Raises:
        RuntimeFailure: the rootfs stays mounted (nothing is deleted then).
    """
    container_dir = Path(container_dir)
    rootfs = str(container_dir / ROOTFS)
    for _ in range(8):  # someone may have stacked mounts on it
        if not os.path.ismount(rootfs):
            break
        try:
            sysov.umount2(rootfs)
        except OSError:
            try:
                sysov.umount2(rootfs, sysov.MNT_DETACH)
            except OSError as e:
                raise RuntimeFailure(f"unmount {rootfs}: {e.strerror}") from None
    if os.path.ismount(rootfs):
        raise RuntimeFailure(f"unmount {rootfs}: still mounted")
    _clear(container_dir, keep=(UPPER,) if keep_upper else ())


def _clear(container_dir: Path, keep: tuple[str, ...] = ()) -> None:
    for name in _OURS:
        p = container_dir / name
        if name in keep:
            continue
        remove_tree(p)


def _mount_overlay(layers: list[Path], container_dir: Path, volatile: bool = False) -> None:
    # A volatile mount that was not unmounted cleanly (a crash) leaves
    # work/work/incompat/volatile, and overlayfs refuses the dirs until it is
    # gone (Documentation/filesystems/overlayfs.rst, "Volatile mount").
    stale = container_dir / WORK / "work" / "incompat" / "volatile"
    if stale.exists():
        remove_tree(stale, ignore_errors=True)
    if not layers:
        (container_dir / EMPTY).mkdir(exist_ok=True)
        layers = [container_dir / EMPTY]
    top_first = [str(p.resolve()) for p in reversed(layers)]
    upper, work = container_dir / UPPER, container_dir / WORK
    data = f"lowerdir={':'.join(top_first)},upperdir={upper},workdir={work}"
    extra = ",volatile" if volatile else ""
    data += extra
    target = str(container_dir / ROOTFS)
    if len(data) <= PAGE_LIMIT and not _special(top_first, upper, work):
        sysov.mount("overlay", target, "overlay", 0, data)
        return
    # too long, or paths overlayfs would misparse (',' ':'): short relative names
    lower = container_dir / LOWER
    lower.mkdir(exist_ok=True)
    for i, p in enumerate(top_first):
        os.symlink(p, lower / str(i))
    data = f"lowerdir={':'.join(str(i) for i in range(len(top_first)))},upperdir=../{UPPER},workdir=../{WORK}{extra}"
    if len(data) > PAGE_LIMIT:
        raise OSError(
            7, f"mount overlay on {target}: {len(top_first)} layers are too many"
        )  # E2BIG
    _mount_in_child(str(lower), target, data)


def _special(paths: list[str], upper: Path, work: Path) -> bool:
    return any(c in p for p in [*paths, str(upper), str(work)] for c in ",:\\")


def _mount_in_child(cwd: str, target: str, data: str) -> None:
    pid = os.fork()
    if pid == 0:  # child: only syscalls, then _exit
        code = 0
        try:
            os.chdir(cwd)
            sysov.mount("overlay", target, "overlay", 0, data)
        except OSError as e:
            code = e.errno or 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise OSError(code, f"mount overlay on {target}: {os.strerror(code)}")


# ---------------------------------------------------------------- copy fallback


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    # imported here, in the copy fallback only: extract pulls in tarfile,
    # zstandard and dataclasses (~13 ms on every `berth run` otherwise)
    from berth.image.extract import OVERLAY_OPAQUE_XATTR

    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    # chown before chmod: chown(2) clears setuid/setgid bits
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        for name in os.listxattr(src, follow_symlinks=False):
            if name.startswith("user.") or name == "security.capability":
                os.setxattr(
                    dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False
                )
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_layer_flat(layer: Path, dest: Path) -> None:
    """Copy one unpacked layer over ``dest``, applying its overlay-style whiteouts."""
    dirs: list[tuple[str, str, os.stat_result]] = []
    for top, subdirs, files in os.walk(layer, followlinks=False):
        rel = os.path.relpath(top, layer)
        dtop = os.path.normpath(os.path.join(dest, rel))
        tst = os.lstat(top)
        if (
            rel != "."
            and os.path.lexists(dtop)
            and (not os.path.isdir(dtop) or os.path.islink(dtop) or _is_opaque(top))
        ):
            remove_tree(dtop)  # a non-directory below, or an opaque dir: lower contents go
        elif rel == "." and _is_opaque(top):
            for child in os.listdir(dtop):
                remove_tree(os.path.join(dtop, child))
        os.makedirs(dtop, exist_ok=True)
        dirs.append((top, dtop, tst))
        for name in files + [d for d in subdirs if os.path.islink(os.path.join(top, d))]:
            src, dst = os.path.join(top, name), os.path.join(dtop, name)
            st = os.lstat(src)
            if os.path.lexists(dst) or os.path.isdir(dst):
                remove_tree(dst)
            if _is_whiteout(st):
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISREG(st.st_mode):
                import shutil

                shutil.copyfile(src, dst, follow_symlinks=False)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(dst, 0o600)
            else:
                os.mknod(dst, st.st_mode, st.st_rdev)
            _copy_meta(src, dst, st)
    for src, dst, st in reversed(dirs):  # after the contents: they change mtimes
        _copy_meta(src, dst, st)

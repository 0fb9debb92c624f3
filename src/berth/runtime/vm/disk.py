"""The guest's root disk: a cached read-only ext4 base plus a qcow2 overlay per instance.

The base is made once per key with ``mkfs.ext4 -d`` (ownership, modes, symlinks and
device nodes are copied as they are; we run as root). The key is the image digest
when the caller has one, else a fingerprint of the tree (path, mode, owner, size,
mtime of every entry), so a changed bundle gets a new base. N instances of one
image share the base: each gets ``overlay.qcow2`` backed by it, and the base file
is never written (QEMU opens the backing file read-only).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

from berth.errors import NotFound, RuntimeFailure
from berth.runtime.vm._hash import sha256

SLACK = 64 * 1024 * 1024


def fingerprint(rootfs: Path) -> str:
    """A digest of the tree's metadata, cheap enough to compute on every run.

    Paths are relative to ``rootfs``: the same image mounted for two containers (an
    engine's per-container overlay mount) has one fingerprint and one cached base.
    """
    h = sha256(b"berth-rootfs-1")
    top = str(rootfs)
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        for name in sorted(filenames) + dirnames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, top)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            h.update(f"{rel}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _tree_size(rootfs: Path) -> tuple[int, int]:
    size, count = 0, 0
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in filenames + dirnames:
            count += 1
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            size += (st.st_size + 4095) // 4096 * 4096
    return size, count


def _run(argv: list[str], what: str) -> None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise NotFound(f"{what}: {argv[0]} not installed; run `bash scripts/setup.sh`") from e
    if res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise RuntimeFailure(f"{what}: {detail[-1] if detail else f'exit {res.returncode}'}")


def ensure_base(rootfs: Path, cache_dir: Path, key: str | None = None) -> Path:
    """Path of the read-only ext4 image of ``rootfs``, built under a lock on first use."""
    if not rootfs.is_dir():
        raise NotFound(f"make VM root disk: rootfs {rootfs} is not a directory")
    key = key.replace(":", "-").replace("/", "-") if key else fingerprint(rootfs)
    out = cache_dir / "disks" / f"{key}.ext4"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():  # another process built it while we waited
            return out
        size, count = _tree_size(rootfs)
        total = int(size * 1.3) + SLACK
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        try:
            # No journal: the base is never written, and an instance's writes live in its
            # disposable overlay. -N: small images with many files run out of inodes otherwise.
            _run(
                ["mkfs.ext4", "-q", "-F", "-L", "berth-root", "-O", "^has_journal",
                 "-N", str(count + 4096), "-E", "root_owner=0:0", "-d", str(rootfs),
                 str(tmp), f"{total // 1024}k"],
                f"make ext4 image of {rootfs}",
            )
            os.chmod(tmp, 0o444)
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                tmp.unlink()
    return out


def create_overlay(base: Path, overlay: Path) -> Path:
    """A qcow2 file recording the instance's writes on top of ``base``."""
    _run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base), str(overlay)],
        f"create disk overlay {overlay}",
    )
    return overlay

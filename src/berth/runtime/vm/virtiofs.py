"""Volumes for a microVM: one virtiofsd per shared directory.

The cloud kernel has no 9p (CONFIG_NET_9P is not set) but builds virtiofs as a
module, so volumes go over virtiofs: QEMU's ``vhost-user-fs-device`` talks to
``virtiofsd`` (shipped with Debian's qemu-system-common) over a unix socket, and
virtiofsd serves the directory from its own mount/pid/net namespaces, pivoted into
the shared directory (``sandbox=namespace``).

Read-only volumes: a guest-side MS_RDONLY could be undone by guest root, so the
directory is bind-mounted read-only in a private mount namespace that virtiofsd
then inherits; writes fail on the host side (EROFS) whatever the guest does.
``--rlimit-nofile=0``: this host refuses raising RLIMIT_NOFILE past 20000 and
virtiofsd's default would try 1000000.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from berth.errors import NotFound, RuntimeFailure, UsageError

VIRTIOFSD = Path("/usr/lib/qemu/virtiofsd")


@dataclass(frozen=True)
class Volume:
    host_path: Path
    guest_path: str
    read_only: bool = False

    def __post_init__(self) -> None:
        if not self.guest_path.startswith("/") or ".." in self.guest_path.split("/"):
            raise UsageError(f"VM volume {self.host_path}: guest path {self.guest_path!r} must be absolute, without '..'")


def start(volume: Volume, socket_path: Path, log_path: Path) -> subprocess.Popen:
    """Start virtiofsd for ``volume`` and wait until its socket exists."""
    if not VIRTIOFSD.is_file():
        raise NotFound(f"start virtiofsd: {VIRTIOFSD} missing; run `bash scripts/setup.sh`")
    src = volume.host_path
    if not src.is_dir():
        raise NotFound(f"share volume {src} into the VM: not a directory")
    argv = [str(VIRTIOFSD), f"--socket-path={socket_path}", "-o", f"source={src}",
            "-o", "cache=auto", "-o", "log_level=err", "--rlimit-nofile=0"]
    if volume.read_only:
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(src), *argv]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True)
    deadline = time.monotonic() + 5
    while not socket_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
            raise RuntimeFailure(f"start virtiofsd for {src}: {tail[0] if tail else 'socket did not appear'}")
        time.sleep(0.005)
    return proc

"""An OCI bundle over the image's layers, for the runtimes berth compares (runc-compatible CLIs).

The rootfs is an overlay mount: the image's layer directories below, a fresh
upper directory per instance on top, so the disk an instance costs is what it
writes (``du`` of its upper directory), as with the engine. The config is ``berth-runtime spec``'s:
docker's 14 capabilities, its seccomp allowlist, masked and read-only /proc and
/sys paths, no-new-privileges, a pids limit and a device cgroup.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

from berth.errors import RuntimeFailure
from berth.runtime.container.spec import default_spec


def config(argv: list[str]) -> dict:
    """berth's secure default config (``berth-runtime spec``) running ``argv`` on a writable root."""
    spec = default_spec(argv)
    spec["root"]["readonly"] = False  # the overlay's upper dir takes the writes, as the engine's
    return spec


class Bundle:
    """``DIR/config.json`` and ``DIR/rootfs`` (overlay of the layers and ``DIR/upper``)."""

    def __init__(self, path: Path, layers: list[Path], argv: list[str]):
        self.path = path
        self.upper = path / "upper"
        self.rootfs = path / "rootfs"
        for d in (self.upper, path / "work", self.rootfs):
            d.mkdir(parents=True)
        # overlayfs lists lowerdir top-most first; layers are given lowest first.
        lower = ":".join(str(p) for p in reversed(layers))
        opts = f"lowerdir={lower},upperdir={self.upper},workdir={path / 'work'}"
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.rootfs)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            raise RuntimeFailure(f"mount overlay on {self.rootfs}: {r.stderr.strip()}")
        tmp = path / "config.json.tmp"
        tmp.write_text(json.dumps(config(argv)))
        os.replace(tmp, path / "config.json")

    def remove(self) -> None:
        subprocess.run(["umount", "-l", str(self.rootfs)], capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)

"""An OCI bundle over the image's layers, for the runtimes berth compares (runc-compatible CLIs).

The rootfs is the engine's (``image.rootfs``): an overlay of the image's layer
directories with a fresh upper directory per instance, so the disk an instance
costs is what it writes (``du`` of its upper directory), as with the engine. The config is ``berth-runtime spec``'s:
docker's 14 capabilities, its seccomp allowlist, masked and read-only /proc and
/sys paths, no-new-privileges, a pids limit and a device cgroup.
"""

import json
import os
import shutil
from pathlib import Path

from berth.image.rootfs import mount_rootfs, unmount_rootfs
from berth.runtime.container.spec import default_spec


def config(argv: list[str]) -> dict:
    """berth's secure default config (``berth-runtime spec``) running ``argv`` on a writable root."""
    spec = default_spec(argv)
    spec["root"]["readonly"] = False  # the overlay's upper dir takes the writes, as the engine's
    return spec


class Bundle:
    """``DIR/config.json`` and ``DIR/rootfs`` (the image's rootfs view, writes in ``DIR/upper``)."""

    def __init__(self, path: Path, layers: list[Path], argv: list[str]):
        self.path = path
        self.upper = path / "upper"
        path.mkdir(parents=True)
        try:
            self.rootfs = mount_rootfs(layers, path)
            tmp = path / "config.json.tmp"
            tmp.write_text(json.dumps(config(argv)))
            os.replace(tmp, path / "config.json")
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        unmount_rootfs(self.path)
        shutil.rmtree(self.path, ignore_errors=True)

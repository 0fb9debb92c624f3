"""The engine's one seam to the image store and the root-filesystem mounter.

Everything the engine needs from images goes through here: resolve a
reference to an image (ID, tags, config, layer directories), mount a
container's root filesystem, unmount it, and list the images containers use.

INTERIM (until branch ``images`` lands in main): when ``berth.image.store``
is not importable, the only image is a built-in ``busybox`` made by
``berth.image.busybox.make_rootfs`` under ``<root>/builtin/busybox``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from berth.engine._record import factory, record
from berth.errors import NotFound


class ImageNotFound(NotFound):
    """No image matches the reference (exit 125 like docker's 'Unable to find image')."""


@record
class ImageInfo:
    """What a container needs to know about its image."""

    id: str
    ref: str
    config: dict  # the OCI image config's "config" object (Env, Cmd, ...)
    layer_dirs: list[Path] = factory(list)
    repo_tags: list[str] = factory(list)


def _not_found(ref: str) -> ImageNotFound:
    return ImageNotFound(
        f"unable to find image '{ref}' locally: pull it with 'berth pull {ref}' "
        f"or make the built-in one with 'berth image bootstrap busybox'"
    )


def _store(root: str):
    try:
        from berth.image.store import ImageStore
    except ImportError:
        return None
    return ImageStore(root)


def _builtin(root: str, ref: str) -> ImageInfo:
    name = ref.split(":", 1)[0].removeprefix("docker.io/library/").removeprefix("library/")
    tag = ref.split(":", 1)[1] if ":" in ref else "latest"
    if name != "busybox" or tag != "latest":
        raise _not_found(ref)
    base = Path(root) / "builtin" / "busybox"
    rootfs = base / "rootfs"
    if not (base / "ready").exists():
        import shutil

        from berth.image.busybox import make_rootfs

        tmp = base.with_name(f".busybox.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        make_rootfs(tmp / "rootfs")
        (tmp / "ready").write_text("")
        try:
            os.rename(tmp, base)
        except OSError:  # another process made it first
            shutil.rmtree(tmp, ignore_errors=True)
    import hashlib

    digest = hashlib.sha256(b"berth-builtin-busybox").hexdigest()
    cfg = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
           "Cmd": ["sh"]}
    return ImageInfo(id=f"sha256:{digest}", ref="busybox:latest", config=cfg,
                     layer_dirs=[rootfs], repo_tags=["busybox:latest"])


def get_image(root: str, ref: str) -> ImageInfo:
    """Resolve ``ref`` (name[:tag], digest or ID prefix) to an image.

    Raises:
        ImageNotFound: no such image in the store.
    """
    store = _store(root)
    if store is None:
        return _builtin(root, ref)
    try:
        img = store.get(ref)
    except NotFound:
        raise _not_found(ref) from None
    cfg = dict(img.config.get("config") or {})
    return ImageInfo(id=img.id, ref=ref, config=cfg, layer_dirs=list(store.layer_dirs(img)),
                     repo_tags=list(img.repo_tags))


def set_in_use_hook(root: str, fn) -> None:
    """Tell the image store which image IDs containers use (never removed)."""
    store = _store(root)
    if store is not None and hasattr(store, "set_in_use_hook"):
        store.set_in_use_hook(fn)


def mount_rootfs(image: ImageInfo, container_dir: Path) -> Path:
    """Mount the container's writable root filesystem at ``container_dir/rootfs``
    (overlay of the image's layers; idempotent)."""
    from berth.image.rootfs import mount_rootfs as _mount

    return _mount(image.layer_dirs, container_dir)


def unmount_rootfs(container_dir: Path) -> None:
    """Unmount what ``mount_rootfs`` mounted; a no-op when not mounted."""
    from berth.image.rootfs import unmount_rootfs as _unmount

    _unmount(container_dir)


def image_json(info: ImageInfo) -> str:
    return json.dumps({"Id": info.id, "RepoTags": info.repo_tags})

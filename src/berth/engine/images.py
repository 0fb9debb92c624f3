"""The engine's one seam to the image store and the root-filesystem mounter.

Everything the engine needs from images goes through here: resolve a
reference to an image (ID, tags, config, layer directories), mount a
container's root filesystem, unmount it, and list the images containers use.
"""

from __future__ import annotations

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
    from berth.image.store import ImageStore

    return ImageStore(root)


def get_image(root: str, ref: str) -> ImageInfo:
    """Resolve ``ref`` (name[:tag], digest or ID prefix) to an image.

    Raises:
        ImageNotFound: no such image in the store.
    """
    store = _store(root)
    try:
        img = store.get(ref)
    except NotFound:
        raise _not_found(ref) from None
    cfg = dict(img.config.get("config") or {})
    return ImageInfo(id=img.id, ref=ref, config=cfg, layer_dirs=list(store.layer_dirs(img)),
                     repo_tags=list(img.repo_tags))


def mount_rootfs(image: ImageInfo, container_dir: Path) -> Path:
    """Mount the container's writable root filesystem at ``container_dir/rootfs``
    (overlay of the image's layers; idempotent)."""
    from berth.image.rootfs import mount_rootfs as _mount

    return _mount(image.layer_dirs, container_dir)


def unmount_rootfs(container_dir: Path) -> None:
    """Unmount what ``mount_rootfs`` mounted; a no-op when not mounted."""
    from berth.image.rootfs import unmount_rootfs as _unmount

    _unmount(container_dir)

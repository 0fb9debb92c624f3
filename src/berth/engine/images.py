"""The engine's one seam to the image store and the root-filesystem mounter.

Everything the engine needs from images goes through here: resolve a
reference to an image (ID, tags, config, layer directories), mount a
container's root filesystem, unmount it, and list the images containers use.
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
    from berth.image.store import ImageStore

    return ImageStore(root)


def _index_key(root: str) -> list[int] | None:
    try:
        st = os.stat(os.path.join(root, "images", "index.json"))
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _cached(root: str, ref: str) -> ImageInfo | None:
    """A resolution made while the store's index was exactly as it is now.

    The store's index.json is rewritten (rename) on every tag, pull, load and
    removal, so its (mtime, size, inode) identifies what ``ref`` means; this
    saves importing the store on every ``berth run`` (start-up time).
    """
    key = _index_key(root)
    try:
        with open(os.path.join(root, "engine-images.json")) as f:
            cache = json.load(f)
    except (OSError, ValueError):
        return None
    hit = cache.get("refs", {}).get(ref) if key and cache.get("index") == key else None
    if not hit or not all(os.path.isdir(d) for d in hit["layer_dirs"]):
        return None
    return ImageInfo(id=hit["id"], ref=ref, config=hit["config"], layer_dirs=[Path(d) for d in hit["layer_dirs"]],
                     repo_tags=hit["repo_tags"])


def _remember(root: str, key: list[int] | None, info: ImageInfo) -> None:
    if key is None:
        return
    path = os.path.join(root, "engine-images.json")
    try:
        with open(path) as f:
            cache = json.load(f)
    except (OSError, ValueError):
        cache = {}
    if cache.get("index") != key:
        cache = {"index": key, "refs": {}}
    cache["refs"][info.ref] = {"id": info.id, "config": info.config, "repo_tags": info.repo_tags,
                               "layer_dirs": [str(d) for d in info.layer_dirs]}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(cache, f)
        os.rename(tmp, path)
    except OSError:
        pass


def get_image(root: str, ref: str) -> ImageInfo:
    """Resolve ``ref`` (name[:tag], digest or ID prefix) to an image.

    Raises:
        ImageNotFound: no such image in the store.
    """
    hit = _cached(root, ref)
    if hit is not None:
        return hit
    key = _index_key(root)
    store = _store(root)
    try:
        img = store.get(ref)
    except NotFound:
        raise _not_found(ref) from None
    cfg = dict(img.config.get("config") or {})
    info = ImageInfo(id=img.id, ref=ref, config=cfg, layer_dirs=list(store.layer_dirs(img)),
                     repo_tags=list(img.repo_tags))
    if _index_key(root) == key:  # nothing changed while we looked
        _remember(root, key, info)
    return info


def mount_rootfs(image: ImageInfo, container_dir: Path, volatile: bool = False) -> Path:
    """Mount the container's writable root filesystem at ``container_dir/rootfs``
    (overlay of the image's layers; idempotent; ``volatile``: never synced)."""
    from berth.image.rootfs import mount_rootfs as _mount

    return _mount(image.layer_dirs, container_dir, volatile)


def unmount_rootfs(container_dir: Path) -> None:
    """Unmount what ``mount_rootfs`` mounted; a no-op when not mounted."""
    from berth.image.rootfs import unmount_rootfs as _unmount

    _unmount(container_dir)

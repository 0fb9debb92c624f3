"""The image under comparison, as layer directories every mode can start from.

Once the image store is in place, ``IMAGE`` is looked up there (its unpacked
layer directories and its compressed layer sizes). Until then, and for the
built-in ``busybox`` when the store does not hold it, the rootfs is built from
busybox-static into a cache directory and its fetch size is measured by
compressing it as one gzip layer would be.
"""

import gzip
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import NotFound
from berth.image.busybox import make_rootfs

from .procs import du_bytes

BUILTIN = ("busybox", "busybox:latest")


@dataclass
class ImageRef:
    ref: str
    layers: list[Path]  # lowest first
    size_bytes: int  # disk used by the unpacked layers
    fetch_bytes: int  # compressed layers a new host downloads
    source: str  # "store" or "builtin"
    notes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def _from_store(root: str, ref: str) -> ImageRef | None:
    try:
        from berth.image.store import ImageStore  # lands with the images branch
    except ImportError:
        return None
    store = ImageStore(root)
    try:
        img = store.get(ref)
    except NotFound:
        return None  # the builtin busybox below may still stand in
    layers = [Path(p) for p in store.layer_dirs(img)]
    # The manifest's layer descriptors carry the compressed sizes a pull downloads.
    fetch = sum(int(d.get("size", 0)) for d in img.layers)
    labels = (img.config.get("config") or {}).get("Labels") or {}
    return ImageRef(ref, layers, sum(du_bytes(p) for p in layers), fetch, "store",
                    [f"image {img.short_id} from the engine's store"], dict(labels))


def _gzip_size(rootfs: Path) -> int:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:
            tar.add(str(rootfs), arcname=".")
    return buf.tell()


def resolve(root: str, ref: str, cache: Path) -> ImageRef:
    """Find ``ref`` in the engine's store, or build the builtin busybox.

    Raises:
        NotFound: neither the store nor the builtin has ``ref``.
    """
    found = _from_store(root, ref)
    if found is not None:
        return found
    if ref not in BUILTIN:
        raise NotFound(f"compare {ref}: no such image (pull it first, or use the built-in 'busybox')")
    rootfs = cache / "busybox-rootfs"
    if not (rootfs / "bin" / "busybox").exists():
        tmp = cache / f".busybox-rootfs.{os.getpid()}"
        make_rootfs(tmp)
        os.replace(tmp, rootfs)
    return ImageRef(ref, [rootfs], du_bytes(rootfs), _gzip_size(rootfs), "builtin",
                    ["built from busybox-static; fetch size = one gzip layer of it"])

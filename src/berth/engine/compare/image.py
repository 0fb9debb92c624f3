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


def _from_store(root: str, ref: str) -> ImageRef | None:
    try:
        from berth.image.store import ImageStore  # lands with the images branch
    except ImportError:
        return None
    try:
        store = ImageStore(root)
        img = store.get(ref)
    except Exception:  # noqa: BLE001 - a missing image falls back to the builtin below
        return None
    layers = [Path(p) for p in store.layer_dirs(img)]
    fetch = 0
    for layer in getattr(img, "layers", []) or []:
        fetch += int(getattr(layer, "size", 0) or (layer.get("size", 0) if isinstance(layer, dict) else 0))
    size = sum(du_bytes(p) for p in layers)
    return ImageRef(ref, layers, size, fetch or int(getattr(img, "size", 0) or 0), "store")


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

"""The content-addressed image store under ``<engine root>/images/``.

Layout::

    images/blobs/sha256/<hex>    manifests, configs, compressed layers (verified)
    images/layers/<diffid-hex>/  unpacked layers, shared by images, made on demand
    images/index.json            tags -> image id, image id -> manifests (atomic)
    images/tmp/                  downloads and unpacks in progress (invisible)
    images/gc.lock, index.lock   see ``berth.image.locks``

Visibility rule: an image exists when ``index.json`` names it, and the index is
written last, after every blob it refers to is committed. A process killed at
any point leaves only unreferenced blobs or temp files, which the next
collection (``rmi``, ``prune``) removes.

An image's ID is the digest of its config (as docker's); its ``digest`` is the
digest of the manifest it was pulled, loaded or built with.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from berth.errors import BerthError, Conflict, NotFound, UsageError
from berth.image import mediatypes as mt
from berth.image import reference
from berth.image.blobs import (
    CHUNK,
    DigestMismatch,
    HashingReader,
    atomic_write,
    commit_verified,
    digest_bytes,
    file_digest,
    hex_of,
    write_temp_from,
)
from berth.image.locks import FileLock

INDEX_VERSION = 1


class ImageNotFound(NotFound):
    """No image matches a reference or ID."""


class StoreCorrupt(BerthError):
    """A blob or index entry that does not check out."""


@dataclass
class Image:
    """One image in the store (read-only view; change it through the store)."""

    id: str
    digest: str
    repo_tags: list[str]
    repo_digests: list[str]
    config: dict
    manifest: dict
    layers: list[dict]
    diff_ids: list[str]
    size: int
    created: str
    added: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class ImageStore:
    """Images of one engine root. Safe for concurrent processes and threads."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.base = self.root / "images"
        self.blob_dir = self.base / "blobs" / "sha256"
        self.layer_dir = self.base / "layers"
        self.tmp_dir = self.base / "tmp"
        self.index_path = self.base / "index.json"
        self.gc_lock = FileLock(self.base / "gc.lock")
        self.index_lock = FileLock(self.base / "index.lock")
        self._in_use: Callable[[], Iterable[str]] = lambda: ()

    # ---- hooks -------------------------------------------------------------

    def set_in_use_hook(self, fn: Callable[[], Iterable[str]]) -> None:
        """``fn()`` returns the IDs of images that containers use; those are never removed."""
        self._in_use = fn

    def _images_in_use(self) -> set[str]:
        return set(self._in_use())

    # ---- index -------------------------------------------------------------

    def _read_index(self) -> dict:
        try:
            data = json.loads(self.index_path.read_bytes())
        except FileNotFoundError:
            return {"version": INDEX_VERSION, "images": {}, "tags": {}, "digests": {}}
        except ValueError as e:
            raise StoreCorrupt(f"read image index {self.index_path}: {e}") from e
        for k in ("images", "tags", "digests"):
            data.setdefault(k, {})
        return data

    def _write_index(self, index: dict) -> None:
        atomic_write(self.index_path, json.dumps(index, indent=1, sort_keys=True).encode())

    # ---- blobs -------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blob_dir / hex_of(digest)

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except (FileNotFoundError, UsageError):
            return False
        return size is None or st.st_size == size

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError as e:
            raise StoreCorrupt(f"read blob {digest}: missing from the store") from e

    def open_blob(self, digest: str) -> BinaryIO:
        return open(self.blob_path(digest), "rb")

    def put_blob(
        self,
        src: BinaryIO | Path | bytes,
        media_type: str,
        expected_digest: str | None = None,
        expected_size: int | None = None,
    ) -> dict:
        """Store ``src`` (verified against ``expected_digest`` if given); return its descriptor.

        Raises:
            DigestMismatch: the bytes do not hash to ``expected_digest``.
        """
        if expected_digest is not None:
            hex_of(expected_digest)
            if self.has_blob(expected_digest, expected_size):
                size = self.blob_path(expected_digest).stat().st_size
                return {"mediaType": media_type, "digest": expected_digest, "size": size}
        with self.gc_lock.shared():
            tmp, digest, size = write_temp_from(src, self.tmp_dir)
            commit_verified(
                tmp, self.blob_dir, digest, size, expected_digest, expected_size,
                f"store blob {expected_digest or digest}",
            )
        return {"mediaType": media_type, "digest": digest, "size": size}

    def commit_temp_blob(self, tmp: Path, digest: str, size: int,
                         expected_digest: str | None, expected_size: int | None, what: str) -> None:
        """Commit a temp file (under ``tmp_dir``) already hashed by the caller (registry pulls)."""
        with self.gc_lock.shared():
            commit_verified(tmp, self.blob_dir, digest, size, expected_digest, expected_size, what)

    # ---- writing images ----------------------------------------------------

    def write_image(self, config: dict, layers: list[dict], tags: list[str]) -> Image:
        """Write config blob, an OCI manifest and ``tags`` for layers already put.

        ``layers`` are descriptors of compressed layer blobs, lowest first, each
        with a ``diff_id`` key (digest of the uncompressed tar).
        """
        config = dict(config)
        config["rootfs"] = {"type": "layers", "diff_ids": [d["diff_id"] for d in layers]}
        config.setdefault("architecture", "amd64")
        config.setdefault("os", "linux")
        with self.gc_lock.shared():
            cdesc = self.put_blob(canonical_json(config), mt.OCI_CONFIG)
            manifest = {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": cdesc,
                "layers": [
                    {k: v for k, v in d.items() if k != "diff_id"} for d in layers
                ],
            }
            return self.commit_image(canonical_json(manifest), tags)

    def commit_image(
        self, manifest_bytes: bytes, tags: Iterable[str], repo_digests: Iterable[str] = ()
    ) -> Image:
        """Record a manifest whose config and layer blobs are all in the store.

        This is the single point that makes an image visible.
        """
        manifest = self.parse_manifest(manifest_bytes, "commit image")
        refs = [reference.parse_tag_target(t) for t in tags]
        rdigests = [reference.parse(d, default_tag=False) for d in repo_digests]
        with self.gc_lock.shared():
            for d in [manifest["config"], *manifest.get("layers", [])]:
                if d.get("mediaType") in (mt.DOCKER_FOREIGN_LAYER, mt.OCI_LAYER_NONDIST_GZIP) and d.get("urls"):
                    continue
                if not self.has_blob(d["digest"], d.get("size")):
                    raise StoreCorrupt(f"commit image: blob {d['digest']} is not in the store")
            try:
                config = json.loads(self.read_blob(manifest["config"]["digest"]))
                diff_ids = config["rootfs"]["diff_ids"]
                if not isinstance(diff_ids, list) or not isinstance(config.get("config", {}), dict):
                    raise TypeError("rootfs.diff_ids is not a list")
                for d in diff_ids:
                    hex_of(d)  # they name directories: only sha256 hex passes
            except (ValueError, KeyError, TypeError, AttributeError, UsageError) as e:
                raise StoreCorrupt(f"commit image: config {manifest['config']['digest']} is not an image config: {e}") from e
            if len(diff_ids) != len(manifest.get("layers", [])):
                raise StoreCorrupt(
                    f"commit image: config lists {len(diff_ids)} diff_ids for "
                    f"{len(manifest.get('layers', []))} layers"
                )
            mdesc = self.put_blob(manifest_bytes, manifest.get("mediaType", mt.OCI_MANIFEST))
            image_id = manifest["config"]["digest"]
            with self.index_lock.exclusive():
                index = self._read_index()
                rec = index["images"].setdefault(image_id, {"manifests": [], "added": time.time()})
                if mdesc["digest"] not in rec["manifests"]:
                    rec["manifests"].append(mdesc["digest"])
                rec["digest"] = mdesc["digest"]
                for r in refs:
                    index["tags"][str(r)] = image_id
                for r in rdigests:
                    index["digests"][str(r)] = image_id
                self._write_index(index)
        return self._load(image_id, index)

    @staticmethod
    def parse_manifest(data: bytes, what: str) -> dict:
        try:
            manifest = json.loads(data)
            if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
                raise ValueError("no config descriptor")
            hex_of(manifest["config"]["digest"])
            for d in manifest.get("layers", []):
                hex_of(d["digest"])
        except (ValueError, KeyError, TypeError, UsageError) as e:
            raise StoreCorrupt(f"{what}: not an image manifest: {e}") from e
        return manifest

    # ---- reading images ----------------------------------------------------

    def _load(self, image_id: str, index: dict) -> Image:
        rec = index["images"][image_id]
        manifest = json.loads(self.read_blob(rec["digest"]))
        config = json.loads(self.read_blob(image_id))
        tags = sorted(reference.parse(t).familiar() for t, i in index["tags"].items() if i == image_id)
        digests = sorted(
            reference.parse(t, default_tag=False).familiar()
            for t, i in index["digests"].items() if i == image_id
        )
        layers = manifest.get("layers", [])
        return Image(
            id=image_id,
            digest=rec["digest"],
            repo_tags=tags,
            repo_digests=digests,
            config=config,
            manifest=manifest,
            layers=layers,
            diff_ids=list(config.get("rootfs", {}).get("diff_ids", [])),
            size=sum(int(d.get("size", 0)) for d in layers) + manifest["config"].get("size", 0),
            created=config.get("created", ""),
            added=rec.get("added", 0.0),
        )

    def list(self) -> list[Image]:
        """Every image, newest first. An image whose manifest or config blob is gone
        (damaged store) is left out here; ``fsck`` names it."""
        index = self._read_index()
        out = []
        for i in index["images"]:
            try:
                out.append(self._load(i, index))
            except (StoreCorrupt, ValueError):
                continue
        out.sort(key=lambda im: (im.created, im.added), reverse=True)
        return out

    def _resolve(self, ref_or_id: str, index: dict) -> tuple[str, str | None]:
        """Return (image id, matched tag/digest key or None when matched by ID)."""
        text = ref_or_id.strip()
        parse_error: UsageError | None = None
        if not text.startswith("sha256:"):
            try:
                ref = reference.parse(text, default_tag=False)
            except UsageError as e:
                ref, parse_error = None, e
            if ref is not None:
                if ref.digest:
                    key = str(reference.Reference(ref.domain, ref.path, None, ref.digest))
                    if key in index["digests"]:
                        return index["digests"][key], key
                    # a manifest digest known under any name
                    for iid, rec in index["images"].items():
                        if ref.digest in rec.get("manifests", []):
                            return iid, None
                else:
                    key = str(ref.tagged_or_latest())
                    if key in index["tags"]:
                        return index["tags"][key], key
        hexpart = text[7:] if text.startswith("sha256:") else text
        if hexpart and all(c in "0123456789abcdef" for c in hexpart) and len(hexpart) <= 64:
            matches = [i for i in index["images"] if i[7:].startswith(hexpart)]
            if len(matches) == 1:
                return matches[0], None
            if len(matches) > 1:
                raise UsageError(f"image {ref_or_id}: ambiguous ID prefix ({len(matches)} images match)")
        if parse_error is not None and not (hexpart and all(c in "0123456789abcdef" for c in hexpart)):
            raise parse_error
        raise ImageNotFound(
            f"image {ref_or_id}: not found in {self.root} "
            f"(try 'berth image bootstrap busybox' or 'berth pull {ref_or_id}')"
        )

    def get(self, ref_or_id: str) -> Image:
        """The image named by a reference, a digest reference or an (abbreviated) ID.

        Raises:
            ImageNotFound: nothing matches.
            UsageError: the reference is invalid or the ID prefix ambiguous.
        """
        index = self._read_index()
        iid, _ = self._resolve(ref_or_id, index)
        return self._load(iid, index)

    def exists(self, ref_or_id: str) -> bool:
        try:
            self.get(ref_or_id)
            return True
        except ImageNotFound:
            return False

    # ---- tags and removal ----------------------------------------------------

    def tag(self, src_ref: str, new_ref: str) -> Image:
        target = reference.parse_tag_target(new_ref)
        with self.index_lock.exclusive():
            index = self._read_index()
            iid, _ = self._resolve(src_ref, index)
            index["tags"][str(target)] = iid
            self._write_index(index)
        return self.get(iid)

    def remove(self, ref: str, force: bool = False) -> list[str]:
        """Untag ``ref``; delete the image when nothing names it any more (``docker rmi``).

        Returns docker's ``Untagged: …`` / ``Deleted: …`` lines. An image used
        by a container is kept (its tags go only with ``force``).

        Raises:
            ImageNotFound, Conflict.
        """
        out: list[str] = []
        with self.gc_lock.exclusive(), self.index_lock.exclusive():
            index = self._read_index()
            iid, key = self._resolve(ref, index)
            in_use = iid in self._images_in_use()
            names = [("tags", t) for t, i in index["tags"].items() if i == iid]
            names += [("digests", t) for t, i in index["digests"].items() if i == iid]
            short = iid[7:19]

            def untag(table: str, k: str) -> None:
                del index[table][k]
                out.append(f"Untagged: {reference.parse(k, default_tag=False).familiar()}")

            if key is not None:
                # by name: drop that name; the image goes with its last name
                table = "tags" if key in index["tags"] else "digests"
                if in_use and len(names) == 1 and not force:
                    raise Conflict(
                        f"remove image {ref}: image {short} is being used by a container (use --force to untag)"
                    )
                untag(table, key)
                names.remove((table, key))
                # as docker: digest references alone do not keep an image
                if in_use or any(t == "tags" for t, _ in names):
                    self._write_index(index)
                    return out
                for table, k in names:
                    untag(table, k)
            else:
                if in_use:
                    if not force:
                        raise Conflict(f"remove image {ref}: image {short} is being used by a container")
                    for table, k in names:
                        untag(table, k)
                    self._write_index(index)
                    return out
                if len([n for n in names if n[0] == "tags"]) > 1 and not force:
                    raise Conflict(
                        f"remove image {ref}: image {short} is referenced in multiple repositories (use --force)"
                    )
                for table, k in names:
                    untag(table, k)
            del index["images"][iid]
            out.append(f"Deleted: {iid}")
            self._write_index(index)
            self._collect(index)
        return out

    def prune(self, all_images: bool = False) -> tuple[list[str], int]:
        """Remove dangling images (every unused image with ``all_images``); return (ids, bytes)."""
        with self.gc_lock.exclusive(), self.index_lock.exclusive():
            index = self._read_index()
            in_use = self._images_in_use()
            tagged = set(index["tags"].values())
            gone = [
                i for i in index["images"]
                if i not in in_use and (all_images or i not in tagged)
            ]
            for i in gone:
                del index["images"][i]
                for table in ("tags", "digests"):
                    for k in [k for k, v in index[table].items() if v == i]:
                        del index[table][k]
            if gone:
                self._write_index(index)
            freed = self._collect(index)
        return gone, freed

    def collect(self) -> int:
        """Remove unreferenced blobs, layer dirs and leftovers of killed commands."""
        with self.gc_lock.exclusive(), self.index_lock.exclusive():
            return self._collect(self._read_index())

    def try_collect(self) -> bool:
        """``collect`` if nobody else is using the store right now (after a failed pull)."""
        try:
            with self.gc_lock.exclusive(blocking=False), self.index_lock.exclusive():
                self._collect(self._read_index())
            return True
        except (BlockingIOError, RuntimeError):
            return False

    def _referenced(self, index: dict) -> tuple[set[str], set[str]]:
        blobs: set[str] = set()
        diff_ids: set[str] = set()
        for iid, rec in index["images"].items():
            blobs.add(hex_of(iid))
            for m in rec.get("manifests", []):
                blobs.add(hex_of(m))
                try:
                    manifest = json.loads(self.read_blob(m))
                except (StoreCorrupt, ValueError):
                    continue
                for d in manifest.get("layers", []):
                    blobs.add(hex_of(d["digest"]))
            try:
                config = json.loads(self.read_blob(iid))
            except (StoreCorrupt, ValueError):
                continue
            for d in config.get("rootfs", {}).get("diff_ids", []):
                diff_ids.add(hex_of(d))
        return blobs, diff_ids

    def _collect(self, index: dict) -> int:
        """Caller holds gc.lock exclusively: nobody is adding blobs or unpacking."""
        blobs, diff_ids = self._referenced(index)
        freed = 0
        if self.blob_dir.is_dir():
            for p in self.blob_dir.iterdir():
                if p.name not in blobs:
                    freed += p.lstat().st_size
                    p.unlink()
        if self.layer_dir.is_dir():
            for p in self.layer_dir.iterdir():
                if p.name not in diff_ids:
                    freed += _tree_size(p)
                    _rmtree(p)
        if self.tmp_dir.is_dir():
            for p in self.tmp_dir.iterdir():
                _rmtree(p)
        locks = self.base / "locks"
        if locks.is_dir():
            # nobody holds a layer lock without gc.lock shared, which we exclude
            for p in locks.iterdir():
                if p.name.removeprefix("layer-").removesuffix(".lock") not in diff_ids:
                    p.unlink(missing_ok=True)
        return freed

    # ---- layers on disk --------------------------------------------------------

    def layer_path(self, diff_id: str) -> Path:
        return self.layer_dir / hex_of(diff_id)

    def layer_dirs(self, img: Image) -> list[Path]:
        """Unpacked layer directories of ``img``, lowest first (unpacked on demand)."""
        out = []
        with self.gc_lock.shared():
            for desc, diff_id in zip(img.layers, img.diff_ids, strict=True):
                out.append(self._unpack(desc, diff_id))
        return out

    def _unpack(self, desc: dict, diff_id: str) -> Path:
        dest = self.layer_path(diff_id)
        if dest.is_dir():
            return dest
        lock = FileLock(self.base / "locks" / f"layer-{hex_of(diff_id)}.lock")
        with lock.exclusive():
            if dest.is_dir():
                return dest
            from berth.image.extract import extract_layer  # the safe extractor

            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            staging = self.tmp_dir / f"layer-{hex_of(diff_id)[:16]}-{os.getpid()}-{time.monotonic_ns()}"
            with self.open_blob(desc["digest"]) as raw, decompressed(raw) as plain:
                hr = HashingReader(plain)
                extract_layer(hr, staging)
                hr.drain()  # tar's end-of-archive padding counts toward the diff_id
            if hr.digest != diff_id:
                _rmtree(staging)
                raise DigestMismatch(
                    f"unpack layer {desc['digest']}: content digest {hr.digest} "
                    f"does not match diff_id {diff_id}"
                )
            self.layer_dir.mkdir(parents=True, exist_ok=True)
            os.replace(staging, dest)
        return dest

    # ---- integrity --------------------------------------------------------------

    def fsck(self, repair: bool = False) -> list[str]:
        """Re-hash every blob; report (and with ``repair`` delete) corrupt ones and
        images whose blobs are missing. Returns one line per problem."""
        problems: list[str] = []
        broken: set[str] = set()
        lock = self.gc_lock.exclusive() if repair else self.gc_lock.shared()
        with lock:
            if self.blob_dir.is_dir():
                for p in sorted(self.blob_dir.iterdir()):
                    digest, _ = file_digest(p)
                    if digest != f"sha256:{p.name}":
                        problems.append(f"corrupt blob sha256:{p.name} (content hashes to {digest})")
                        if repair:
                            p.unlink()
            index = self._read_index()
            for iid, rec in index["images"].items():
                for need in [iid, *rec.get("manifests", [])]:
                    if not self.blob_path(need).exists():
                        problems.append(f"image {iid[7:19]}: missing blob {need}")
                        broken.add(iid)
                for m in rec.get("manifests", []):
                    if not self.blob_path(m).exists():
                        continue
                    try:
                        manifest = json.loads(self.read_blob(m))
                    except ValueError:
                        continue
                    for d in manifest.get("layers", []):
                        if not self.blob_path(d["digest"]).exists():
                            problems.append(f"image {iid[7:19]}: missing layer blob {d['digest']}")
                            broken.add(iid)
            if repair:
                # images that lost blobs cannot be used: drop them so a re-pull fetches again
                with self.index_lock.exclusive():
                    index = self._read_index()
                    for iid in list(index["images"]):
                        if iid in broken and iid not in self._images_in_use():
                            del index["images"][iid]
                            for table in ("tags", "digests"):
                                for k in [k for k, v in index[table].items() if v == iid]:
                                    del index[table][k]
                    self._write_index(index)
                    self._collect(index)
        return problems

    def disk_usage(self) -> dict:
        index = self._read_index()
        in_use = self._images_in_use()
        images = [self._load(i, index) for i in index["images"]]
        total = sum(p.stat().st_size for p in self.blob_dir.iterdir()) if self.blob_dir.is_dir() else 0
        used_blobs: set[str] = set()
        for im in images:
            if im.id in in_use:
                used_blobs.update(d["digest"] for d in im.layers)
        reclaim = sum(
            int(d.get("size", 0)) for im in images if im.id not in in_use for d in im.layers
            if d["digest"] not in used_blobs
        )
        layers = sum(_tree_size(p) for p in self.layer_dir.iterdir()) if self.layer_dir.is_dir() else 0
        return {
            "images": len(images),
            "active": len([i for i in images if i.id in in_use]),
            "size": total,
            "unpacked": layers,
            "reclaimable": reclaim,
        }


class decompressed:
    """Context manager: a plain tar stream from a gzip, zstd or uncompressed blob (sniffed)."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self._closer = None

    def __enter__(self) -> BinaryIO:
        head = self.raw.read(4)
        self.raw.seek(0)
        if head[:2] == b"\x1f\x8b":
            import gzip

            s = gzip.GzipFile(fileobj=self.raw, mode="rb")
        elif head == b"\x28\xb5\x2f\xfd":
            import zstandard

            s = zstandard.ZstdDecompressor().stream_reader(self.raw, read_size=CHUNK)
        else:
            return self.raw
        self._closer = s
        return s  # type: ignore[return-value]

    def __exit__(self, *exc) -> None:
        if self._closer is not None:
            self._closer.close()


def _tree_size(p: Path) -> int:
    if p.is_symlink() or not p.is_dir():
        return p.lstat().st_size
    total = 0
    for dirpath, dirnames, filenames in os.walk(p):
        for n in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except FileNotFoundError:
                pass
    return total


def _rmtree(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        # layers may hold read-only dirs (mode 0555); root removes them anyway
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def digest_of_bytes(data: bytes) -> str:
    return digest_bytes(data)

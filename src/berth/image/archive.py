"""Images in and out of files: ``save``/``load`` (docker-archive and OCI image
layout, directory or tar), ``import`` of a rootfs tarball, ``export`` of an
image's flattened filesystem.

``save`` writes one archive that is both: an OCI layout (``oci-layout``,
``index.json``, ``blobs/sha256/…``) plus docker's ``manifest.json`` and
``repositories`` pointing at the same blobs, as docker 25+ does. ``load``
detects the format. Every blob read from an archive is verified against its
digest before it is stored, and the image is committed only at the end.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import shlex
import shutil
import stat
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from berth.errors import NotFound, UsageError
from berth.image import mediatypes as mt
from berth.image import reference
from berth.image.blobs import CHUNK, DigestMismatch, HashingReader, atomic_write, hex_of
from berth.image.layer import layer_from_tar
from berth.image.store import Image, ImageStore, StoreCorrupt, canonical_json, decompressed

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


# ---- save -------------------------------------------------------------------------


def _entries(store: ImageStore, names: list[str]) -> Iterator[tuple[list[str], Image]]:
    """(tags to record, image) per name: a name given by tag keeps that tag, an ID none."""
    index = store._read_index()
    for n in names:
        iid, key = store._resolve(n, index)
        yield ([key] if key in index["tags"] else []), store.get(iid)


def save(store: ImageStore, names: list[str], out: str, fmt: str = "docker-archive") -> None:
    """Write images to ``out`` (a file, ``-`` for stdout, or a directory for ``oci-dir``)."""
    if fmt not in ("docker-archive", "oci-archive", "oci-dir"):
        raise UsageError(f"save: unknown format {fmt!r}")
    with store.gc_lock.shared():
        images = list(_entries(store, names))
        blobs: dict[str, int] = {}
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
        docker_manifest = []
        repositories: dict[str, dict[str, str]] = {}
        for tags, img in images:
            for d in [img.digest, img.id, *(x["digest"] for x in img.layers)]:
                blobs[d] = 1
            desc = {"mediaType": img.manifest.get("mediaType", mt.OCI_MANIFEST), "digest": img.digest,
                    "size": len(store.read_blob(img.digest))}
            if tags:
                r = reference.parse(tags[0])
                desc["annotations"] = {CONTAINERD_NAME: str(r), REF_NAME: r.tag}
            index["manifests"].append(desc)
            familiar = [reference.parse(t).familiar() for t in tags]
            docker_manifest.append({
                "Config": f"blobs/sha256/{hex_of(img.id)}",
                "RepoTags": familiar or None,
                "Layers": [f"blobs/sha256/{hex_of(d['digest'])}" for d in img.layers],
            })
            for t in tags:
                r = reference.parse(t)
                if img.layers:
                    repositories.setdefault(r.familiar_repository, {})[r.tag or "latest"] = hex_of(
                        img.layers[-1]["digest"])
        files: list[tuple[str, bytes | Path]] = [("oci-layout", OCI_LAYOUT)]
        files.append(("index.json", canonical_json(index)))
        if fmt == "docker-archive":
            files.append(("manifest.json", canonical_json(docker_manifest)))
            if repositories:
                files.append(("repositories", canonical_json(repositories)))
        for d in blobs:
            files.append((f"blobs/sha256/{hex_of(d)}", store.blob_path(d)))
        if fmt == "oci-dir":
            _write_dir(Path(out), files)
        else:
            _write_tar(out, files)


def _write_dir(dest: Path, files: list[tuple[str, bytes | Path]]) -> None:
    if dest.exists() and any(dest.iterdir()) and not (dest / "oci-layout").exists():
        raise UsageError(f"save: {dest} exists and is not an OCI layout")
    for name, src in files:
        p = dest / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            atomic_write(p, src)
        elif not p.exists():
            tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
            shutil.copyfile(src, tmp)
            os.replace(tmp, p)


def _write_tar(out: str, files: list[tuple[str, bytes | Path]]) -> None:
    def emit(fileobj: BinaryIO) -> None:
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            dirs = sorted({str(Path(n).parent) for n, _ in files if "/" in n} | {"blobs"})
            for d in dirs:
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            for name, src in files:
                ti = tarfile.TarInfo(name)
                ti.mode = 0o644
                if isinstance(src, bytes):
                    ti.size = len(src)
                    tf.addfile(ti, io.BytesIO(src))
                else:
                    ti.size = src.stat().st_size
                    with open(src, "rb") as f:
                        tf.addfile(ti, f)

    if out == "-":
        emit(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    dest = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent if str(dest.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            emit(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- load -------------------------------------------------------------------------


class _Source:
    """Files of an archive by name: a directory or a (seekable) tar."""

    def __init__(self, path: str, tmp_dir: Path):
        self._tmp: Path | None = None
        self.dir: Path | None = None
        self.tar: tarfile.TarFile | None = None
        if path != "-" and os.path.isdir(path):
            self.dir = Path(path)
            return
        if path == "-":
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="load-", dir=tmp_dir)
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(sys.stdin.buffer, f, CHUNK)
            self._tmp = Path(name)
            path = name
        try:
            self.tar = tarfile.open(path, mode="r:*")
            self.members = {self._norm(m.name): m for m in self.tar.getmembers()}
        except FileNotFoundError as e:
            raise UsageError(f"load {path}: no such file or directory") from e
        except (tarfile.TarError, EOFError, OSError) as e:
            self.close()
            raise UsageError(f"load {path}: not a tar archive or OCI layout") from e

    @staticmethod
    def _norm(name: str) -> str:
        return os.path.normpath(name.lstrip("/")).removeprefix("./")

    def has(self, name: str) -> bool:
        if self.dir is not None:
            p = self.dir / name
            return p.is_file() and not p.is_symlink() and self._inside(p)
        return self._norm(name) in self.members

    def _inside(self, p: Path) -> bool:
        assert self.dir is not None
        return os.path.realpath(p).startswith(os.path.realpath(self.dir) + os.sep)

    def open(self, name: str) -> BinaryIO:
        if ".." in Path(name).parts or name.startswith("/"):
            raise UsageError(f"load: refusing path {name!r} outside the archive")
        if self.dir is not None:
            p = self.dir / name
            if not self.has(name):
                raise UsageError(f"load: {name} missing from {self.dir}")
            return open(p, "rb")
        assert self.tar is not None
        m = self.members.get(self._norm(name))
        if m is None:
            raise UsageError(f"load: {name} missing from the archive")
        f = self.tar.extractfile(m)
        if f is None:
            raise UsageError(f"load: {name} in the archive is not a file")
        return f  # type: ignore[return-value]

    def read_json(self, name: str, limit: int = 8 << 20) -> object:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise UsageError(f"load: {name} is too large")
        try:
            return json.loads(data)
        except ValueError as e:
            raise UsageError(f"load: {name} is not valid JSON: {e}") from e

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def load(store: ImageStore, path: str) -> list[str]:
    """Load every image of a docker-archive or OCI layout; return docker's ``Loaded image…`` lines."""
    with store.gc_lock.shared():
        src = _Source(path, store.tmp_dir)
        try:
            return _load_any(store, src, path)
        except (KeyError, TypeError, AttributeError) as e:
            raise UsageError(f"load {path}: malformed archive metadata ({e.__class__.__name__}: {e})") from e
        finally:
            src.close()


def _load_any(store: ImageStore, src: _Source, path: str) -> list[str]:
    if src.has("manifest.json"):
        return _load_docker(store, src)
    if src.has("index.json"):
        return _load_oci(store, src)
    if src.dir is not None:
        # skopeo's ``oci:DIR/NAME:TAG`` puts the layout one level down
        subs = sorted(p for p in src.dir.iterdir()
                      if p.is_dir() and not p.is_symlink() and (p / "index.json").is_file())
        out: list[str] = []
        for sub in subs:
            out += load(store, str(sub))
        if out:
            return out
    raise UsageError(f"load {path}: neither a docker archive (manifest.json) nor an OCI layout (index.json)")


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{hex_of(digest)}"


def _load_oci(store: ImageStore, src: _Source) -> list[str]:
    index = src.read_json("index.json")
    if not isinstance(index, dict):
        raise UsageError("load: index.json is not an object")
    out = []
    for desc in index.get("manifests", []):
        mtype = desc.get("mediaType")
        ann = desc.get("annotations") or {}
        digest = desc["digest"]
        if mtype in mt.INDEXES:
            from berth.image.registry import select_platform

            with src.open(_blob_name(digest)) as f:
                sub = json.loads(_verified_bytes(f, digest))
            desc = {**select_platform(sub, None, f"load {digest}"), "annotations": ann}
            digest = desc["digest"]
        with src.open(_blob_name(digest)) as f:
            body = _verified_bytes(f, digest)
        manifest = store.parse_manifest(body, f"load {digest}")
        for d in [manifest["config"], *manifest.get("layers", [])]:
            if store.has_blob(d["digest"], d.get("size")):
                continue
            with src.open(_blob_name(d["digest"])) as f:
                store.put_blob(f, d.get("mediaType", ""), d["digest"], d.get("size"))
        name = ann.get(CONTAINERD_NAME) or ann.get(REF_NAME)
        tags = []
        if name and ("/" in name or ":" in name):
            try:
                r = reference.parse(name)
                if not r.digest:
                    tags = [str(r)]
            except UsageError:
                tags = []
        img = store.commit_image(body, tags)
        out.append(f"Loaded image: {img.repo_tags[0]}" if tags else f"Loaded image ID: {img.id}")
    if not out:
        raise UsageError("load: the OCI layout holds no manifests")
    return out


def _verified_bytes(f: BinaryIO, digest: str, limit: int = 8 << 20) -> bytes:
    r = HashingReader(f)
    data = r.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"load: blob {digest} is too large for a manifest")
    if r.digest != digest:
        raise DigestMismatch(f"load: blob {digest} does not match its content ({r.digest})")
    return data


def _load_docker(store: ImageStore, src: _Source) -> list[str]:
    entries = src.read_json("manifest.json")
    if not isinstance(entries, list) or not entries:
        raise UsageError("load: manifest.json is not a list of images")
    out = []
    for e in entries:
        with src.open(e["Config"]) as f:
            cdesc = store.put_blob(f, mt.OCI_CONFIG)
        config = json.loads(store.read_blob(cdesc["digest"]))
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(e["Layers"]):
            raise UsageError(f"load: {e['Config']} lists {len(diff_ids)} layers, manifest.json {len(e['Layers'])}")
        layers = []
        for name, diff_id in zip(e["Layers"], diff_ids, strict=True):
            layers.append(_put_docker_layer(store, src, name, diff_id))
        manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": cdesc, "layers": layers}
        tags = []
        for t in e.get("RepoTags") or []:
            tags.append(str(reference.parse_tag_target(t)))
        img = store.commit_image(canonical_json(manifest), tags)
        if tags:
            out += [f"Loaded image: {reference.parse(t).familiar()}" for t in tags]
        else:
            out.append(f"Loaded image ID: {img.id}")
    return out


def _put_docker_layer(store: ImageStore, src: _Source, name: str, diff_id: str) -> dict:
    """Store a docker-archive layer (plain or compressed) and check it against its diff_id."""
    with src.open(name) as f:
        desc = store.put_blob(f, mt.OCI_LAYER)
    with store.open_blob(desc["digest"]) as raw:
        head = raw.read(4)
        raw.seek(0)
        if head[:2] == b"\x1f\x8b":
            desc["mediaType"] = mt.OCI_LAYER_GZIP
        elif head == b"\x28\xb5\x2f\xfd":
            desc["mediaType"] = mt.OCI_LAYER_ZSTD
        if desc["mediaType"] == mt.OCI_LAYER:
            got = desc["digest"]
        else:
            with decompressed(raw) as plain:
                hr = HashingReader(plain)
                hr.drain()
                got = hr.digest
    if got != diff_id:
        raise DigestMismatch(f"load: layer {name} has content digest {got}, config says {diff_id}")
    return desc


# ---- import -------------------------------------------------------------------------


def _apply_changes(cfg: dict, changes: list[str]) -> None:
    for ch in changes:
        word, _, rest = ch.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if not rest:
            raise UsageError(f"import: --change {ch!r}: missing value")

        def args(v: str, ch: str = ch) -> list[str]:
            if v.startswith("["):
                try:
                    x = json.loads(v)
                except ValueError:
                    x = None
                if not isinstance(x, list) or not all(isinstance(i, str) for i in x):
                    raise UsageError(f"import: --change {ch!r}: want a JSON array of strings")
                return x
            return ["/bin/sh", "-c", v]

        if word == "CMD":
            cfg["Cmd"] = args(rest)
        elif word == "ENTRYPOINT":
            cfg["Entrypoint"] = args(rest)
        elif word == "ENV":
            pairs = [rest] if "=" not in rest.split()[0] else shlex.split(rest)
            for p in pairs:
                k, sep, v = p.partition("=")
                if not sep:
                    k, _, v = rest.partition(" ")
                env = [e for e in cfg.get("Env", []) if not e.startswith(k + "=")]
                cfg["Env"] = env + [f"{k}={v.strip()}"]
        elif word == "WORKDIR":
            cfg["WorkingDir"] = rest
        elif word == "USER":
            cfg["User"] = rest
        elif word == "EXPOSE":
            for port in rest.split():
                cfg.setdefault("ExposedPorts", {})[port if "/" in port else f"{port}/tcp"] = {}
        elif word == "LABEL":
            for p in shlex.split(rest):
                k, _, v = p.partition("=")
                cfg.setdefault("Labels", {})[k] = v
        elif word == "VOLUME":
            for v in args(rest) if rest.startswith("[") else rest.split():
                cfg.setdefault("Volumes", {})[v] = {}
        elif word == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        else:
            raise UsageError(f"import: --change {word}: unsupported instruction")


def import_rootfs(store: ImageStore, path: str, ref: str | None = None, *, changes: list[str] | None = None,
                  message: str = "") -> Image:
    """``docker import``: one layer from a rootfs tarball (``-`` = stdin), optionally tagged."""
    tag = str(reference.parse_tag_target(ref)) if ref else None
    cfg: dict = {}
    _apply_changes(cfg, changes or [])
    with store.gc_lock.shared():
        tmp = None
        try:
            if path == "-":
                store.tmp_dir.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(prefix="import-", dir=store.tmp_dir)
                with os.fdopen(fd, "wb") as f:
                    shutil.copyfileobj(sys.stdin.buffer, f, CHUNK)
                tmp = Path(name)
            layer = layer_from_tar(store, tmp or Path(path))
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        config = {
            "created": now, "architecture": "amd64", "os": "linux", "config": cfg,
            "history": [{"created": now, "created_by": "berth import", "comment": message or "Imported from " + (
                "-" if path == "-" else os.path.basename(path))}],
        }
        return store.write_image(config, [layer], [tag] if tag else [])


# ---- export -----------------------------------------------------------------------------

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    for x in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, x, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def merged_tree(layer_dirs: list[Path]) -> dict[str, str]:
    """The union view of unpacked layers (lowest first) as ``{relpath: host path}``,
    applying overlay whiteouts (char 0:0), opaque directories, and OCI ``.wh.`` files."""
    result: dict[str, str] = {}
    hidden: set[str] = set()      # removed by an upper layer
    opaque: set[str] = set()      # lower contents hidden below these
    nondir: set[str] = set()      # an upper layer has a non-directory here

    def shadowed(rel: str) -> bool:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            anc = "/".join(parts[:i])
            if anc in hidden or anc in opaque or anc in nondir:
                return True
        return rel in hidden

    for top in reversed(layer_dirs):
        new_hidden, new_opaque, new_nondir = set(), set(), set()
        for dirpath, dirnames, filenames in os.walk(top):
            rel_dir = os.path.relpath(dirpath, top)
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in dirnames + filenames:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                host = os.path.join(dirpath, name)
                st = os.lstat(host)
                if name == ".wh..wh..opq":
                    new_opaque.add(rel_dir)
                    continue
                if name.startswith(".wh."):
                    new_hidden.add(f"{rel_dir}/{name[4:]}" if rel_dir else name[4:])
                    continue
                if _is_whiteout(st):
                    new_hidden.add(rel)
                    continue
                if shadowed(rel):
                    continue
                if stat.S_ISDIR(st.st_mode) and _is_opaque(host):
                    new_opaque.add(rel)
                if not stat.S_ISDIR(st.st_mode):
                    new_nondir.add(rel)
                result.setdefault(rel, host)
            dirnames[:] = [d for d in dirnames if not shadowed(f"{rel_dir}/{d}" if rel_dir else d)]
        hidden |= new_hidden
        opaque |= new_opaque
        nondir |= new_nondir
    return result


def write_tree_tar(tree: dict[str, str], out: BinaryIO, on_entry: Callable[[str], None] | None = None) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for rel in sorted(tree):
            tf.add(tree[rel], arcname=rel, recursive=False)


def export_image(store: ImageStore, name: str, out: str) -> None:
    """Write the flattened filesystem of image ``name`` as a tar (``-`` = stdout)."""
    with store.gc_lock.shared():
        img = store.get(name)
        try:
            tree = merged_tree(store.layer_dirs(img))
        except StoreCorrupt as e:
            raise NotFound(f"export {name}: {e}") from e
        if out == "-":
            write_tree_tar(tree, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        dest = Path(out)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write_tree_tar(tree, f)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # as a file the user created, not mkstemp's 0600
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

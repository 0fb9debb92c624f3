"""Unpack a multi-layer ~50 MB image: berth's extract_layer versus ``umoci unpack``.

Writes an OCI image layout (random data in many files, gzip layers) to a
temporary directory, then times, best of --runs:

- berth: ``extract_layer`` of every layer into its own directory (berth's
  per-layer store, which overlayfs stacks);
- umoci: ``umoci unpack --image DIR:bench BUNDLE`` (one merged rootfs plus its
  mtree manifest, umoci's normal unpack).

Prints both times and the ratio berth/umoci (target: at or below 1.0).
Run as root: ``.venv/bin/python bench/unpack_vs_umoci.py``.
"""

import argparse
import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from berth.image.extract import extract_layer


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(rng: random.Random, index: int, mbytes: float) -> tuple[bytes, bytes]:
    """One layer: many small files, a few large ones, dirs and symlinks; (tar, gzip)."""
    buf = io.BytesIO()
    budget = int(mbytes * (1 << 20))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        n = 0
        while budget > 0:
            d = f"layer{index}/d{n // 50}"
            if n % 50 == 0:
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
                tf.addfile(ti)
            size = rng.choice([512, 2048, 4096, 16384, 65536]) if n % 100 else 1 << 20
            size = min(size, budget)
            ti = tarfile.TarInfo(f"{d}/f{n}")
            ti.size, ti.mode, ti.mtime, ti.uid, ti.gid = size, 0o644, 1_600_000_000, 1000, 1000
            tf.addfile(ti, io.BytesIO(rng.randbytes(size)))
            if n % 10 == 0:
                ln = tarfile.TarInfo(f"{d}/l{n}")
                ln.type, ln.linkname, ln.mtime = tarfile.SYMTYPE, f"f{n}", 1_600_000_000
                tf.addfile(ln)
            budget -= size
            n += 1
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=1)


def make_layout(layout: Path, layers: int, total_mb: float, seed: int = 1) -> None:
    rng = random.Random(seed)
    (layout / "blobs/sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    descs, diff_ids = [], []
    for i in range(layers):
        raw, gz = _layer(rng, i, total_mb / layers)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        descs.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, gz)}
        )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cdesc = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_blob(layout, json.dumps(config).encode()),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cdesc,
        "layers": descs,
    }
    mdesc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_blob(layout, json.dumps(manifest).encode()),
    }
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))


def _layer_paths(layout: Path) -> list[Path]:
    index = json.loads((layout / "index.json").read_text())
    mdig = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs/sha256" / mdig).read_text())
    return [layout / "blobs/sha256" / d["digest"].split(":")[1] for d in manifest["layers"]]


def time_berth(layout: Path, work: Path) -> float:
    out = work / "berth"
    out.mkdir()
    t0 = time.perf_counter()
    for i, blob in enumerate(_layer_paths(layout)):
        extract_layer(blob, out / str(i))
    dt = time.perf_counter() - t0
    shutil.rmtree(out)
    return dt


def time_umoci(layout: Path, work: Path) -> float:
    bundle = work / "umoci"
    t0 = time.perf_counter()
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)],
        check=True,
        capture_output=True,
    )
    dt = time.perf_counter() - t0
    shutil.rmtree(bundle)
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--mb", type=float, default=50.0, help="uncompressed image size")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("umoci") is None:
        print("umoci not installed (apt-get install umoci)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="berth-bench-unpack-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        layout = work / "layout"
        make_layout(layout, args.layers, args.mb)
        layers = len(_layer_paths(layout))
        berth = min(time_berth(layout, work) for _ in range(args.runs))
        umoci = min(time_umoci(layout, work) for _ in range(args.runs))
    print(f"image: {layers} gzip layers, {args.mb:.0f} MB uncompressed; best of {args.runs}")
    print(f"berth extract_layer: {berth * 1000:8.1f} ms")
    print(f"umoci unpack:        {umoci * 1000:8.1f} ms")
    print(f"ratio berth/umoci:   {berth / umoci:8.2f}x (target <= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

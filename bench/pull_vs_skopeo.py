#!/usr/bin/env python3
"""Pull of a ~50 MB multi-layer image from a local registry: berth vs skopeo.

Starts Debian's docker-registry on 127.0.0.1 (storage in a temp dir), pushes a
generated image (random-content layers, gzip), then times

  berth --root EMPTY pull REF                  (a fresh empty store each run)
  skopeo copy docker://REF oci:EMPTYDIR:tag    (a fresh empty directory each run)

and prints both medians and the ratio (target: berth <= 1.2x skopeo).

Usage: .venv/bin/python bench/pull_vs_skopeo.py [--mb 50] [--layers 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from berth.image import mediatypes as mt
from berth.image.blobs import digest_bytes
from berth.image.registry import push
from berth.image.store import ImageStore

BERTH = str(Path(sys.executable).parent / "berth")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_registry(d: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    (d / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    p = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).read()
            return p, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    raise SystemExit("docker-registry did not start")


def make_image(store: ImageStore, total_mb: int, nlayers: int, ref: str) -> None:
    per = total_mb * 1_000_000 // nlayers
    layers = []
    for i in range(nlayers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for j in range(8):  # several files a layer, random (incompressible) content
                data = os.urandom(per // 8)
                ti = tarfile.TarInfo(f"layer{i}/file{j}")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        plain = buf.getvalue()
        desc = store.put_blob(gzip.compress(plain, compresslevel=1, mtime=0), mt.OCI_LAYER_GZIP)
        desc["diff_id"] = digest_bytes(plain)
        layers.append(desc)
    store.write_image({"config": {"Cmd": ["sh"]}}, layers, [ref])


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    # an installed package has its bytecode compiled; PYTHONDONTWRITEBYTECODE (set on
    # some CI hosts) would otherwise make every berth run recompile its sources
    import compileall

    import berth

    compileall.compile_dir(os.path.dirname(berth.__file__), quiet=1)
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/setup.sh)")
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
        t = Path(tmp)
        (t / "reg").mkdir()
        reg, host = start_registry(t / "reg")
        try:
            ref = f"{host}/bench/big:1"
            src = ImageStore(t / "src")
            make_image(src, a.mb, a.layers, ref)
            push(src, ref)
            size = sum(d["size"] for d in src.get(ref).layers)
            berth_t, skopeo_t = [], []
            for i in range(a.runs):
                # alternate so neither always gets the warmer page cache
                root = t / f"b{i}"
                berth_t.append(timed([BERTH, "--root", str(root), "pull", "-q", ref]))
                shutil.rmtree(root)
                oci = t / f"s{i}"
                skopeo_t.append(timed(["skopeo", "copy", "--src-tls-verify=false",
                                       f"docker://{ref}", f"oci:{oci}:x"]))
                shutil.rmtree(oci)
        finally:
            os.kill(reg.pid, signal.SIGKILL)
            reg.wait()
    b, s = statistics.median(berth_t), statistics.median(skopeo_t)
    print(f"image: {a.layers} layers, {size / 1e6:.1f} MB compressed; {a.runs} runs, median")
    print(f"berth pull:  {b * 1000:.0f} ms")
    print(f"skopeo copy: {s * 1000:.0f} ms")
    print(f"ratio berth/skopeo: {b / s:.2f} (target <= 1.20)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

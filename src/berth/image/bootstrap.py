"""Base images without internet: ``busybox`` from busybox-static, ``debian:SUITE``
from debootstrap against the Debian mirror this machine's apt uses.

Both are deterministic one-layer images: names sorted, mtimes fixed, owners
numeric, gzip without timestamp, so bootstrapping twice gives the same digest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from berth.errors import NotFound, RuntimeFailure, UsageError
from berth.image import reference
from berth.image.busybox import BUSYBOX, make_rootfs
from berth.image.layer import layer_from_dir, layer_from_tar
from berth.image.store import Image, ImageStore

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EPOCH = "1970-01-01T00:00:00Z"
APT_SOURCES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d")
SUITES = ("bookworm", "trixie", "bullseye", "sid", "stable", "testing", "unstable", "oldstable")


def _config(cmd: list[str], created: str, comment: str) -> dict:
    return {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [DEFAULT_PATH], "Cmd": cmd},
        "history": [{"created": created, "created_by": comment}],
    }


def bootstrap_busybox(store: ImageStore, tag: str = "busybox:latest") -> Image:
    """A one-layer busybox image, tagged ``busybox:latest``, ``Cmd ["sh"]``."""
    if not os.path.exists(BUSYBOX):
        raise NotFound(f"bootstrap busybox: {BUSYBOX} missing (apt-get install busybox-static)")
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    with store.gc_lock.shared():
        with tempfile.TemporaryDirectory(prefix="bootstrap-", dir=store.tmp_dir) as d:
            rootfs = make_rootfs(Path(d) / "rootfs")
            layer = layer_from_dir(store, rootfs, mtime=0)
        return store.write_image(
            _config(["sh"], EPOCH, f"berth image bootstrap busybox ({BUSYBOX})"), [layer], [tag]
        )


def apt_mirror(suite: str, sources: tuple[str, ...] = APT_SOURCES) -> str:
    """The first Debian mirror URI apt is configured with for ``suite`` (or any suite)."""
    entries: list[tuple[str, list[str]]] = []
    files: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            files += sorted(x for x in p.iterdir() if x.suffix in (".list", ".sources"))
        elif p.is_file():
            files.append(p)
    for f in files:
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, v in (ln.split(":", 1) for ln in stanza.splitlines()
                                 if ":" in ln and not ln.lstrip().startswith("#"))
                )
                if "deb" in fields.get("types", "deb").split() and fields.get("enabled", "yes") != "no":
                    for uri in fields.get("uris", "").split():
                        entries.append((uri, fields.get("suites", "").split()))
        else:
            for ln in text.splitlines():
                m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", ln)
                if m:
                    entries.append((m.group(1), [m.group(2)]))
    plain = [(u, s) for u, s in entries if "security" not in u]
    for uri, suites in plain:
        if suite in suites:
            return uri
    if plain:
        return plain[0][0]
    raise NotFound(f"bootstrap debian:{suite}: no Debian mirror in {', '.join(sources)}")


def bootstrap_debian(store: ImageStore, suite: str = "bookworm", tag: str | None = None,
                     mirror: str | None = None) -> Image:
    """``debootstrap --variant=minbase SUITE`` as a one-layer image, the rootfs tarball cached
    under ``<root>/cache``."""
    if suite not in SUITES:
        raise UsageError(f"bootstrap debian:{suite}: unknown suite (one of {', '.join(SUITES)})")
    if shutil.which("debootstrap") is None:
        raise NotFound("bootstrap debian: debootstrap is not installed (apt-get install debootstrap)")
    cache = store.root / "cache" / f"debootstrap-{suite}-minbase-amd64.tar"
    if not cache.exists():
        mirror = mirror or apt_mirror(suite)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=cache.parent) as d:
            target = Path(d) / "rootfs"
            r = subprocess.run(
                ["debootstrap", "--variant=minbase", suite, str(target), mirror],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            if r.returncode != 0:
                last = (r.stdout.strip().splitlines() or ["?"])[-1]
                raise RuntimeFailure(f"bootstrap debian:{suite}: debootstrap failed: {last}")
            # apt lists and caches are large and stale in an image
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                p = target / junk
                if p.is_dir():
                    for x in p.iterdir():
                        if x.is_file():
                            x.unlink()
            part = Path(d) / "rootfs.tar"
            subprocess.run(
                ["tar", "--sort=name", "--numeric-owner", "--mtime=@0", "--xattrs",
                 "-C", str(target), "-cf", str(part), "."],
                check=True,
            )
            os.replace(part, cache)
    with store.gc_lock.shared():
        layer = layer_from_tar(store, cache)
        tag = tag or f"debian:{suite}"
        reference.parse_tag_target(tag)
        return store.write_image(
            _config(["bash"], EPOCH, f"debootstrap --variant=minbase {suite}"), [layer], [tag]
        )


def bootstrap(store: ImageStore, what: str) -> Image:
    """Dispatch ``busybox``/``busybox:latest`` and ``debian:SUITE``."""
    name, _, tag = what.partition(":")
    if name == "busybox" and tag in ("", "latest"):
        return bootstrap_busybox(store)
    if name == "debian":
        return bootstrap_debian(store, tag or "bookworm")
    raise UsageError(f"bootstrap {what}: unknown base image (busybox, debian:bookworm)")

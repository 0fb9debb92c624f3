"""The guest's initramfs: berth-agent as /init plus the kernel modules it loads.

Written as a newc cpio archive by berth itself (no ``cpio`` process), uncompressed:
the archive is about a megabyte and gunzip under TCG costs more guest time than
reading the bytes. Cached under ``<cache>/initramfs/<key>.cpio`` where the key hashes
the agent binary, the kernel release and the module files, so a rebuilt agent or
an upgraded kernel gets a new archive and nothing is rebuilt otherwise.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from berth.errors import NotFound
from berth.paths import libexec
from berth.runtime.vm._hash import sha256
from berth.runtime.vm.kernel import SETUP_HINT, Kernel

AGENT = "berth-agent"


def _entry(name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple[int, int] = (0, 0)) -> bytes:
    namez = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0)
    hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = hdr + namez
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def build_cpio(agent: bytes, modules: list[tuple[str, str, bytes]]) -> bytes:
    """A newc archive: /init (the agent), /dev/console, /lib/modules/*.ko, /modules.list."""
    parts = []
    ino = 1
    for d in ("dev", "proc", "sys", "run", "lib", "lib/modules", "newroot"):
        parts.append(_entry(d, stat.S_IFDIR | 0o755, ino=ino))
        ino += 1
    parts.append(_entry("dev/console", stat.S_IFCHR | 0o600, ino=ino, rdev=(5, 1)))
    ino += 1
    parts.append(_entry("init", stat.S_IFREG | 0o755, agent, ino=ino))
    ino += 1
    listing = []
    for group, name, data in modules:
        parts.append(_entry(f"lib/modules/{name}", stat.S_IFREG | 0o644, data, ino=ino))
        listing.append(f"{group} /lib/modules/{name}\n")
        ino += 1
    parts.append(_entry("modules.list", stat.S_IFREG | 0o644, "".join(listing).encode(), ino=ino))
    parts.append(_entry("TRAILER!!!", 0))
    return b"".join(parts)


def _read_module(path: Path) -> tuple[str, bytes]:
    data = path.read_bytes()
    name = path.name
    if name.endswith(".xz"):  # decompress on the host: the agent only does finit_module
        import lzma

        data, name = lzma.decompress(data), name[:-3]
    elif name.endswith(".zst"):
        import zstandard

        data, name = zstandard.ZstdDecompressor().decompressobj().decompress(data), name[:-4]
    return name, data


def agent_path() -> Path:
    path = libexec(AGENT)
    if not path.is_file():
        raise NotFound(f"find guest agent {path}: not built; {SETUP_HINT}")
    return path


def ensure(kernel: Kernel, cache_dir: Path) -> Path:
    """Path of the cached initramfs for ``kernel``, building it on first use."""
    agent = agent_path()
    h = sha256()
    agent_bytes = agent.read_bytes()
    h.update(b"agent " + sha256(agent_bytes).digest())
    h.update(f"kernel {kernel.release}\n".encode())
    for group, m in kernel.modules:
        ms = m.stat()
        h.update(f"module {group} {m} {ms.st_size} {ms.st_mtime_ns}\n".encode())
    key = h.hexdigest()[:32]
    out = cache_dir / "initramfs" / f"{key}.cpio"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    data = build_cpio(agent_bytes, [(g, *_read_module(m)) for g, m in kernel.modules])
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)  # atomic: concurrent builders produce identical files
    return out

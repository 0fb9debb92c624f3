"""A newc cpio initramfs from the image's layers, for the direct-QEMU VM driver.

The kernel unpacks concatenated cpio archives in order, so the image archive is
built once (and cached) and each run appends a small archive holding only
``/init`` and ``/dev/console`` (the kernel opens /dev/console for init before
any devtmpfs exists).
"""

import os
import stat
from pathlib import Path

TRAILER = "TRAILER!!!"


def _entry(name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple[int, int] = (0, 0)) -> bytes:
    nb = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + nb
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def _merged(layers: list[Path]) -> dict[str, Path]:
    """Relative path -> the layer file that wins (upper layers override, whiteouts delete)."""
    files: dict[str, Path] = {}
    for layer in layers:
        for dirpath, dirnames, filenames in os.walk(layer):
            rel_dir = os.path.relpath(dirpath, layer)
            for name in sorted(dirnames + filenames):
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if name == ".wh..wh..opq":
                    parent = os.path.dirname(rel)
                    for k in [k for k in files if k.startswith(parent + "/")]:
                        del files[k]
                elif name.startswith(".wh."):
                    gone = os.path.join(os.path.dirname(rel), name[4:])
                    for k in [k for k in files if k == gone or k.startswith(gone + "/")]:
                        del files[k]
                else:
                    files[rel] = Path(dirpath) / name
    return files


def write_image_archive(layers: list[Path], dest: Path) -> int:
    """Write the merged layers as a newc archive (without trailer) to ``dest``; returns its size."""
    tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        for ino, (rel, src) in enumerate(sorted(_merged(layers).items()), start=1):
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(src).encode()
            elif stat.S_ISREG(st.st_mode):
                data = src.read_bytes()
            elif stat.S_ISDIR(st.st_mode):
                data = b""
            else:
                continue  # device nodes, fifos, sockets: the guest's devtmpfs provides devices
            out.write(_entry(rel, st.st_mode, data, ino))
    os.replace(tmp, dest)
    return dest.stat().st_size


def init_archive(init_script: str) -> bytes:
    """The per-run archive: /dev/console, /init, and the trailer that ends the initramfs."""
    return (
        _entry("dev", stat.S_IFDIR | 0o755, ino=900001)
        + _entry("dev/console", stat.S_IFCHR | 0o600, ino=900002, rdev=(5, 1))
        + _entry("init", stat.S_IFREG | 0o755, init_script.encode(), ino=900003)
        + _entry(TRAILER, 0)
    )

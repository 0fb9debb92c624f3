"""A newc cpio initramfs from the image's layers, for the direct-QEMU VM driver.

The kernel unpacks concatenated cpio archives in order, so the image archive is
built once (and cached) and each run appends a small archive holding only
``/init`` and ``/dev/console`` (the kernel opens /dev/console for init before
any devtmpfs exists).
"""

import os
import shutil
import stat
import tempfile
from pathlib import Path

from berth.image.rootfs import copy_layer_flat

TRAILER = "TRAILER!!!"


def _entry(name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple[int, int] = (0, 0)) -> bytes:
    nb = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + nb
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def write_image_archive(layers: list[Path], dest: Path) -> int:
    """Write the image's flattened layers as a newc archive (without trailer) to ``dest``; returns its size."""
    tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    stage = Path(tempfile.mkdtemp(prefix=".flat-", dir=dest.parent))
    try:
        # Layers bottom first, whiteouts and opaque dirs applied as the engine's copy fallback does.
        for layer in layers:
            copy_layer_flat(Path(layer), stage)
        with open(tmp, "wb") as out:
            ino = 0
            for dirpath, dirnames, filenames in os.walk(stage):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    src = Path(dirpath) / name
                    st = os.lstat(src)
                    if stat.S_ISLNK(st.st_mode):
                        data = os.readlink(src).encode()
                    elif stat.S_ISREG(st.st_mode):
                        data = src.read_bytes()
                    elif stat.S_ISDIR(st.st_mode):
                        data = b""
                    else:
                        continue  # device nodes, fifos, sockets: the guest's devtmpfs provides devices
                    ino += 1
                    out.write(_entry(str(src.relative_to(stage)), st.st_mode, data, ino))
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        tmp.unlink(missing_ok=True)
    return dest.stat().st_size


def init_archive(init_script: str) -> bytes:
    """The per-run archive: /dev/console, /init, and the trailer that ends the initramfs."""
    return (
        _entry("dev", stat.S_IFDIR | 0o755, ino=900001)
        + _entry("dev/console", stat.S_IFCHR | 0o600, ino=900002, rdev=(5, 1))
        + _entry("init", stat.S_IFREG | 0o755, init_script.encode(), ino=900003)
        + _entry(TRAILER, 0)
    )

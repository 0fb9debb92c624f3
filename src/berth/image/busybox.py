"""A busybox root filesystem from Debian's busybox-static: no network needed."""

import os
import shutil
import subprocess
from pathlib import Path

from berth.errors import NotFound

BUSYBOX = "/bin/busybox"


def make_rootfs(dest: str | os.PathLike) -> Path:
    """Populate ``dest`` with busybox, its applet links and minimal /etc files.

    Raises:
        NotFound: busybox-static is not installed.
    """
    if not os.path.exists(BUSYBOX):
        raise NotFound(f"bootstrap busybox: {BUSYBOX} missing (run the README's set-up)")
    root = Path(dest)
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "etc",
        "root",
        "var",
        "run",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run(
        [BUSYBOX, "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for path in applets:
        link = root / path
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(root / "bin" / "busybox", link.parent))
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "etc" / "hostname").write_text("busybox\n")
    return root

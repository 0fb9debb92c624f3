"""Fixtures for the engine's end-to-end tests.

Every test gets the session's engine root (the busybox image is made once)
and a finalizer that force-removes every container the test created, so a
failing test leaves no process, mount, cgroup or file behind.

The OCI runtime is ``$BERTH_RUNTIME`` when set (e.g. runc, to compare),
otherwise the project's ``berth-runtime``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import BERTH  # noqa: E402

os.environ.setdefault("BERTH_RUNTIME", str(Path(sys.executable).parent / "berth-runtime"))


class Berth:
    """Runs the ``berth`` CLI against one engine root."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, *args: str, input: str | bytes | None = None, timeout: float = 60,
                 check: bool = False) -> subprocess.CompletedProcess:
        binary = isinstance(input, bytes)
        p = subprocess.run([BERTH, "--root", str(self.root), *args], input=input,
                           capture_output=True, text=not binary, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)} -> {p.returncode}: {p.stderr}")
        return p

    def out(self, *args: str, **kw) -> str:
        return self(*args, check=True, **kw).stdout

    def ids(self) -> set[str]:
        return set(self.out("ps", "-a", "-q", "--no-trunc").split())

    def status(self, ref: str) -> dict:
        return json.loads(self.out("inspect", ref))[0]["State"]


@pytest.fixture(scope="session")
def engine_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("engine")
    from berth.cli.main import COMMANDS

    if "image" in COMMANDS:  # once the image store is in: make the built-in busybox image
        subprocess.run([BERTH, "--root", str(root), "image", "bootstrap", "busybox"], capture_output=True)
    yield root
    subprocess.run([BERTH, "--root", str(root), "system", "prune", "--volumes"], capture_output=True)
    subprocess.run([BERTH, "--root", str(root), "volume", "prune", "--all"], capture_output=True)
    for p in (root / "containers").glob("*/rootfs"):
        subprocess.run(["umount", "-l", str(p)], capture_output=True)
    # The default bridge and our nft table belong to this root: leave the
    # host's links and ruleset as the session found them.
    subprocess.run([BERTH, "--root", str(root), "system", "reset", "--force"], capture_output=True)


@pytest.fixture
def berth(engine_root) -> Berth:
    b = Berth(engine_root)
    before = b.ids()
    yield b
    for cid in b.ids() - before:
        b("rm", "-f", "-v", cid)


@pytest.fixture
def client(engine_root, berth):
    import berth as berth_pkg

    return berth_pkg.Client(str(engine_root))

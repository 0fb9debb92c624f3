"""Helpers for berth-runtime's tests (a uniquely named module: test
directories share one import namespace, so ``conftest`` is ambiguous)."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
RUNTIME = str(VENV_BIN / "berth-runtime")


class Bundle:
    """An OCI bundle: BUNDLE/rootfs (busybox) + BUNDLE/config.json (default_spec)."""

    def __init__(self, path: Path):
        self.path = path
        self.rootfs = path / "rootfs"

    @property
    def config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    def write(self, cfg: dict) -> None:
        (self.path / "config.json").write_text(json.dumps(cfg, indent=1))

    def set(self, args: list[str] | None = None, edit=None) -> "Bundle":
        """Set process.args (terminal off) and/or apply ``edit(cfg)``."""
        cfg = self.config
        if args is not None:
            cfg["process"]["args"] = args
        cfg["process"]["terminal"] = False
        if edit is not None:
            edit(cfg)
        self.write(cfg)
        return self


class Runtime:
    """Runs berth-runtime with a private --root; tracks IDs for clean-up."""

    def __init__(self, root: Path):
        self.root = root
        self.ids: list[str] = []

    def new_id(self, prefix: str = "t") -> str:
        cid = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args: str, check: bool = False, timeout: float = 60, **kw):
        """Run ``berth-runtime --root ROOT ARGS``; stdout/stderr captured as text.

        ``create`` and detached ``run`` hand their stdio to the container,
        which keeps it open: their output goes through files, not pipes
        (a pipe would not reach end-of-file while the container lives).
        """
        import tempfile

        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            kw.setdefault("stdout", out)
            kw.setdefault("stderr", err)
            r = subprocess.run([RUNTIME, "--root", str(self.root), *args], text=True,
                               timeout=timeout, **kw)
            for name, f in (("stdout", out), ("stderr", err)):
                if kw[name] is f:
                    f.seek(0)
                    setattr(r, name, f.read())
        if check and r.returncode != 0:
            raise AssertionError(f"berth-runtime {' '.join(args)} -> {r.returncode}: {r.stderr}")
        return r

    def create(self, bundle: Bundle, cid: str, *flags: str, **kw):
        return self("create", "--bundle", str(bundle.path), *flags, cid, **kw)

    def state(self, cid: str) -> dict:
        r = self("state", cid, check=True)
        return json.loads(r.stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            subprocess.run([RUNTIME, "--root", str(self.root), "delete", "--force", cid],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)




def one_line_error(r) -> str:
    """Assert ``r`` failed with exactly one line on stderr and no traceback; return it."""
    assert r.returncode != 0, r
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    return lines[0]

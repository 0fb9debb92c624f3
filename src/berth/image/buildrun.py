"""RUN: execute a build step in a container through an OCI runtime.

The step's rootfs (overlayfs: the stage's layers plus a fresh upper) becomes
an OCI bundle; the runtime (``berth-runtime`` by default, anything speaking
runc's CLI otherwise: ``--runtime``/``BERTH_BUILD_RUNTIME``) runs it with
``run --bundle``. The process gets berth's secure defaults (docker's 14
capabilities, seccomp, no-new-privileges), its own network namespace with only
loopback (berth builds offline), and the stage's Env, WorkingDir and User.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from berth.errors import BerthError, CommandNotFound
from berth.runtime.container.spec import DEFAULT_ENV, default_spec

DEFAULT_PATH = DEFAULT_ENV[0]


class RunFailed(BerthError):
    """A RUN step exited non-zero (the message names the line and the code)."""


def default_runtime() -> str:
    """``BERTH_BUILD_RUNTIME``, else berth-runtime next to this Python, else on PATH."""
    env = os.environ.get("BERTH_BUILD_RUNTIME")
    if env:
        return env
    beside = Path(sys.executable).parent / "berth-runtime"
    return str(beside) if beside.exists() else "berth-runtime"


def bundle_config(
    args: list[str], env: list[str], cwd: str, uid: int, gid: int, extra_gids: list[int]
) -> dict:
    """An OCI runtime config for one RUN step (rootfs at ``rootfs/`` of the bundle).

    berth's secure defaults (``runtime.container.spec.default_spec``: docker's
    capabilities, seccomp profile, masked paths, pids limit, no-new-privileges)
    with a writable root, the step's process, and no network but loopback.
    """
    config = default_spec(args)
    if not any(e.startswith("PATH=") for e in env):
        env = [DEFAULT_PATH, *env]
    config["process"].update(
        {
            "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
            "env": env,
            "cwd": cwd or "/",
        }
    )
    config["root"] = {"path": "rootfs", "readonly": False}
    config["hostname"] = "buildkitsandbox"  # what RUN steps see under docker build
    return config


def run_step(runtime: str, bundle: Path, config: dict, what: str, quiet: bool) -> None:
    """Run ``config`` in ``bundle`` (whose ``rootfs`` is already mounted); wait for it.

    Raises:
        CommandNotFound: the runtime binary is missing.
        RunFailed: the step exited non-zero.
    """
    (bundle / "config.json").write_text(json.dumps(config))
    state = bundle / "state"  # a private runtime root: nothing left in /run
    cid = f"berth-build-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if shutil.which(runtime) is None:
        raise CommandNotFound(f"{what}: OCI runtime {runtime!r} not found")
    out = subprocess.DEVNULL if quiet else None
    try:
        proc = subprocess.run(
            [runtime, "--root", str(state), "run", "--bundle", str(bundle), cid],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE if quiet else None,
            check=False,
        )
    finally:
        subprocess.run(
            [runtime, "--root", str(state), "delete", "--force", cid],
            capture_output=True,
            check=False,
        )
    if proc.returncode != 0:
        tail = (
            (proc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] if quiet else []
        )
        raise RunFailed(
            f"{what}: returned a non-zero code: {proc.returncode}"
            + (f" ({tail[0]})" if tail else "")
        )

"""RUN: execute a build step in a container through an OCI runtime.

The step's rootfs (overlayfs: the stage's layers plus a fresh upper) becomes
an OCI bundle; the runtime (``berth-runtime`` by default, anything speaking
runc's CLI otherwise: ``--runtime``/``BERTH_BUILD_RUNTIME``) runs it with
``run --bundle``. The process gets docker's 14 default capabilities,
no-new-privileges, its own network namespace with only loopback (berth builds
offline), and the stage's Env, WorkingDir and User.
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

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKER_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip


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
    """An OCI runtime config for one RUN step (rootfs at ``rootfs/`` of the bundle)."""
    caps = list(DOCKER_CAPS)
    if not any(e.startswith("PATH=") for e in env):
        env = [DEFAULT_PATH, *env]
    nosuid = ["nosuid", "noexec", "nodev"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
            "args": args,
            "env": env,
            "cwd": cwd or "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "buildkitsandbox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": [*nosuid, "mode=1777", "size=65536k"],
            },
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": nosuid},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*nosuid, "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],  # fmt: skip
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }


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

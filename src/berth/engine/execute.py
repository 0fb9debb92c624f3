"""``exec``: run another process in a running container through the runtime."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from berth.engine import fsutil
from berth.engine.spec import resolve_user
from berth.errors import CannotInvoke, CommandNotFound, Conflict, UsageError


def _find_executable(rootfs: str, cmd: str, env: list[str]) -> str | None:
    """Resolve ``cmd`` as execvp in the container would; None if absent."""
    if "/" in cmd:
        cands = [cmd if cmd.startswith("/") else "/" + cmd]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        cands = [f"{d.rstrip('/')}/{cmd}" for d in path.split(":") if d]
    for c in cands:
        p = fsutil.resolve_in_root(rootfs, c)
        if p.exists():
            return c
    return None


def exec_argv(engine, rec: dict[str, Any], cmd: list[str], detach: bool = False, tty: bool = False,
              env: list[str] | None = None, user: str | None = None, workdir: str | None = None,
              privileged: bool = False) -> list[str]:
    """The runtime's ``exec`` argv, after docker's checks.

    Raises:
        Conflict: the container is not running (exit 125).
        CommandNotFound: the executable does not exist in the container (127).
    """
    rs = engine.run_state(rec)
    if rs.status == "paused":
        raise Conflict(f"exec in container {rec['Name']}: container is paused, unpause it first")
    if rs.status != "running":
        raise Conflict(f"exec in container {rec['Name']}: container is not running")
    if not cmd:
        raise UsageError("exec: no command given")
    rootfs = str(engine.cdir(rec["Id"]) / "rootfs")
    cenv = rec["Config"].get("Env") or []
    if rec.get("Isolation", "container") == "container" and os.path.isdir(rootfs):
        # mounted volumes hide parts of the rootfs from the host's view: only
        # judge paths the rootfs itself can answer for
        covered = any(cmd[0].startswith(m["Destination"].rstrip("/") + "/") for m in rec.get("Mounts", []))
        if not covered and _find_executable(rootfs, cmd[0], cenv) is None:
            raise CommandNotFound(f"exec in container {rec['Name']}: {cmd[0]!r}: executable file not found in $PATH")
    argv = [engine.runtime, "--root", engine.runtime_root, "exec"]
    if tty:
        argv.append("--tty")
    if detach:
        argv.append("--detach")
    for e in env or []:
        if "=" not in e:
            if e in os.environ:
                e = f"{e}={os.environ[e]}"
            else:
                continue
        argv += ["--env", e]
    if workdir:
        argv += ["--cwd", workdir]
    if user:
        u = resolve_user(engine.cdir(rec["Id"]) / "rootfs", user)
        argv += ["--user", f"{u['uid']}:{u['gid']}"]
        for g in u.get("additionalGids", []):
            argv += ["--additional-gids", str(g)]
    if privileged:
        from berth.engine.spec import ALL_CAPS

        for c in ALL_CAPS:
            argv += ["--cap", c]
    argv += [rec["Id"], *cmd]
    return argv


def run_exec(argv: list[str], stdin=None, capture: bool = False) -> tuple[int, bytes]:
    """Run the runtime's exec; (exit code, output when ``capture``)."""
    try:
        p = subprocess.run(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE if capture else None,
                           stderr=subprocess.STDOUT if capture else None)
    except FileNotFoundError:
        raise CannotInvoke(f"exec: OCI runtime {argv[0]} not found") from None
    return p.returncode, (p.stdout or b"")

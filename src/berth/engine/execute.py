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


def _mount_points(cdir, rec: dict[str, Any]) -> list[str]:
    """Where something is mounted over the container's rootfs (volumes, binds,
    tmpfs, /proc, /dev, ...): the host's view of rootfs/ cannot answer there."""
    import json

    try:
        return [m["destination"] for m in json.loads((cdir / "config.json").read_text())["mounts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return [m["Destination"] for m in rec.get("Mounts", [])]


def _under(path: str, points: list[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in points)


def _check_workdir(rootfs: str, workdir: str, points: list[str], name: str) -> None:
    """docker exec -w on a missing directory cannot invoke the command: 126."""
    if not workdir.startswith("/") or _under(workdir, points):
        return
    target = fsutil.resolve_in_root(rootfs, workdir)
    if _under(fsutil.container_path(rootfs, target), points):
        return
    if not target.is_dir():
        why = "not a directory" if target.exists() else "no such file or directory"
        raise CannotInvoke(f"exec in container {name}: working directory {workdir}: {why}")


def exec_argv(engine, rec: dict[str, Any], cmd: list[str], detach: bool = False, tty: bool = False,
              env: list[str] | None = None, user: str | None = None, workdir: str | None = None,
              privileged: bool = False) -> list[str]:
    """The runtime's ``exec`` argv, after docker's checks.

    Raises:
        Conflict: the container is not running (exit 125).
        CommandNotFound: the executable does not exist in the container (127).
        CannotInvoke: the working directory is missing or not a directory (126).
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
        # mounts hide parts of the rootfs from the host's view: only judge
        # paths the rootfs itself can answer for
        points = _mount_points(engine.cdir(rec["Id"]), rec)
        if not _under(cmd[0], points) and _find_executable(rootfs, cmd[0], cenv) is None:
            raise CommandNotFound(f"exec in container {rec['Name']}: {cmd[0]!r}: executable file not found in $PATH")
        if workdir:
            _check_workdir(rootfs, workdir, points, rec["Name"])
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

"""Launching ``berth-monitor`` and talking to its attach socket.

The monitor reports one line on a sync pipe: ``pid N`` once the runtime's
``create`` succeeded, or ``error CODE MESSAGE`` (CODE is docker's 125/126/127).
Output on the attach socket uses docker's stream framing: an 8-byte header
(stream id 1 stdout / 2 stderr, 3 zero bytes, big-endian length) then the
payload; what the client writes goes to the container's stdin, and closing
the client's write side closes that stdin.
"""

from __future__ import annotations

import os
import re
import socket
import struct
from pathlib import Path

from berth.engine._record import record
from berth.errors import BerthError, CannotInvoke, CommandNotFound, NotFound
from berth.paths import libexec


@record
class MonitorArgs:
    runtime: str
    runtime_root: str
    bundle: Path
    cid: str
    cdir: Path
    log_path: Path
    log_max_size: int
    log_max_file: int
    terminal: bool = False
    stdin: bool = False
    attach: bool = False
    restart: str = "no"
    restart_max: int = 0
    oom_file: str = ""
    health: tuple[str, int, int, int] | None = None  # cmd, interval, timeout, retries (s)
    health_start_period: int = 0
    exit_command: list[str] | None = None


def _clean_runtime_error(msg: str) -> str:
    """runc logs as ``time=… level=error msg="…"``: keep the message."""
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', msg)
    if m:
        msg = m.group(1).replace('\\"', '"')
    return msg.strip()


def launch(a: MonitorArgs, on_listening=None) -> int:
    """Start the monitor for one run of the container; return the container pid.

    With ``a.attach`` the monitor first says "listening": ``on_listening()``
    then connects to the attach socket, before the container starts.

    Raises:
        CommandNotFound / CannotInvoke / BerthError: the runtime's create failed
        (exit code 127 / 126 / 125 as docker's), with the runtime's message.
    """
    exe = libexec("berth-monitor")
    if not exe.exists():
        raise NotFound(f"start container: {exe} is missing (run scripts/setup.sh)")
    # a missing runtime must not look like the container's command missing (127)
    if not (os.access(a.runtime, os.X_OK) if "/" in a.runtime else _which(a.runtime)):
        raise NotFound(f"start container {a.cid[:12]}: OCI runtime {a.runtime} not found "
                       "(set BERTH_RUNTIME or run scripts/setup.sh)")
    argv = [str(exe), "--runtime", a.runtime, "--root", a.runtime_root, "--bundle", str(a.bundle),
            "--id", a.cid, "--dir", str(a.cdir), "--log", str(a.log_path),
            "--log-max-size", str(a.log_max_size), "--log-max-file", str(a.log_max_file),
            "--restart", a.restart, "--restart-max", str(a.restart_max)]
    if a.terminal:
        argv.append("--terminal")
        size = _terminal_size()
        if size:
            argv += ["--tty-size", size]
    if a.stdin:
        argv.append("--stdin")
    if a.attach:
        argv.append("--attach")
    if a.oom_file:
        argv += ["--oom-file", a.oom_file]
    if a.health:
        cmd, interval, timeout, retries = a.health
        argv += ["--health-cmd", cmd, "--health-interval", str(interval),
                 "--health-timeout", str(timeout), "--health-retries", str(retries),
                 "--health-start-period", str(a.health_start_period)]
    for arg in a.exit_command or []:
        argv += ["--exit-command", arg]
    r, w = os.pipe()
    er, ew = os.pipe()
    argv += ["--sync-fd", str(w)]
    # posix_spawn, not subprocess: one module fewer to import on every run
    os.set_inheritable(w, True)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, ew, 2)])
    finally:
        for fd in (w, ew, null):
            os.close(fd)
    try:
        with os.fdopen(r, "rb") as f:
            line = f.readline().decode(errors="replace").strip()
            if line == "listening":
                if on_listening is not None:
                    on_listening()
                line = f.readline().decode(errors="replace").strip()
        os.waitpid(pid, 0)  # the monitor's first fork: it exits at once
        err = b""
        if not line:  # the monitor died before reporting: its stderr says why
            while chunk := os.read(er, 4096):
                err += chunk
    finally:
        os.close(er)
    if not line:
        raise BerthError(f"start container {a.cid[:12]}: monitor failed: "
                         f"{err.decode(errors='replace').strip() or 'no report'}")
    kind, _, rest = line.partition(" ")
    if kind == "pid":
        return int(rest)
    code_s, _, msg = rest.partition(" ")
    msg = _clean_runtime_error(msg)
    code = int(code_s) if code_s.isdigit() else 125
    text = f"start container {a.cid[:12]}: {msg}"
    if code == 127:
        raise CommandNotFound(text)
    if code == 126:
        raise CannotInvoke(text)
    raise BerthError(text)


def _terminal_size() -> str | None:
    """ROWSxCOLS of the caller's terminal, for the container's pty."""
    for fd in (0, 1, 2):
        try:
            cols, rows = os.get_terminal_size(fd)
            return f"{rows}x{cols}"
        except OSError:
            continue
    return None


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def connect(cdir: Path) -> socket.socket:
    """Connect to a running container's attach socket.

    The socket is reached through an O_PATH descriptor of the state directory:
    sun_path holds only 108 bytes and engine roots can be deep.
    """
    dfd = os.open(cdir, os.O_PATH | os.O_DIRECTORY)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(f"/proc/self/fd/{dfd}/attach.sock")
        except OSError:
            s.close()
            raise
        return s
    finally:
        os.close(dfd)


def read_frames(sock: socket.socket):
    """Yield (stream_id, bytes) until the monitor closes the socket."""
    buf = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        buf += data
        while len(buf) >= 8:
            sid, n = buf[0], struct.unpack(">I", buf[4:8])[0]
            if len(buf) < 8 + n:
                break
            yield sid, buf[8:8 + n]
            buf = buf[8 + n:]

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
    adopt: bool = False  # create and start in a fork of this process (see _adopt)
    bundle_config: tuple[dict, str] | None = None  # (config, rootfs) loaded already, for adopt
    cgroup: object = None  # made ahead by the runtime's precreate_cgroup, for adopt
    delete_by_client: bool = False  # the attached client deletes the runtime state


def _clean_runtime_error(msg: str) -> str:
    """runc logs as ``time=… level=error msg="…"``: keep the message."""
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', msg)
    if m:
        msg = m.group(1).replace('\\"', '"')
    return msg.strip()


def launch(a: MonitorArgs, on_listening=None, meanwhile=None) -> int:
    """Start the monitor for one run of the container; return the container pid.

    With ``a.attach`` the monitor first says "listening": ``on_listening()``
    then connects to the attach socket, before the container starts.

    ``meanwhile()`` runs while the container is being created, when it is
    (``a.adopt``), else first; the container starts only after it returns,
    and not at all when it raises (its error is raised then).

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
    if a.delete_by_client:
        argv.append("--delete-by-client")
    r, w = os.pipe()
    er, ew = os.pipe()
    argv += ["--sync-fd", str(w)]
    os.set_inheritable(w, True)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    failed: BaseException | None = None
    try:
        if a.adopt and _can_fork():
            go_r, go_w = os.pipe()
            try:
                pid, reap = _fork_adopting(a, argv, w, ew, go_r, go_w)
            finally:
                os.close(go_r)
            try:
                if meanwhile is not None:
                    meanwhile()
            except BaseException as e:  # the child sees EOF: it removes the container
                failed = e
            else:
                try:
                    os.write(go_w, b"1")
                except BrokenPipeError:
                    pass  # its create failed already: it says why on the sync pipe
            finally:
                os.close(go_w)
        else:
            if meanwhile is not None:
                meanwhile()
            # posix_spawn, not subprocess: one module fewer to import on every run
            reap = True  # the monitor's first fork: it exits at once
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
        if reap:
            os.waitpid(pid, 0)
        err = b""
        if not line:  # the monitor died before reporting: its stderr says why
            while chunk := os.read(er, 4096):
                err += chunk
    finally:
        os.close(er)
    if failed is not None:
        raise failed
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


def _can_fork() -> bool:
    """Forking a process whose other threads may hold a lock (the import lock,
    a logging handler's) can deadlock the child: adopt only from a
    single-threaded one (the CLI always is; an API caller may not be). The
    kernel's task list counts every thread, whoever started it."""
    from berth.runtime.container import warmup

    try:
        # (the cgroup primer may run: it only ever blocks in write(2), see warmup)
        return len(os.listdir("/proc/self/task")) <= 1 + warmup.running()
    except OSError:
        return False


def _fork_adopting(a: MonitorArgs, argv: list[str], sync_w: int, err_w: int, go_r: int,
                   go_w: int) -> tuple[int, bool]:
    """Fork, daemonize, create and start the container in the child and exec
    the monitor there with ``--adopt-pid``; returns the first child's pid and
    whether to reap it now.

    Why: the runtime's ``run --detach`` would be a further Python interpreter
    on every start (~10 ms here); this process has the runtime's code at
    hand. Errors are reported on ``sync_w`` as the monitor would, so the
    caller cannot tell the two launches apart.

    The berth CLI exits when its command is done, and its children are
    reparented then: the monitor can be its child (one fork of this ~40 MiB
    process less, ~1 ms), reaped by ``status.monitor_alive`` if it ends
    first. A caller living on (the API) would keep every ended monitor as a
    zombie: for it the first child forks again and exits at once.
    """
    import sys

    launcher = sys.modules.get("berth.cli.launcher")
    once = bool(launcher and launcher.running)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid, not once
    try:
        os.close(go_w)  # the parent's: its end closing without a byte means "don't start"
        os.setsid()  # away from the CLI's terminal and its signals
        if not once and os.fork():
            os._exit(0)
        _adopt(a, argv, sync_w, err_w, go_r)
    except BaseException as e:  # the monitor was not exec'd: say why
        try:
            os.write(err_w, f"{type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    os._exit(125)


def _adopt(a: MonitorArgs, argv: list[str], sync_w: int, err_w: int, go_r: int) -> None:
    """In the daemonized child: run the container (this process becomes
    subreaper: the init is ours to reap), then become its monitor. The start
    waits for one byte on ``go_r`` (the parent's ``meanwhile`` is done)."""
    from berth.runtime.container import ops

    null = os.open(os.devnull, os.O_RDWR)
    ours = theirs = pty = -1
    mine: list[int] = []  # the monitor's ends
    stdio = [null, null, null]
    size = _terminal_size() if a.terminal else None  # the CLI's terminal: still our stdio
    if a.terminal:
        from berth.runtime.container import console

        ours, theirs = console.socket_pair()
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if a.stdin else (null, -1)
        stdio = [in_r, out_w, err_w]
        mine = [out_r, err_r, in_w]
    # the container's stdio is ours (as with runc); dup2 makes them inheritable
    for i, fd in enumerate(stdio):
        os.dup2(fd, i)

    def take_pty() -> None:
        nonlocal pty
        import fcntl
        import socket
        import termios

        s = socket.socket(fileno=ours)
        try:
            pty = console.receive(s)
        finally:
            s.close()
        if size:  # the attaching terminal's size, before the workload starts
            rows, cols = (int(x) for x in size.split("x"))
            fcntl.ioctl(pty, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def before_start() -> None:
        if a.terminal:
            take_pty()
        if os.read(go_r, 1) != b"1":
            raise BerthError(f"start container {a.cid[:12]}: set-up failed")
        os.close(go_r)

    try:
        cfg, rootfs = a.bundle_config or (None, None)
        cpid = ops.run_detached(a.runtime_root, a.cid, str(a.bundle), cfg, rootfs,
                                console_fd=theirs if a.terminal else None, before_start=before_start,
                                cgroup=a.cgroup)
    except (BerthError, OSError) as e:
        code = getattr(e, "exit_code", 125)
        msg = e if isinstance(e, BerthError) else (e.strerror or e)
        line = f"error {code} berth-runtime: {msg}".replace("\n", " ")
        os.write(sync_w, line.encode() + b"\n")
        os._exit(0)
    # only the container holds its ends of the pipes now: EOF is its exit;
    # the monitor's stderr says why if it fails before reporting
    for i, fd in enumerate((null, null, err_w)):
        os.dup2(fd, i)
    for fd in set(stdio) - {null}:  # (create closed ``theirs``: the init's now)
        os.close(fd)
    os.close(null)
    if a.terminal:
        argv += ["--adopt-pty", str(pty)]
        os.set_inheritable(pty, True)
    else:
        argv += ["--adopt-fds", ",".join(map(str, mine))]
        for fd in mine:
            if fd >= 0:
                os.set_inheritable(fd, True)
    argv += ["--adopt-pid", str(cpid)]
    os.execv(argv[0], argv)


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

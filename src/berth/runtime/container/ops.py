"""The runtime's verbs for Linux containers: create, start, state, kill, delete,
run, exec, list, ps, pause, resume.

Each verb is one function taking the runtime root and a container ID. The
state on disk is reconciled at every read (state.status), so a runtime killed
at any point leaves something ``delete --force`` can clean.
"""

import os
import time

from berth.errors import BerthError, Conflict, NotFound, RuntimeFailure, UsageError
from berth.fs import remove_tree
from berth.runtime import jsonio, oci
from berth.runtime.container import state

# The process machinery (init, process, channel, hooks, _sys: ctypes) is
# imported inside the verbs that need it: state/kill/delete/list do not, and
# create imports it while the cgroup grace period runs (warmup.py).


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _cgroups():
    from berth.runtime.container import cgroups

    return cgroups


def _open_cgroup(cfg: dict, cid: str):
    return _cgroups().open_cgroup(cfg["linux"].get("cgroupsPath"), cid)


def _cgroup_from_state(st: dict):
    cg = st.get("cgroup")
    return _cgroups().Cgroup.from_state(cg) if cg else None


def public_state(root: str, st: dict) -> dict:
    """runtime-spec State JSON for a stored state (status derived now)."""
    status = state.status(root, st)
    cfg = st.get("config") or {}
    extra = {"rootfs": st.get("rootfs", ""), "created": st.get("created", ""),
             "owner": ""}
    if status == "stopped" and st.get("cgroup"):
        try:
            if _cgroup_from_state(st).oom_killed():
                extra["oomKilled"] = True
        except (OSError, ImportError):
            pass
    return oci.state_json(st["id"], status, st.get("pid", 0) if status != "stopped" else 0,
                          st.get("bundle", ""), cfg.get("annotations"), **extra)


SECCOMP_CACHE = ".seccomp"  # compiled programs under the runtime root


def _seccomp_program(cfg: dict, root: str) -> bytes | None:
    """The container's compiled seccomp program, from the cache under ROOT/.seccomp.

    Compiling docker's profile with libseccomp takes about 10 ms; the cache
    makes it a file read. None: no filter, or the cache is unusable (then P2
    builds the filter itself before pivot_root).
    """
    sc = cfg["linux"].get("seccomp")
    if not sc:
        return None
    from berth.runtime.container import seccomp

    # compiling validates; a cached program was valid when it was compiled
    prog = seccomp.program(sc, os.path.join(root, SECCOMP_CACHE))
    if prog is None:
        seccomp.validate(sc)  # one line naming the field, before any state exists
    return prog


def _namespace_plan(spec, cfg: dict) -> None:
    """Fill spec.join (namespaces by path, opened here so errors are P0's) and unshare flags."""
    from berth._sys import ns as _ns

    joins = {}
    for n in cfg["linux"].get("namespaces", ()):
        t = n["type"]
        if n.get("path"):
            try:
                joins[t] = os.open(n["path"], os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise NotFound(f"join {t} namespace {n['path']}: {e.strerror}") from None
        elif t == "user":
            spec.new_user = True
        elif t == "cgroup":
            spec.new_cgroupns = True
        else:
            spec.new_flags |= _ns.NAMESPACES[t][0]
    spec.join = [(t, joins[t]) for t in _ns.JOIN_ORDER if t in joins]
    spec.userns = spec.new_user or "user" in joins


def create(root: str, cid: str, bundle: str, pid_file: str | None = None,
           console_socket: str | None = None, no_pivot: bool = False,
           preserve_fds: int = 0, cfg: dict | None = None, rootfs: str | None = None,
           _run: bool = False, _console_fd: int | None = None, _durable: bool = True, _cgroup=None):
    """Create container ``cid`` from ``bundle``: set up, then wait for start.

    With ``_run`` (used by run) the init waits on a pipe instead of the FIFO,
    we become subreaper (to wait for it), and the launched child is returned
    so the caller can start it in-process. ``_durable=False`` (run in the
    foreground) skips the fdatasync of the state: the record lives only as long
    as this process, and a crash leaves it to ``delete --force`` either way.

    Raises:
        NotFound, ConfigError: bad bundle; Conflict: the ID exists;
        ChildError: set-up inside the container failed (exit 127 if the
        executable does not exist).
    """
    state.check_id(cid)
    bundle = os.path.abspath(bundle)
    if cfg is None or rootfs is None:
        cfg, rootfs = oci.load_bundle(bundle)
    from berth.runtime import trace

    trace.mark("config loaded")
    seccomp_prog = _seccomp_program(cfg, root)  # before reserve(): errors leave nothing
    h = cfg.get("hooks", {})
    d = state.reserve(root, cid)
    cg = None
    child = None
    spec = None
    try:
        cg = _cgroup or _open_cgroup(cfg, cid)
        st = {"id": cid, "pid": 0, "bundle": bundle, "rootfs": rootfs, "created": _now(),
              "creator": [os.getpid(), state.start_time(os.getpid())],
              "cgroup": cg.to_state(), "config": cfg, "backend": "container"}
        state.write(d, st, durable=False)  # first, so delete --force can find the cgroup
        if _cgroup is None:
            cg.create()
        trace.mark("cgroup created")
        # The grace period a cgroup move waits for runs from here while we
        # finish (importing the process machinery included); its writer holds
        # cgroup_mutex, so it starts only after our mkdir (warmup.py).
        from berth.runtime.container import warmup

        warmup.start()
        from berth._sys import proc as _proc
        from berth.runtime.container import init, process

        spec = init.Spec("init", cfg, cfg["process"], rootfs, bundle, no_pivot)
        spec.preserve_fds = preserve_fds
        spec.seccomp_prog = seccomp_prog
        spec.prestart_hooks = bool(h.get("prestart") or h.get("createRuntime"))
        _namespace_plan(spec, cfg)
        if console_socket:
            from berth.runtime.container import console

            spec.console_fd = console.connect(console_socket)
        elif _console_fd is not None:
            spec.console_fd = _console_fd
        if cfg["linux"].get("resources"):
            cg.apply(cfg["linux"]["resources"])
        if not _run:
            spec.fifo = os.path.join(d, state.FIFO)
            os.mkfifo(spec.fifo, 0o600)
        else:
            # The init is P1's child; as subreaper we inherit it when P1
            # exits, so we can wait for it and collect its exit status.
            _proc.set_child_subreaper()
            spec.reap_init = True

        def on_hooks(pid: int) -> str:
            from berth.runtime.container import hooks

            s = oci.state_json(cid, "created", pid, bundle, cfg.get("annotations"))
            hooks.run("prestart", h.get("prestart"), s)
            hooks.run("createRuntime", h.get("createRuntime"), s)
            return jsonio.dumps(s)

        def on_pid(pid: int) -> None:
            st["pid"] = pid
            st["startTime"] = state.start_time(pid)
            st.pop("creator", None)
            state.write(d, st, durable=_durable)

        trace.mark("fork P1")
        child = process.launch(spec, cg, on_hooks, on_pid)
        trace.mark("READY")
        if pid_file:
            _write_pid_file(pid_file, child.pid)
    except BaseException:
        if child is not None:
            _kill_quietly(child.pid)
            child.close()
        _cleanup(d, cg)
        raise
    finally:
        if spec is not None:
            for _, fd in spec.join:
                _close_quietly(fd)
            if spec.console_fd is not None:
                _close_quietly(spec.console_fd)
    if _run:
        return child, st, d
    child.close()
    return None


def precreate_cgroup(cgroups_path: str | None, cid: str):
    """Make the container's cgroup ahead of ``create`` and start the grace
    period a move into it waits for (warmup.py), for a caller that will
    create the container ~15 ms later (the engine, in a fork): the period
    then elapses meanwhile instead of in the init's set-up. ``create`` finds
    the cgroup made and owns it from then on (its failure removes it); if
    ``create`` never runs, the caller removes it. Returns the cgroup, for
    ``run_detached(cgroup=)``."""
    cg = _cgroups().open_cgroup(cgroups_path, cid)
    cg.create()
    from berth.runtime.container import warmup

    warmup.start()
    return cg


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def _cleanup(d: str, cg) -> None:
    if cg is not None:
        try:
            # kill_all lists the same cgroup.procs, under a freeze (several
            # writes and reads): skip it when nothing is left, as after run
            # reaped an init whose pid namespace took its other tasks along.
            if cg.pids():
                cg.kill_all(9)
        except (OSError, BerthError):
            pass
        try:
            cg.destroy()
        except (OSError, BerthError) as e:
            os.write(2, f"berth-runtime: warning: remove cgroup: {getattr(e, 'strerror', None) or e}\n".encode())
    remove_tree(d)  # the state directory: state.json, the FIFO, temp files


def start(root: str, cid: str) -> None:
    """Let a created container exec its process (runtime-spec start)."""
    st = state.read(root, cid)
    status = state.status(root, st)
    if status != "created":
        raise Conflict(f"start container {cid}: it is {status}, not created")
    fifo = os.path.join(root, cid, state.FIFO)
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO: no reader, the init is gone
        raise Conflict(f"start container {cid}: its init process has exited") from None
    try:
        os.unlink(fifo)
        os.write(fd, b"0")
    finally:
        os.close(fd)
    ps = st["config"].get("hooks", {}).get("poststart")
    if ps:
        from berth.runtime.container import hooks

        hooks.run("poststart", ps, public_state(root, st), fatal=False)


def _signal_number(sig: str | int) -> int:
    import _signal

    if isinstance(sig, int) or sig.isdigit():
        n = int(sig)
        if not 0 < n < _signal.NSIG:
            raise Conflict(f"kill: invalid signal {sig}")
        return n
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    n = getattr(_signal, name, None)
    if not isinstance(n, int) or name in ("SIG_DFL", "SIG_IGN", "SIG_BLOCK", "SIG_UNBLOCK", "SIG_SETMASK"):
        raise Conflict(f"kill: unknown signal {sig}")
    return n


def _signal_init(st: dict, sig: int) -> bool:
    """Signal the init through a pidfd, after checking it is still our process."""
    import _signal

    try:
        pidfd = os.pidfd_open(st["pid"])
    except OSError:
        return False
    try:
        if not state.init_alive(st):
            return False
        _signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def kill(root: str, cid: str, sig: str | int = "TERM", all_: bool = False) -> None:
    st = state.read(root, cid)
    n = _signal_number(sig)
    status = state.status(root, st)
    if status == "stopped":
        raise Conflict(f"kill container {cid}: it is not running")
    if all_ and st.get("cgroup"):
        _cgroup_from_state(st).kill_all(n)
        return
    if not _signal_init(st, n):
        raise Conflict(f"kill container {cid}: it is not running")


def delete(root: str, cid: str, force: bool = False) -> None:
    st = state.read(root, cid)
    status = state.status(root, st)
    if status in ("running", "paused") and not force:
        raise Conflict(f"delete container {cid}: it is {status} (stop it or use --force)")
    if status == "creating" and not force:
        raise Conflict(f"delete container {cid}: it is being created (use --force)")
    cg = _cgroup_from_state(st) if st.get("cgroup") else None
    if status != "stopped":
        if cg is not None and status == "paused":
            cg.thaw()
        _signal_init(st, 9)
        _wait_gone(st)
    _cleanup(os.path.join(root, cid), cg)
    _poststop(cid, st)


def _poststop(cid: str, st: dict) -> None:
    pst = (st.get("config") or {}).get("hooks", {}).get("poststop")
    if pst:
        from berth.runtime.container import hooks

        hooks.run("poststop", pst, oci.state_json(cid, "stopped", 0, st.get("bundle", ""),
                                                  st["config"].get("annotations")), fatal=False)


def _wait_gone(st: dict, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while state.init_alive(st):
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"container {st['id']}: init {st['pid']} did not exit after SIGKILL")
        time.sleep(0.002)


def get_state(root: str, cid: str) -> dict:
    return public_state(root, state.read(root, cid))


def list_states(root: str) -> list[dict]:
    out = []
    for cid in state.list_ids(root):
        try:
            out.append(public_state(root, state.read(root, cid)))
        except (NotFound, OSError):
            continue
    return out


def pids(root: str, cid: str) -> list[int]:
    st = state.read(root, cid)
    if state.status(root, st) == "stopped":
        raise Conflict(f"ps container {cid}: it is not running")
    cg = _cgroup_from_state(st)
    return sorted(cg.pids()) if cg is not None else [st["pid"]]


def _cgroup_if(root: str, cid: str, verb: str, want: str):
    """The cgroup of ``cid`` if it is in status ``want`` (else Conflict naming ``verb``)."""
    st = state.read(root, cid)
    status = state.status(root, st)
    if status != want:
        raise Conflict(f"{verb} container {cid}: it is {status}, not {want}")
    return _cgroup_from_state(st)


def pause(root: str, cid: str) -> None:
    _cgroup_if(root, cid, "pause", "running").freeze()


def resume(root: str, cid: str) -> None:
    _cgroup_if(root, cid, "resume", "paused").thaw()


class _Forwarder:
    """Forward the signals a user sends to the CLI (run, exec) to the container process."""

    SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH",
               "SIGCONT", "SIGTSTP")

    def __init__(self, pid: int):
        import _signal

        self.pid = pid
        for name in self.SIGNALS:
            _signal.signal(getattr(_signal, name), self._forward)

    def _forward(self, sig, _frame):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


def _await_exec(child, reap: bool) -> None:
    """After the start byte: EOF on the sync pipe means execve succeeded.

    On an error the child is killed (and reaped if we are its subreaper);
    the child's pipes are closed either way.
    """
    from berth.runtime.container import channel

    try:
        while True:
            msg = child.sync.next()
            if msg is None:
                return
            channel.raise_if_error(msg)
    except BaseException:
        _kill_quietly(child.pid)
        if reap:
            try:
                os.waitpid(child.pid, 0)
            except ChildProcessError:
                pass
        raise
    finally:
        child.close()


def _start_created(root: str, child, st: dict, d: str, reap: bool, before_start=None) -> None:
    """Start what ``create(_run=True)`` made: the start byte, then wait for the
    execve (an error there removes the container) and run poststart hooks."""
    from berth.runtime import trace

    try:
        if before_start is not None:
            try:
                before_start()
            except BaseException:
                _kill_quietly(child.pid)  # not started: still waiting for its start byte
                child.close()
                raise
        os.write(child.reply_w, b"0")
        _await_exec(child, reap=reap)
        trace.mark("exec done")
    except BaseException:
        _cleanup(d, _cgroup_from_state(st))
        raise
    ps = st["config"].get("hooks", {}).get("poststart")
    if ps:
        from berth.runtime.container import hooks

        hooks.run("poststart", ps, public_state(root, st), fatal=False)


def run_detached(root: str, cid: str, bundle: str, cfg: dict | None = None, rootfs: str | None = None,
                 console_fd: int | None = None, before_start=None, cgroup=None) -> int:
    """``run --detach`` in this process; returns the init's pid.

    For an engine that forked to become the container's monitor: this
    process is made child subreaper, so the init is (or becomes) its child,
    and it then execs berth-monitor, which reaps it. No runtime interpreter
    starts per container. The container's stdio is this process's 0, 1, 2
    (as for runc); with ``console_fd`` (one end of a socket pair) the init
    sends its pty master there instead. ``before_start()`` runs after the
    set-up and before the start byte (e.g. to take the pty master).
    ``cgroup``: what ``precreate_cgroup`` returned for this container.
    """
    child, st, d = create(root, cid, bundle, cfg=cfg, rootfs=rootfs, _run=True, _console_fd=console_fd,
                          _cgroup=cgroup)
    _start_created(root, child, st, d, reap=False, before_start=before_start)
    return child.pid


def run(root: str, cid: str, bundle: str, detach: bool = False, pid_file: str | None = None,
        console_socket: str | None = None, no_pivot: bool = False, preserve_fds: int = 0,
        cfg: dict | None = None, rootfs: str | None = None) -> int:
    """create + start (+ wait and delete unless ``detach``); returns the exit code.

    A terminal without --console-socket in the foreground: we hold the pty
    master ourselves and connect it to our stdin/stdout (like runc).
    """
    from berth.runtime import trace

    if cfg is None or rootfs is None:
        cfg, rootfs = oci.load_bundle(os.path.abspath(bundle))
    ours = theirs = None
    if cfg["process"].get("terminal") and not console_socket:
        if detach:
            raise UsageError("run --detach with process.terminal needs --console-socket")
        from berth.runtime.container import console

        ours, theirs = console.socket_pair()
    try:
        child, st, d = create(root, cid, bundle, pid_file, console_socket, no_pivot, preserve_fds,
                              cfg, rootfs, _run=True, _console_fd=theirs, _durable=detach)
    except BaseException:
        if ours is not None:
            _close_quietly(ours)
        raise
    _start_created(root, child, st, d, reap=not detach)
    if detach:
        return 0
    from berth.runtime.container import process

    _Forwarder(child.pid)
    if ours is not None:
        from berth.runtime.container import console

        console.proxy(ours)
    code = process.wait_exit(child.pid)
    trace.mark("container exited")
    cg = _cgroup_from_state(st)
    if code == 137 and cg is not None:
        try:
            if cg.oom_killed():
                os.write(2, f"berth-runtime: container {cid} was killed: out of memory\n".encode())
        except OSError:
            pass
    # What delete --force would do, without reading back the state we hold:
    # the init is reaped, so only the cgroup (and any stragglers) remain.
    _cleanup(d, cg)
    _poststop(cid, st)
    trace.mark("deleted")
    return code


def exec_process(root: str, cid: str, proc: dict, detach: bool = False, pid_file: str | None = None,
                 console_socket: str | None = None, preserve_fds: int = 0) -> int:
    """Run ``proc`` (a runtime-spec process) in the running container ``cid``."""
    from berth._sys import ns as _ns
    from berth._sys import proc as _proc
    from berth.runtime.container import init, process

    st = state.read(root, cid)
    status = state.status(root, st)
    if status not in ("running", "created"):
        raise Conflict(f"exec in container {cid}: it is {status}")
    cfg = st["config"]
    spec = init.Spec("exec", cfg, proc)
    spec.gate = False
    spec.preserve_fds = preserve_fds
    spec.seccomp_prog = _seccomp_program(cfg, root)
    pid = st["pid"]
    own = {}
    for t in oci.namespace_types(cfg):
        name = _ns.NAMESPACES[t][1]
        try:
            if os.stat(f"/proc/{pid}/ns/{name}").st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            own[t] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise RuntimeFailure(f"exec in container {cid}: open {t} namespace: {e.strerror}") from None
    spec.join = [(t, own[t]) for t in _ns.JOIN_ORDER if t in own]
    spec.userns = "user" in oci.namespace_types(cfg)
    if not state.init_alive(st):
        raise Conflict(f"exec in container {cid}: it is stopped")
    from berth.runtime.container import warmup

    warmup.start()
    if not detach:
        _proc.set_child_subreaper()
    ours = None
    try:
        if console_socket:
            from berth.runtime.container import console

            spec.console_fd = console.connect(console_socket)
        elif proc.get("terminal"):
            if detach:
                raise UsageError("exec --detach --tty needs --console-socket")
            from berth.runtime.container import console

            ours, spec.console_fd = console.socket_pair()
        child = process.launch(spec, _cgroup_from_state(st))
    finally:
        for _, fd in spec.join:
            _close_quietly(fd)
        if spec.console_fd is not None:
            _close_quietly(spec.console_fd)
    _await_exec(child, reap=not detach)
    if pid_file:
        _write_pid_file(pid_file, child.pid)
    if detach:
        return 0
    _Forwarder(child.pid)
    if ours is not None:
        from berth.runtime.container import console

        console.proxy(ours)
    return process.wait_exit(child.pid)

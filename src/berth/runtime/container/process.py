"""P0 and P1: fork the container's processes and drive them through set-up.

P0 (the CLI) forks P1 (for run without a user namespace to create or
namespaces to join, P0 forks P2 itself instead: _fork_init). P1 joins the
namespaces given by path, unshares a user namespace first (P0 then writes uid_map/gid_map from outside, as an
unprivileged process cannot map itself), then the other namespaces including
the pid namespace but not the cgroup one, and forks P2, the container's PID 1.
P1 reports P2's pid and exits. P0 places P2 in the cgroup and says so ("G");
P2 unshares the cgroup namespace only after that, so the namespace is rooted at
the container's cgroup. P2 sets up (init.py) and reports READY or ERR. Everything is forked, never re-executed: no second
interpreter start per container.
"""

import os

from berth._sys import ns as _ns
from berth._sys import proc as _proc
from berth.runtime import trace
from berth.runtime.container import channel, init


class Child:
    """The launched P2 as P0 sees it."""

    def __init__(self, pid: int, sync: channel.Reader, reply_w: int):
        self.pid = pid
        self.sync = sync
        self.reply_w = reply_w

    def close(self) -> None:
        for fd in (self.sync.fd, self.reply_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _write_maps(pid: int, cfg: dict) -> None:
    linux = cfg["linux"]

    def fmt(maps):
        return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)

    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(fmt(linux["uidMappings"]))
    if os.geteuid() != 0:
        # An unprivileged writer must give up setgroups before mapping gids:
        # otherwise it could drop a group that denies it access (CVE-2014-8989).
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(fmt(linux["gidMappings"]))


def _reply(fd: int, data: bytes) -> None:
    """Answer a child; if it died meanwhile, its ERR (or EOF) is read next."""
    try:
        os.write(fd, data)
    except BrokenPipeError:
        pass


def launch(spec: init.Spec, cgroup=None, on_hooks=None, on_pid=None) -> Child:
    """Fork P1/P2 for ``spec`` and return once P2 is READY.

    ``on_pid(pid)`` runs as soon as P2's pid is known, while P2 sets up (the
    state write overlaps the container's set-up).

    ``on_hooks(pid) -> str`` runs prestart/createRuntime hooks in P0 when P2
    asks and returns the state JSON for createContainer hooks.

    Raises:
        ChildError: a child reported an error (message and exit code from it).
    """
    sync_r, sync_w = os.pipe()
    reply_r, reply_w = os.pipe()
    # Without a user namespace to make or a pid, time or user namespace to
    # join, P1 has nothing to do that P0 cannot: P0 forks the init itself
    # (one fork and exit less), which joins network, IPC, UTS, cgroup or
    # mount namespaces itself (one thread, as setns(2) of mnt wants; a pid or
    # time namespace would only hold the caller's later children). Only for
    # run, where P0 is subreaper and reaps the init anyway: after create, the
    # init must not be the caller's child (a caller living on, such as a
    # Python program, would keep it a zombie that still looks alive).
    direct = spec.reap_init and not spec.new_user and \
        all(t not in ("pid", "time", "user") for t, _ in spec.join)
    p1 = 0
    child = Child(0, channel.Reader(sync_r), reply_w)
    try:
        if direct:
            child.pid = _fork_init(spec, sync_r, sync_w, reply_r, reply_w)
        else:
            p1 = _fork(_p1, spec, sync_r, sync_w, reply_r, reply_w)
    except BaseException:
        child.close()
        raise
    finally:
        os.close(sync_w)
        os.close(reply_r)

    def placed() -> None:
        # P2 sets up its mounts meanwhile; it waits for this "G" only
        # before it unshares the cgroup namespace (rooted where it is).
        if cgroup is not None:
            trace.mark("cgroup add")
            cgroup.add(child.pid)
            trace.mark("cgroup added")
        _reply(reply_w, b"G")
        if on_pid:
            on_pid(child.pid)

    reader = child.sync
    try:
        while True:
            msg = reader.next()
            if msg is None:
                raise channel.ChildError("container init exited during set-up")
            channel.raise_if_error(msg)
            if msg.startswith("PID "):
                child.pid = int(msg[4:])
                os.waitpid(p1, 0)
                p1 = 0
                placed()
            elif msg == "UNSHARED" and direct:
                # Moving P2 while it is still unsharing costs more (measured
                # ~6 ms vs ~2 ms under load): place it once it is mounting.
                placed()
            elif msg == "USERNS":
                _write_maps(p1, spec.cfg)
                _reply(reply_w, b"G")
            elif msg == "HOOKS":
                state = on_hooks(child.pid) if on_hooks else "{}"
                _reply(reply_w, ("G" + state + "\n").encode())
            elif msg == "READY":
                return child
    except BaseException:
        for pid in (child.pid, p1):
            if pid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        for pid in (p1, child.pid):
            if pid:
                try:  # P2 is ours to reap only when we are its subreaper (run)
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
        child.close()
        raise


def _fork(body, spec: init.Spec, sync_r: int, sync_w: int, reply_r: int, reply_w: int) -> int:
    """Fork a child running ``body`` (which never returns) with its pipe ends."""
    pid = os.fork()
    if pid == 0:
        os.close(sync_r)
        os.close(reply_w)
        body(spec, sync_w, reply_r)
    return pid


def _fork_init(spec: init.Spec, sync_r: int, sync_w: int, reply_r: int, reply_w: int) -> int:
    """Fork P2 from P0 directly; its pid. unshare(CLONE_NEWPID) changes only
    the namespace of the caller's next children, so P0 unshares it, forks,
    and at once returns to its own pid namespace by setns(2): with a
    different namespace for children, clone(CLONE_THREAD) fails (EINVAL) and
    any later fork (hooks) would land in the container."""
    pidns = bool(spec.new_flags & _ns.CLONE_NEWPID)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC) if pidns else -1
    pid = 0
    try:
        if pidns:
            _ns.unshare(_ns.CLONE_NEWPID)
        trace.mark("fork P2")
        pid = _fork(_p2, spec, sync_r, sync_w, reply_r, reply_w)
        if pidns:
            _ns.setns(own, _ns.CLONE_NEWPID, "pid namespace of berth-runtime")
    except BaseException:
        if pid > 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        raise
    finally:
        if own >= 0:
            os.close(own)
    return pid


def _join(spec: init.Spec) -> None:
    """setns(2) into the namespaces given by path, in JOIN_ORDER."""
    for nstype, fd in spec.join:
        _ns.setns(fd, 0, f"{nstype} namespace")
        os.close(fd)


def _p2(spec: init.Spec, sync_w: int, reply_r: int):
    """P2's body when forked by P0 (see _p1 for the steps); never returns."""
    try:
        _proc.set_dumpable(False)  # CVE-2019-5736, as in _p1
        init.preload(spec)
        _join(spec)
        if spec.new_flags & ~_ns.CLONE_NEWPID:
            _ns.unshare(spec.new_flags & ~_ns.CLONE_NEWPID)
        channel.send(sync_w, "UNSHARED")
    except BaseException as e:  # noqa: B902 - never unwind into P0's code
        channel.send_error(sync_w, e)
        os._exit(channel.describe(e)[0])
    init.run(spec, sync_w, reply_r)
    os._exit(125)


def _p1(spec: init.Spec, sync_w: int, reply_r: int):
    """P1's body; never returns."""
    try:
        # Not dumpable: nothing in the container may open /proc/PID/exe of a
        # process of ours (CVE-2019-5736); exec of the workload resets it.
        trace.mark("P1")
        _proc.set_dumpable(False)
        init.preload(spec)
        _join(spec)
        if spec.new_user:
            # The user namespace first: it owns the namespaces unshared next.
            _ns.unshare(_ns.CLONE_NEWUSER)
            channel.send(sync_w, "USERNS")
            if channel.read_byte(reply_r) != b"G":
                os._exit(1)
        if spec.userns:
            try:
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            except OSError:
                pass
        # Everything but the cgroup namespace: P2 unshares that one itself once
        # P0 has moved it into its cgroup. Moving a task costs an RCU grace
        # period (cgroup_threadgroup_rwsem), ~10 ms on a busy host; P2 mounts
        # the rootfs meanwhile instead of waiting.
        if spec.new_flags:
            _ns.unshare(spec.new_flags)
        trace.mark("P1 unshared")
        pid = os.fork()
        if pid == 0:
            init.run(spec, sync_w, reply_r)
        channel.send(sync_w, f"PID {pid}")
    except BaseException as e:  # noqa: B902 - never unwind into P0's code
        channel.send_error(sync_w, e)
        os._exit(channel.describe(e)[0])
    os._exit(0)


def wait_exit(pid: int) -> int:
    """waitpid ``pid`` (EINTR retried after signal handlers ran); shell-style exit code."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)

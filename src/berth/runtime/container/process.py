"""P0 and P1: fork the container's processes and drive them through set-up.

P0 (the CLI) forks P1. P1 joins the namespaces given by path, unshares a user
namespace first (P0 then writes uid_map/gid_map from outside, as an
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
    p1 = os.fork()
    if p1 == 0:
        os.close(sync_r)
        os.close(reply_w)
        _p1(spec, sync_w, reply_r)
    os.close(sync_w)
    os.close(reply_r)
    reader = channel.Reader(sync_r)
    child = Child(0, reader, reply_w)
    try:
        while True:
            msg = reader.next()
            if msg is None:
                raise channel.ChildError("container init exited during set-up")
            channel.raise_if_error(msg)
            if msg.startswith("PID "):
                child.pid = int(msg[4:])
                # P2 sets up its mounts meanwhile; it waits for this "G" only
                # before it unshares the cgroup namespace (rooted where it is).
                if cgroup is not None:
                    trace.mark("cgroup add")
                    cgroup.add(child.pid)
                    trace.mark("cgroup added")
                _reply(reply_w, b"G")
                os.waitpid(p1, 0)
                p1 = 0
                if on_pid:
                    on_pid(child.pid)
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


def _p1(spec: init.Spec, sync_w: int, reply_r: int):
    """P1's body; never returns."""
    try:
        # Not dumpable: nothing in the container may open /proc/PID/exe of a
        # process of ours (CVE-2019-5736); exec of the workload resets it.
        trace.mark("P1")
        _proc.set_dumpable(False)
        init.preload(spec)
        for nstype, fd in spec.join:
            _ns.setns(fd, 0, f"{nstype} namespace")
            os.close(fd)
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

"""What runs in the container before exec: P2, the container's PID 1.

Order (runc's standard_init_linux, with reasons):
  1. setsid; umask 0 so device nodes get their configured modes.
  2. oom_score_adj while we still have CAP_SYS_RESOURCE.
  3. open the exec FIFO before the host's tree disappears.
  4. mounts, devices (rootfs.prepare); the cgroup namespace and cgroup
     mounts wait for P0 to have placed us in the cgroup, and go after
     pivot_root and the masks when nothing depends on them (step 6);
     prestart/createRuntime hooks in P0,
     createContainer hooks here, all before pivot_root (runtime-spec).
  5. pivot_root (chroot only with --no-pivot); terminal from the new devpts.
  6. hostname, sysctl (before /proc/sys goes read-only), read-only and masked
     paths, read-only root.
  7. finalize(): rlimits (still root, so hard limits may rise), no_new_privs,
     seccomp now if no_new_privs is off (it needs CAP_SYS_ADMIN), bounding
     drop, KEEPCAPS + setgroups/setgid/setuid, capset, ambient, umask, cwd
     (resolved inside the root, never a magic link: CVE-2024-21626), the
     executable lookup (so "not found" is reported at create, exit 127),
     every fd >= 3 close-on-exec.
  8. READY to P0, wait for start, startContainer hooks, seccomp (if
     no_new_privs), execve of the workload itself: no interpreter of ours
     stays in the container (CVE-2019-5736), and until then the process is
     not dumpable, so /proc/1/exe cannot be opened from inside.
"""

import _signal
import os
import stat

from berth._sys import caps as _caps
from berth._sys import mount as _m
from berth._sys import proc as _proc
from berth.errors import CannotInvoke, CommandNotFound, ConfigError, RuntimeFailure
from berth.runtime import trace
from berth.runtime.container import caps, channel, rootfs

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Spec:
    """Everything P1/P2 need, prepared by P0 (fds open, errors already reported)."""

    def __init__(self, kind: str, cfg: dict, process: dict, rootfs: str = "", bundle: str = "",
                 no_pivot: bool = False):
        self.kind = kind                  # "init" (create) or "exec"
        self.cfg = cfg                    # config.json (for exec: the container's)
        self.process = process            # the process to run
        self.rootfs = rootfs
        self.bundle = bundle
        self.no_pivot = no_pivot
        self.join: list[tuple[str, int]] = []   # (type, fd) in JOIN_ORDER
        self.new_flags = 0                # unshare flags but CLONE_NEWUSER and CLONE_NEWCGROUP
        self.new_user = False
        self.userns = False               # running inside a user namespace (new or joined)
        self.console_fd: int | None = None
        self.fifo: str | None = None      # create: exec.fifo; run/exec: gate by pipe
        self.preserve_fds = 0
        self.prestart_hooks = False
        self.hook_state: dict = {}        # state JSON for createContainer/startContainer hooks
        self.gate = True                  # wait for "start" before exec
        self.seccomp_prog: bytes | None = None  # compiled filter (from the cache), or
        self.seccomp_filter = None              # a libseccomp filter built before pivot_root
        self.new_cgroupns = False         # P2 unshares it once placed in its cgroup
        self.reap_init = False            # run: P0 is subreaper and waits for the init
        self._placed = False
        self._reply_r = -1

    def wait_cgroup(self) -> None:
        """Block until P0 has put us in the container's cgroup ("G"), then
        unshare the cgroup namespace if asked: it is rooted where we are."""
        if self._placed:
            return
        trace.mark("P2 waits for cgroup")
        if channel.read_byte(self._reply_r) != b"G":
            os._exit(1)
        trace.mark("P2 in cgroup")
        self._placed = True
        if self.new_cgroupns:
            from berth._sys import ns as _ns

            _ns.unshare(_ns.CLONE_NEWCGROUP)


def preload(spec: Spec) -> None:
    """Import now every module P2 may need: after pivot_root (or setns into the
    container's mount namespace) the interpreter's files are out of reach."""
    proc = spec.process
    _caps.last_cap()
    if proc.get("terminal"):
        from berth.runtime.container import console

        console.preload()
    sc = spec.cfg["linux"].get("seccomp")
    if sc:
        from berth._sys import seccomp as _sc  # noqa: F401 - load_bpf after pivot_root

        if spec.seccomp_prog is None:
            from berth.runtime.container import seccomp

            spec.seccomp_filter = seccomp.build(sc)  # dlopen libseccomp while we can
    if spec.cfg.get("hooks", {}).get("createContainer") or spec.cfg.get("hooks", {}).get("startContainer"):
        import subprocess  # noqa: F401

        from berth.runtime.container import hooks  # noqa: F401


def run(spec: Spec, sync_w: int, reply_r: int):
    """P2's body; never returns."""
    spec._reply_r = reply_r
    trace.mark("P2")
    try:
        if spec.kind == "init":
            _container_init(spec, sync_w, reply_r)
        else:
            _finalize(spec, spec.process, sync_w, reply_r, None)
    except BaseException as e:  # noqa: B902 - a forked child must never unwind into P0's code
        channel.send_error(sync_w, e)
        os._exit(channel.describe(e)[0])
    os._exit(125)


def _container_init(spec: Spec, sync_w: int, reply_r: int) -> None:
    cfg = spec.cfg
    linux = cfg["linux"]
    proc = spec.process
    os.setsid()
    os.umask(0)
    if "oomScoreAdj" in proc:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc["oomScoreAdj"]))
    fifo_fd = os.open(spec.fifo, os.O_RDWR | os.O_CLOEXEC) if spec.fifo else None
    ns_types = [n["type"] for n in linux.get("namespaces", ())]
    if "mount" not in ns_types:
        raise ConfigError("config.json: a mount namespace is required")
    hooks = cfg.get("hooks", {})
    run_hooks = spec.prestart_hooks or hooks.get("createContainer") or hooks.get("startContainer")
    # Being moved into the cgroup takes P0 a grace period; what does not depend
    # on it (all but the cgroup namespace and its mounts) goes first. Hooks
    # expect the cgroup in place, so with hooks the plain order is kept.
    defer = not run_hooks and rootfs.cgroup_mounts_deferrable(cfg)
    deferred = rootfs.prepare(spec.rootfs, cfg, spec.bundle, spec.userns, spec.wait_cgroup,
                              defer_cgroup=defer)
    if not defer:
        spec.wait_cgroup()
    if run_hooks:
        # P0 runs prestart/createRuntime now and answers with the state that
        # our own hooks get on stdin (it knows our pid as the host sees it).
        channel.send(sync_w, "HOOKS")
        reply = channel.read_line(reply_r)
        if not reply.startswith("G"):
            os._exit(125)
        from berth.runtime import jsonio

        spec.hook_state = jsonio.loads(reply[1:])
        if hooks.get("createContainer"):
            from berth.runtime.container import hooks as _hooks

            _hooks.run("createContainer", hooks["createContainer"], spec.hook_state)
    trace.mark("P2 mounted")
    if spec.no_pivot:
        rootfs.chroot(spec.rootfs)
    else:
        rootfs.pivot(spec.rootfs)
    if proc.get("terminal"):
        _console(spec, proc)
    if "hostname" in cfg or "domainname" in cfg:
        if "uts" not in ns_types:
            raise ConfigError("config.json: hostname needs a new UTS namespace")
        if "hostname" in cfg:
            _proc.sethostname(cfg["hostname"])
        if "domainname" in cfg:
            _proc.setdomainname(cfg["domainname"])
    if linux.get("sysctl"):
        rootfs.write_sysctls(linux["sysctl"], ns_types)
    if linux.get("readonlyPaths"):
        rootfs.readonly_paths(linux["readonlyPaths"])
    if linux.get("maskedPaths"):
        null_fd = rootfs.verified_null()
        try:
            rootfs.masked_paths(linux["maskedPaths"], null_fd)
        finally:
            os.close(null_fd)
    spec.wait_cgroup()
    if deferred:
        rootfs.mount_deferred(deferred, spec.bundle)
    if cfg["root"].get("readonly"):
        rootfs.readonly_root()
    _finalize(spec, proc, sync_w, reply_r, fifo_fd)


def _console(spec: Spec, proc: dict) -> None:
    from berth.runtime.container import console

    if spec.console_fd is None:
        raise ConfigError("process.terminal is true but no --console-socket was given")
    console.setup(spec.console_fd, proc.get("consoleSize"))
    spec.console_fd = None


def _rlimits(limits: list[dict]) -> None:
    for r in limits:
        name = r["type"]
        res = _proc.RLIMITS.get(name)
        if res is None:
            raise ConfigError(f"config.json: unknown rlimit {name}")
        try:
            _proc.setrlimit(res, r["soft"], r["hard"])
        except OSError as e:
            hint = ""
            if name == "RLIMIT_NOFILE":
                try:
                    with open("/proc/sys/fs/nr_open") as f:
                        hint = f" (the host allows at most {f.read().strip()})"
                except OSError:
                    pass
            why = "soft limit above hard" if r["soft"] > r["hard"] else os.strerror(e.errno)
            raise ConfigError(f"set {name} to soft {r['soft']} hard {r['hard']}: {why}{hint}") from None


def _user(user: dict, userns: bool) -> None:
    uid, gid = user["uid"], user["gid"]
    try:
        if not (userns and _setgroups_denied()):
            os.setgroups(user.get("additionalGids", []))
        os.setgid(gid)
        os.setuid(uid)
    except OSError as e:
        raise RuntimeFailure(f"set user {uid}:{gid}: {e.strerror}") from None


def drop_privileges(proc: dict, userns: bool) -> None:
    """Become process.user with process.capabilities, in capabilities(7)'s order:
    bounding set first (needs CAP_SETPCAP), KEEPCAPS so setuid() keeps the
    permitted set, groups then gid then uid, capset, then ambient."""
    m = caps.masks(proc.get("capabilities"))
    caps.drop_bounding(m["bounding"])
    caps.keep_across_setuid(True)
    _user(proc["user"], userns)
    caps.keep_across_setuid(False)
    caps.apply_sets(m)


def _setgroups_denied() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def _chdir(cwd: str) -> None:
    """chdir to ``cwd`` resolved inside the root; magic links (/proc/self/fd/N) refused."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _m.openat2(root, cwd.lstrip("/") or ".", os.O_PATH | os.O_DIRECTORY,
                        _m.RESOLVE_IN_ROOT | _m.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        raise ConfigError(f"cwd {cwd}: {os.strerror(e.errno)}") from None
    finally:
        os.close(root)
    try:
        os.fchdir(fd)
    except OSError as e:
        raise ConfigError(f"cwd {cwd}: {e.strerror}") from None
    finally:
        os.close(fd)
    try:
        os.getcwd()  # ENOENT when the directory is not reachable from our root
    except OSError:
        raise ConfigError(f"cwd {cwd}: outside the container's root") from None


def _environ(proc: dict) -> dict[str, str]:
    env = {}
    for e in proc.get("env", ()):
        k, v = e.split("=", 1)
        env[k] = v
    if "HOME" not in env:
        env["HOME"] = _home(proc["user"]["uid"])
    return env


def _home(uid: int) -> str:
    try:
        with open("/etc/passwd", "rb") as f:
            for line in f:
                parts = line.split(b":")
                if len(parts) > 5 and parts[2] == str(uid).encode():
                    return parts[5].decode(errors="replace")
    except OSError:
        pass
    return "/"


def lookup(arg0: str, path: str) -> str:
    """Resolve ``arg0`` like execvp; CommandNotFound (127) or CannotInvoke (126)."""
    candidates = [arg0] if "/" in arg0 else [os.path.join(d or ".", arg0) for d in path.split(":")]
    denied = None
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(c, os.X_OK):
            return c
        denied = c
    if denied:
        raise CannotInvoke(f"exec {arg0}: permission denied")
    where = "" if "/" in arg0 else " in $PATH"
    raise CommandNotFound(f"exec: {arg0!r}: executable file not found{where}")


def _seccomp(spec: Spec) -> None:
    try:
        if spec.seccomp_prog:
            from berth._sys import seccomp as _sc

            _sc.load_bpf(spec.seccomp_prog)
        elif spec.seccomp_filter is not None:
            spec.seccomp_filter.load()
    except OSError as e:
        raise RuntimeFailure(f"load seccomp filter: {e.strerror}") from None


def _finalize(spec: Spec, proc: dict, sync_w: int, reply_r: int, fifo_fd: int | None) -> None:
    if spec.kind == "exec":
        spec.wait_cgroup()
        os.setsid()
        if proc.get("terminal"):
            _console(spec, proc)
    if proc.get("rlimits"):
        _rlimits(proc["rlimits"])
    nnp = proc.get("noNewPrivileges", False)
    if nnp:
        _proc.set_no_new_privs()
    else:
        _seccomp(spec)  # needs CAP_SYS_ADMIN without no_new_privs: load before dropping
    drop_privileges(proc, spec.userns)
    os.umask(proc["user"].get("umask", 0o022))
    _chdir(proc["cwd"])
    env = _environ(proc)
    exe = lookup(proc["args"][0], env.get("PATH", DEFAULT_PATH))
    # Only 0, 1, 2 (and --preserve-fds) survive exec: CVE-2024-21626.
    _proc.cloexec_from(3)
    for fd in range(3, 3 + spec.preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    trace.mark("P2 ready")
    channel.send(sync_w, "READY")
    if spec.gate:
        b = channel.read_byte(fifo_fd if fifo_fd is not None else reply_r)
        if b != b"0":
            os._exit(0)  # start was abandoned (delete of a created container)
        if fifo_fd is not None:
            os.close(fifo_fd)
    start_hooks = spec.cfg.get("hooks", {}).get("startContainer")
    if start_hooks and spec.kind == "init":
        from berth.runtime.container import hooks as _hooks

        _hooks.run("startContainer", start_hooks, dict(spec.hook_state, status="running"))
    if nnp:
        _seccomp(spec)
    # Python ignores SIGPIPE and SIGXFSZ; exec keeps ignored signals ignored.
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    trace.mark("P2 execve")
    try:
        os.execve(exe, proc["args"], env)
    except OSError as e:
        code = 127 if e.errno == 2 else 126
        raise (CommandNotFound if code == 127 else CannotInvoke)(
            f"exec {proc['args'][0]}: {e.strerror}") from None

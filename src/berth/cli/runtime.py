"""``berth-runtime``: the OCI runtime command line (runc's verbs and flags).

Exec'd once per container operation, so start-up cost matters: no argparse,
no json, no signal module on the hot path (see bench/runtime_vs_runc.py).
Flags are parsed by a small table per command, runc style: flags first, then
positional arguments; ``--`` ends flags.
"""

import os
import sys

from berth import __version__
from berth.errors import BerthError, UsageError
from berth.paths import DEFAULT_RUNTIME_ROOT

PROG = "berth-runtime"
SPEC_VERSION = "1.0.2"

# flag -> (key, kind); kind: "bool", "value", "multi" (repeatable), "ignored-bool", "ignored-value"
_GLOBAL = {
    "--root": ("root", "value"), "--log": ("log", "value"), "--log-format": ("log_format", "value"),
    "--debug": ("debug", "bool"), "--systemd-cgroup": ("systemd_cgroup", "bool"),
    "--rootless": ("rootless", "value"), "--criu": (None, "value"),
    "-h": ("help", "bool"), "--help": ("help", "bool"), "-v": ("version", "bool"),
    "--version": ("version", "bool"),
}
_CREATE = {
    "--bundle": ("bundle", "value"), "-b": ("bundle", "value"),
    "--pid-file": ("pid_file", "value"), "--console-socket": ("console_socket", "value"),
    "--no-pivot": ("no_pivot", "bool"), "--no-new-keyring": (None, "bool"),
    "--preserve-fds": ("preserve_fds", "value"),
}
_RUN = dict(_CREATE, **{"--detach": ("detach", "bool"), "-d": ("detach", "bool"),
                        "--keep": (None, "bool")})
_EXEC = {
    "--tty": ("tty", "bool"), "-t": ("tty", "bool"), "--env": ("env", "multi"),
    "-e": ("env", "multi"), "--cwd": ("cwd", "value"), "--user": ("user", "value"),
    "-u": ("user", "value"), "--detach": ("detach", "bool"), "-d": ("detach", "bool"),
    "--pid-file": ("pid_file", "value"), "--process": ("process", "value"),
    "-p": ("process", "value"), "--console-socket": ("console_socket", "value"),
    "--cap": ("cap", "multi"), "-c": ("cap", "multi"), "--no-new-privs": ("no_new_privs", "bool"),
    "--additional-gids": ("gids", "multi"), "-g": ("gids", "multi"),
    "--preserve-fds": ("preserve_fds", "value"),
}
_FORMAT = {"--format": ("format", "value"), "-f": ("format", "value")}
_COMMANDS = {
    # name: (flags, positional names, usage summary)
    "create": (_CREATE, ("id",), "create a container"),
    "start": ({}, ("id",), "start a created container"),
    "state": ({}, ("id",), "print the state of a container (JSON)"),
    "kill": ({"--all": ("all", "bool"), "-a": ("all", "bool")}, ("id", "?signal"),
             "send a signal (default TERM) to the container's init"),
    "delete": ({"--force": ("force", "bool"), "-f": ("force", "bool")}, ("id",),
               "delete a container"),
    "run": (_RUN, ("id",), "create and start a container, wait for it"),
    "exec": (_EXEC, ("id", "*command"), "run a process in a running container"),
    "list": (dict(_FORMAT, **{"--quiet": ("quiet", "bool"), "-q": ("quiet", "bool")}), (),
             "list containers"),
    "ps": (_FORMAT, ("id",), "list the processes of a container"),
    "pause": ({}, ("id",), "freeze every process of a container"),
    "resume": ({}, ("id",), "thaw a paused container"),
    "spec": ({"--bundle": ("bundle", "value"), "-b": ("bundle", "value"),
              "--rootless": (None, "bool")}, (), "write a default config.json"),
    "features": ({}, (), "print the features this runtime supports (JSON)"),
}


def _usage() -> str:
    lines = "\n".join(f"  {n:<9} {c[2]}" for n, c in _COMMANDS.items())
    return (f"Usage: {PROG} [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND [ARGS]\n\n"
            f"An OCI runtime (like runc).\n\nCommands:\n{lines}\n")


def parse_flags(argv: list[str], table: dict, where: str) -> tuple[dict, list[str]]:
    """Flags (by table) then positionals; raises UsageError naming the bad flag."""
    opts: dict = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return opts, argv[i + 1:]
        if not a.startswith("-") or a == "-":
            break
        name, eq, val = a.partition("=")
        if name not in table:
            if name in ("-h", "--help"):
                opts["help"] = True
                i += 1
                continue
            raise UsageError(f"{where}: unknown flag {name}")
        key, kind = table[name]
        if kind == "bool":
            if eq:
                if val not in ("true", "false"):
                    raise UsageError(f"{where}: flag {name} takes true or false")
                opts[key] = val == "true"
            else:
                opts[key] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv):
                raise UsageError(f"{where}: flag {name} needs a value")
            i += 1
            val = argv[i]
        if kind == "multi":
            opts.setdefault(key, []).append(val)
        elif key is not None:
            opts[key] = val
        i += 1
    return opts, argv[i:]


def _positionals(cmd: str, names: tuple, args: list[str]) -> dict:
    out: dict = {}
    args = list(args)
    for n in names:
        if n.startswith("*"):
            if args and args[0] == "--":
                args.pop(0)
            out[n[1:]] = args
            args = []
        elif n.startswith("?"):
            out[n[1:]] = args.pop(0) if args else None
        else:
            if not args:
                raise UsageError(f"{cmd}: missing container ID" if n == "id" else f"{cmd}: missing {n}")
            out[n] = args.pop(0)
    if args:
        raise UsageError(f"{cmd}: unexpected argument {args[0]!r}")
    return out


def _int_flag(opts: dict, key: str, cmd: str) -> int:
    v = opts.get(key, "0")
    if not v.isdigit():
        raise UsageError(f"{cmd}: --{key.replace('_', '-')} wants a number, not {v!r}")
    return int(v)


def _print_json(obj) -> None:
    from berth.runtime import jsonio

    sys.stdout.write(jsonio.dumps(obj) + "\n")


def _dispatch(g: dict, cmd: str, opts: dict, pos: dict) -> int:
    from berth.runtime import backend

    root = os.path.abspath(g.get("root") or DEFAULT_RUNTIME_ROOT)
    cid = pos.get("id")
    if cid is not None:
        from berth.runtime.container.state import check_id

        check_id(cid)
    if cmd in ("create", "run"):
        from berth.runtime import oci

        bundle = os.path.abspath(opts.get("bundle") or ".")
        cfg, rootfs = oci.load_bundle(bundle)
        be = backend.for_config(cfg)
        kw = dict(pid_file=opts.get("pid_file"), console_socket=opts.get("console_socket"),
                  no_pivot=opts.get("no_pivot", False),
                  preserve_fds=_int_flag(opts, "preserve_fds", cmd), cfg=cfg, rootfs=rootfs)
        if cmd == "create":
            be.create(root, cid, bundle, **kw)
            return 0
        return be.run(root, cid, bundle, detach=opts.get("detach", False), **kw)
    if cmd == "list":
        from berth.runtime.container import ops

        states = ops.list_states(root)
        if opts.get("quiet"):
            sys.stdout.write("".join(s["id"] + "\n" for s in states))
        elif opts.get("format") == "json":
            _print_json(states)
        elif opts.get("format", "table") == "table":
            rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
            rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s.get("created", ""),
                      s.get("owner") or "root") for s in states]
            w = [max(len(r[i]) for r in rows) for i in range(5)]
            for r in rows:
                sys.stdout.write("   ".join(c.ljust(w[i]) for i, c in enumerate(r[:5])) + "   " + r[5] + "\n")
        else:
            raise UsageError(f"list: unknown format {opts['format']!r} (want table or json)")
        return 0
    if cmd == "spec":
        return _spec(opts)
    if cmd == "features":
        _print_json(_features())
        return 0
    be = backend.for_container(root, cid)
    if cmd == "start":
        be.start(root, cid)
    elif cmd == "state":
        import json  # indented like runc's, for people; not on the container start path

        sys.stdout.write(json.dumps(be.get_state(root, cid), indent=2) + "\n")
    elif cmd == "kill":
        be.kill(root, cid, pos.get("signal") or "TERM", opts.get("all", False))
    elif cmd == "delete":
        be.delete(root, cid, opts.get("force", False))
    elif cmd == "ps":
        pids = be.pids(root, cid)
        fmt = opts.get("format", "table")
        if fmt == "json":
            _print_json(pids)
        elif fmt == "table":
            sys.stdout.write("PID     CMD\n")
            for p in pids:
                sys.stdout.write(f"{p:<7} {_cmdline(p)}\n")
        else:
            raise UsageError(f"ps: unknown format {fmt!r} (want table or json)")
    elif cmd == "pause":
        be.pause(root, cid)
    elif cmd == "resume":
        be.resume(root, cid)
    elif cmd == "exec":
        proc = _exec_process(root, cid, opts, pos["command"])
        return be.exec_process(root, cid, proc, detach=opts.get("detach", False),
                               pid_file=opts.get("pid_file"),
                               console_socket=opts.get("console_socket"),
                               preserve_fds=_int_flag(opts, "preserve_fds", cmd))
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _exec_process(root: str, cid: str, opts: dict, command: list[str]) -> dict:
    """The process for exec: --process FILE, or the container's process with CLI overrides."""
    import copy

    from berth.runtime import jsonio, oci
    from berth.runtime.container import state

    st = state.read(root, cid)
    base = (st.get("config") or {}).get("process") or {"user": {"uid": 0, "gid": 0}, "cwd": "/"}
    if opts.get("process"):
        try:
            with open(opts["process"]) as f:
                proc = jsonio.loads(f.read())
        except OSError as e:
            raise UsageError(f"exec: read {opts['process']}: {e.strerror}") from None
        except ValueError as e:
            raise UsageError(f"exec: parse {opts['process']}: {e}") from None
        oci.validate({"ociVersion": oci.OCI_VERSION, "root": {"path": "."}, "process": proc})
        return proc
    if not command:
        raise UsageError("exec: missing command (exec ID -- CMD...)")
    proc = copy.deepcopy(base)
    proc["args"] = command
    proc["terminal"] = opts.get("tty", False)
    proc.pop("consoleSize", None)
    if opts.get("env"):
        proc["env"] = list(proc.get("env", [])) + opts["env"]
    if opts.get("cwd"):
        proc["cwd"] = opts["cwd"]
    if opts.get("user"):
        u, _, g = opts["user"].partition(":")
        if not u.isdigit() or (g and not g.isdigit()):
            raise UsageError(f"exec: --user {opts['user']!r} must be UID[:GID] (numbers)")
        proc["user"] = dict(proc.get("user", {}), uid=int(u), gid=int(g or 0))
    if opts.get("gids"):
        proc["user"]["additionalGids"] = [int(x) for x in opts["gids"]]
    if opts.get("cap"):
        c = proc.setdefault("capabilities", {})
        for s in ("bounding", "effective", "permitted"):
            c[s] = sorted(set(c.get(s, [])) | set(opts["cap"]))
    if opts.get("no_new_privs"):
        proc["noNewPrivileges"] = True
    oci.validate({"ociVersion": oci.OCI_VERSION, "root": {"path": "."}, "process": proc})
    return proc


def _spec(opts: dict) -> int:
    import json

    from berth.runtime.container.spec import default_spec

    path = os.path.join(opts.get("bundle") or ".", "config.json")
    if os.path.exists(path):
        raise UsageError(f"spec: {path} already exists (remove it first)")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(default_spec(), f, indent=2)
        f.write("\n")
    os.rename(tmp, path)
    return 0


def _features() -> dict:
    from berth.runtime.container import caps, rootfs
    from berth.runtime.oci import NAMESPACE_TYPES

    return {
        "ociVersionMin": "1.0.0", "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted(list(rootfs._FLAGS) + list(rootfs.PROPAGATION)),
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": sorted(caps.NUMBERS),
            "cgroup": {"v1": True, "v2": True, "systemd": False},
            "seccomp": {"enabled": True},
            "apparmor": {"enabled": False}, "selinux": {"enabled": False},
        },
        "annotations": {"org.berth.isolation": "container|vm"},
    }


class _Log:
    """--log FILE / --log-format: errors also go to the log (containerd reads it)."""

    def __init__(self, path: str | None, fmt: str):
        self.path = path
        self.fmt = fmt

    def error(self, msg: str) -> None:
        if not self.path:
            return
        import time

        if self.fmt == "json":
            from berth.runtime import jsonio

            line = jsonio.dumps({"level": "error", "msg": msg,
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        else:
            line = f"time=\"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\" level=error msg=\"{msg}\""
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    from berth.runtime import trace

    trace.mark("main")
    argv = list(sys.argv[1:] if argv is None else argv)
    log = _Log(None, "text")
    debug = False
    try:
        g, rest = parse_flags(argv, _GLOBAL, PROG)
        log = _Log(g.get("log"), g.get("log_format", "text"))
        debug = g.get("debug", False)
        if g.get("log_format", "text") not in ("text", "json"):
            raise UsageError(f"--log-format {g['log_format']!r}: want text or json")
        if g.get("version"):
            sys.stdout.write(f"{PROG} version {__version__}\nspec: {SPEC_VERSION}\n")
            return 0
        if g.get("help") or not rest:
            sys.stdout.write(_usage())
            return 0 if g.get("help") else 1
        cmd = rest[0]
        if cmd not in _COMMANDS:
            raise UsageError(f"'{cmd}' is not a {PROG} command (see '{PROG} --help')")
        table, names, summary = _COMMANDS[cmd]
        opts, args = parse_flags(rest[1:], table, cmd)
        if opts.get("help"):
            sys.stdout.write(f"Usage: {PROG} {cmd} [flags] {' '.join(n.strip('*?').upper() for n in names)}\n"
                             f"{summary}\nFlags: {', '.join(sorted(k for k in table if k.startswith('--')))}\n")
            return 0
        pos = _positionals(cmd, names, args)
        return _dispatch(g, cmd, opts, pos)
    except BerthError as e:
        if debug:
            raise
        msg = str(e).replace("\n", " ")
        sys.stderr.write(f"{PROG}: {msg}\n")
        log.error(msg)
        return e.exit_code
    except OSError as e:
        if debug:
            raise
        msg = e.strerror or str(e)
        if e.filename is not None and str(e.filename) not in msg:
            msg += f": {e.filename}"
        sys.stderr.write(f"{PROG}: {msg}\n")
        log.error(msg)
        return 125
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The launcher's entry (see berth.cli.launcher)."""
    from berth.cli import launcher

    launcher.run(main)


if __name__ == "__main__":
    sys.exit(main())

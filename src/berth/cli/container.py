"""``berth run/create/start/stop/…``: docker's container verbs over the Python API.

Each verb is a function ``cmd_<verb>(args, client) -> int``; ``main`` parses
docker's flags and dispatches. ``berth container VERB`` reaches the same
functions (``container ls`` = ``ps``, ``container rm`` = ``rm``, …).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from berth.cli.common import Parser, parse_filters
from berth.errors import BerthError, UsageError

CONTAINER_VERBS = {
    "run": "Create and run a new container from an image",
    "create": "Create a new container",
    "start": "Start one or more stopped containers",
    "stop": "Stop one or more running containers",
    "kill": "Kill one or more running containers",
    "restart": "Restart one or more containers",
    "rm": "Remove one or more containers",
    "ps": "List containers",
    "logs": "Fetch the logs of a container",
    "exec": "Execute a command in a running container",
    "inspect": "Return low-level information on containers (JSON)",
    "wait": "Block until containers stop, then print their exit codes",
    "top": "Display the running processes of a container",
    "stats": "Display resource usage of containers (cpu, memory, pids, net)",
    "cp": "Copy files between a container and the host",
    "port": "List port mappings of a container",
    "rename": "Rename a container",
    "pause": "Pause all processes within containers",
    "unpause": "Unpause all processes within containers",
    "attach": "Attach to a running container's output (and input with -i)",
    "export": "Export a container's filesystem as a tar archive",
}
DETACH_KEYS_HELP = ("keys that detach from the container, which runs on: comma-separated ctrl-<a-z>, "
                    "ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_, DEL or single characters "
                    "(default ctrl-p,ctrl-q)")
ALIASES = {"ls": "ps", "list": "ps", "remove": "rm", "prune": "prune"}


class _LeanClient:
    """What most verbs need: the engine, without the API's imports (start-up time)."""

    def __init__(self, root: str):
        from berth.engine.containers import Engine

        self.root = root
        self.engine = Engine(root)

    @property
    def containers(self):
        from berth.engine.client import Client

        return Client(self.root).containers


def _client(opts):
    return _LeanClient(opts.root)


# ---- run / create -----------------------------------------------------------

def _create_parser(prog: str, run: bool) -> Parser:
    # -h is --hostname here, as in docker; help is --help only
    p = Parser(prog=prog, description=CONTAINER_VERBS["run" if run else "create"], add_help=False)
    p.add_argument("--help", action="help", help="show this help and exit")
    if run:
        p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the ID")
        p.add_argument("--rm", action="store_true", help="remove the container when it exits")
        p.add_argument("-a", "--attach", action="append", default=[],
                       help="attach only these streams: stdin, stdout, stderr (default all)")
        p.add_argument("--detach-keys", metavar="KEYS", help=DETACH_KEYS_HELP)
    else:
        p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("--name", help="assign a name")
    p.add_argument("-e", "--env", action="append", default=[], help="set an environment variable")
    p.add_argument("--env-file", action="append", default=[], help="read environment variables from a file")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="user name or uid[:gid]")
    p.add_argument("--entrypoint", help="overwrite the image's entrypoint")
    p.add_argument("-p", "--publish", action="append", default=[], help="publish a port: [IP:]HOST:CONTAINER[/udp]")
    p.add_argument("-P", "--publish-all", action="store_true", help="publish exposed ports to random host ports")
    p.add_argument("-v", "--volume", action="append", default=[], help="bind mount or volume: SRC:DST[:ro]")
    p.add_argument("--mount", action="append", default=[], help="type=bind|volume|tmpfs,source=…,target=…")
    p.add_argument("--tmpfs", action="append", default=[], help="mount a tmpfs: PATH[:OPTS]")
    p.add_argument("--network", "--net", default="default", help="none, host, bridge, NAME or container:ID")
    p.add_argument("--network-alias", action="append", default=[], help="extra DNS name on the network")
    p.add_argument("--hostname", "-h", help="container host name")
    p.add_argument("--add-host", action="append", default=[], help="add HOST:IP to /etc/hosts")
    p.add_argument("--dns", action="append", default=[], help="set a DNS server")
    p.add_argument("-m", "--memory", help="memory limit (e.g. 64m; minimum 6m)")
    p.add_argument("--cpus", help="number of CPUs (e.g. 0.5)")
    p.add_argument("--pids-limit", type=int, default=2048, help="maximum number of processes (default 2048; -1 unlimited)")
    p.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    p.add_argument("--cap-add", action="append", default=[], help="add a Linux capability")
    p.add_argument("--cap-drop", action="append", default=[], help="drop a Linux capability")
    p.add_argument("--security-opt", action="append", default=[],
                   help="seccomp=PROFILE.json|unconfined, no-new-privileges[=true|false]")
    p.add_argument("--privileged", action="store_true", help="give every capability and device (warns)")
    p.add_argument("--userns", default="host", help="user namespace mode (host)")
    p.add_argument("--restart", default="no", help="no, on-failure[:N], always, unless-stopped")
    p.add_argument("--init", action="store_true", help="run a tiny init (berth-init) as PID 1 that reaps zombies")
    p.add_argument("-l", "--label", action="append", default=[], help="set a label KEY=VALUE")
    p.add_argument("--stop-signal", default="SIGTERM", help="signal to stop the container")
    p.add_argument("--stop-timeout", type=int, default=10, help="seconds before SIGKILL on stop")
    p.add_argument("--health-cmd", help="command to check health (run with /bin/sh -c)")
    p.add_argument("--health-interval", help="time between checks (default 30s)")
    p.add_argument("--health-timeout", help="maximum time of one check (default 30s)")
    p.add_argument("--health-retries", type=int, help="consecutive failures before unhealthy (default 3)")
    p.add_argument("--health-start-period", help="start-up time in which failures do not count "
                   "towards the retries, until a first success (default 0s)")
    p.add_argument("--no-healthcheck", action="store_true", help="disable the image's HEALTHCHECK")
    p.add_argument("--log-opt", action="append", default=[], help="max-size=SIZE, max-file=N (json-file)")
    p.add_argument("--isolation", default="container",
                   help="container (default), vm, or auto (chosen from --require/--untrusted, "
                        "the image's org.berth.requires label and this host; one line says why)")
    p.add_argument("--require", action="append", default=[], metavar="NEED",
                   help="with --isolation auto: strong-isolation, own-kernel or fast-start (repeatable)")
    p.add_argument("--untrusted", action="store_true",
                   help="with --isolation auto: the workload is untrusted (picks a VM)")
    p.add_argument("--kernel", help="VM guest kernel image (default: Debian's cloud kernel in /boot)")
    p.add_argument("--accel", default="auto", help="VM accelerator: auto (default: probed), kvm or tcg")
    p.add_argument("--allow-sensitive-mounts", action="store_true",
                   help="allow bind-mounting /, /proc, /sys, /dev, /boot, /etc or berth's state (warns)")
    p.add_argument("image", help="image reference")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments")
    # argparse names a missing REMAINDER as required too; only the image is
    error = p.error
    p.error = lambda msg: error(msg.replace("image, command", "image"))  # type: ignore[method-assign]
    return p


def _options(a):
    from berth.engine import options as o

    env = []
    for f in a.env_file:
        env += o.parse_env_file(f)
    env += a.env
    mounts = [o.parse_volume(v) for v in a.volume] + [o.parse_mount(m) for m in a.mount] + \
        [o.parse_tmpfs(t) for t in a.tmpfs]
    ports = []
    for p in a.publish:
        ports += o.parse_port(p)
    max_size, max_file = o.DEFAULT_LOG_MAX_SIZE, o.DEFAULT_LOG_MAX_FILE
    for lo in a.log_opt:
        for item in lo.split(","):
            k, _, v = item.partition("=")
            if k == "max-size":
                max_size = o.parse_size(v, "log max-size")
            elif k == "max-file":
                if not v.isdigit() or int(v) < 1:
                    raise UsageError(f"invalid --log-opt {item!r}: max-file must be a positive integer")
                max_file = int(v)
            else:
                raise UsageError(f"invalid --log-opt {item!r}: expected max-size=SIZE or max-file=N")
    health = None
    health_opts = (a.health_cmd, a.health_interval, a.health_timeout, a.health_retries, a.health_start_period)
    if a.no_healthcheck and any(v is not None for v in health_opts):
        raise UsageError("--no-healthcheck conflicts with --health-* options")
    if a.health_retries is not None and a.health_retries < 0:
        raise UsageError(f"invalid --health-retries {a.health_retries}: cannot be negative")
    if a.health_cmd:
        health = o.Healthcheck(a.health_cmd, o.parse_duration(a.health_interval or "30s", "--health-interval"),
                               o.parse_duration(a.health_timeout or "30s", "--health-timeout"),
                               a.health_retries or 3,
                               o.parse_duration(a.health_start_period or "0s", "--health-start-period"))
    entrypoint = None
    if a.entrypoint is not None:
        import shlex  # only here: not on every run's path

        entrypoint = shlex.split(a.entrypoint) if a.entrypoint else []
    return o.CreateOptions(
        image=a.image, command=a.command or None, entrypoint=entrypoint,
        name=a.name, env=env, workdir=a.workdir, user=a.user, hostname=a.hostname, tty=a.tty,
        stdin_open=a.interactive, ports=ports, publish_all=a.publish_all, mounts=mounts,
        network=a.network, network_aliases=a.network_alias, add_hosts=a.add_host, dns=a.dns,
        memory=o.parse_memory(a.memory) if a.memory else 0, cpus=o.parse_cpus(a.cpus) if a.cpus else 0.0,
        pids_limit=a.pids_limit, read_only=a.read_only, cap_add=a.cap_add, cap_drop=a.cap_drop,
        security_opt=a.security_opt, privileged=a.privileged, userns=a.userns,
        restart=o.parse_restart(a.restart), auto_remove=a.rm, init=a.init,
        labels=o.parse_labels(a.label), stop_signal=a.stop_signal, stop_timeout=a.stop_timeout,
        healthcheck=health, no_healthcheck=a.no_healthcheck, log_max_size=max_size, log_max_file=max_file,
        isolation=a.isolation,
        allow_sensitive_mounts=a.allow_sensitive_mounts, kernel=a.kernel, accel=a.accel,
        requires=[r for v in a.require for r in v.split(",") if r], untrusted=a.untrusted,
    )


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        sys.stderr.write(w + "\n")


def cmd_create(argv, client, prog) -> int:
    a = _create_parser(prog, run=False).parse_args(argv)
    rec, warnings = client.engine.create(_options(a))
    _warn(warnings)
    print(rec["Id"])
    return 0


def cmd_run(argv, client, prog) -> int:
    a = _create_parser(prog, run=True).parse_args(argv)
    opts = _options(a)
    # docker refuses -t only with -i: without stdin the pty is output-only
    if a.tty and a.interactive and not a.detach and not sys.stdin.isatty():
        raise UsageError("run -t: the input device is not a TTY")
    streams = {x.lower() for x in a.attach}
    for x in streams - {"stdin", "stdout", "stderr"}:
        raise UsageError(f"invalid -a {x!r}: expected stdin, stdout or stderr")
    if streams and a.detach:
        raise UsageError("conflicting options: -a and -d")
    keys = _detach_keys(a.detach_keys)  # before anything is made
    eng = client.engine
    # stored by start, while the container is created (see Engine.create)
    rec, warnings = eng.create(opts, store=False)
    _warn(warnings)
    if a.detach:
        try:
            eng.start(rec, new=True)
        except BaseException:
            if a.rm:
                _discard(eng, rec)
            raise
        print(rec["Id"])
        return 0
    return _run_attached(eng, rec, interactive=a.interactive and (not streams or "stdin" in streams), tty=a.tty,
                         remove=a.rm, streams=streams, detach_keys=keys, new=True)


def _detach_keys(spec: str | None) -> bytes:
    from berth.engine.attach import parse_detach_keys

    return parse_detach_keys(spec)


def _detached() -> int:
    """The user typed the detach keys: docker's line, exit 0, the container runs on."""
    sys.stderr.write("read escape sequence\n")
    return 0


def _discard(eng, rec) -> None:
    """--rm after a failed start: remove what is left (nothing at all when the
    start failed before it stored the record)."""
    from berth.errors import NotFound

    try:
        eng.remove(rec["Id"], force=True)
    except NotFound:
        pass


def _run_attached(eng, rec, interactive: bool, tty: bool, remove: bool, streams: set[str] | None = None,
                  detach_keys: bytes | None = None, new: bool = False) -> int:
    from berth.engine.attach import attach
    from berth.engine.monitor import connect

    socks = []
    try:
        eng.start(rec, attach=True, stdin=interactive,
                  on_listening=lambda: socks.append(connect(eng.cdir(rec["Id"]))), new=new)
        sock = socks[0] if socks else connect(eng.cdir(rec["Id"]))
    except BaseException:
        for s in socks:
            s.close()
        if remove:
            _discard(eng, rec)
        raise

    def forward(sig: int) -> None:  # docker's sig-proxy
        eng._rt("kill", rec["Id"], str(sig))

    # -a: the streams not asked for are read from the monitor and dropped
    null = open(os.devnull, "wb") if streams else None
    out = sys.stdout.buffer if not streams or "stdout" in streams else null
    err = sys.stderr.buffer if not streams or "stderr" in streams else null
    try:
        cdir = eng.cdir(rec["Id"])
        # detached with --rm: the monitor removes it when it exits (docker's daemon does)
        on_detach = (lambda: (cdir / "detached").touch()) if remove else None
        if attach(cdir, sys.stdin.buffer if interactive else None, out, err, tty=tty,
                  on_signal=None if tty else forward, sock=sock, detach_keys=detach_keys, on_detach=on_detach):
            remove = False  # it runs on
            return _detached()
        from berth.runtime import trace

        trace.mark("attach ended")
        rs = eng._wait_exit(rec, None)
        trace.mark("exit read")
        code = rs.exit_code if rs else 125
    finally:
        if null is not None:
            null.close()
        if remove:
            eng.remove(rec["Id"], force=True)
    return code if code >= 0 else 125


# ---- start / stop / kill / restart / rm / pause ------------------------------

def _multi(prog, desc, argv, fn, extra=None) -> int:
    p = Parser(prog=prog, description=desc)
    if extra:
        extra(p)
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    a = p.parse_args(argv)
    rc = 0
    for ref in a.containers:
        try:
            fn(ref, a)
            print(ref)
        except BerthError as e:
            sys.stderr.write(f"berth: {e}\n")
            rc = e.exit_code if rc == 0 else rc
    return rc


def cmd_start(argv, client, prog) -> int:
    p = Parser(prog=prog, description=CONTAINER_VERBS["start"])
    p.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr and wait")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    p.add_argument("--detach-keys", metavar="KEYS", help=DETACH_KEYS_HELP)
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    a = p.parse_args(argv)
    eng = client.engine
    keys = _detach_keys(a.detach_keys)
    if a.attach or a.interactive:  # docker: -i alone attaches too
        if len(a.containers) > 1:
            raise UsageError("start -a: only one container can be attached")
        rec = eng.get(a.containers[0])
        return _run_attached(eng, rec, a.interactive, rec["Config"]["Tty"], rec["HostConfig"]["AutoRemove"],
                             detach_keys=keys)
    rc = 0
    for ref in a.containers:
        try:
            eng.start(ref)
            print(ref)
        except BerthError as e:
            sys.stderr.write(f"berth: {e}\n")
            rc = rc or e.exit_code
    return rc


def cmd_stop(argv, client, prog) -> int:
    def extra(p):
        p.add_argument("-t", "--time", type=int, default=None, help="seconds to wait before killing (default 10)")
        p.add_argument("-s", "--signal", default=None, help="signal to send (default: the stop signal)")
    return _multi(prog, CONTAINER_VERBS["stop"], argv, lambda r, a: client.engine.stop(r, a.time, a.signal), extra)


def cmd_restart(argv, client, prog) -> int:
    def extra(p):
        p.add_argument("-t", "--time", type=int, default=None, help="seconds to wait before killing")
    return _multi(prog, CONTAINER_VERBS["restart"], argv, lambda r, a: client.engine.restart(r, a.time), extra)


def cmd_kill(argv, client, prog) -> int:
    def extra(p):
        p.add_argument("-s", "--signal", default="KILL", help="signal to send (default KILL)")
    return _multi(prog, CONTAINER_VERBS["kill"], argv, lambda r, a: client.engine.kill(r, a.signal), extra)


def cmd_rm(argv, client, prog) -> int:
    def extra(p):
        p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
        p.add_argument("-v", "--volumes", action="store_true", help="remove its anonymous volumes")
    return _multi(prog, CONTAINER_VERBS["rm"], argv,
                  lambda r, a: client.engine.remove(r, force=a.force, volumes=a.volumes), extra)


def cmd_pause(argv, client, prog) -> int:
    return _multi(prog, CONTAINER_VERBS["pause"], argv, lambda r, a: client.engine.pause(r))


def cmd_unpause(argv, client, prog) -> int:
    return _multi(prog, CONTAINER_VERBS["unpause"], argv, lambda r, a: client.engine.unpause(r))


def cmd_rename(argv, client, prog) -> int:
    p = Parser(prog=prog, description=CONTAINER_VERBS["rename"])
    p.add_argument("container")
    p.add_argument("new_name")
    a = p.parse_args(argv)
    client.engine.rename(a.container, a.new_name)
    return 0


def cmd_wait(argv, client, prog) -> int:
    p = Parser(prog=prog, description=CONTAINER_VERBS["wait"])
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    a = p.parse_args(argv)
    rc = 0
    for ref in a.containers:  # docker: one error does not stop the others
        try:
            print(client.engine.wait(ref), flush=True)
        except BerthError as e:
            sys.stderr.write(f"berth: {e}\n")
            rc = rc or e.exit_code
    return rc


# ---- ps ---------------------------------------------------------------------

PS_COLUMNS = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("CREATED", "RunningFor"),
              ("STATUS", "Status"), ("PORTS", "Ports"), ("NAMES", "Names")]


def status_text(rec, rs, cdir=None) -> str:
    text = _status_text(rec, rs)
    if cdir is not None and rs.status == "running" and rec["Config"].get("Healthcheck"):
        try:
            health = json.loads((cdir / "health.json").read_text()).get("Status", "starting")
        except (OSError, ValueError):
            health = "starting"
        text += " (health: starting)" if health == "starting" else f" ({health})"
    return text


def _status_text(rec, rs) -> str:
    from berth.cli.format import human_duration
    from berth.engine.logs import parse_time

    def ago(ts: str) -> str:
        try:
            return human_duration(time.time() - parse_time(ts))
        except ValueError:
            return "?"

    if rs.status == "running":
        return f"Up {ago(rs.started_at)}"
    if rs.status == "paused":
        return f"Up {ago(rs.started_at)} (Paused)"
    if rs.status == "restarting":
        return f"Restarting ({rs.exit_code}) {ago(rs.finished_at) if rs.finished_at else 'Less than a second'} ago"
    if rs.status == "exited":
        if rs.exit_code == -1:
            return "Exited (unknown)"
        return f"Exited ({rs.exit_code}) {ago(rs.finished_at)} ago" if rs.finished_at else f"Exited ({rs.exit_code})"
    return "Created"


def ports_text(rec) -> str:
    out = []
    for p in (rec.get("Network") or {}).get("Ports", []):
        if p.get("host_port"):
            out.append(f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p['proto']}")
        else:
            out.append(f"{p['container_port']}/{p['proto']}")
    return ", ".join(out)


def ps_row(rec, rs, trunc: bool = True, cdir=None) -> dict:
    from berth.cli.format import human_duration

    # docker's list: arguments with a space are shown in single quotes
    cmd = " ".join([rec["Path"], *(f"'{x}'" if " " in x else x for x in rec["Args"])])
    if trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return {
        "ID": rec["Id"][:12] if trunc else rec["Id"],
        "Image": rec["Image"],
        "Command": json.dumps(cmd, ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(rec["CreatedTs"])),
        "RunningFor": human_duration(time.time() - rec["CreatedTs"]) + " ago",
        "Status": status_text(rec, rs, cdir),
        "State": rs.status,
        "Ports": ports_text(rec) if rs.status in ("running", "paused") else "",  # docker: none once stopped
        "Names": rec["Name"],
        "Labels": ",".join(f"{k}={v}" for k, v in (rec["Config"].get("Labels") or {}).items()),
        "Networks": (rec.get("Network") or {}).get("Network") or (rec.get("Network") or {}).get("Mode", ""),
        "Mounts": ",".join(m.get("Name") or m.get("Source") or m["Destination"] for m in rec.get("Mounts", [])),
        "Isolation": rec.get("Isolation", "container"),
        "ExitCode": rs.exit_code,
    }


def cmd_ps(argv, client, prog) -> int:
    from berth.cli.format import print_rows

    p = Parser(prog=prog, description=CONTAINER_VERBS["ps"])
    p.add_argument("-a", "--all", action="store_true", help="show all containers (default: running)")
    p.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="status=, name=, label=KEY[=VALUE], id=, ancestor=, exited=, isolation=, health=, "
                   "network=, volume=, before=, since=")
    p.add_argument("--format", help="table (default), json, or a template such as '{{.ID}} {{.Names}}'")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate IDs and commands")
    p.add_argument("-n", "--last", type=int, default=-1, help="show the n last created containers")
    p.add_argument("-l", "--latest", action="store_true", help="show the latest created container")
    a = p.parse_args(argv)
    filters = parse_filters(a.filter)
    if "status" in filters:
        for s in filters["status"]:
            if s not in ("created", "running", "paused", "restarting", "exited", "removing", "dead"):
                raise UsageError(f"invalid filter status={s!r}: expected created, running, paused, restarting or exited")
    items = client.engine.list(all=a.all or a.last >= 0 or a.latest, filters=filters)
    if a.latest:
        items = items[:1]
    elif a.last >= 0:
        items = items[:a.last]
    rows = [ps_row(r, s, trunc=not a.no_trunc, cdir=client.engine.cdir(r["Id"])) for r, s in items]
    print_rows(rows, a.format, PS_COLUMNS, quiet_key="ID", quiet=a.quiet)
    return 0


# ---- logs -------------------------------------------------------------------

def cmd_logs(argv, client, prog) -> int:
    from berth.engine.logs import parse_since, parse_time, read_logs

    p = Parser(prog=prog, description=CONTAINER_VERBS["logs"])
    p.add_argument("-f", "--follow", action="store_true", help="follow log output (across rotation)")
    p.add_argument("-n", "--tail", default="all", help="number of lines from the end (default all)")
    p.add_argument("--since", help="since a timestamp, RFC 3339 time or duration (10m)")
    p.add_argument("--until", help="before a timestamp, RFC 3339 time or duration (10m ago)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("container")
    a = p.parse_args(argv)
    eng = client.engine
    rec = eng.get(a.container)
    if a.tail != "all" and not a.tail.lstrip("-").isdigit():
        raise UsageError(f"invalid --tail {a.tail!r}: expected a number or 'all'")
    tail = None if a.tail == "all" else int(a.tail)
    since = parse_since(a.since) if a.since else None
    until = parse_since(a.until) if a.until else None
    cdir = eng.cdir(rec["Id"])
    max_file = int(rec["HostConfig"]["LogConfig"]["Config"]["max-file"])
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def alive() -> bool:
        return eng.run_state(rec).status in ("running", "paused", "restarting")

    try:
        for e in read_logs(cdir / "container.log", max_file, tail=tail if tail is None or tail >= 0 else None,
                           since=since, follow=a.follow, alive=alive):
            if until is not None and parse_time(e.time) > until:
                break  # entries are in time order: nothing later is wanted
            dst = err if e.stream == "stderr" else out
            if a.timestamps:
                dst.write(e.time.encode() + b" ")
            dst.write(e.data)
            if a.follow:
                dst.flush()
    except BrokenPipeError:
        return 0
    return 0


# ---- exec / attach ----------------------------------------------------------

def cmd_exec(argv, client, prog) -> int:
    from berth.engine.execute import exec_argv, run_exec

    p = Parser(prog=prog, description=CONTAINER_VERBS["exec"])
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("-e", "--env", action="append", default=[], help="set an environment variable")
    p.add_argument("-u", "--user", help="user name or uid[:gid]")
    p.add_argument("-w", "--workdir", help="working directory")
    p.add_argument("--privileged", action="store_true", help="give the process every capability")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if not a.command:
        raise UsageError("exec: requires a command to run (berth exec CONTAINER COMMAND [ARG...])")
    if a.tty and a.interactive and not a.detach and not sys.stdin.isatty():
        raise UsageError("exec -t: the input device is not a TTY")
    eng = client.engine
    rec = eng.get(a.container)
    argv2 = exec_argv(eng, rec, a.command, detach=a.detach, tty=a.tty, env=a.env, user=a.user,
                      workdir=a.workdir, privileged=a.privileged)
    code, _ = run_exec(argv2, stdin=None if (a.interactive or a.tty) else subprocess_devnull())
    return code


def subprocess_devnull():
    import subprocess

    return subprocess.DEVNULL


def cmd_attach(argv, client, prog) -> int:
    from berth.engine.attach import attach

    p = Parser(prog=prog, description=CONTAINER_VERBS["attach"])
    p.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    p.add_argument("--detach-keys", metavar="KEYS", help=DETACH_KEYS_HELP)
    p.add_argument("container")
    a = p.parse_args(argv)
    keys = _detach_keys(a.detach_keys)
    eng = client.engine
    rec = eng.get(a.container)
    if eng.run_state(rec).status != "running":
        raise UsageError(f"attach to container {rec['Name']}: container is not running")
    use_stdin = rec["Config"]["OpenStdin"] and not a.no_stdin
    if attach(eng.cdir(rec["Id"]), sys.stdin.buffer if use_stdin else None, sys.stdout.buffer, sys.stderr.buffer,
              tty=rec["Config"]["Tty"], detach_keys=keys):
        return _detached()
    rs = eng._wait_exit(rec, 5)
    return rs.exit_code if rs and rs.exit_code >= 0 else 0


# ---- inspect / top / stats / port / cp / export -------------------------------

def cmd_inspect(argv, client, prog) -> int:
    from berth.engine.inspect import inspect_container

    p = Parser(prog=prog, description=CONTAINER_VERBS["inspect"])
    p.add_argument("-f", "--format", help="a template such as '{{.State.Status}}'")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    a = p.parse_args(argv)
    out, rc = [], 0
    for ref in a.containers:
        try:
            out.append(inspect_container(client.engine, client.engine.get(ref)))
        except BerthError as e:
            sys.stderr.write(f"berth: {e}\n")
            rc = e.exit_code
    if a.format:
        for d in out:
            print(_dotted_template(a.format, d))
    else:
        print(json.dumps(out, indent=4))
    return rc


def _dotted_template(fmt: str, data: dict) -> str:
    """``{{.State.Status}}`` and ``{{json .Config}}`` over a nested dict."""
    import re

    def sub(m):
        is_json, path = bool(m.group(1)), m.group(2)
        v = data
        for part in [x for x in path.split(".") if x]:
            if not isinstance(v, dict) or part not in v:
                raise UsageError(f"invalid --format: no field {path}")
            v = v[part]
        if is_json:
            return json.dumps(v)
        if isinstance(v, bool):
            return str(v).lower()
        return "" if v is None else str(v)

    return re.sub(r"{{\s*(json\s+)?(\.[A-Za-z0-9_.]*)\s*}}", sub, fmt)


def cmd_top(argv, client, prog) -> int:
    from berth.engine.observe import top

    p = Parser(prog=prog, description=CONTAINER_VERBS["top"])
    p.add_argument("container")
    p.add_argument("ps_options", nargs=argparse.REMAINDER, help="ps options (default -ef columns)")
    a = p.parse_args(argv)
    titles, rows = top(client.engine, client.engine.get(a.container), a.ps_options)
    from berth.cli.format import print_table

    print_table([titles] + rows)
    return 0


def cmd_stats(argv, client, prog) -> int:
    from berth.cli.format import human_size, print_rows
    from berth.engine.observe import host_memory, stats

    p = Parser(prog=prog, description=CONTAINER_VERBS["stats"])
    p.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("-a", "--all", action="store_true", help="include stopped containers")
    p.add_argument("--format", help="table (default), json, or a template")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    a = p.parse_args(argv)
    eng = client.engine
    cols = [("CONTAINER ID", "ID"), ("NAME", "Name"), ("CPU %", "CPUPerc"), ("MEM USAGE / LIMIT", "MemUsage"),
            ("MEM %", "MemPerc"), ("NET I/O", "NetIO"), ("BLOCK I/O", "BlockIO"), ("PIDS", "PIDs")]
    host_mem = host_memory()
    while True:
        recs = [eng.get(r) for r in a.containers] if a.containers else [r for r, _ in eng.list(all=a.all)]
        rows = []
        for rec in recs:
            s = stats(eng, rec)
            # docker shows the host's memory as the limit of a container without -m
            lim = min(s["memory_limit"] or host_mem, host_mem or s["memory_limit"])
            rows.append({"ID": rec["Id"][:12], "Name": rec["Name"], "CPUPerc": f"{s['cpu_percent']:.2f}%",
                         "MemUsage": f"{human_size(s['memory_usage'])} / {human_size(lim) if lim else 'unlimited'}",
                         "MemPerc": f"{100.0 * s['memory_usage'] / lim:.2f}%" if lim else "--",
                         "NetIO": f"{human_size(s['net_rx'])} / {human_size(s['net_tx'])}",
                         "BlockIO": f"{human_size(s['block_read'])} / {human_size(s['block_write'])}",
                         "PIDs": s["pids"]})
        if not a.no_stream:
            sys.stdout.write("\033[2J\033[H")
        print_rows(rows, a.format, cols)
        sys.stdout.flush()
        if a.no_stream:
            return 0
        time.sleep(1)


def cmd_port(argv, client, prog) -> int:
    p = Parser(prog=prog, description=CONTAINER_VERBS["port"])
    p.add_argument("container")
    p.add_argument("private_port", nargs="?", help="PORT[/PROTO]")
    a = p.parse_args(argv)
    rec = client.engine.get(a.container)
    want = a.private_port
    if want and "/" not in want:
        want += "/tcp"
    found = False
    # docker: a stopped container publishes nothing (its ports may be someone else's now)
    running = client.engine.run_state(rec).status in ("running", "paused")
    for pp in (rec.get("Network") or {}).get("Ports", []) if running else []:
        key = f"{pp['container_port']}/{pp['proto']}"
        if want and key != want:
            continue
        found = True
        host = f"{pp.get('host_ip') or '0.0.0.0'}:{pp.get('host_port')}"
        print(host if want else f"{key} -> {host}")
    if want and not found:
        raise UsageError(f"port: no public port '{want}' published for {rec['Name']}")
    return 0


def cmd_cp(argv, client, prog) -> int:
    from berth.engine.copy import copy

    p = Parser(prog=prog, description=CONTAINER_VERBS["cp"] +
               " (CONTAINER:SRC DEST or SRC CONTAINER:DEST; symlinks resolve inside the container)")
    p.add_argument("-a", "--archive", action="store_true", help="keep uid/gid")
    p.add_argument("-L", "--follow-link", action="store_true", help="follow a symlink given as SRC")
    p.add_argument("src")
    p.add_argument("dest")
    a = p.parse_args(argv)
    copy(client.engine, a.src, a.dest, follow=a.follow_link, archive=a.archive)
    return 0


def cmd_export(argv, client, prog) -> int:
    from berth.engine.copy import export

    p = Parser(prog=prog, description=CONTAINER_VERBS["export"])
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    p.add_argument("container")
    a = p.parse_args(argv)
    if not a.output and sys.stdout.isatty():
        raise UsageError("export: refusing to write a tar archive to a terminal; use -o FILE or redirect")
    rec = client.engine.get(a.container)
    if a.output:
        tmp = a.output + ".tmp"
        with open(tmp, "wb") as f:
            export(client.engine, rec, f)
        os.rename(tmp, a.output)
    else:
        export(client.engine, rec, sys.stdout.buffer)
    return 0


def cmd_prune(argv, client, prog) -> int:
    p = Parser(prog=prog, description="Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt (berth never prompts)")
    p.parse_args(argv)
    r = client.containers.prune()
    for c in r["ContainersDeleted"]:
        print(c)
    return 0


def _verb(name: str):
    return globals()[f"cmd_{name}"]


def container_group(argv, client) -> int:
    verbs = dict(CONTAINER_VERBS, ls="List containers", prune="Remove all stopped containers")
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage: berth container COMMAND\n\nManage containers\n\nCommands:")
        for v, s in verbs.items():
            print(f"  {v:<9} {s}")
        return 0
    verb = ALIASES.get(argv[0], argv[0])
    if verb not in CONTAINER_VERBS and verb != "prune":
        raise UsageError(f"'container {argv[0]}' is not a berth command (see 'berth container --help')")
    return _verb(verb)(argv[1:], client, f"berth container {argv[0]}")


def main(name: str, argv: list[str], opts) -> int:
    client = _client(opts)
    if name == "container":
        return container_group(argv, client)
    return _verb(name)(argv, client, f"berth {name}")

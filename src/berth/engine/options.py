"""Container creation options and the parsers for docker's flag syntax.

The CLI and the Python API both build a ``CreateOptions``; every check of a
user-given value happens here, before anything is written to disk, so a bad
flag leaves nothing half-created.
"""

from __future__ import annotations

import os
import re

from berth.engine._record import factory, record
from berth.errors import UsageError

MIN_MEMORY = 6 * 1024 * 1024  # docker's minimum for --memory
DEFAULT_PIDS_LIMIT = 2048
# json-file defaults: docker's are unlimited; berth caps a container's logs at
# 10 MiB x 3 files = 30 MiB so a flooding container cannot fill the disk.
DEFAULT_LOG_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_LOG_MAX_FILE = 3
ISOLATIONS = ("container", "vm", "auto")
ACCELS = ("auto", "kvm", "tcg")  # as berth.runtime.vm.accel.ACCELS (not imported: no VM code on this path)
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
SENSITIVE_PATHS = ("/", "/proc", "/sys", "/dev", "/boot", "/etc")


@record
class PortSpec:
    container_port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int = 0  # 0: pick a free port


@record
class MountSpec:
    type: str  # bind | volume | tmpfs
    target: str
    source: str = ""
    readonly: bool = False
    options: tuple[str, ...] = ()


@record
class RestartPolicy:
    name: str = "no"
    max_retries: int = 0


@record
class Healthcheck:
    cmd: str
    interval: int = 30
    timeout: int = 30
    retries: int = 3
    start_period: int = 0  # seconds in which failures do not count (before a first success)


@record
class CreateOptions:
    """Everything ``berth create``/``run`` accept, in docker's vocabulary."""

    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None  # None: the image's; []: none
    name: str | None = None
    env: list[str] = factory(list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    tty: bool = False
    stdin_open: bool = False
    ports: list[PortSpec] = factory(list)
    publish_all: bool = False
    mounts: list[MountSpec] = factory(list)
    network: str = "default"
    network_aliases: list[str] = factory(list)
    add_hosts: list[str] = factory(list)
    dns: list[str] = factory(list)
    memory: int = 0
    cpus: float = 0.0
    pids_limit: int = DEFAULT_PIDS_LIMIT
    read_only: bool = False
    cap_add: list[str] = factory(list)
    cap_drop: list[str] = factory(list)
    security_opt: list[str] = factory(list)
    privileged: bool = False
    userns: str = "host"
    restart: RestartPolicy = factory(RestartPolicy)
    auto_remove: bool = False
    init: bool = False
    labels: dict[str, str] = factory(dict)
    stop_signal: str = "SIGTERM"
    stop_timeout: int = 10
    healthcheck: Healthcheck | None = None
    no_healthcheck: bool = False  # --no-healthcheck: not even the image's HEALTHCHECK
    log_max_size: int = DEFAULT_LOG_MAX_SIZE
    log_max_file: int = DEFAULT_LOG_MAX_FILE
    isolation: str = "container"
    allow_sensitive_mounts: bool = False
    kernel: str | None = None  # VM only: guest kernel (default: the cloud kernel in /boot)
    accel: str = "auto"  # VM only: auto | kvm | tcg
    requires: list[str] = factory(list)  # isolation auto: strong-isolation, own-kernel, fast-start
    untrusted: bool = False  # isolation auto: the workload is untrusted


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$", re.I)


def parse_size(text: str | int, what: str = "size") -> int:
    """``512m``, ``1g``, ``1024`` -> bytes (docker's units are binary)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text).strip())
    if not m:
        raise UsageError(f"invalid {what} {text!r}: expected a number with an optional unit b, k, m or g")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def parse_memory(text: str | int) -> int:
    n = parse_size(text, "memory limit")
    if 0 < n < MIN_MEMORY:
        raise UsageError(f"invalid memory limit {text!r}: the minimum allowed is 6 MiB (6m)")
    return n


def parse_cpus(text: str | float) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"invalid --cpus {text!r}: expected a number such as 0.5 or 2") from None
    if v < 0:
        raise UsageError(f"invalid --cpus {text!r}: must be positive")
    return v


def parse_restart(text: str) -> RestartPolicy:
    name, _, count = (text or "no").partition(":")
    if name not in RESTART_POLICIES:
        raise UsageError(f"invalid restart policy {text!r}: expected no, on-failure[:N], always or unless-stopped")
    if count:
        if name != "on-failure" or not count.isdigit():
            raise UsageError(f"invalid restart policy {text!r}: only on-failure takes a maximum retry count")
        return RestartPolicy(name, int(count))
    return RestartPolicy(name, 0)


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"invalid port spec {spec!r}: {text!r} is not a port number (1-65535)")
    return int(text)


def parse_port(spec: str) -> list[PortSpec]:
    """docker's -p: [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]; ranges a-b too."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise UsageError(f"invalid port spec {spec!r}: protocol must be tcp or udp")
    ip = ""
    if body.startswith("["):  # [::1]:8080:80
        end = body.find("]")
        ip, body = body[1:end], body[end + 2:]
    parts = body.split(":")
    if len(parts) == 3:
        ip, host, cont = parts
    elif len(parts) == 2:
        host, cont = parts
    elif len(parts) == 1:
        host, cont = "", parts[0]
    else:
        raise UsageError(f"invalid port spec {spec!r}: expected [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]")
    if ip:
        import ipaddress

        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise UsageError(f"invalid port spec {spec!r}: {ip!r} is not an IP address") from None

    def rng(t: str) -> list[int]:
        if "-" in t:
            a, b = t.split("-", 1)
            lo, hi = _port(a, spec), _port(b, spec)
            if hi < lo:
                raise UsageError(f"invalid port spec {spec!r}: empty range")
            return list(range(lo, hi + 1))
        return [_port(t, spec)]

    conts = rng(cont)
    hosts = rng(host) if host else [0] * len(conts)
    if len(hosts) != len(conts):
        raise UsageError(f"invalid port spec {spec!r}: host and container ranges differ in size")
    return [PortSpec(c, proto, ip, h) for c, h in zip(conts, hosts, strict=True)]


_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def _check_target(target: str, spec: str) -> str:
    if not target.startswith("/"):
        raise UsageError(f"invalid volume spec {spec!r}: the container path {target!r} must be absolute")
    return target


def parse_volume(spec: str) -> MountSpec:
    """docker's -v: NAME:/dst[:ro], /host:/dst[:ro|rw], or /dst (anonymous volume)."""
    parts = spec.split(":")
    if not spec or len(parts) > 3 or any(p == "" for p in parts):
        raise UsageError(f"invalid volume spec {spec!r}: expected SOURCE:TARGET[:ro|rw]")
    mode = parts[2] if len(parts) == 3 else ""
    opts = [o for o in mode.split(",") if o]
    for o in opts:
        if o not in ("ro", "rw", "z", "Z", "nocopy"):
            raise UsageError(f"invalid volume spec {spec!r}: unknown mode {o!r}")
    ro = "ro" in opts
    if len(parts) == 1:
        return MountSpec("volume", _check_target(parts[0], spec), "", False)
    src, dst = parts[0], _check_target(parts[1], spec)
    if src.startswith("/"):
        return MountSpec("bind", dst, src, ro)
    if src.startswith(".") or "/" in src:
        raise UsageError(f"invalid volume spec {spec!r}: relative host paths are refused; use an absolute path")
    if not _VOLUME_NAME.match(src):
        raise UsageError(f"invalid volume spec {spec!r}: {src!r} is not a valid volume name")
    return MountSpec("volume", dst, src, ro)


def parse_mount(spec: str) -> MountSpec:
    """docker's --mount type=bind|volume|tmpfs,source=..,target=..[,readonly]."""
    kv: dict[str, str] = {}
    for item in spec.split(","):
        k, eq, v = item.partition("=")
        k = k.strip()
        if not k:
            continue
        kv[k] = v if eq else "true"
    typ = kv.pop("type", "volume")
    if typ not in ("bind", "volume", "tmpfs"):
        raise UsageError(f"invalid mount spec {spec!r}: type must be bind, volume or tmpfs")
    src = kv.pop("source", kv.pop("src", ""))
    dst = kv.pop("target", kv.pop("destination", kv.pop("dst", "")))
    ro = kv.pop("readonly", kv.pop("ro", "false")) in ("true", "1", "")
    if not dst:
        raise UsageError(f"invalid mount spec {spec!r}: target is required")
    _check_target(dst, spec)
    opts: list[str] = []
    if "tmpfs-size" in kv:
        opts.append(f"size={parse_size(kv.pop('tmpfs-size'), 'tmpfs size')}")
    if "tmpfs-mode" in kv:
        opts.append(f"mode={kv.pop('tmpfs-mode')}")
    if kv:
        raise UsageError(f"invalid mount spec {spec!r}: unknown option {next(iter(kv))!r}")
    if typ == "bind":
        if not src.startswith("/"):
            raise UsageError(f"invalid mount spec {spec!r}: bind source must be an absolute host path")
    elif typ == "volume" and src and not _VOLUME_NAME.match(src):
        raise UsageError(f"invalid mount spec {spec!r}: {src!r} is not a valid volume name")
    return MountSpec(typ, dst, src, ro, tuple(opts))


def parse_tmpfs(spec: str) -> MountSpec:
    """docker's --tmpfs /dst[:opts]."""
    dst, _, opts = spec.partition(":")
    _check_target(dst, spec)
    options = tuple(o for o in opts.split(",") if o)
    for o in options:  # docker refuses an unknown one at create, not at start
        key, eq, val = o.partition("=")
        if (key not in _TMPFS_FLAGS or eq) and (key not in _TMPFS_VALUES or not val):
            raise UsageError(f"invalid --tmpfs {spec!r}: unknown option {o!r}")
    return MountSpec("tmpfs", dst, "", False, options)


_TMPFS_FLAGS = {"rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime",
                "norelatime", "strictatime", "nostrictatime", "diratime", "nodiratime", "sync", "async",
                "dirsync", "mand", "nomand"}
_TMPFS_VALUES = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol", "huge"}


def parse_env_file(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"read env file {path}: {e.strerror}") from None
    return [ln for ln in (x.strip() for x in lines) if ln and not ln.startswith("#")]


def parse_labels(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        if not k:
            raise UsageError(f"invalid label {it!r}: expected KEY=VALUE")
        out[k] = v
    return out


def parse_duration(text: str | int, what: str) -> int:
    """``30s``, ``1m``, ``500ms`` (rounded up to seconds), ``10`` -> seconds."""
    if isinstance(text, int):
        return text
    m = re.match(r"^(\d+)(ms|s|m|h)?$", text.strip())
    if not m:
        raise UsageError(f"invalid {what} {text!r}: expected a duration such as 30s or 1m")
    n, unit = int(m.group(1)), m.group(2) or "s"
    if unit == "ms":
        return max(1, (n + 999) // 1000)
    return n * {"s": 1, "m": 60, "h": 3600}[unit]


def validate(opts: CreateOptions) -> None:
    """Cross-field checks (single values were checked by their parsers)."""
    if opts.isolation not in ISOLATIONS:
        raise UsageError(f"invalid isolation {opts.isolation!r}: expected container, vm or auto")
    if opts.isolation != "auto" and (opts.requires or opts.untrusted):
        raise UsageError(f"{'--require' if opts.requires else '--untrusted'}: only with --isolation auto")
    if opts.accel not in ACCELS:
        raise UsageError(f"invalid --accel {opts.accel!r}: expected auto, kvm or tcg")
    if opts.isolation != "vm" and (opts.kernel or opts.accel != "auto"):
        raise UsageError(f"{'--kernel' if opts.kernel else '--accel'}: only with --isolation vm")
    if opts.kernel is not None and not opts.kernel.strip():
        raise UsageError("invalid --kernel '': expected the path of a kernel image")
    if opts.memory and opts.memory < MIN_MEMORY:
        raise UsageError(f"invalid memory limit {opts.memory}: the minimum allowed is 6 MiB (6m)")
    ncpu = os.cpu_count() or 1
    if opts.cpus and not 0.01 <= opts.cpus <= ncpu:
        raise UsageError(f"invalid --cpus {opts.cpus:g}: the range is 0.01 to {ncpu:.2f} "
                         f"(this host has {ncpu} CPUs)")
    if opts.pids_limit < -1:
        raise UsageError(f"invalid --pids-limit {opts.pids_limit}")
    if opts.restart.name not in RESTART_POLICIES:
        raise UsageError(f"invalid restart policy {opts.restart.name!r}")
    if opts.auto_remove and opts.restart.name != "no":
        raise UsageError("conflicting options: --restart and --rm")
    if opts.userns not in ("host", ""):
        raise UsageError(f"invalid --userns {opts.userns!r}: only 'host' is supported")
    if opts.name is not None and not re.match(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$", opts.name):
        raise UsageError(f"invalid container name {opts.name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    for e in opts.env:
        if not e or e.startswith("="):
            raise UsageError(f"invalid environment variable {e!r}")
    if opts.log_max_file < 1:
        raise UsageError("invalid log option max-file: must be at least 1")
    # docker checks these when it parses the flags: nothing is created for a bad one
    if opts.add_hosts or opts.dns:
        _check_hosts_and_dns(opts)
    if opts.stop_signal:
        from berth.engine.containers import parse_signal

        try:  # docker refuses an unknown --stop-signal at create
            parse_signal(opts.stop_signal)
        except UsageError:
            raise UsageError(f"invalid --stop-signal {opts.stop_signal!r}: expected a name such as SIGTERM "
                             "or a number") from None


def _check_hosts_and_dns(opts: CreateOptions) -> None:
    """--add-host HOST:IP (or HOST:host-gateway) and --dns IP."""
    import ipaddress  # only when asked: `run` start-up time

    for h in opts.add_hosts:
        host, sep, ip = h.partition(":")
        if not sep or not host or not ip:
            raise UsageError(f"invalid --add-host {h!r}: expected HOST:IP")
        if ip == "host-gateway":
            if opts.network == "none":
                raise UsageError(f"invalid --add-host {h!r}: --network none has no gateway")
            continue
        try:
            ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            raise UsageError(f"invalid --add-host {h!r}: {ip!r} is not an IP address") from None
    for d in opts.dns:
        try:
            ipaddress.ip_address(d)
        except ValueError:
            raise UsageError(f"invalid --dns {d!r}: not an IP address") from None

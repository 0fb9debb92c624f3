"""The OCI runtime config.json of a container: image config + user options.

``base_spec()`` is the runtime's default (``berth.runtime.container.spec.
default_spec``: docker's 14 capabilities, its seccomp profile, masked paths,
no-new-privileges, a pids limit). Everything the user asked for is applied on
top by ``build_spec``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from berth.engine import fsutil
from berth.engine.options import CreateOptions
from berth.errors import UsageError

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

# docker's default capability set (moby oci/caps/defaults.go)
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
ALL_CAPS = DEFAULT_CAPS + [
    "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE", "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
# capability numbers (linux/capability.h), to keep only what the host can grant
CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
    "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}


def host_bounding_caps() -> set[str]:
    """Capabilities in berth's own bounding set: more cannot be granted."""
    try:
        with open("/proc/self/status") as f:
            line = next(ln for ln in f if ln.startswith("CapBnd:"))
        mask = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return set(CAP_NUMBERS)
    return {c for c, n in CAP_NUMBERS.items() if mask >> n & 1}


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_PATH = "/dev/init"


def base_spec() -> dict[str, Any]:
    """The runtime's secure default config.json (docker's caps, seccomp, masks)."""
    from berth.runtime.container.spec import default_spec

    return default_spec([])


def resolve_user(rootfs: Path, user: str) -> dict[str, Any]:
    """docker's -u: name|uid[:group|gid], looked up in the container's files."""
    name, _, group = user.partition(":")
    passwd = fsutil.read_file_in_root(rootfs, "/etc/passwd") or ""
    groups = fsutil.read_file_in_root(rootfs, "/etc/group") or ""
    uid = gid = None
    uname = None
    for line in passwd.splitlines():
        f = line.split(":")
        if len(f) >= 4 and (f[0] == name or f[2] == name):
            uid, gid, uname = int(f[2]), int(f[3]), f[0]
            break
    if uid is None:
        if not name.isdigit():
            raise UsageError(f"unable to find user {name}: no matching entries in the container's /etc/passwd")
        uid, gid = int(name), 0
    if group:
        gid = None
        for line in groups.splitlines():
            f = line.split(":")
            if len(f) >= 3 and (f[0] == group or f[2] == group):
                gid = int(f[2])
                break
        if gid is None:
            if not group.isdigit():
                raise UsageError(f"unable to find group {group}: no matching entries in the container's /etc/group")
            gid = int(group)
    extra = []
    if uname:
        for line in groups.splitlines():
            f = line.split(":")
            if len(f) >= 4 and uname in f[3].split(",") and f[2].isdigit():
                extra.append(int(f[2]))
    out: dict[str, Any] = {"uid": uid, "gid": gid}
    if extra:
        out["additionalGids"] = sorted(set(extra))
    return out


def process_args(opts: CreateOptions, image_cfg: dict) -> list[str]:
    entry = opts.entrypoint if opts.entrypoint is not None else (image_cfg.get("Entrypoint") or [])
    if opts.command:
        cmd = list(opts.command)
    elif opts.entrypoint is not None:
        cmd = []  # docker: --entrypoint resets the image's Cmd
    else:
        cmd = list(image_cfg.get("Cmd") or [])
    args = list(entry) + cmd
    return args


def merge_env(image_env: list[str], user_env: list[str]) -> list[str]:
    env: dict[str, str] = {}
    for e in list(image_env) + list(user_env):
        k, eq, v = e.partition("=")
        if not eq:  # docker: -e NAME passes the caller's value, or nothing
            if k in os.environ:
                env[k] = os.environ[k]
            continue
        env[k] = v
    env.setdefault("PATH", DEFAULT_PATH)
    return [f"{k}={v}" for k, v in env.items()]


def _caps(name: str) -> str:
    n = name.upper()
    return n if n.startswith("CAP_") else "CAP_" + n


def capability_set(opts: CreateOptions) -> list[str]:
    if opts.privileged:
        have = host_bounding_caps()
        return [c for c in ALL_CAPS if c in have]
    caps = list(DEFAULT_CAPS)
    adds = [_caps(c) for c in opts.cap_add]
    drops = [_caps(c) for c in opts.cap_drop]
    for c in adds + drops:
        if c != "CAP_ALL" and c not in ALL_CAPS:
            raise UsageError(f"invalid capability {c.removeprefix('CAP_')!r}")
    if "CAP_ALL" in drops:
        caps = []
    for c in drops:
        if c in caps:
            caps.remove(c)
    if "CAP_ALL" in adds:
        have = host_bounding_caps()
        caps = [c for c in ALL_CAPS if c in have]
    for c in adds:
        if c != "CAP_ALL" and c not in caps:
            caps.append(c)
    return caps


def docker_seccomp_to_oci(profile: dict, caps: list[str]) -> dict[str, Any]:
    """Convert a docker seccomp profile (defaultAction, archMap, syscalls with
    includes/excludes by capability) to the OCI ``linux.seccomp`` object."""
    if "defaultAction" not in profile:
        raise UsageError("invalid seccomp profile: defaultAction is missing")
    archs = list(profile.get("architectures") or [])
    for m in profile.get("archMap") or []:
        archs.append(m["architecture"])
        archs.extend(m.get("subArchitectures") or [])
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": archs,
                           "syscalls": []}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    capset = {c.upper() for c in caps}
    for rule in profile.get("syscalls") or []:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("caps") and not all(c.upper() in capset for c in inc["caps"]):
            continue
        if exc.get("caps") and any(c.upper() in capset for c in exc["caps"]):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        r: dict[str, Any] = {"names": names, "action": rule["action"]}
        for k in ("args", "errnoRet"):
            if rule.get(k) is not None:
                r[k] = rule[k]
        out["syscalls"].append(r)
    return out


def apply_security(spec: dict, opts: CreateOptions) -> list[str]:
    """Capabilities, seccomp, no-new-privileges, privileged. Returns warnings."""
    warnings = []
    proc, linux = spec["process"], spec["linux"]
    caps = capability_set(opts)
    proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    nnp = proc.get("noNewPrivileges", True)
    for so in opts.security_opt:
        key, _, val = so.partition("=")
        if key in ("no-new-privileges",):
            nnp = val in ("", "true", "1")
        elif key == "seccomp":
            if val == "unconfined":
                linux.pop("seccomp", None)
                warnings.append("WARNING: seccomp=unconfined: the container may use every system call")
            else:
                import json

                try:
                    with open(val) as f:
                        profile = json.load(f)
                except OSError as e:
                    raise UsageError(f"read seccomp profile {val}: {e.strerror}") from None
                except ValueError as e:
                    raise UsageError(f"parse seccomp profile {val}: {e}") from None
                linux["seccomp"] = docker_seccomp_to_oci(profile, caps)
        elif key in ("label", "apparmor"):
            continue  # no LSM policy is loaded by berth; accepted like docker on such hosts
        else:
            raise UsageError(f"invalid --security-opt {so!r}: expected seccomp=PROFILE.json|unconfined or no-new-privileges")
    proc["noNewPrivileges"] = nnp
    if opts.privileged:
        warnings.append("WARNING: --privileged: the container gets every capability and the host's devices")
        linux.pop("seccomp", None)
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
        for m in spec["mounts"]:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m.get("options", []) if o != "ro"]
    return warnings


def build_spec(opts: CreateOptions, image_cfg: dict, rootfs: Path, cid: str, hostname: str,
               mounts: list[dict], netns: str | None, cgroups_path: str) -> tuple[dict, list[str]]:
    """The full config.json for one container, and warnings to print."""
    spec = base_spec()
    proc = spec["process"]
    args = process_args(opts, image_cfg)
    if not args:
        raise UsageError("create container: no command specified (the image has no Cmd or Entrypoint)")
    if opts.init:
        args = [INIT_PATH, "--"] + args
    proc["args"] = args
    proc["terminal"] = bool(opts.tty)
    env = merge_env(image_cfg.get("Env") or [], opts.env)
    env.append(f"HOSTNAME={hostname}")
    if opts.tty:
        env.append("TERM=xterm")
    proc["env"] = env
    proc["cwd"] = opts.workdir or image_cfg.get("WorkingDir") or "/"
    if not proc["cwd"].startswith("/"):
        raise UsageError(f"invalid working directory {proc['cwd']!r}: must be absolute")
    user = opts.user or image_cfg.get("User") or ""
    proc["user"] = resolve_user(rootfs, user) if user else {"uid": 0, "gid": 0}
    warnings = apply_security(spec, opts)
    spec["hostname"] = hostname
    spec["root"] = {"path": str(rootfs), "readonly": bool(opts.read_only)}
    spec["mounts"].extend(mounts)
    linux = spec["linux"]
    ns = [n for n in linux["namespaces"] if n["type"] != "network"]
    if opts.network != "host":
        ns.append({"type": "network", "path": netns} if netns else {"type": "network"})
    linux["namespaces"] = ns
    linux["cgroupsPath"] = cgroups_path
    res = linux.setdefault("resources", {})
    if opts.memory:
        res["memory"] = {"limit": opts.memory}
    if opts.cpus:
        res["cpu"] = {"quota": int(opts.cpus * 100000), "period": 100000}
    # -1 or 0: unlimited, as docker's daemon reads them ("max"; the base spec has 2048)
    res["pids"] = {"limit": opts.pids_limit if opts.pids_limit > 0 else -1}
    ann = spec.setdefault("annotations", {})
    ann["org.berth.container.id"] = cid
    if opts.isolation == "vm":
        # berth-runtime boots bundles with this annotation as a microVM
        ann["org.berth.isolation"] = "vm"
        # berth.runtime.vm reads guest RAM in MiB and whole vCPUs
        if opts.memory:
            ann["org.berth.vm.memory"] = str(max(64, opts.memory >> 20))
        if opts.cpus:
            import math

            ann["org.berth.vm.cpus"] = str(max(1, math.ceil(opts.cpus)))
        if opts.kernel:  # absolute (backends.check_vm_options); absent: the runtime's default
            ann["org.berth.vm.kernel"] = opts.kernel
        ann["org.berth.vm.accel"] = opts.accel
    return spec, warnings


def command_string(args: list[str]) -> str:
    return shlex.join(args)

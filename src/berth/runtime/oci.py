"""OCI runtime-spec 1.x (Linux): config.json parsing and validation, State JSON.

The config stays a plain dict (cheap to load, passed whole to the cgroup and
seccomp modules); this module checks every field berth reads for type and
required-ness against a small schema, so later code can index it without
guarding, and fills defaults. Unknown fields are ignored, as the spec requires.
"""

import os

from berth.errors import ConfigError, NotFound
from berth.runtime import jsonio

OCI_VERSION = "1.0.2"

# Schema language: a Python type; ("list", S); ("map", S) (string keys);
# a dict {name: S} where a leading "!" marks a required field.
_ID_MAP = {"!containerID": int, "!hostID": int, "!size": int}
_HOOK = {"!path": str, "args": ("list", str), "env": ("list", str), "timeout": int}
_SCHEMA = {
    "!ociVersion": str,
    "root": {"!path": str, "readonly": bool},
    "process": {
        "terminal": bool,
        "consoleSize": {"!height": int, "!width": int},
        "user": {"!uid": int, "!gid": int, "umask": int, "additionalGids": ("list", int),
                 "username": str},
        "!args": ("list", str),
        "env": ("list", str),
        "!cwd": str,
        "capabilities": {k: ("list", str) for k in
                         ("bounding", "effective", "inheritable", "permitted", "ambient")},
        "rlimits": ("list", {"!type": str, "!hard": int, "!soft": int}),
        "noNewPrivileges": bool,
        "oomScoreAdj": int,
        "apparmorProfile": str,
        "selinuxLabel": str,
    },
    "hostname": str,
    "domainname": str,
    "mounts": ("list", {"!destination": str, "type": str, "source": str,
                        "options": ("list", str)}),
    "hooks": {k: ("list", _HOOK) for k in ("prestart", "createRuntime", "createContainer",
                                           "startContainer", "poststart", "poststop")},
    "annotations": ("map", str),
    "linux": {
        "namespaces": ("list", {"!type": str, "path": str}),
        "uidMappings": ("list", _ID_MAP),
        "gidMappings": ("list", _ID_MAP),
        "devices": ("list", {"!type": str, "!path": str, "major": int, "minor": int,
                             "fileMode": int, "uid": int, "gid": int}),
        "cgroupsPath": str,
        "resources": dict,
        "rootfsPropagation": str,
        "seccomp": dict,
        "sysctl": ("map", str),
        "maskedPaths": ("list", str),
        "readonlyPaths": ("list", str),
        "mountLabel": str,
    },
}

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                "unbindable", "runbindable")
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


def _typename(t) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "an array"}[t]


def _check(value, schema, where: str) -> None:
    if isinstance(schema, type):
        ok = isinstance(value, schema) and not (schema is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(f"config.json: {where} must be {_typename(schema)}")
        return
    if isinstance(schema, tuple):
        kind, inner = schema
        if kind == "list":
            if not isinstance(value, list):
                raise ConfigError(f"config.json: {where} must be an array")
            for i, v in enumerate(value):
                _check(v, inner, f"{where}[{i}]")
        else:
            if not isinstance(value, dict):
                raise ConfigError(f"config.json: {where} must be an object")
            for k, v in value.items():
                _check(v, inner, f"{where}.{k}")
        return
    if not isinstance(value, dict):
        raise ConfigError(f"config.json: {where or 'top level'} must be an object")
    for key, sub in schema.items():
        name = key.lstrip("!")
        path = f"{where}.{name}" if where else name
        if name not in value or value[name] is None:
            if key[0] == "!":
                raise ConfigError(f"config.json: {path} is required")
            value.pop(name, None)
            continue
        _check(value[name], sub, path)


def validate(cfg: dict) -> dict:
    """Check ``cfg`` (a parsed config.json) in place and return it.

    Raises:
        ConfigError: a field of the wrong type, a missing required field, or a
            value outside what the spec allows; the message names the field.
    """
    _check(cfg, _SCHEMA, "")
    if "process" not in cfg:
        raise ConfigError("config.json: process is required")
    if "root" not in cfg:
        raise ConfigError("config.json: root is required")
    proc = cfg["process"]
    if not proc["args"]:
        raise ConfigError("config.json: process.args must not be empty")
    if not proc["cwd"].startswith("/"):
        raise ConfigError(f"config.json: process.cwd {proc['cwd']!r} must be an absolute path")
    if ".." in proc["cwd"].split("/") or "\0" in proc["cwd"]:
        # The cwd is resolved inside the rootfs anyway; '..' has no business there.
        raise ConfigError(f"config.json: process.cwd {proc['cwd']!r} must not leave the root (contains '..')")
    proc.setdefault("env", [])
    proc.setdefault("user", {"uid": 0, "gid": 0})
    for e in proc["env"]:
        if "=" not in e:
            raise ConfigError(f"config.json: process.env entry {e!r} is not KEY=VALUE")
    for m in cfg.get("mounts", ()):
        if not m["destination"].startswith("/"):
            raise ConfigError(f"config.json: mount destination {m['destination']!r} must be absolute")
        if "\0" in m["destination"] or "\0" in m.get("source", ""):
            raise ConfigError("config.json: mount paths must not contain NUL")
    linux = cfg.setdefault("linux", {})
    seen = set()
    for ns in linux.get("namespaces", ()):
        if ns["type"] not in NAMESPACE_TYPES:
            raise ConfigError(f"config.json: unknown namespace type {ns['type']!r}")
        if ns["type"] in seen:
            raise ConfigError(f"config.json: namespace {ns['type']} listed twice")
        seen.add(ns["type"])
    if linux.get("rootfsPropagation", "") not in PROPAGATIONS:
        raise ConfigError(f"config.json: rootfsPropagation {linux['rootfsPropagation']!r} is not one of {', '.join(PROPAGATIONS[1:])}")
    if "user" in seen and not any(n["type"] == "user" and n.get("path") for n in linux["namespaces"]):
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise ConfigError("config.json: a new user namespace needs linux.uidMappings and linux.gidMappings")
    for d in linux.get("devices", ()):
        if d["type"] not in ("c", "b", "u", "p"):
            raise ConfigError(f"config.json: device {d['path']} has type {d['type']!r} (want c, b, u or p)")
        if d["type"] != "p" and ("major" not in d or "minor" not in d):
            raise ConfigError(f"config.json: device {d['path']} needs major and minor")
        if not d["path"].startswith("/dev/"):
            raise ConfigError(f"config.json: device path {d['path']!r} must be under /dev")
    for name, hooks in cfg.get("hooks", {}).items():
        for h in hooks:
            if not h["path"].startswith("/"):
                raise ConfigError(f"config.json: hooks.{name} path {h['path']!r} must be absolute")
            if "timeout" in h and h["timeout"] <= 0:
                raise ConfigError(f"config.json: hooks.{name} timeout must be positive")
    return cfg


def load_bundle(bundle: str) -> tuple[dict, str]:
    """Read and validate BUNDLE/config.json; return (config, absolute rootfs path).

    Raises:
        NotFound: the bundle, its config.json or its root filesystem is missing.
        ConfigError: config.json is not valid JSON or does not validate.
    """
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"load bundle {bundle}: no config.json") from None
    except NotADirectoryError:
        raise NotFound(f"load bundle {bundle}: not a directory") from None
    try:
        cfg = jsonio.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"parse {path}: {e}") from None
    validate(cfg)
    root = cfg["root"]["path"]
    rootfs = root if root.startswith("/") else os.path.join(bundle, root)
    if not os.path.isdir(rootfs):
        raise NotFound(f"load bundle {bundle}: root filesystem {root} does not exist")
    return cfg, os.path.realpath(rootfs)


def namespace_types(cfg: dict) -> list[str]:
    return [n["type"] for n in cfg["linux"].get("namespaces", ())]


def state_json(cid: str, status: str, pid: int, bundle: str, annotations: dict | None,
               **extra) -> dict:
    """The runtime-spec State object (plus runc's extra fields, which clients read)."""
    d = {"ociVersion": OCI_VERSION, "id": cid, "status": status, "pid": pid,
         "bundle": bundle}
    if annotations:
        d["annotations"] = annotations
    d.update(extra)
    return d

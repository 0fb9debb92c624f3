"""Translate an OCI config.json (plus berth's VM options) into the agent's INIT message.

Only what a guest can honour is taken: the process (args, env, cwd, numeric user,
terminal), the hostname, a read-only root, tmpfs mounts, and bind mounts of
directories (which become virtiofs volumes). The kernel filesystems (/proc, /sys,
/dev, /dev/pts, /dev/shm, /dev/mqueue) are the agent's own. Bind mounts of single
files are understood for /etc/resolv.conf and /etc/hosts (their content is copied
into the guest); any other file bind mount is refused rather than silently lost.
"""

from __future__ import annotations

import os
from pathlib import Path

from berth.errors import ConfigError
from berth.runtime.vm.virtiofs import Volume

AGENT_MOUNTS = {"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup"}
COPIED_FILES = {"/etc/resolv.conf": "resolv_conf", "/etc/hosts": "hosts"}


def process_spec(process: dict) -> dict:
    """The agent's process message from an OCI ``process`` object."""
    args = process.get("args") or []
    if not args or not all(isinstance(a, str) for a in args):
        raise ConfigError("VM config: process.args must be a non-empty list of strings")
    user = process.get("user") or {}
    size = process.get("consoleSize") or {}
    spec = {
        "args": args,
        "env": [e for e in process.get("env") or [] if isinstance(e, str)],
        "cwd": process.get("cwd") or "/",
        "uid": int(user.get("uid", 0)),
        "gid": int(user.get("gid", 0)),
        "gids": [int(g) for g in user.get("additionalGids") or []],
        "tty": bool(process.get("terminal", False)),
        "rows": int(size.get("height", 0)),
        "cols": int(size.get("width", 0)),
        "no_new_privs": bool(process.get("noNewPrivileges", False)),
    }
    # Applied inside the guest too (as Kata's agent does): the VM is the host's wall,
    # these keep the workload from its own guest kernel's sharp edges.
    caps = process.get("capabilities")
    if isinstance(caps, dict):
        spec["caps"] = {k: [c for c in caps.get(k) or [] if isinstance(c, str)]
                        for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
    rlimits = process.get("rlimits")
    if isinstance(rlimits, list):
        spec["rlimits"] = [{"type": r.get("type"), "soft": int(r.get("soft", 0)), "hard": int(r.get("hard", 0))}
                           for r in rlimits if isinstance(r, dict)]
    return spec


def seccomp_program(linux_seccomp: dict | None) -> bytes | None:
    """The OCI ``linux.seccomp`` profile compiled on the host (libseccomp, x86_64 like
    the guest) into the classic-BPF program the agent installs before exec."""
    if not linux_seccomp:
        return None
    from berth.runtime.container import seccomp

    filt = seccomp.build(linux_seccomp)
    fd = os.memfd_create("berth-seccomp", os.MFD_CLOEXEC)
    try:
        filt.export_bpf(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)
        filt.release()


def split_mounts(config: dict) -> tuple[list[Volume], list[dict], dict]:
    """OCI mounts -> (virtiofs volumes, tmpfs mounts, copied files)."""
    volumes: list[Volume] = []
    tmpfs: list[dict] = []
    files: dict[str, str] = {}
    for m in config.get("mounts") or []:
        dest = m.get("destination", "")
        opts = m.get("options") or []
        if dest in AGENT_MOUNTS:
            continue
        if m.get("type") == "tmpfs":
            tmpfs.append({"tag": "tmpfs", "type": "tmpfs", "target": dest, "readonly": "ro" in opts})
            continue
        if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
            src = Path(m.get("source", ""))
            if src.is_dir():
                volumes.append(Volume(src, dest, "ro" in opts))
            elif dest in COPIED_FILES and src.is_file():
                files[COPIED_FILES[dest]] = src.read_text(errors="replace")
            else:
                raise ConfigError(f"VM config: cannot share {src} on {dest} (only directories are shared into a VM)")
            continue
        if m.get("type") in ("proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"):
            continue
        raise ConfigError(f"VM config: mount type {m.get('type')!r} on {dest} is not supported in a VM")
    return volumes, tmpfs, files


def init_message(config: dict, *, read_only: bool, volumes: list[Volume], tmpfs: list[dict],
                 files: dict, net: dict | None) -> dict:
    msg: dict = {
        "root": {"device": "/dev/vda", "fstype": "ext4", "readonly": read_only},
        "mounts": [
            {"tag": f"vol{i}", "type": "virtiofs", "target": v.guest_path, "readonly": v.read_only}
            for i, v in enumerate(volumes)
        ] + tmpfs,
        "process": process_spec(config.get("process") or {}),
    }
    prog = seccomp_program((config.get("linux") or {}).get("seccomp"))
    if prog:
        msg["process"]["seccomp"] = prog.hex()
    if config.get("hostname"):
        msg["hostname"] = config["hostname"]
    if net:
        msg["net"] = {k: net[k] for k in ("ifname", "address", "prefixlen", "gateway", "mtu") if k in net}
        if net.get("dns") and "resolv_conf" not in files:
            files = dict(files, resolv_conf="".join(f"nameserver {d}\n" for d in net["dns"]))
    msg.update(files)
    return msg

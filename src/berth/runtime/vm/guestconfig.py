"""Translate an OCI config.json (plus berth's VM options) into the agent's INIT message.

Only what a guest can honour is taken: the process (args, env, cwd, numeric user,
terminal), the hostname, a read-only root, tmpfs mounts, and bind mounts of
directories (which become virtiofs volumes). The kernel filesystems (/proc, /sys,
/dev, /dev/pts, /dev/shm, /dev/mqueue) are the agent's own. Bind mounts of single
files (the engine's /etc/hostname, /etc/hosts, /etc/resolv.conf, small secrets) are
sent by value, up to MAX_FILE_BYTES each, and bind-mounted in the guest from the
agent's tmpfs: a snapshot taken at create, not a live share. Larger files are
refused with a clear error rather than silently lost.
"""

from __future__ import annotations

import os
from pathlib import Path

from berth.errors import ConfigError
from berth.runtime.vm.virtiofs import Volume

AGENT_MOUNTS = {"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup"}
MAX_FILE_BYTES = 8 * 1024  # hex-encoded in the INIT frame (64 KiB, shared with seccomp)


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


def split_mounts(config: dict) -> tuple[list[Volume], list[dict], list[dict]]:
    """OCI mounts -> (virtiofs volumes, tmpfs mounts, files sent by value)."""
    volumes: list[Volume] = []
    tmpfs: list[dict] = []
    files: list[dict] = []
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
            elif src.is_file():
                if src.stat().st_size > MAX_FILE_BYTES:
                    raise ConfigError(f"VM config: file {src} on {dest} is over {MAX_FILE_BYTES} bytes; "
                                      "share its directory instead")
                files.append({"target": dest, "hex": src.read_bytes().hex(), "readonly": "ro" in opts,
                              "mode": src.stat().st_mode & 0o777})
            else:
                raise ConfigError(f"VM config: cannot share {src} on {dest}: not a directory or file")
            continue
        if m.get("type") in ("proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"):
            continue
        raise ConfigError(f"VM config: mount type {m.get('type')!r} on {dest} is not supported in a VM")
    return volumes, tmpfs, files


def init_message(config: dict, *, read_only: bool, volumes: list[Volume], tmpfs: list[dict],
                 files: list[dict], net: dict | None) -> dict:
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
        if net.get("dns") and not any(f["target"] == "/etc/resolv.conf" for f in files):
            conf = "".join(f"nameserver {d}\n" for d in net["dns"]).encode()
            files = [*files, {"target": "/etc/resolv.conf", "hex": conf.hex(), "readonly": False, "mode": 0o644}]
    if files:
        msg["files"] = files
    return msg

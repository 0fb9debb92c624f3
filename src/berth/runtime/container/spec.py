"""The config.json ``berth-runtime spec`` writes: berth's secure defaults.

At least as strict as docker's defaults (DESIGN.md, "Principles"):
- the 14 capabilities docker grants, in bounding/effective/permitted only
  (inheritable and ambient empty, as docker), and noNewPrivileges;
- docker's deny-by-default seccomp allowlist (``seccomp_profile``);
- docker's masked and read-only /proc and /sys paths, /sys and the cgroup
  mount read-only, every pseudo-filesystem nosuid/nodev/noexec where it can be;
- a pids limit (2048, berth's ``--pids-limit`` default) and a device cgroup
  that denies everything but the standard character devices;
- new pid, network, ipc, uts, mount and cgroup namespaces.

``root.readonly`` is true, as in ``runc spec``: this file is a template for a
bundle someone assembles by hand, and a read-only root is the safer start
(the engine writes its own config.json with a writable overlay root, as
docker does). Only the names of capabilities appear here; turning them into
bits is ``caps.py``'s job.
"""

from __future__ import annotations

OCI_VERSION = "1.1.0"

DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

DEFAULT_PIDS_LIMIT = 2048

DEFAULT_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM=xterm",
)

MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup")


def _dev(major: int | None, minor: int | None, typ: str = "c", access: str = "rwm") -> dict:
    return {"allow": True, "type": typ, "major": major, "minor": minor, "access": access}


# The character devices every container may use (docker's and runc's default
# allow list, minus /dev/net/tun): the runtime appends these to a
# config's linux.resources.devices too, after the config's own rules.
DEFAULT_DEVICE_RULES = (
    _dev(None, None, "c", "m"),  # mknod of any char device (opening still needs a rule)
    _dev(None, None, "b", "m"),  # mknod of any block device
    _dev(1, 3),  # /dev/null
    _dev(1, 5),  # /dev/zero
    _dev(1, 7),  # /dev/full
    _dev(1, 8),  # /dev/random
    _dev(1, 9),  # /dev/urandom
    _dev(5, 0),  # /dev/tty
    _dev(5, 1),  # /dev/console
    _dev(5, 2),  # /dev/ptmx
    _dev(136, None),  # /dev/pts/*
)


def default_mounts() -> list[dict]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]


def default_spec(args: list[str] | None = None) -> dict:
    """The complete config.json (as a dict) with berth's secure defaults.

    Similar to ``runc spec``; ``args`` replaces the default ``["sh"]``.
    """
    from .seccomp_profile import default_profile

    caps = list(DEFAULT_CAPS)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args else ["sh"],
            "env": list(DEFAULT_ENV),
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "berth",
        "mounts": default_mounts(),
        "linux": {
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}, *(dict(r) for r in DEFAULT_DEVICE_RULES)],
                "pids": {"limit": DEFAULT_PIDS_LIMIT},
            },
            "namespaces": [{"type": t} for t in NAMESPACES],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": default_profile(),
        },
    }

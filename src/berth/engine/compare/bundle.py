"""An OCI bundle over the image's layers, for the runtimes berth compares (runc-compatible CLIs).

The rootfs is an overlay mount: the image's layer directories below, a fresh
upper directory per instance on top, so the disk an instance costs is what it
writes (``du`` of its upper directory), as with the engine. The config follows
docker's defaults: 14 capabilities, no-new-privileges, masked and read-only
/proc paths, and a seccomp filter refusing the syscalls docker's default profile
refuses to an unprivileged container.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

from berth.errors import RuntimeFailure

# docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
# Syscalls docker's default profile only allows with capabilities this set lacks.
DENIED_SYSCALLS = [
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "delete_module", "finit_module",
    "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl",
    "lookup_dcookie", "mount", "move_mount", "name_to_handle_at", "open_by_handle_at",
    "open_tree", "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev",
    "quotactl", "reboot", "request_key", "setns", "settimeofday", "swapoff", "swapon",
    "syslog", "umount2", "unshare", "userfaultfd", "fsopen", "fsmount", "fsconfig",
]
MASKED = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/proc/scsi", "/sys/devices/virtual/powercap",
]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def config(argv: list[str], hostname: str = "berth") -> dict:
    """An OCI runtime config (spec 1.0.2) running ``argv`` with docker's defaults."""
    caps = list(DEFAULT_CAPS)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": list(argv),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
            },
        },
    }


class Bundle:
    """``DIR/config.json`` and ``DIR/rootfs`` (overlay of the layers and ``DIR/upper``)."""

    def __init__(self, path: Path, layers: list[Path], argv: list[str]):
        self.path = path
        self.upper = path / "upper"
        self.rootfs = path / "rootfs"
        for d in (self.upper, path / "work", self.rootfs):
            d.mkdir(parents=True)
        # overlayfs lists lowerdir top-most first; layers are given lowest first.
        lower = ":".join(str(p) for p in reversed(layers))
        opts = f"lowerdir={lower},upperdir={self.upper},workdir={path / 'work'}"
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.rootfs)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            raise RuntimeFailure(f"mount overlay on {self.rootfs}: {r.stderr.strip()}")
        tmp = path / "config.json.tmp"
        tmp.write_text(json.dumps(config(argv)))
        os.replace(tmp, path / "config.json")

    def remove(self) -> None:
        subprocess.run(["umount", "-l", str(self.rootfs)], capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)

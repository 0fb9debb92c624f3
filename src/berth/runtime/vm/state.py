"""On-disk state of one VM instance, so any process can drive it (not only its creator).

``<state_dir>/state.json`` (written atomically) holds the QEMU pid and its start time
(so a recycled pid is never signalled), the socket directory, the cgroups, the
helper pids, what was booted, and the exit status once the owner saw it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from berth.runtime.vm._hash import sha256

SOCK_ROOT = Path("/run/berth-vm")
DEFAULT_MEMORY_MB = 256  # guest RAM without --memory
DEFAULT_CPUS = 1


def sock_dir_for(state_dir: Path) -> Path:
    """A short directory for the instance's unix sockets (sun_path holds 108 bytes)."""
    return SOCK_ROOT / sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None if gone or a zombie
    (an exited QEMU its parent has not reaped yet is not running)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


@dataclass
class VMState:
    id: str
    status: str = "creating"  # creating | created | running | stopped
    created: str = ""  # RFC 3339, UTC, like the container runtime's
    qemu_pid: int = 0
    qemu_start: int = 0
    sock_dir: str = ""
    accel: str = ""
    accel_reason: str = ""
    kernel: str = ""
    guest_kernel: str = ""
    initrd: str = ""
    memory_mb: int = 0
    cpus: int = 0
    base_disk: str = ""
    overlay: str = ""
    read_only: bool = False
    tap: str | None = None
    cgroup: dict | None = None  # Cgroup.to_state()
    helper_pids: list[list[int]] = field(default_factory=list)  # [pid, start time]
    monitor: list[int] = field(default_factory=list)  # [pid, start time] of oci's monitor
    exit_code: int | None = None
    error: str | None = None
    bundle: str | None = None
    annotations: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # the bundle's config.json

    def save(self, state_dir: Path) -> None:
        # Also the keys berth-runtime's generic code reads for any backend: the owner
        # (``backend``) and the process to watch (``pid``/``startTime``): the monitor when
        # there is one (it exits with the workload's status, like a container's init),
        # else QEMU.
        pid, start = self.monitor if self.monitor else (self.qemu_pid, self.qemu_start)
        data = dict(asdict(self), backend="vm", pid=pid, startTime=start)
        tmp = state_dir / f".state.json.{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, state_dir / "state.json")

    @classmethod
    def load(cls, state_dir: Path) -> VMState:
        data = json.loads((state_dir / "state.json").read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def summary(self) -> dict:
        """What ``berth inspect`` shows under ``VM`` (docker-style keys)."""
        return {"Isolation": "vm", "Accelerator": self.accel, "AcceleratorReason": self.accel_reason,
                "Kernel": self.kernel, "GuestKernelRelease": self.guest_kernel, "MemoryMB": self.memory_mb,
                "CPUs": self.cpus, "ReadOnlyRoot": self.read_only}

    def qemu_alive(self) -> bool:
        return bool(self.qemu_pid) and proc_start_time(self.qemu_pid) == self.qemu_start

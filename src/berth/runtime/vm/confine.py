"""Confinement of the QEMU process itself: its own cgroup with memory and pids limits.

A small private cgroupfs helper (the shared ``berth.runtime.container.cgroups`` had
not landed when this was written; switch to it once it has). Hybrid hosts (this
one: v1 controllers, bare v2) get a ``memory`` and a ``pids`` v1 group nested in
the caller's own groups, so the VM stays inside whatever confines berth; pure v2
hosts get ``/sys/fs/cgroup/berth-vm/<id>`` with both controllers enabled.

The limit is guest RAM plus the VMM's own overhead (TCG translation cache, device
buffers): a guest cannot make QEMU use more than that, and a runaway QEMU is
killed by the OOM killer of its own group, not the host's.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from berth.runtime.vm.machine import TCG_TB_SIZE_MB

CGROOT = Path("/sys/fs/cgroup")
VMM_OVERHEAD_MB = 192 + TCG_TB_SIZE_MB
# QEMU threads: main loop, vCPUs, RCU, the block layer's worker pool (up to 64).
PIDS_MAX = 128


def _self_path(controller: str) -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                return path
    return "/"


def _is_v2() -> bool:
    return (CGROOT / "cgroup.controllers").exists()


def cgroup_dirs(vm_id: str) -> list[Path]:
    """Where the instance's groups live (the same answer in every process)."""
    name = f"berth-vm-{vm_id}"
    if _is_v2():
        return [CGROOT / "berth-vm" / name]
    dirs = []
    for ctrl in ("memory", "pids"):
        if (CGROOT / ctrl).is_dir():
            dirs.append(CGROOT / ctrl / _self_path(ctrl).lstrip("/") / name)
    return dirs


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def create(vm_id: str, memory_mb: int) -> list[Path]:
    """Make the groups and set the limits; returns their directories."""
    limit = (memory_mb + VMM_OVERHEAD_MB) * 1024 * 1024
    dirs = cgroup_dirs(vm_id)
    if _is_v2():
        parent = dirs[0].parent
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", "+memory +pids")
        dirs[0].mkdir(exist_ok=True)
        _write(dirs[0] / "memory.max", str(limit))
        _write(dirs[0] / "pids.max", str(PIDS_MAX))
        return dirs
    for d in dirs:
        d.mkdir(exist_ok=True)
        if d.relative_to(CGROOT).parts[0] == "memory":
            _write(d / "memory.limit_in_bytes", str(limit))
        else:
            _write(d / "pids.max", str(PIDS_MAX))
    return dirs


def enter(dirs: list[Path], pid: int) -> None:
    for d in dirs:
        _write(d / "cgroup.procs", str(pid))


def remove(dirs: list[Path]) -> None:
    """Remove the groups once their processes are gone (retry briefly: exit is async)."""
    for d in dirs:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    break
                time.sleep(0.02)


def memory_peak(dirs: list[Path]) -> int | None:
    for d in dirs:
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            try:
                return int((d / name).read_text())
            except (OSError, ValueError):
                continue
    return None


def pids_of(dirs: list[Path]) -> list[int]:
    pids: set[int] = set()
    for d in dirs:
        try:
            pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        except OSError:
            pass
    return sorted(pids)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

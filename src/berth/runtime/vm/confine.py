"""Confinement of the QEMU process itself: its own cgroup with memory and pids limits.

Uses the shared cgroup front (``berth.runtime.container.cgroups``: v1, v2 and hybrid
hosts). The group is ``/berth-vm/<id>`` (or the bundle's ``linux.cgroupsPath``).
The memory limit is guest RAM plus the VMM's own overhead (TCG translation cache,
device buffers): the guest cannot make QEMU use more, and a runaway QEMU meets the
OOM killer of its own group, not the host's. The pids limit bounds QEMU's threads
(main loop, vCPUs, RCU, the block layer's worker pool of up to 64).
"""

from __future__ import annotations

import os

from berth.runtime.container.cgroups import Cgroup, open_cgroup
from berth.runtime.vm.machine import TCG_TB_SIZE_MB

VMM_OVERHEAD_MB = 192 + TCG_TB_SIZE_MB
PIDS_MAX = 128


def create(vm_id: str, memory_mb: int, cgroups_path: str | None = None) -> Cgroup:
    """Make the group and set its limits (removed again if that fails)."""
    cg = open_cgroup(cgroups_path or f"/berth-vm/{vm_id}", vm_id)
    cg.create()
    try:
        cg.apply({"memory": {"limit": (memory_mb + VMM_OVERHEAD_MB) * 1024 * 1024},
                  "pids": {"limit": PIDS_MAX}})
    except BaseException:
        cg.destroy()
        raise
    return cg


def from_state(d: dict | None) -> Cgroup | None:
    return Cgroup.from_state(d) if d else None


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

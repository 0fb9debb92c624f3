"""What ``inspect`` and ``stats`` show for a VM-isolated container.

The VM backend keeps its state (accelerator and why, kernel, guest RAM, vCPUs) in
the runtime's state directory, ``<root>/runtime/<id>/state.json``, which the
monitor removes when the workload exits. ``details`` therefore keeps the last
state it read in the container's directory (``vm.json``), so ``inspect`` of an
exited VM still says what it ran with; a VM that never booted shows what was asked
for (annotations in config.json).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SAVED = "vm.json"


def _annotations(cdir: Path) -> dict[str, str]:
    try:
        return json.loads((cdir / "config.json").read_text()).get("annotations") or {}
    except (OSError, ValueError):
        return {}


def _default_kernel() -> str:
    from berth.errors import NotFound
    from berth.runtime.vm.kernel import default_kernel_path

    try:
        return str(default_kernel_path())
    except NotFound:
        return ""


def details(engine, rec: dict[str, Any]) -> dict[str, Any]:
    """``Isolation``, ``Accelerator``, ``AcceleratorReason``, ``Kernel``,
    ``GuestKernelRelease``, ``MemoryMB``, ``CPUs``, ``ReadOnlyRoot`` of a VM."""
    from berth.runtime.vm.state import DEFAULT_CPUS, DEFAULT_MEMORY_MB, VMState

    cdir = engine.cdir(rec["Id"])
    try:
        st = VMState.load(Path(engine.runtime_root) / rec["Id"])
    except (OSError, ValueError, TypeError):
        st = None
    if st is not None and st.accel:
        d = st.summary()
        saved = cdir / SAVED
        text = json.dumps(d)
        try:
            if not saved.exists() or saved.read_text() != text:
                tmp = cdir / f".{SAVED}.{os.getpid()}"
                tmp.write_text(text)
                os.replace(tmp, saved)
        except OSError:  # a container removed under us: still report what we read
            pass
        return d
    try:
        return json.loads((cdir / SAVED).read_text())
    except (OSError, ValueError):
        pass
    ann = _annotations(cdir)
    accel = ann.get("org.berth.vm.accel", "auto")
    return {"Isolation": "vm", "Accelerator": accel,
            "AcceleratorReason": "requested" if accel != "auto" else "probed when the VM boots",
            "Kernel": ann.get("org.berth.vm.kernel") or _default_kernel(), "GuestKernelRelease": "",
            "MemoryMB": int(ann.get("org.berth.vm.memory", DEFAULT_MEMORY_MB)),
            "CPUs": int(ann.get("org.berth.vm.cpus", DEFAULT_CPUS)),
            "ReadOnlyRoot": bool(rec.get("HostConfig", {}).get("ReadonlyRootfs"))}


def net_bytes(engine, rec: dict[str, Any]) -> tuple[int, int]:
    """(rx, tx) bytes of the guest: its tap's counters seen from the other side
    (what the host sends into the tap is what the guest receives)."""
    tap = _annotations(engine.cdir(rec["Id"])).get("org.berth.vm.tap")
    if not tap or "/" in tap or tap.startswith("."):
        return 0, 0
    stats = Path("/sys/class/net") / tap / "statistics"
    try:
        return int((stats / "tx_bytes").read_text()), int((stats / "rx_bytes").read_text())
    except (OSError, ValueError):
        return 0, 0

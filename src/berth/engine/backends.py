"""Isolation backends: ``container`` (namespaces) or ``vm`` (a QEMU microVM).

The engine path is the same for both: the monitor runs the OCI runtime on a
bundle. A VM-isolated container's config.json carries the annotation
``org.berth.isolation=vm`` (plus ``org.berth.vm.memory``/``.cpus``) and
``berth-runtime`` boots it as a microVM (``berth.runtime.vm``). The choice is
stored per container (``Isolation`` in its record).
"""

from __future__ import annotations

from berth.errors import UsageError


def vm_available() -> bool:
    try:
        import berth.runtime.vm as vm
    except ImportError:
        return False
    return hasattr(vm, "run_bundle") or hasattr(vm, "__all__") or bool(getattr(vm, "__file__", None) and
                                                                       len(dir(vm)) > 8)


def check_isolation(isolation: str) -> None:
    """Raise when ``isolation`` cannot be honoured by this build."""
    if isolation == "container":
        return
    if isolation != "vm":
        raise UsageError(f"invalid isolation {isolation!r}: expected container or vm")
    if not vm_available():
        raise UsageError("isolation vm: VM isolation not available yet in this build (berth.runtime.vm missing)")

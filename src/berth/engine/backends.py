"""Isolation backends: ``container`` (namespaces) or ``vm`` (a QEMU microVM).

The engine path is the same for both: the monitor runs the OCI runtime on a
bundle. A VM-isolated container's config.json carries the annotation
``org.berth.isolation=vm`` (plus ``org.berth.vm.memory``/``.cpus``/``.kernel``/
``.accel``) and
``berth-runtime`` boots it as a microVM (``berth.runtime.vm``). The choice is
stored per container (``Isolation`` in its record, ``--filter isolation=vm``).
"""

from __future__ import annotations

import importlib.util
import os

from berth.errors import UsageError


def vm_available() -> bool:
    """True when this build has the VM backend (``berth.runtime.vm`` with a runtime entry)."""
    try:
        spec = importlib.util.find_spec("berth.runtime.vm")
    except ImportError:
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    # the package exists in the skeleton; the backend is there once it has modules
    return any(n.endswith(".py") and n != "__init__.py"
               for d in spec.submodule_search_locations for n in os.listdir(d))


def check_isolation(isolation: str, runtime: str = "") -> None:
    """Raise when ``isolation`` cannot be honoured by this build and runtime."""
    if isolation == "container":
        return
    if isolation != "vm":
        raise UsageError(f"invalid isolation {isolation!r}: expected container or vm")
    if not vm_available():
        raise UsageError("isolation vm: VM isolation not available yet in this build (berth.runtime.vm missing)")
    if runtime and not os.path.basename(runtime).startswith("berth-runtime"):
        # another OCI runtime would ignore the annotation and run a plain container
        raise UsageError(f"isolation vm: needs berth-runtime, but the OCI runtime is {runtime} (unset BERTH_RUNTIME)")


def check_vm_options(opts) -> None:
    """Check a VM's QEMU, kernel and accelerator before anything is written, and
    make ``opts.kernel`` absolute (the runtime runs in another directory).

    Raises:
        NotFound: QEMU or the guest kernel is missing (the message names the set-up
            command). UsageError: ``--accel kvm`` without a usable /dev/kvm.
    """
    from berth.runtime.vm.accel import check_requested, qemu_binary
    from berth.runtime.vm.kernel import default_kernel_path, resolve

    qemu_binary()
    check_requested(opts.accel)
    if opts.kernel:
        opts.kernel = os.path.abspath(opts.kernel)
        resolve(opts.kernel)
    else:
        default_kernel_path()

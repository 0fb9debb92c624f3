"""``--isolation auto``: choose container, vm or gvisor from what the workload declares and what this host can do.

Rules, in order (docs/compare.md shows the same list):

1. Requirements are the user's ``--require`` values plus the image label
   ``org.berth.requires`` (comma-separated). Known: strong-isolation, own-kernel,
   fast-start.
2. own-kernel → vm (only a VM boots its own guest kernel); an error when no VM
   can run here.
3. --untrusted or strong-isolation → vm, except when fast-start is also asked
   and KVM is not usable here (a TCG VM boots in seconds): then gvisor when
   runsc is installed. Without a VM: gvisor when installed, else an error
   (never a silent downgrade to a shared kernel).
4. fast-start → container (it shares the host kernel: nothing to boot).
5. Nothing declared → container, the cheapest.
"""

import re
import shutil
from dataclasses import dataclass

from berth.errors import ConfigError, UsageError

KNOWN = ("strong-isolation", "own-kernel", "fast-start")
LABEL = "org.berth.requires"


@dataclass(frozen=True)
class HostCaps:
    """What this host can run: a VM at all (QEMU + guest kernel), with KVM, and gVisor."""

    vm: bool
    vm_reason: str
    kvm: bool
    kvm_reason: str
    runsc: bool

    @classmethod
    def probe(cls) -> "HostCaps":
        from berth.engine.compare.vmdirect import accel_probe, guest_kernel

        accel, why = accel_probe()
        qemu = shutil.which("qemu-system-x86_64") is not None
        kernel = guest_kernel()
        if not qemu:
            vm_reason = "qemu-system-x86_64 is not installed"
        elif kernel is None:
            vm_reason = "no guest kernel in /boot"
        else:
            vm_reason = f"QEMU with {accel}"
        return cls(vm=qemu and kernel is not None, vm_reason=vm_reason, kvm=accel == "kvm",
                   kvm_reason=why, runsc=shutil.which("runsc") is not None)


def requirements_of(requirements: set[str], labels: dict[str, str] | None) -> set[str]:
    """The declared requirements plus the image's ``org.berth.requires`` label; unknown ones are an error."""
    reqs = set(requirements)
    label = (labels or {}).get(LABEL, "")
    reqs |= {r for r in re.split(r"[,\s]+", label) if r}
    unknown = sorted(reqs - set(KNOWN))
    if unknown:
        raise UsageError(f"isolation auto: unknown requirement {', '.join(unknown)} (known: {', '.join(KNOWN)})")
    return reqs


def choose(requirements: set[str], untrusted: bool, labels: dict[str, str] | None, host: HostCaps,
           modes: tuple[str, ...] = ("container", "vm")) -> tuple[str, str]:
    """Pick the isolation for one workload.

    Args:
        requirements: ``--require`` values.
        untrusted: ``--untrusted`` was given.
        labels: the image's labels.
        host: this host's capabilities (``HostCaps.probe()``).
        modes: the modes the caller can run; add "gvisor" where the caller runs runsc.

    Returns:
        (mode, reason): reason is one line saying why.

    Raises:
        UsageError: an unknown requirement.
        ConfigError: the requirements cannot be met on this host.
    """
    reqs = requirements_of(requirements, labels)
    gvisor = "gvisor" in modes and host.runsc
    vm_ok = host.vm and "vm" in modes
    vm_why = "vm is not among the modes asked for" if host.vm and "vm" not in modes else host.vm_reason
    accel = "KVM" if host.kvm else f"TCG, no KVM: {host.kvm_reason}"
    asked = sorted(reqs) + (["untrusted"] if untrusted else [])
    why = "+".join(asked) if asked else "nothing declared"
    if "own-kernel" in reqs:
        if not vm_ok:
            raise ConfigError(f"isolation auto: own-kernel needs a VM, and none can run here ({vm_why})")
        return "vm", f"{why}: only a VM boots its own guest kernel ({accel})"
    if untrusted or "strong-isolation" in reqs:
        if "fast-start" in reqs and not host.kvm and gvisor:
            return "gvisor", (f"{why}: a VM would isolate but boots in seconds without KVM here; "
                              "gVisor's user-space kernel keeps the host kernel out of reach and starts fast")
        if vm_ok:
            return "vm", f"{why}: a VM runs its own kernel, the host kernel is out of the workload's reach ({accel})"
        if gvisor:
            return "gvisor", f"{why}: no VM ({vm_why}); gVisor's user-space kernel stands in"
        raise ConfigError(f"isolation auto: {why} needs a VM or gVisor, and neither runs here ({vm_why})")
    if "fast-start" in reqs:
        return "container", f"{why}: a container shares the host kernel, nothing boots"
    return "container", f"{why}: a container is the cheapest (shares the host kernel)"


def explain(mode: str, reason: str) -> str:
    """The one line ``berth run --isolation auto`` prints (on stderr)."""
    return f"isolation auto: {mode} ({reason})"


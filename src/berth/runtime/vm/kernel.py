"""The guest kernel: Debian's linux-image-cloud-amd64 from /boot, or a user's ``--kernel``.

The cloud kernel builds ext4 and the 8250 console in, but virtio itself, virtio-mmio,
virtio-blk, virtio-console, virtio-net and virtiofs are modules (see
``/boot/config-*``: CONFIG_VIRTIO_MMIO=m ...), and it has no 9p at all
(CONFIG_NET_9P is not set): volumes go over virtiofs. The modules are copied into
the initramfs and loaded by the agent, dependencies first (``modules.dep``).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from berth.errors import NotFound

SETUP_HINT = "run `bash scripts/setup.sh` (installs linux-image-cloud-amd64 and qemu-system-x86)"

# Drivers the agent loads, by group: "core" at boot, "net" with a network, "fs" with
# volumes. Dependencies are resolved from modules.dep.
GUEST_MODULES = {
    "core": ("virtio_mmio", "virtio_blk", "virtio_console"),
    "net": ("virtio_net",),
    "fs": ("virtiofs",),
}


@dataclass(frozen=True)
class Kernel:
    path: Path
    release: str | None  # None for a user kernel without a matching /lib/modules
    modules: tuple[tuple[str, Path], ...]  # (group, path) in load order, dependencies first


def _release_of(path: Path) -> str | None:
    m = re.match(r"vmlinuz-(.+)$", path.name)
    return m.group(1) if m else None


def _version_key(release: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\-]", release)]


def default_kernel_path() -> Path:
    found = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"), key=lambda p: _version_key(p))
    if not found:
        raise NotFound(f"find guest kernel: no /boot/vmlinuz-*-cloud-amd64; {SETUP_HINT}")
    return Path(found[-1])


def module_order(moddir: Path, wanted: dict[str, tuple[str, ...]] = GUEST_MODULES) -> tuple[tuple[str, Path], ...]:
    """(group, path) of ``wanted`` modules and their dependencies, dependencies first;
    a module already in an earlier group is not repeated."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    with open(moddir / "modules.dep") as f:
        for line in f:  # ~5000 lines: plain string work, no Path objects
            target, _, rest = line.partition(":")
            deps[target] = rest.split()
            by_name[target.rpartition("/")[2].split(".ko")[0].replace("-", "_")] = target
    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(group: str, rel: str) -> None:
        if rel in seen:
            return
        seen.add(rel)
        for dep in deps.get(rel, []):
            visit(group, dep)
        order.append((group, rel))

    for group, names in wanted.items():
        for name in names:
            rel = by_name.get(name.replace("-", "_"))
            if rel is not None:  # built in, or absent from this kernel
                visit(group, rel)
    return tuple((group, moddir / rel) for group, rel in order)


def resolve(kernel: str | os.PathLike | None = None) -> Kernel:
    """The kernel to boot and the modules to put next to the agent.

    Raises:
        NotFound: no kernel at ``kernel`` or no cloud kernel installed.
    """
    path = Path(kernel) if kernel else default_kernel_path()
    if not path.is_file():
        raise NotFound(f"find guest kernel {path}: no such file; {SETUP_HINT}")
    release = _release_of(path)
    moddir = Path("/lib/modules") / release if release else None
    if moddir is None or not (moddir / "modules.dep").is_file():
        return Kernel(path, None, ())
    return Kernel(path, release, module_order(moddir))


def host_tsc_khz() -> int | None:
    """The host's TSC rate, for the guest's ``tsc_early_khz=``.

    Under TCG the guest's TSC ticks at the host's rate; when the host is busy the
    guest's PIT calibration fails ("tsc: Unable to calibrate against PIT") and the
    microvm guest (no HPET, no PM timer) hangs before any console output. Telling
    it the rate skips the calibration.
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]) * 1000)
    except (OSError, ValueError):
        pass
    return None

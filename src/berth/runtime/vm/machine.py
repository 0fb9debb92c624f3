"""What one microVM is made of: a frozen description, turned into QEMU's argv.

The machine is QEMU's ``microvm`` (no PCI, no firmware, no legacy devices but the
8250 serial port for the kernel console) with virtio-mmio devices. ACPI stays on:
Debian's cloud kernel is built without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so with
``acpi=off`` it never finds the virtio-mmio devices QEMU lists on the command
line; with ACPI it finds them in the DSDT. The hangs seen under TCG on this
machine (DESIGN.md) were the guest failing to calibrate its TSC against the PIT
while the host was busy; ``tsc_early_khz=`` removes that step (see kernel.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from berth.runtime.vm.agent_protocol import EXEC_PORTS, MAIN_PORT, exec_port_name

QEMU = "qemu-system-x86_64"
# TCG's translation cache defaults to up to 1 GiB per VM; 64 MiB is plenty for one
# small guest and keeps the VMM's footprint (and its cgroup limit) predictable.
TCG_TB_SIZE_MB = 64


@dataclass(frozen=True)
class Sockets:
    """Unix sockets of one instance (all in one short directory: sun_path is 108 bytes)."""

    dir: Path

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def console(self) -> Path:
        return self.dir / "console.sock"

    @property
    def main(self) -> Path:
        return self.dir / "main.sock"

    def exec(self, n: int) -> Path:
        return self.dir / f"exec.{n}.sock"

    def virtiofs(self, tag: str) -> Path:
        return self.dir / f"fs.{tag}.sock"


@dataclass(frozen=True)
class Machine:
    kernel: Path
    initrd: Path
    accel: str  # "kvm" or "tcg"
    memory_mb: int
    cpus: int
    disk: Path
    disk_format: str  # "qcow2" (overlay) or "raw" (read-only base)
    read_only: bool
    sockets: Sockets
    tap: str | None = None
    mac: str | None = None
    virtiofs_tags: tuple[str, ...] = ()
    tsc_khz: int | None = None
    runas: str | None = None  # "uid:gid" QEMU switches to before the guest runs
    chroot: Path | None = None  # empty directory QEMU chroots into after set-up
    extra_cmdline: tuple[str, ...] = field(default=())

    def cmdline(self) -> str:
        parts = ["console=ttyS0", "loglevel=7" if os.environ.get("BERTH_VM_DEBUG") else "quiet",
                 "panic=-1", "reboot=t", "rdinit=/init", "pci=off", "8250.nr_uarts=1"]
        # Boot-time savings that only weaken isolation *inside* the guest (between the
        # workload and its own guest kernel), not the host boundary, which is the VMM:
        # no LSM or audit set-up, no speculative-execution mitigations, no crypto self-tests,
        # no zeroing of every allocated page (costly emulated work under TCG).
        parts += ["security=none", "audit=0", "mitigations=off", "cryptomgr.notests", "init_on_alloc=0"]
        if self.tsc_khz and self.accel == "tcg":
            parts += [f"tsc_early_khz={self.tsc_khz}", "tsc=reliable"]
        if os.environ.get("BERTH_VM_DEBUG"):
            parts.append("berth_debug=1")  # the agent keeps kernel messages on the console
        return " ".join(parts + list(self.extra_cmdline))

    def argv(self) -> list[str]:
        s = self.sockets
        accel = f"tcg,tb-size={TCG_TB_SIZE_MB}" if self.accel == "tcg" else "kvm"
        argv = [
            QEMU, "-M", "microvm", "-accel", accel,
            "-cpu", "host" if self.accel == "kvm" else "max",
            "-m", str(self.memory_mb), "-smp", str(self.cpus),
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            # virtio 1.0 over MMIO (microvm defaults to the legacy layout, which
            # vhost-user-fs refuses: "virtio legacy devices aren't supported").
            "-global", "virtio-mmio.force-legacy=false",
            "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.cmdline(),
            "-chardev", f"socket,id=con,path={s.console}",
            "-serial", "chardev:con",
            "-qmp", f"unix:{s.qmp},server=on,wait=off",
        ]
        ro = ",read-only=on" if self.read_only else ""
        argv += [
            "-drive", f"id=root,file={self.disk},format={self.disk_format},if=none,cache=unsafe,aio=threads{ro}",
            "-device", "virtio-blk-device,drive=root",
            "-device", "virtio-serial-device,max_ports=8",
            "-chardev", f"socket,id=main,path={s.main}",
            "-device", f"virtserialport,chardev=main,name={MAIN_PORT}",
        ]
        for n in range(EXEC_PORTS):
            argv += [
                "-chardev", f"socket,id=exec{n},path={s.exec(n)},server=on,wait=off",
                "-device", f"virtserialport,chardev=exec{n},name={exec_port_name(n)}",
            ]
        if self.tap:
            mac = f",mac={self.mac}" if self.mac else ""
            argv += [
                "-netdev", f"tap,id=net0,ifname={self.tap},script=no,downscript=no",
                "-device", f"virtio-net-device,netdev=net0{mac}",
            ]
        if self.virtiofs_tags:
            # vhost-user needs guest RAM the daemon can map: a shared memfd backend.
            argv += [
                "-object", f"memory-backend-memfd,id=mem,size={self.memory_mb}M,share=on",
                "-machine", "memory-backend=mem",
            ]
            for i, tag in enumerate(self.virtiofs_tags):
                argv += [
                    "-chardev", f"socket,id=fs{i},path={s.virtiofs(tag)}",
                    "-device", f"vhost-user-fs-device,chardev=fs{i},tag={tag}",
                ]
        # The seccomp sandbox: no obsolete syscalls, no fork/exec (tap is opened with
        # script=no), no scheduler/affinity changes. elevateprivileges stays allowed:
        # QEMU 7.2 installs the filter before -runas, whose setgid/setuid it would kill
        # (SIGSYS); after -runas drops root to a uid of its own, set*uid cannot elevate.
        argv += ["-sandbox", "on,obsolete=deny,spawn=deny,resourcecontrol=deny"]
        if self.runas:
            argv += ["-runas", self.runas]
        if self.chroot:
            argv += ["-chroot", str(self.chroot)]
        return argv

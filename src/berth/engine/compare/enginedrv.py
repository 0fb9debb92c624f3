"""Modes run through berth's own engine: ``berth run --isolation container|vm``.

What a user of berth pays: the CLI, the C monitor that outlives it, the OCI
runtime and, for a VM, QEMU. The instance's host processes are the monitor and
everything below it (the monitor is the parent of the container's process).
Used for images in the engine's store once ``berth run`` works here.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import RuntimeFailure

from . import procs
from .image import ImageRef
from .launch import RunResult, run_timed
from .modes import IDLE_ARGV, package_of

BERTH = str(Path(sys.prefix) / "bin" / "berth")


def _qcow2_files(pids: list[int]) -> set[str]:
    """qcow2 images the instance's processes hold open (a VM's per-instance overlay)."""
    out = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.endswith(".qcow2"):
                    out.add(target)
        except OSError:
            continue
    return out


@dataclass
class EngineInstance:
    driver: "EngineDriver"
    name: str
    pid: int  # the workload's (container) or QEMU's pid, from inspect
    upper: str
    t_ready: float = 0.0
    cpu_at_ready: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    def host_pids(self) -> list[int]:
        # The monitor (parent of the workload's process) and everything below it.
        parent = procs.parent(self.pid)
        top = parent if parent and procs.comm(parent).startswith("berth-monitor") else self.pid
        return procs.descendants(top)

    def disk_bytes(self) -> int:
        total = procs.du_bytes(self.upper) if self.upper and os.path.isdir(self.upper) else 0
        return total + sum(procs.du_bytes(f) for f in _qcow2_files(self.host_pids()))

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            try:
                self.driver._berth("rm", "-f", self.name)
            except subprocess.TimeoutExpired:
                raise RuntimeFailure(f"stop {self.name}: berth rm -f did not finish") from None


class EngineDriver:
    """``name`` mode through ``berth run --isolation ISOLATION`` on the engine root ``root``."""

    def __init__(self, name: str, isolation: str, root: str, image: ImageRef):
        self.name, self.isolation, self.root, self.image = name, isolation, root, image
        self.via = f"berth run --isolation {isolation}"
        self._cold_cache: str | None = None
        self._available: tuple[bool, str] | None = None

    def _berth(self, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([BERTH, "--root", self.root, *args], capture_output=True, text=True,
                              env=env, timeout=timeout)

    def _run_argv(self, argv: list[str], *extra: str) -> list[str]:
        return [BERTH, "--root", self.root, "run", *extra, "--network", "none",
                "--isolation", self.isolation, self.image.ref, *argv]

    def available(self) -> tuple[bool, str]:
        if self._available is None:
            self._available = self._check()
        return self._available

    def _check(self) -> tuple[bool, str]:
        if self.image.source != "store":
            return False, f"{self.image.ref} is not in the engine's store"
        # One real run: the honest answer to "can it run here", with the engine's own reason.
        try:
            r = subprocess.run(self._run_argv(["true"], "--rm"), capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            return False, "berth run --rm IMAGE true did not finish within 180 s"
        if r.returncode != 0:
            return False, (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1][:200]
        return True, ""

    def host_requirements(self) -> list[str]:
        tools = [shutil.which("qemu-system-x86_64")] if self.isolation == "vm" else []
        if self.isolation == "vm":
            from .vmdirect import guest_kernel

            tools.append(guest_kernel())
        return [p for p in (package_of(t) for t in tools if t) if p]

    def forget_cache(self, image: ImageRef) -> None:
        """The next run gets an empty VM cache (kernel initramfs, base disk, accel probe)."""
        if self.isolation == "vm":
            self._cold_cache = tempfile.mkdtemp(prefix="berth-cmp-cold-", dir=self.root)

    def run(self, image: ImageRef, argv: list[str], *, timeout: float) -> RunResult:
        name = f"berth-cmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        env = None
        cold, self._cold_cache = self._cold_cache, None
        if cold:
            env = dict(os.environ, BERTH_VM_CACHE=cold)
        try:
            return run_timed(self._run_argv(argv, "--rm", "--name", name), timeout, env=env,
                             cleanup=lambda: self._berth("rm", "-f", name))
        finally:
            if cold:
                shutil.rmtree(cold, ignore_errors=True)

    def start_idle(self, image: ImageRef, *, timeout: float = 60.0) -> EngineInstance:
        name = f"berth-cmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        try:
            r = subprocess.run(self._run_argv(IDLE_ARGV, "-d", "--name", name), capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            self._berth("rm", "-f", name)
            raise RuntimeFailure(f"start idle {self.name} instance {name}: berth run -d took over {timeout:.0f}s") from None
        if r.returncode != 0:
            self._berth("rm", "-f", name)
            raise RuntimeFailure(f"start idle {self.name} instance: {r.stderr.strip()[-200:]}")
        info = json.loads(self._berth("inspect", name).stdout or "[]")
        info = info[0] if isinstance(info, list) and info else info
        log = Path(info.get("LogPath", ""))
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if log.is_file() and b"ready" in log.read_bytes():
                break
            time.sleep(0.005)
        else:
            self._berth("rm", "-f", name)
            raise RuntimeFailure(f"start idle {self.name} instance {name}: not ready within {timeout:.0f}s")
        t_ready = time.perf_counter() - t0
        pid = int((info.get("State") or {}).get("Pid") or 0)
        if pid <= 0:
            self._berth("rm", "-f", name)
            raise RuntimeFailure(f"start idle {self.name} instance {name}: the engine reports no pid for it")
        upper = ((info.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir", "")
        inst = EngineInstance(self, name, pid, upper, t_ready)
        # The monitor's own CPU plus the runtime processes it reaped, and the workload's.
        # (The CLI's share is in the warm runs' figure: instances start from several threads.)
        inst.cpu_at_ready = procs.cpu_seconds(inst.host_pids())
        return inst

    def close(self) -> None:
        pass


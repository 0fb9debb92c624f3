"""The mode-driver seam: measurement code starts workloads only through this.

A driver runs the image's workload one way (container, vm, gvisor) and says
whether it can run here. ``run`` is one timed execution; ``start_idle`` leaves
an instance running (``sleep``) so its host processes can be weighed.
"""

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from berth.errors import RuntimeFailure

from . import procs
from .bundle import Bundle
from .image import ImageRef
from .launch import Launched, RunResult, run_timed

IDLE_ARGV = ["sh", "-c", "echo ready; exec sleep 1000000"]


class Instance(Protocol):
    t_ready: float  # seconds from launch to the workload's "ready"
    cpu_at_ready: float  # CPU seconds its host processes (and those they reaped) had used by then

    def host_pids(self) -> list[int]: ...
    def disk_bytes(self) -> int: ...
    def stop(self) -> None: ...


class ModeDriver(Protocol):
    name: str  # "container" | "vm" | "gvisor"
    via: str  # what actually runs it, e.g. "runc 1.1.5", "qemu tcg"

    def available(self) -> tuple[bool, str]: ...
    def run(self, image: ImageRef, argv: list[str], *, timeout: float) -> RunResult: ...
    def start_idle(self, image: ImageRef, *, timeout: float = 60.0) -> Instance: ...
    def host_requirements(self) -> list[str]: ...
    def forget_cache(self, image: ImageRef) -> None: ...
    def close(self) -> None: ...


def package_of(path: str) -> str | None:
    """The Debian package that installed ``path`` (dpkg -S), or None."""
    r = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
    if r.returncode != 0:
        r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    return r.stdout.split(":", 1)[0].strip() if r.returncode == 0 and r.stdout else None


@dataclass
class RuntimeInstance:
    """An idle instance started by a runc-compatible runtime in the foreground."""

    driver: "RuntimeCLIDriver"
    cid: str
    bundle: Bundle
    launched: Launched
    flags: list[str]  # the runtime root it was started under
    t_ready: float = 0.0
    cpu_at_ready: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    def host_pids(self) -> list[int]:
        # The runtime's process and everything below it (runc init, gofer, sentry, the workload).
        return procs.descendants(self.launched.pid)

    def disk_bytes(self) -> int:
        return procs.du_bytes(self.bundle.upper)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.driver._cli("kill", self.cid, "KILL", flags=self.flags)
        if not self.launched.pump(None, time.perf_counter() + 10):
            self.launched.kill()
        self.launched.reap()
        self.driver._cli("delete", "--force", self.cid, flags=self.flags)
        self.bundle.remove()


class RuntimeCLIDriver:
    """A mode run by an OCI runtime CLI (``runc``, ``berth-runtime``, ``runsc``) on an overlay bundle."""

    def __init__(self, name: str, runtime: list[str], workdir: Path, *, global_flags: list[str] | None = None):
        self.name = name
        self.runtime = runtime
        self.workdir = workdir
        self.global_flags = list(global_flags or [])
        self.bundles = workdir / f"{name}-bundles"
        self._roots = 0
        self._new_root()
        self._available: tuple[bool, str] | None = None
        self.via = " ".join([os.path.basename(runtime[0]), *runtime[1:], *(global_flags or [])])

    def available(self) -> tuple[bool, str]:
        if self._available is None:
            self._available = self._check()
        return self._available

    def _check(self) -> tuple[bool, str]:
        exe = shutil.which(self.runtime[0])
        if exe is None:
            return False, f"{self.runtime[0]} is not installed"
        r = subprocess.run([*self.runtime, "--version"], capture_output=True, text=True)
        if r.returncode != 0:
            return False, f"{self.runtime[0]} --version failed: {(r.stderr or r.stdout).strip()[:120]}"
        self.via = f"{os.path.basename(exe)} {r.stdout.split(chr(10))[0].split()[-1]}"
        return True, ""

    def host_requirements(self) -> list[str]:
        pkg = package_of(shutil.which(self.runtime[0]) or self.runtime[0])
        return [pkg] if pkg else []

    def _new_root(self) -> None:
        self._roots += 1
        self.state = self.workdir / f"{self.name}-state-{self._roots}"
        self.flags = ["--root", str(self.state), *self.global_flags]

    def forget_cache(self, image: ImageRef) -> None:
        """A fresh runtime root: whatever the runtime caches there (berth-runtime's compiled
        seccomp programs) starts empty. Each run mounts a fresh overlay anyway."""
        self._new_root()

    def _cli(self, *args: str, flags: list[str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*self.runtime, *(flags or self.flags), *args], capture_output=True, text=True)

    def _bundle(self, image: ImageRef, argv: list[str]) -> tuple[str, Bundle]:
        cid = f"berth-cmp-{self.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.state.mkdir(parents=True, exist_ok=True)
        return cid, Bundle(self.bundles / cid, image.layers, argv)

    def _run_argv(self, cid: str, b: Bundle) -> list[str]:
        return [*self.runtime, *self.flags, "run", "--bundle", str(b.path), cid]

    def run(self, image: ImageRef, argv: list[str], *, timeout: float) -> RunResult:
        t0 = time.perf_counter()
        cid, b = self._bundle(image, argv)
        prep = time.perf_counter() - t0
        try:
            res = run_timed(self._run_argv(cid, b), timeout,
                            cleanup=lambda: self._cli("kill", cid, "KILL"))
            # Mounting the overlay and writing config.json is part of starting the container.
            res.add_prep(prep)
            return res
        finally:
            self._cli("delete", "--force", cid)
            b.remove()

    def start_idle(self, image: ImageRef, *, timeout: float = 60.0) -> RuntimeInstance:
        cid, b = self._bundle(image, IDLE_ARGV)
        lp = Launched(self._run_argv(cid, b))
        inst = RuntimeInstance(self, cid, b, lp, list(self.flags))
        if not lp.pump(lambda out: b"ready\n" in out, lp.t0 + timeout):
            inst.stop()
            raise RuntimeFailure(f"start idle {self.name} instance {cid}: not ready within {timeout:.0f}s: "
                                 f"{lp.err.decode(errors='replace').strip()[-200:]}")
        inst.t_ready = time.perf_counter() - lp.t0
        inst.cpu_at_ready = procs.cpu_seconds(inst.host_pids())
        return inst

    def close(self) -> None:
        shutil.rmtree(self.bundles, ignore_errors=True)
        for n in range(1, self._roots + 1):
            shutil.rmtree(self.workdir / f"{self.name}-state-{n}", ignore_errors=True)

"""The vm mode through berth's own VM backend (``berth.runtime.vm.VMInstance``).

The backend boots the image as an ext4 base disk with a per-instance qcow2
overlay and a guest agent as PID 1; its cache (guest initramfs, base disks,
accelerator probe) lives in a directory this driver owns, so the cold run can
start from an empty one. Used when the engine cannot run ``--isolation vm`` yet
but the backend is installed.
"""

import hashlib
import os
import resource
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import BerthError, RuntimeFailure
from berth.image.rootfs import copy_layer_flat

from . import procs
from .image import ImageRef
from .launch import RunResult
from .modes import IDLE_ARGV, package_of
from .vmdirect import GUEST_MEM_MB, guest_kernel

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def backend_installed() -> tuple[bool, str]:
    try:
        from berth.runtime.vm.instance import VMInstance  # noqa: F401
    except ImportError:
        return False, "berth.runtime.vm is not installed"
    from berth.paths import libexec

    if not libexec("berth-agent").exists():
        return False, f"the guest agent {libexec('berth-agent')} is not built (scripts/setup.sh)"
    return True, ""


class _Sink:
    """Collects a stream and notes when its first byte came (the backend writes from a thread)."""

    def __init__(self, t0: float):
        self.t0, self.t_first, self.buf = t0, None, bytearray()
        self.lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self.lock:
            if data and self.t_first is None:
                self.t_first = time.perf_counter() - self.t0
            self.buf += data
        return len(data)

    def flush(self) -> None:
        pass

    def has(self, text: bytes) -> bool:
        with self.lock:
            return text in self.buf


def _config(argv: list[str]) -> dict:
    return {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "hostname": "berth",
            "process": {"args": list(argv), "env": [PATH_ENV], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": []}


@dataclass
class BackendInstance:
    vm: object
    state_dir: Path
    t_ready: float = 0.0
    cpu_at_ready: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    def host_pids(self) -> list[int]:
        return procs.descendants(self.vm.pid) if self.vm.pid else []

    def disk_bytes(self) -> int:
        return procs.du_bytes(self.state_dir)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        from berth.runtime.vm.state import sock_dir_for

        try:
            self.vm.kill()
            self.vm.wait(timeout=10)
        except (BerthError, TimeoutError, OSError):
            pass
        try:
            self.vm.delete(force=True)
        except (BerthError, OSError):
            pass
        shutil.rmtree(sock_dir_for(self.state_dir), ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)


class VMBackendDriver:
    name = "vm"

    def __init__(self, workdir: Path):
        self.workdir = workdir / "vmb"
        self._caches = 0
        self.cache = self._new_cache()
        self.via = "berth.runtime.vm (VMInstance)"

    def _new_cache(self) -> Path:
        self._caches += 1
        self.cache = self.workdir / f"cache-{self._caches}"
        return self.cache

    def available(self) -> tuple[bool, str]:
        ok, why = backend_installed()
        if not ok:
            return ok, why
        if guest_kernel() is None:
            return False, "no guest kernel in /boot (Debian: linux-image-cloud-amd64)"
        if shutil.which("qemu-system-x86_64") is None:
            return False, "qemu-system-x86_64 is not installed (Debian: qemu-system-x86)"
        return True, ""

    def host_requirements(self) -> list[str]:
        tools = [shutil.which("qemu-system-x86_64"), guest_kernel()]
        return [p for p in (package_of(t) for t in tools if t) if p]

    def forget_cache(self, image: ImageRef) -> None:
        """The next run starts from an empty backend cache: initramfs, base disk, accel probe."""
        self._new_cache()

    def _rootfs(self, image: ImageRef) -> tuple[Path, str]:
        key = hashlib.sha256("\0".join([image.ref, *map(str, image.layers)]).encode()).hexdigest()[:16]
        flat = self.workdir / f"rootfs-{key}"
        if not flat.exists():
            tmp = self.workdir / f".rootfs-{key}.{os.getpid()}"
            tmp.mkdir(parents=True)
            for layer in image.layers:
                copy_layer_flat(Path(layer), tmp)
            os.replace(tmp, flat)
        return flat, key

    def _create(self, image: ImageRef, argv: list[str], timeout: float):
        from berth.runtime.vm.instance import VMInstance

        rootfs, key = self._rootfs(image)
        state = self.workdir / f"vm-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        vm = VMInstance.create(state.name, _config(argv), rootfs, state, memory_mb=GUEST_MEM_MB,
                               boot_timeout=timeout, cache_dir=self.cache, image_key=key)
        return vm, state

    def run(self, image: ImageRef, argv: list[str], *, timeout: float) -> RunResult:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        vm, state = self._create(image, argv, timeout)
        inst = BackendInstance(vm, state)
        out, err = _Sink(t0), _Sink(t0)
        timed_out = False
        try:
            vm.start(stdin=b"", stdout=out, stderr=err)
            try:
                code = vm.wait(timeout=timeout)
            except TimeoutError:
                timed_out, code = True, 124
            t_exit = time.perf_counter() - t0
        except BerthError as e:
            raise RuntimeFailure(f"run VM: {str(e).splitlines()[0]}") from None
        finally:
            inst.stop()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        firsts = [t for t in (out.t_first, err.t_first) if t is not None]
        return RunResult(stdout=out.buf.decode(errors="replace"), exit_code=code,
                         t_first_output=min(firsts) if firsts else None, t_exit=t_exit, cpu_seconds=cpu,
                         stderr=err.buf.decode(errors="replace"), timed_out=timed_out, t_wall=t_exit)

    def start_idle(self, image: ImageRef, *, timeout: float = 60.0) -> BackendInstance:
        t0 = time.perf_counter()
        vm, state = self._create(image, IDLE_ARGV, timeout)
        inst = BackendInstance(vm, state)
        out = _Sink(t0)
        try:
            vm.start(stdin=b"", stdout=out, stderr=None)
            while not out.has(b"ready\n"):
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeFailure(f"start idle VM {state.name}: not ready within {timeout:.0f}s")
                time.sleep(0.005)
        except BaseException:
            inst.stop()
            raise
        inst.t_ready = time.perf_counter() - t0
        inst.cpu_at_ready = procs.cpu_seconds(inst.host_pids())
        return inst

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

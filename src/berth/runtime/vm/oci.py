"""OCI-runtime-shaped operations for bundles booted as microVMs.

``berth-runtime`` dispatches a bundle whose config.json carries the annotation
``org.berth.isolation=vm`` here; the operations mirror runc's verbs:

    create(bundle, id, root)   prepare, boot to "created" (a detached monitor owns it)
    start(root, id)            run the workload
    state(root, id)            the runtime-spec state (pid = the QEMU process)
    kill(root, id, sig)        SIGKILL ends the VM; other signals go to the workload
    delete(root, id, force)    remove everything

The instance lives in ``<root>/<id>/`` like a container's (state.json with
``"backend": "vm"`` plus the keys the runtime's generic status code reads: ``pid``,
``startTime``, ``config``, ``cgroup``; ``exec.fifo`` while created); its sockets in
``/run/berth-vm/<hash>/``. ``is_vm(root, id)`` tells which backend owns an id. VM options come from annotations:
``org.berth.vm.memory`` (MiB), ``org.berth.vm.cpus``, ``org.berth.vm.accel``,
``org.berth.vm.kernel``, ``org.berth.vm.tap``, ``org.berth.vm.mac``,
``org.berth.vm.boot-timeout`` (s), ``org.berth.vm.net`` (JSON: ifname, address,
prefixlen, gateway, mtu, dns), ``org.berth.vm.image-key`` (cache key of the root
disk, e.g. the image ID: saves fingerprinting the rootfs); memory defaults to the
bundle's memory limit.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
import tty
from pathlib import Path

from berth.errors import ConfigError, Conflict, NotFound, RuntimeFailure, UsageError
from berth.runtime.vm.instance import VMInstance
from berth.runtime.vm.state import proc_start_time

ISOLATION_ANNOTATION = "org.berth.isolation"
_ID = re.compile(r"^[\w+.-]{1,1024}$", re.ASCII)  # runc's rule (and berth-runtime's)
FIFO = "exec.fifo"


def wants_vm(config: dict) -> bool:
    """True when a bundle asks for VM isolation."""
    return (config.get("annotations") or {}).get(ISOLATION_ANNOTATION) == "vm"


def _dir(root: Path, id: str) -> Path:
    if not _ID.match(id) or id in (".", ".."):
        raise UsageError(f"container id {id!r}: use letters, digits, '_', '+', '.', '-'")
    return Path(root) / id


def is_vm(root: str | os.PathLike, id: str) -> bool:
    """True when ``id`` under ``root`` is a VM made by this module."""
    try:
        return json.loads((_dir(Path(root), id) / "state.json").read_text()).get("backend") == "vm"
    except (OSError, ValueError, UsageError):
        return False


def list_ids(root: str | os.PathLike) -> list[str]:
    d = Path(root)
    return sorted(p.name for p in d.iterdir() if is_vm(d, p.name)) if d.is_dir() else []


def _options(config: dict) -> dict:
    ann = config.get("annotations") or {}
    opts: dict = {}
    try:
        limit = ((config.get("linux") or {}).get("resources") or {}).get("memory", {}).get("limit")
        if "org.berth.vm.memory" in ann:
            opts["memory_mb"] = int(ann["org.berth.vm.memory"])
        elif limit and limit > 0:
            opts["memory_mb"] = max(64, int(limit) // (1024 * 1024))
        if "org.berth.vm.cpus" in ann:
            opts["cpus"] = int(ann["org.berth.vm.cpus"])
        if "org.berth.vm.boot-timeout" in ann:
            opts["boot_timeout"] = float(ann["org.berth.vm.boot-timeout"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"VM annotations: {e}") from None
    for key, name in (("org.berth.vm.accel", "accel"), ("org.berth.vm.kernel", "kernel"),
                      ("org.berth.vm.tap", "tap"), ("org.berth.vm.mac", "mac"),
                      ("org.berth.vm.image-key", "image_key")):
        if key in ann:
            opts[name] = ann[key]
    if "org.berth.vm.net" in ann:
        try:
            net = json.loads(ann["org.berth.vm.net"])
        except ValueError as e:
            raise ConfigError(f"VM annotation org.berth.vm.net: {e}") from None
        if not isinstance(net, dict):
            raise ConfigError("VM annotation org.berth.vm.net: expected a JSON object")
        opts["net"] = net
    return opts


def _load_config(bundle: Path, id: str) -> dict:
    try:
        return json.loads((bundle / "config.json").read_text())
    except FileNotFoundError:
        raise NotFound(f"create {id}: no config.json in {bundle}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"create {id}: config.json: {e}") from None


class _Forked:
    """The monitor as a forked child (wait() like a Popen)."""

    def __init__(self, pid: int):
        self.pid = pid

    def wait(self) -> int:
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


def _spawn_monitor(state_dir: Path, ready_w: int, keep: list[int], env: dict):
    """Start the VM's monitor (monitor.main) detached from us.

    A fork of this process when it has a single thread: the modules the monitor needs
    are already imported, which saves an interpreter start and ~30 ms of imports per
    VM. With other threads alive (their locks would stay held in the child) it is a
    fresh ``python -m berth.runtime.vm.monitor`` instead.
    """
    import threading

    if threading.active_count() > 1:
        return subprocess.Popen([sys.executable, "-m", "berth.runtime.vm.monitor", str(state_dir), str(ready_w)],
                                pass_fds=keep, start_new_session=True, env=env, close_fds=True)
    from berth.runtime.vm import monitor

    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 255
    try:  # the child: like Popen(close_fds=True, start_new_session=True)
        os.setsid()
        keep_fds = sorted({0, 1, 2, *keep})
        lo = 3
        for fd in keep_fds:
            if fd >= lo:
                os.closerange(lo, fd)
                lo = fd + 1
        os.closerange(lo, 65536)
        if env.get("BERTH_VM_TTY_FD"):
            os.environ["BERTH_VM_TTY_FD"] = env["BERTH_VM_TTY_FD"]
        code = monitor.main([str(state_dir), str(ready_w)])
    except BaseException:  # noqa: BLE001 - never return into the caller's code in the child
        pass
    finally:
        os._exit(code)


def _send_fd(console_socket: str, fd: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(console_socket)
        socket.send_fds(s, [b"/dev/pts/vm"], [fd])


def create(bundle: str | os.PathLike, id: str, root: str | os.PathLike, console_socket: str | None = None,
           pid_file: str | None = None) -> dict:
    """Boot the bundle as a VM up to "created". Similar to ``runc create``.

    Raises:
        Conflict: ``id`` exists. NotFound / ConfigError: bad bundle. VMFailure: no boot.
    """
    bundle = Path(bundle).resolve()
    state_dir = _dir(Path(root), id)
    if state_dir.exists():
        raise Conflict(f"create {id}: a container with this id exists")
    config = _load_config(bundle, id)
    rootfs = bundle / ((config.get("root") or {}).get("path") or "rootfs")
    terminal = bool((config.get("process") or {}).get("terminal"))
    if terminal and not console_socket:
        raise UsageError(f"create {id}: process.terminal needs --console-socket")
    vm = VMInstance.create(id, config, rootfs, state_dir, bundle=bundle, **_options(config))
    r, w = os.pipe()
    env = dict(os.environ)
    pass_fds = [w]
    master = slave = -1
    try:
        if terminal:
            # The guest has its own pty (the agent's): this host pair only carries
            # bytes, so the host side is raw (no echo, no CR/LF translation twice).
            master, slave = os.openpty()
            tty.setraw(slave)
            pass_fds.append(slave)
            env["BERTH_VM_TTY_FD"] = str(slave)
        os.mkfifo(state_dir / FIFO, 0o600)
        proc = _spawn_monitor(state_dir, w, pass_fds, env)
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as f:
            r = -1
            msg = f.read().decode(errors="replace")
        if not msg.startswith("ok "):
            proc.wait()
            vm.delete(force=True)
            parts = msg.split(" ", 2)
            if len(parts) == 3 and parts[0] == "error":
                raise RuntimeFailure(parts[2])
            raise RuntimeFailure(f"create {id}: the VM monitor died during boot")
        if terminal:
            _send_fd(console_socket, master)
    finally:
        for fd in (r, w, master, slave):
            if fd >= 0:
                os.close(fd)
    if pid_file:  # the monitor: it exits with the workload's status (see monitor.py)
        Path(pid_file).write_text(msg.split()[1])
    return state(root, id)


def run(bundle: str | os.PathLike, id: str, root: str | os.PathLike) -> int:
    """Create, start and wait in this process, with its stdio; remove the VM after.
    Similar to ``runc run`` (foreground); returns the workload's exit status."""
    bundle = Path(bundle).resolve()
    state_dir = _dir(Path(root), id)
    if state_dir.exists():
        raise Conflict(f"run {id}: a container with this id exists")
    config = _load_config(bundle, id)
    rootfs = bundle / ((config.get("root") or {}).get("path") or "rootfs")
    vm = VMInstance.create(id, config, rootfs, state_dir, bundle=bundle, **_options(config))
    try:
        vm.start(stdin=0, stdout=1, stderr=2)
        return vm.wait()
    finally:
        vm.delete(force=True)


def exec_(root: str | os.PathLike, id: str, args: list[str], env: list[str] | None = None, cwd: str = "/",
          user: str | None = None, tty: bool = False) -> int:
    """Run a process in a running VM with this process's stdio. Like ``runc exec``."""
    vm = VMInstance.load(_dir(Path(root), id))
    return vm.exec(args, env=env, cwd=cwd, user=user, tty=tty, stdin=0, stdout=1, stderr=2)


def start(root: str | os.PathLike, id: str) -> None:
    """Run the workload of a created VM. Similar to ``runc start``."""
    vm = VMInstance.load(_dir(Path(root), id))
    fifo = vm.state_dir / FIFO
    if vm.status() != "created" or not fifo.exists():
        raise Conflict(f"start {id}: it is {vm.status()}, not created")
    # Non-blocking open (a dead monitor must not hang us), then wait for the byte the
    # monitor writes once its blocking open for writing returned.
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + 30
        while True:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r and os.read(fd, 1):
                return
            mon = vm.state.monitor
            if not mon or proc_start_time(mon[0]) != mon[1] or time.monotonic() > deadline:
                raise Conflict(f"start {id}: the VM's monitor is gone")
    finally:
        os.close(fd)


def state(root: str | os.PathLike, id: str) -> dict:
    """The runtime-spec state. ``pid`` is the VM's monitor (exits with the workload's
    status); ``qemu_pid`` is QEMU."""
    vm = VMInstance.load(_dir(Path(root), id))
    st = vm.state
    status = vm.status()
    return {
        "ociVersion": "1.0.2", "id": st.id, "status": status if status != "creating" else "creating",
        "pid": (st.monitor[0] if st.monitor else st.qemu_pid) if status in ("created", "running") else 0,
        "qemu_pid": st.qemu_pid if status in ("created", "running") else 0,
        "bundle": st.bundle or "", "annotations": st.annotations,
        "created": st.created, "isolation": "vm", "accelerator": st.accel, "exit_code": st.exit_code,
    }


def kill(root: str | os.PathLike, id: str, sig: int) -> None:
    """Signal the workload (SIGKILL: end the VM). Similar to ``runc kill``."""
    vm = VMInstance.load(_dir(Path(root), id))
    if vm.status() not in ("created", "running"):
        raise Conflict(f"kill {id}: it is not running")
    if vm.status() == "created":  # no workload yet: any signal ends the VM, as runc's init
        vm.kill(9)
        return
    vm.kill(sig)


def pause(root: str | os.PathLike, id: str) -> None:
    """Freeze the VM's vCPUs. Similar to ``runc pause``."""
    VMInstance.load(_dir(Path(root), id)).pause()


def resume(root: str | os.PathLike, id: str) -> None:
    VMInstance.load(_dir(Path(root), id)).resume()


def delete(root: str | os.PathLike, id: str, force: bool = False) -> None:
    """Remove a stopped VM (``force``: kill it first). Similar to ``runc delete``."""
    state_dir = _dir(Path(root), id)
    if not state_dir.exists():
        raise NotFound(f"delete {id}: no such container")
    VMInstance.load(state_dir).delete(force=force)

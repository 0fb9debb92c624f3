"""One microVM running one OCI bundle: the Python API of the VM backend.

    vm = VMInstance.create("web1", config, rootfs, state_dir, memory_mb=256)
    vm.start(stdin=b"", stdout=1, stderr=2)   # boots (create -> created), then START
    code = vm.wait()                           # the workload's exit status
    vm.delete()

Similar to ``docker run --isolation vm``. Lifecycle, as the OCI runtime spec's:
``create`` prepares files (cached kernel/initramfs/base disk, a fresh overlay);
``boot`` starts QEMU and brings the agent to READY ("created"); ``start`` runs
the workload ("running"); the workload's exit powers the VM off ("stopped");
``delete`` removes every file. The process that boots the VM owns the main port
(workload stdio) and the console log; any other process can ``load`` the state
directory to ``exec``, ``signal``, ``stop``, ``kill`` or ``delete``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal as _signal
import socket
import subprocess
import time
from pathlib import Path

from berth.errors import BerthError, ConfigError, Conflict, NotFound, RuntimeFailure
from berth.runtime.vm import agent_protocol as ap
from berth.runtime.vm import confine, disk, guestconfig, initramfs, virtiofs
from berth.runtime.vm import kernel as kmod
from berth.runtime.vm._hash import sha256
from berth.runtime.vm.accel import choose, default_cache_dir, qemu_binary
from berth.runtime.vm.console import ConsoleLog, tail
from berth.runtime.vm.machine import Machine, Sockets
from berth.runtime.vm.state import (
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    VMState,
    now_rfc3339,
    proc_start_time,
    sock_dir_for,
)
from berth.runtime.vm.streams import Session

# QEMU drops to an unprivileged uid:gid of its own (one per instance, like Firecracker's
# jailer) just before the guest runs; the range is far from any real account.
RUNAS_BASE = 0x4B000000


class VMFailure(RuntimeFailure):
    """The guest did not boot, panicked, or the agent died; carries the console tail."""

    def __init__(self, message: str, console_tail: str = ""):
        super().__init__(message + (f"; console tail:\n{console_tail}" if console_tail else ""))
        self.console_tail = console_tail


class BootTimeout(VMFailure):
    pass


def _user_spec(user: object) -> tuple[int, int, list[int]]:
    if user is None:
        return 0, 0, []
    if isinstance(user, int):
        return user, user, []
    if isinstance(user, tuple):
        return int(user[0]), int(user[1]), [int(g) for g in (user[2] if len(user) > 2 else [])]
    uid, _, gid = str(user).partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        # Names would need the guest's /etc/passwd: the engine resolves them from the image.
        raise ConfigError(f"exec user {user!r}: give numeric uid[:gid] for a VM")
    return int(uid), int(gid or uid), []


class VMInstance:
    def __init__(self, state_dir: Path, state: VMState):
        self.state_dir = state_dir
        self.state = state
        self.sockets = Sockets(Path(state.sock_dir))
        self._proc: subprocess.Popen | None = None
        self._helpers: list[subprocess.Popen] = []
        self._console: ConsoleLog | None = None
        self._main: Session | None = None
        self._init: dict | None = None
        self._boot_timeout = 30.0
        self._machine: Machine | None = None

    # ------------------------------------------------------------------ create / load

    @classmethod
    def create(cls, id: str, config: dict, rootfs: Path, state_dir: Path, *, memory_mb: int = DEFAULT_MEMORY_MB,
               cpus: int = DEFAULT_CPUS, accel: str = "auto", kernel: str | os.PathLike | None = None,
               tap: str | None = None, mac: str | None = None, net: dict | None = None,
               volumes: list[tuple[str | os.PathLike, str, bool]] = (), read_only: bool = False,
               boot_timeout: float = 30.0, cache_dir: Path | None = None,
               image_key: str | None = None, bundle: Path | None = None) -> VMInstance:
        """Prepare an instance (nothing runs yet). Similar to ``docker create --isolation vm``.

        Raises:
            NotFound: kernel, QEMU, agent or rootfs missing (the message names set-up).
            ConfigError: the config cannot run in a VM.
            Conflict: ``state_dir`` already holds an instance.
        """
        state_dir = Path(state_dir)
        rootfs = Path(rootfs)
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        if memory_mb < 64 or cpus < 1:
            raise ConfigError(f"create VM {id}: memory {memory_mb} MiB must be >= 64 and cpus >= 1")
        if (state_dir / "state.json").exists():
            raise Conflict(f"create VM {id}: {state_dir} already holds an instance")
        qemu_binary()
        k = kmod.resolve(kernel)
        oci_vols, tmpfs, files = guestconfig.split_mounts(config)
        vols = [virtiofs.Volume(Path(h), g, bool(ro)) for h, g, ro in volumes] + oci_vols
        read_only = read_only or bool((config.get("root") or {}).get("readonly"))
        init = guestconfig.init_message(config, read_only=read_only, volumes=vols, tmpfs=tmpfs,
                                        files=files, net=net)
        accel_name, reason = choose(accel, k.path, cache_dir)
        initrd = initramfs.ensure(k, cache_dir)
        base = disk.ensure_base(rootfs, cache_dir, image_key)
        state_dir.mkdir(parents=True, exist_ok=True)
        state = VMState(id=id, created=now_rfc3339(), sock_dir=str(sock_dir_for(state_dir)),
                        accel=accel_name, accel_reason=reason, kernel=str(k.path), initrd=str(initrd),
                        memory_mb=memory_mb, cpus=cpus, base_disk=str(base), read_only=read_only,
                        tap=tap, bundle=str(bundle) if bundle else None,
                        annotations=dict(config.get("annotations") or {}), config=config)
        try:
            if not read_only:
                state.overlay = str(disk.create_overlay(base, state_dir / "overlay.qcow2"))
            (state_dir / "config.init.json").write_text(json.dumps(init))
            (state_dir / "volumes.json").write_text(json.dumps(
                [[str(v.host_path), v.guest_path, v.read_only] for v in vols]))
            (state_dir / "machine.json").write_text(json.dumps({
                "mac": mac, "boot_timeout": boot_timeout,
                "cgroups_path": (config.get("linux") or {}).get("cgroupsPath")}))
            state.save(state_dir)
        except BaseException:
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        vm = cls(state_dir, state)
        vm._boot_timeout = boot_timeout
        return vm

    @classmethod
    def load(cls, state_dir: Path) -> VMInstance:
        """A handle on an existing instance, from any process."""
        state_dir = Path(state_dir)
        try:
            state = VMState.load(state_dir)
        except FileNotFoundError as e:
            raise NotFound(f"load VM state {state_dir}: no instance there") from e
        return cls(state_dir, state)

    # ------------------------------------------------------------------ boot

    def _machine_spec(self) -> Machine:
        st = self.state
        extra = json.loads((self.state_dir / "machine.json").read_text())
        vols = json.loads((self.state_dir / "volumes.json").read_text())
        h = int(sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:5], 16)
        uid = RUNAS_BASE + h
        jail = self.state_dir / "jail"
        jail.mkdir(mode=0o555, exist_ok=True)
        return Machine(
            kernel=Path(st.kernel), initrd=Path(st.initrd), accel=st.accel, memory_mb=st.memory_mb,
            cpus=st.cpus, disk=Path(st.overlay or st.base_disk),
            disk_format="qcow2" if st.overlay else "raw", read_only=st.read_only,
            sockets=self.sockets, tap=st.tap, mac=extra.get("mac"),
            virtiofs_tags=tuple(f"vol{i}" for i in range(len(vols))), tsc_khz=kmod.host_tsc_khz(),
            runas=f"{uid}:{uid}", chroot=jail,
        )

    def _cgroups_path(self) -> str | None:
        return json.loads((self.state_dir / "machine.json").read_text()).get("cgroups_path")

    def _listen(self, path: Path) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.bind(str(path))
        s.listen(1)
        return s

    def boot(self) -> None:
        """Start QEMU and bring the agent to READY (OCI "created").

        Raises:
            BootTimeout: no READY within the boot timeout (console tail attached);
                the instance's files are removed.
            VMFailure: QEMU or the guest failed during boot (same clean-up).
        """
        st = self.state
        if st.status != "creating":
            raise Conflict(f"boot VM {st.id}: it is {st.status}")
        extra = json.loads((self.state_dir / "machine.json").read_text())
        self._boot_timeout = float(extra.get("boot_timeout", self._boot_timeout))
        deadline = time.monotonic() + self._boot_timeout
        sd = self.sockets.dir
        try:
            sd.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            raise Conflict(f"boot VM {st.id}: socket directory {sd} exists (another instance?)") from None
        try:
            self._boot(deadline)
        except BaseException as e:
            tail_text = tail(self.state_dir / "console.log")
            self._teardown()
            self._remove_files()
            if isinstance(e, BerthError) and not isinstance(e, VMFailure) and tail_text and "QEMU" in str(e):
                raise VMFailure(str(e), tail_text) from None
            raise

    def _boot(self, deadline: float) -> None:
        st = self.state
        machine = self._machine_spec()
        console_l = self._listen(self.sockets.console)
        main_l = self._listen(self.sockets.main)
        self._console = ConsoleLog(console_l, self.state_dir / "console.log")
        vols = json.loads((self.state_dir / "volumes.json").read_text())
        for i, (host, guest, ro) in enumerate(vols):
            proc = virtiofs.start(virtiofs.Volume(Path(host), guest, ro), self.sockets.virtiofs(f"vol{i}"),
                                  self.state_dir / "virtiofsd.log")
            self._helpers.append(proc)
            st.helper_pids.append([proc.pid, proc_start_time(proc.pid) or 0])
        cg = confine.create(st.id, st.memory_mb, self._cgroups_path())
        st.cgroup = cg.to_state()
        with open(self.state_dir / "qemu.log", "wb") as log:
            self._proc = subprocess.Popen(machine.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          close_fds=True, cwd=self.state_dir)
        # Moved before the guest touches its RAM (QEMU maps it lazily), so the guest's
        # memory is charged to the VM's group.
        cg.add(self._proc.pid)
        st.qemu_pid = self._proc.pid
        st.qemu_start = proc_start_time(self._proc.pid) or 0
        st.save(self.state_dir)
        main_l.settimeout(0.05)
        while True:
            try:
                conn, _ = main_l.accept()
                break
            except TimeoutError:
                self._check_qemu(deadline)
        main_l.close()
        conn.settimeout(None)
        chan = ap.Channel(conn)
        init = json.loads((self.state_dir / "config.init.json").read_text())
        try:
            chan.send(ap.encode_json(ap.INIT, ap.MAIN_STREAM, init))
        except ConnectionError:
            # QEMU connects its end at start-up and may die right after (a
            # kernel it cannot boot): its own reason, not a broken pipe
            self._check_qemu(deadline, gone=True)
        conn.settimeout(0.1)
        while True:
            try:
                frame = chan.recv()
            except TimeoutError:
                self._check_qemu(deadline)
                continue
            except ConnectionError:
                frame = None
            if frame is None:
                self._check_qemu(deadline, gone=True)
                continue
            if frame.type == ap.READY:
                st.guest_kernel = ap.printable(frame.json().get("kernel", ""), 128)
                break
            if frame.type == ap.ERROR:
                raise VMFailure(f"set up guest of VM {st.id}: {ap.printable(frame.json().get('message', 'failed'))}")
        conn.settimeout(None)
        self._main = Session(chan, ap.MAIN_STREAM, on_exit=self._on_main_exit)
        st.status = "created"
        st.save(self.state_dir)

    def _check_qemu(self, deadline: float, gone: bool = False) -> None:
        """During boot: fail if QEMU died or the deadline passed."""
        st = self.state
        if self._proc is not None and self._proc.poll() is not None or gone:
            if self._proc is not None:
                try:
                    self._proc.wait(2)
                except subprocess.TimeoutExpired:
                    pass
            self._console and self._console.join(1)
            log = (self.state_dir / "qemu.log").read_text(errors="replace").strip().splitlines()
            why = log[-1] if log else f"QEMU exited with status {self._proc.returncode if self._proc else '?'}"
            raise VMFailure(f"boot VM {st.id}: {why}", tail(self.state_dir / "console.log"))
        if time.monotonic() > deadline:
            self._kill_qemu()
            self._console and self._console.join(1)
            raise BootTimeout(f"boot VM {st.id}: no answer from the guest agent within {self._boot_timeout:g} s",
                              tail(self.state_dir / "console.log"))

    # ------------------------------------------------------------------ run

    def start(self, stdin: object = None, stdout: object = None, stderr: object = None) -> None:
        """Run the workload (booting first if needed). Similar to ``docker start``."""
        if self.state.status == "creating":
            self.boot()
        if self.state.status != "created" or self._main is None:
            raise Conflict(f"start VM {self.state.id}: it is {self.state.status}"
                           + ("" if self._main else " (owned by another process)"))
        self._main.stdout, self._main.stderr = stdout, stderr
        self._main.send(ap.encode(ap.START, ap.MAIN_STREAM))
        self._main.start(stdin)
        self.state.status = "running"
        self.state.save(self.state_dir)

    def _on_main_exit(self, session: Session) -> None:
        # Acknowledge so the agent powers off now rather than after its 5 s grace.
        try:
            session.send(ap.encode(ap.SHUTDOWN, ap.MAIN_STREAM))
        except OSError:
            pass

    def wait(self, timeout: float | None = None) -> int:
        """The workload's exit status once the VM has stopped. Similar to ``docker wait``.

        Raises:
            VMFailure: the VM ended without the workload's status (kernel panic, agent
                crash, QEMU killed); the console tail is attached.
        """
        st = self.state
        if self._main is None:  # not the owner: watch the pid and the state file
            end = None if timeout is None else time.monotonic() + timeout
            while self.state.qemu_alive():
                if end is not None and time.monotonic() > end:
                    raise TimeoutError(f"wait for VM {st.id}")
                time.sleep(0.05)
                self.state = VMState.load(self.state_dir)
            if self.state.exit_code is None:
                raise VMFailure(f"VM {st.id} stopped without an exit status", tail(self.state_dir / "console.log"))
            return self.state.exit_code
        end = None if timeout is None else time.monotonic() + timeout
        while not self._main.done.wait(0.05):
            if self._proc is not None and self._proc.poll() is not None:
                self._main.done.wait(0.5)  # frames already in the socket
                break
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"wait for VM {st.id}")
        status = self._main.status
        if self._proc is not None:
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._kill_qemu()
        self._teardown()
        if self._console:
            self._console.join(2)
        st.status = "stopped"
        st.exit_code = status
        if status is None:
            err = self._main.error
            st.error = "guest stopped without an exit status"
            st.save(self.state_dir)
            raise VMFailure(f"run VM {st.id}: {err['message'] if err else st.error}",
                            tail(self.state_dir / "console.log"))
        st.save(self.state_dir)
        return status

    def run(self, stdin: object = None, stdout: object = None, stderr: object = None) -> int:
        """Boot, run the workload to its end and return its status (files are kept)."""
        self.start(stdin, stdout, stderr)
        return self.wait()

    # ------------------------------------------------------------------ exec and signals

    def _exec_channel(self) -> tuple[ap.Channel, object]:
        if not self.state.qemu_alive() or self.state.status not in ("created", "running"):
            raise Conflict(f"exec in VM {self.state.id}: it is not running")
        for n in range(ap.EXEC_PORTS):
            lock = open(self.state_dir / f"exec.{n}.lock", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                s.connect(str(self.sockets.exec(n)))
            except OSError as e:
                s.close()
                lock.close()
                raise RuntimeFailure(f"exec in VM {self.state.id}: connect {self.sockets.exec(n)}: {e.strerror}") from e
            return ap.Channel(s), lock
        raise Conflict(f"exec in VM {self.state.id}: all {ap.EXEC_PORTS} exec sessions are busy")

    def exec(self, args: list[str], env: list[str] | None = None, cwd: str = "/", user: object = None,
             tty: bool = False, stdin: object = None, stdout: object = None, stderr: object = None) -> int:
        """Run another process in the running VM; returns its exit status. Like ``docker exec``."""
        if not args:
            raise ConfigError(f"exec in VM {self.state.id}: no command")
        uid, gid, gids = _user_spec(user)
        spec = {"args": list(args),
                "env": list(env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
                "cwd": cwd, "uid": uid, "gid": gid, "gids": gids, "tty": tty}
        return self.exec_spec(spec, stdin=stdin, stdout=stdout, stderr=stderr)

    def exec_spec(self, spec: dict, stdin: object = None, stdout: object = None, stderr: object = None) -> int:
        """``exec`` of an agent process spec (``guestconfig.process_spec`` of an OCI process)."""
        chan, lock = self._exec_channel()
        stream = 2 + int.from_bytes(os.urandom(4), "big") % (2**31 - 2)
        try:
            sess = Session(chan, stream, stdout, stderr)
            sess.send(ap.encode_json(ap.EXEC, stream, spec))
            sess.start(stdin)
            while not sess.done.wait(0.1):
                if not self.state.qemu_alive():
                    break
            if sess.status is None:
                raise RuntimeFailure(f"exec {spec['args'][0]} in VM {self.state.id}: the VM stopped")
            return sess.status
        finally:
            chan.close()
            lock.close()

    def signal(self, sig: int = _signal.SIGTERM) -> None:
        """Send ``sig`` to the workload through the agent."""
        frame = ap.encode_json(ap.SIGNAL, ap.MAIN_STREAM, {"signal": int(sig)})
        if self._main is not None:
            self._main.send(frame)
            return
        chan, lock = self._exec_channel()
        try:
            chan.send(frame)
            time.sleep(0.05)  # let QEMU move the bytes before the port closes
        finally:
            chan.close()
            lock.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the workload, then kill QEMU after ``timeout``. Like ``docker stop``."""
        if self.state.qemu_alive():
            try:
                self.signal(_signal.SIGTERM)
            except (BerthError, OSError):
                pass
            end = time.monotonic() + timeout
            while self.state.qemu_alive() and time.monotonic() < end:
                time.sleep(0.05)
        if self.state.qemu_alive():
            self._quit_qmp()
            self._kill_qemu()
        if self._main is not None:
            try:
                self.wait(timeout=5)
            except (VMFailure, TimeoutError):
                pass
        else:
            self._teardown()

    def kill(self, sig: int = _signal.SIGKILL) -> None:
        """SIGKILL ends the VM at once; other signals go to the workload."""
        if sig != _signal.SIGKILL:
            self.signal(sig)
            return
        self._kill_qemu()
        if self._main is None:
            self._teardown()

    # ------------------------------------------------------------------ teardown

    def qmp(self, command: str, **args: object) -> object:
        """One QMP command over the instance's monitor socket (any process may call it).

        Raises:
            RuntimeFailure: QEMU is not reachable or refused the command.
        """
        import logging

        from qemu.qmp.legacy import QEMUMonitorProtocol  # imported only when needed: slow

        logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
        try:
            mon = QEMUMonitorProtocol(str(self.sockets.qmp))
            mon.connect()
            try:
                return mon.cmd(command, **args)
            finally:
                mon.close()
        except Exception as e:  # noqa: BLE001 - the library raises several unrelated types
            raise RuntimeFailure(f"QMP {command} on VM {self.state.id}: {e}") from None

    def pause(self) -> None:
        """Stop the vCPUs (QMP ``stop``). Similar to ``docker pause``."""
        self.qmp("stop")

    def resume(self) -> None:
        """Resume the vCPUs (QMP ``cont``). Similar to ``docker unpause``."""
        self.qmp("cont")

    def paused(self) -> bool:
        return self.qmp("query-status").get("status") == "paused"

    def _quit_qmp(self) -> None:
        try:
            self.qmp("quit")
        except RuntimeFailure:  # QEMU may be half-gone; SIGKILL follows
            pass

    def _kill_qemu(self) -> None:
        st = self.state
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        elif st.qemu_alive():
            os.kill(st.qemu_pid, _signal.SIGKILL)
            for _ in range(200):
                if not st.qemu_alive():
                    break
                time.sleep(0.01)

    def _teardown(self) -> None:
        """Stop QEMU's helpers, remove sockets and cgroups (the overlay stays until delete)."""
        st = self.state
        if self.state.qemu_alive():
            self._kill_qemu()
        for p in self._helpers:
            if p.poll() is None:
                p.kill()
            p.wait()
        for pid, start in st.helper_pids:
            if proc_start_time(pid) == start:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
        st.helper_pids = []
        if self._main is not None:
            self._main.chan.close()
        shutil.rmtree(self.sockets.dir, ignore_errors=True)
        cg = confine.from_state(st.cgroup)
        if cg is not None:
            try:  # another handle may be tearing down the same instance: idempotent
                if cg.pids():  # QEMU is normally gone by now; freezing an empty group costs time
                    cg.kill_all(_signal.SIGKILL)
            except (BerthError, OSError):
                pass
            try:  # even when the kill failed: an empty group must not be left behind
                cg.destroy()
            except (BerthError, OSError):
                pass
        st.cgroup = None
        if st.status != "creating":
            st.status = "stopped"
        if (self.state_dir / "state.json").exists():
            st.save(self.state_dir)

    def _remove_files(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def delete(self, force: bool = False) -> None:
        """Remove every file of the instance. Similar to ``docker rm``."""
        if self.state.qemu_alive():
            if not force:
                raise Conflict(f"delete VM {self.state.id}: it is running (stop it first)")
            self.kill()
        mon = self.state.monitor
        if mon and mon[0] != os.getpid() and proc_start_time(mon[0]) == mon[1]:
            try:  # oci's monitor, e.g. still blocked before START, would wait forever
                os.kill(mon[0], _signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._teardown()
        self._remove_files()

    # ------------------------------------------------------------------ queries

    def qemu_returncode(self) -> int | None:
        """QEMU's exit status when this process owns it and it has ended (negative: signal)."""
        return self._proc.returncode if self._proc is not None else None

    @property
    def pid(self) -> int:
        return self.state.qemu_pid

    @property
    def id(self) -> str:
        return self.state.id

    def status(self) -> str:
        st = self.state
        if st.status in ("created", "running") and not st.qemu_alive():
            return "stopped"
        return st.status

    def stats(self) -> dict:
        """The QEMU process's cgroup figures (memory, cpu, pids) for ``berth stats``."""
        cg = confine.from_state(self.state.cgroup)
        if cg is None or not self.state.qemu_alive():
            return {}
        try:
            return cg.stats()
        except (BerthError, OSError):
            return {}

    def console_tail(self, lines: int = 25) -> str:
        return tail(self.state_dir / "console.log", lines)

    def info(self) -> dict:
        """What ``inspect`` shows for a VM: isolation, accelerator, kernels, memory."""
        st = self.state
        return {
            "isolation": "vm", "status": self.status(), "pid": st.qemu_pid,
            "accelerator": st.accel, "accelerator_reason": st.accel_reason,
            "kernel": st.kernel, "guest_kernel": st.guest_kernel, "memory_mb": st.memory_mb,
            "cpus": st.cpus, "read_only": st.read_only, "base_disk": st.base_disk,
            "overlay": st.overlay or None, "exit_code": st.exit_code,
        }


__all__ = ["VMInstance", "VMFailure", "BootTimeout"]

"""Containers as objects: create, start, stop, kill, rm, and their state.

Layout of one container (``<root>/containers/<id>/``)::

    config.json       the OCI bundle's config (root.path points at rootfs/)
    rootfs/           overlay mount of the image layers + diff/ (upper) + work/
    hostname, hosts, resolv.conf   bind-mounted into the container
    container.log[.N] json-file log, written by the monitor
    status.json       run state, written by the monitor (see status.py)
    attach.sock       the monitor's attach socket while it runs
    stop-requested    present when the user stopped it: vetoes restarts

The record in the database (``state.py``) is docker-shaped so that
``inspect`` is mostly a projection of it.
"""

from __future__ import annotations

import os
import signal as _signal
import sys
import time
from pathlib import Path

from berth.engine import images, names
from berth.engine import status as _status
from berth.engine.options import SENSITIVE_PATHS, CreateOptions, MountSpec, validate
from berth.engine.state import State
from berth.errors import BerthError, Conflict, NotFound, UsageError

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

RUNNING_STATES = ("running", "paused", "restarting")
FILTERS = ("status", "name", "label", "id", "ancestor", "exited", "isolation", "health", "network",
           "volume", "before", "since")


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def default_runtime() -> str:
    """The OCI runtime binary: ``$BERTH_RUNTIME`` or the venv's ``berth-runtime``."""
    return os.environ.get("BERTH_RUNTIME") or _venv_runtime()


def _venv_runtime() -> str:
    return str(Path(sys.prefix) / "bin" / "berth-runtime")


def parse_signal(sig: str | int) -> int:
    """``TERM``, ``SIGTERM``, ``15`` -> 15."""
    if isinstance(sig, int) or str(sig).isdigit():
        n = int(sig)
        if not 0 < n < 65:
            raise UsageError(f"invalid signal {sig!r}")
        return n
    s = str(sig).upper()
    if not s.startswith("SIG"):
        s = "SIG" + s
    try:
        return int(getattr(_signal.Signals, s))
    except AttributeError:
        raise UsageError(f"invalid signal {sig!r}") from None


def _t(what: str) -> None:
    from berth.runtime import trace

    trace.mark(what)


class Engine:
    """The engine of one state root. Each method is one docker verb."""

    def __init__(self, root: str | os.PathLike, runtime: str | None = None):
        self.root = Path(root)
        self.runtime = runtime or default_runtime()
        self.runtime_root = str(self.root / "runtime")
        self._state: State | None = None
        self._own: bool | None = None
        self._cgroups_made: dict[str, Any] = {}  # cid -> cgroup made by create for its start

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = State(self.root)
        return self._state

    def cdir(self, cid: str) -> Path:
        return self.root / "containers" / cid

    # ---- lookup and status --------------------------------------------------

    def get(self, ref: str) -> dict[str, Any]:
        return self.state.find_container(ref)

    def run_state(self, rec: dict[str, Any]) -> _status.RunState:
        return _status.read_status(self.cdir(rec["Id"]), paused=rec.get("Paused", False))

    def _rt(self, *args: str, check: bool = False, capture: bool = True):
        import subprocess

        argv = [self.runtime, "--root", self.runtime_root, *args]
        try:
            p = subprocess.run(argv, capture_output=capture, text=True)
        except FileNotFoundError:
            raise NotFound(f"OCI runtime {self.runtime} not found (set BERTH_RUNTIME or run scripts/setup.sh)") from None
        if check and p.returncode != 0:
            from berth.engine.monitor import _clean_runtime_error

            msg = _clean_runtime_error((p.stderr or "").strip().splitlines()[-1] if p.stderr else "")
            cid = next((a for a in args[1:] if len(a) == 64), args[-1])  # kill's last arg is the signal
            raise BerthError(f"{args[0]} container {cid[:12]}: {msg or 'runtime failed'}")
        return p

    # ---- create -------------------------------------------------------------

    def _choose_isolation(self, opts: CreateOptions, warnings: list[str]) -> CreateOptions:
        """``--isolation auto``: pick container or vm from what the user and the
        image declare and what this host can run (berth.engine.advise, the same
        rules as compare's "use cases" row); one line says what and why."""
        from berth.engine.advise import HostCaps, choose, explain

        labels = images.get_image(str(self.root), opts.image).config.get("Labels") or {}
        mode, reason = choose(set(opts.requires), opts.untrusted, labels, HostCaps.probe())
        warnings.append(explain(mode, reason))
        from berth.engine._record import replace

        return replace(opts, isolation=mode)

    def create(self, opts: CreateOptions, store: bool = True) -> tuple[dict[str, Any], list[str]]:
        """Create a container (docker create); returns its record and warnings.

        ``store=False`` (``run``): the record is not stored yet, and the name
        not checked: ``start(rec, new=True)`` does both while the container is
        being created, where opening the engine's database (~5 ms) is hidden.

        Raises:
            UsageError: a bad option. NotFound: unknown image. Conflict: name in use.
        Nothing is left on disk when it fails.
        """
        validate(opts)
        warnings: list[str] = []
        if opts.isolation == "auto":
            opts = self._choose_isolation(opts, warnings)
        if opts.isolation == "vm":
            from berth.engine.backends import check_isolation, check_vm_options

            check_isolation(opts.isolation, self.runtime)
            check_vm_options(opts)
        image = images.get_image(str(self.root), opts.image)
        cid = names.new_id()
        name = (opts.name or "").lstrip("/") or names.generate_name(self.state.names() if store else set())
        cdir = self.cdir(cid)
        cdir.mkdir(parents=True, mode=0o700)
        try:
            if not store and opts.isolation == "container" and self._own_runtime():
                # run: the cgroup, and the grace period its move waits for
                # (see _start), as early as can be: the period is ~14 ms
                from berth.runtime.container import ops

                self._cgroups_made[cid] = ops.precreate_cgroup(f"/berth/{cid}", cid)
            rec = self._create_in(cdir, cid, name, opts, image, warnings, store)
            rec["_generated_name"] = not (opts.name or "").lstrip("/")
            if store:
                self._store(rec)
        except BaseException:
            self._teardown_dir(cdir)
            self._drop_cgroup_made(cid)
            raise
        return rec, warnings

    def _create_in(self, cdir: Path, cid: str, name: str, opts: CreateOptions,
                   image: images.ImageInfo, warnings: list[str], store: bool = True) -> dict[str, Any]:
        from berth.engine import spec as _spec
        from berth.engine.netsetup import plan_network

        if opts.healthcheck is None and not opts.no_healthcheck:
            opts.healthcheck = _image_healthcheck(image.config.get("Healthcheck"))
        _t("image resolved")
        rootfs = images.mount_rootfs(image, cdir, volatile=opts.auto_remove)
        _t("rootfs mounted")
        opts._exposed = list(image.config.get("ExposedPorts") or {})  # for -P
        hostname = opts.hostname or (cid[:12] if opts.network != "host" else os.uname().nodename)
        net = plan_network(self, opts, cid, name, hostname, check=store)
        _t("network planned")
        mounts, mount_recs, anon = self._mounts(opts, cdir, warnings)
        mounts.extend(net.file_mounts(cdir, hostname, opts))
        if opts.init:
            mounts.append(_init_mount())
        spec, w = _spec.build_spec(opts, image.config, rootfs, cid, hostname, mounts,
                                   net.netns_path, f"/berth/{cid}")
        warnings.extend(w)
        _ensure_workdir(rootfs, spec["process"]["cwd"])
        import json

        tmp = cdir / ".config.json.tmp"
        tmp.write_text(json.dumps(spec))  # no indent: the C encoder
        os.rename(tmp, cdir / "config.json")
        _t("spec written")
        created = time.time()
        proc = spec["process"]
        # docker records the user's command; the init (--init) is HostConfig.Init
        args = proc["args"][2:] if opts.init else proc["args"]
        rec: dict[str, Any] = {
            "Id": cid,
            "Name": name,
            "CreatedTs": created,
            "Created": now_rfc3339(),
            "Image": image.ref,
            "ImageID": image.id,
            "Path": args[0],
            "Args": args[1:],
            "Isolation": opts.isolation,
            "Runtime": self.runtime,
            "Paused": False,
            "Config": {
                "Hostname": hostname,
                "User": opts.user or image.config.get("User") or "",
                "Env": proc["env"],
                "Cmd": opts.command if opts.command else (None if opts.entrypoint is not None else image.config.get("Cmd")),
                "Entrypoint": opts.entrypoint if opts.entrypoint is not None else image.config.get("Entrypoint"),
                "WorkingDir": proc["cwd"],
                "Labels": {**(image.config.get("Labels") or {}), **opts.labels},
                "Tty": opts.tty,
                "OpenStdin": opts.stdin_open,
                "StopSignal": opts.stop_signal,
                "StopTimeout": opts.stop_timeout,
                "Image": image.ref,
                "ExposedPorts": {**(image.config.get("ExposedPorts") or {}),
                                 **{f"{p.container_port}/{p.proto}": {} for p in opts.ports}},
                "Healthcheck": ({"Test": ["CMD-SHELL", opts.healthcheck.cmd],
                                 "Interval": opts.healthcheck.interval * 10**9,
                                 "Timeout": opts.healthcheck.timeout * 10**9,
                                 "Retries": opts.healthcheck.retries,
                                 "StartPeriod": opts.healthcheck.start_period * 10**9} if opts.healthcheck else None),
            },
            "HostConfig": {
                "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}" for m in opts.mounts if m.type != "tmpfs"],
                "Tmpfs": {m.target: ",".join(m.options) for m in opts.mounts if m.type == "tmpfs"},
                "Memory": opts.memory,
                "NanoCpus": int(opts.cpus * 1e9),
                "PidsLimit": opts.pids_limit,
                "ReadonlyRootfs": opts.read_only,
                "CapAdd": opts.cap_add,
                "CapDrop": opts.cap_drop,
                "SecurityOpt": opts.security_opt,
                "Privileged": opts.privileged,
                "UsernsMode": opts.userns,
                "RestartPolicy": {"Name": opts.restart.name, "MaximumRetryCount": opts.restart.max_retries},
                "AutoRemove": opts.auto_remove,
                "Init": opts.init,
                "NetworkMode": net.mode,
                "PortBindings": {f"{p.container_port}/{p.proto}": [{"HostIp": p.host_ip, "HostPort": str(p.host_port or "")}]
                                 for p in opts.ports},
                "PublishAllPorts": opts.publish_all,
                "ExtraHosts": opts.add_hosts,
                "Dns": opts.dns,
                "LogConfig": {"Type": "json-file", "Config": {"max-size": str(opts.log_max_size),
                                                              "max-file": str(opts.log_max_file)}},
                "Isolation": opts.isolation,
                "AllowSensitiveMounts": opts.allow_sensitive_mounts,
            },
            "Mounts": mount_recs,
            "AnonVolumes": anon,
            "Network": net.record(),
        }
        return rec

    def _store(self, rec: dict) -> None:
        """Insert the record; a generated name that clashed is drawn again."""
        generated = rec.pop("_generated_name", False)
        for _ in range(8):
            try:
                self.state.add_container(rec)
                break
            except Conflict:
                if not generated:
                    raise
                rec["Name"] = names.generate_name(self.state.names())
        _t("record stored")

    def _mounts(self, opts: CreateOptions, cdir: Path, warnings: list[str]):
        """OCI mounts for -v/--mount/--tmpfs, docker's Mounts records, anonymous volumes."""
        vols = None
        oci: list[dict] = []
        recs: list[dict] = []
        anon: list[str] = []
        root_real = os.path.realpath(self.root)
        for m in opts.mounts:
            if m.type == "tmpfs":
                oci.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "nodev", "noexec", *m.options]})
                recs.append({"Type": "tmpfs", "Source": "", "Destination": m.target, "RW": True})
                continue
            if m.type == "volume":
                vname = m.source
                if not vname:
                    vname = names.new_id()
                    anon.append(vname)
                if vols is None:
                    from berth.engine.volumes import Volumes

                    vols = Volumes(self.root, self.state)
                v = vols.ensure(vname, anonymous=not m.source)
                src = v["Mountpoint"]
                rec = {"Type": "volume", "Name": vname, "Source": src, "Destination": m.target,
                       "Driver": "local", "RW": not m.readonly}
            else:
                src = os.path.normpath(m.source)
                real = os.path.realpath(src)
                # below /proc, /sys, /dev, /boot, /etc too: /proc/sys or /sys/kernel are
                # host kernel settings, /dev/* host devices, /etc/* host configuration
                sensitive = real in SENSITIVE_PATHS or real == root_real or \
                    any(real.startswith(p + "/") for p in SENSITIVE_PATHS if p != "/") or \
                    real.startswith(root_real + "/") or root_real.startswith(real.rstrip("/") + "/")
                if sensitive:
                    if not opts.allow_sensitive_mounts:
                        raise UsageError(
                            f"invalid bind mount {m.source}:{m.target}: mounting {real} exposes the host "
                            "(or berth's own state); pass --allow-sensitive-mounts to do it anyway")
                    warnings.append(f"WARNING: bind-mounting sensitive host path {real} into the container")
                if not os.path.exists(src):
                    # docker's -v creates a missing host path as a directory
                    os.makedirs(src, exist_ok=True)
                rec = {"Type": "bind", "Source": src, "Destination": m.target, "RW": not m.readonly}
            opts_ = ["rbind", "ro" if m.readonly else "rw"]
            oci.append({"destination": m.target, "type": "bind", "source": src, "options": opts_})
            recs.append(rec)
        return oci, recs, anon

    # ---- start --------------------------------------------------------------

    def _lock(self, cid: str):
        """An exclusive lock on one container across processes: two ``start``s
        (or a ``start`` and an ``rm``) of it never interleave."""
        import contextlib
        import fcntl

        @contextlib.contextmanager
        def held():
            base = self.root / "locks"
            base.mkdir(exist_ok=True)
            fd = os.open(base / cid, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

        return held()

    def start(self, ref: str | dict, attach: bool = False, stdin: bool = False,
              on_listening=None, new: bool = False) -> dict[str, Any]:
        """Start a created or exited container (docker start). Returns the record.

        With ``attach``, ``on_listening()`` runs once the monitor's attach
        socket is up and before the container starts (connect there).
        ``new``: ``ref`` is the record of ``create(store=False)``, stored
        here before the container starts; when that fails (the name is
        taken), or the start fails before, nothing of it is left.

        Raises:
            CommandNotFound (127) / CannotInvoke (126): the command cannot run.
            Conflict: (``new``) the name is in use.
        """
        if not new:
            rec = self.get(ref) if isinstance(ref, str) else ref
            with self._lock(rec["Id"]):
                return self._start(self.get(rec["Id"]), attach, stdin, on_listening)
        rec = ref
        stored: list[bool] = []

        def store() -> None:
            self._store(rec)
            stored.append(True)

        try:
            with self._lock(rec["Id"]):
                return self._start(rec, attach, stdin, on_listening, store)
        except BaseException:
            if not stored:
                self._teardown_dir(self.cdir(rec["Id"]))
                try:
                    os.unlink(self.root / "locks" / rec["Id"])
                except OSError:
                    pass
            self._drop_cgroup_made(rec["Id"])
            raise

    def _start(self, rec: dict, attach: bool, stdin: bool, on_listening, store=None) -> dict[str, Any]:
        from berth.engine.monitor import MonitorArgs, launch
        from berth.engine.netsetup import network_for

        rs = self.run_state(rec)
        if rs.status in RUNNING_STATES:
            return rec  # docker: starting a running container is a no-op
        cid = rec["Id"]
        cdir = self.cdir(cid)
        if rs.monitor_alive:
            # the last run's monitor is still finishing (the runtime's delete
            # of the old run, which removes the cgroup): not beside a new run
            self._finish_monitor(self._monitor_identity(rec))
        if not os.path.ismount(cdir / "rootfs") and not (cdir / "rootfs.copied").exists():
            images.mount_rootfs(images.get_image(str(self.root), rec["ImageID"]), cdir,
                                volatile=rec["HostConfig"]["AutoRemove"])
        for f in ("status.json", "stop-requested", "health.json", "detached"):
            try:
                os.unlink(cdir / f)
            except FileNotFoundError:
                pass
        self._delete_runtime_state(cid)  # a leftover from a crashed monitor
        net = network_for(self, rec)
        hc = rec["Config"].get("Healthcheck")
        hp = rec["HostConfig"]
        exit_cmd = None
        if hp["AutoRemove"]:
            exit_cmd = [sys.executable, "-m", "berth.cli.main", "--root", str(self.root), "rm", "-f", cid]
            if attach:  # the attached CLI removes it, unless the user detached (it leaves "detached")
                exit_cmd = ["/bin/sh", "-c", 'test -e "$0" && exec "$@"', str(cdir / "detached"), *exit_cmd]
        args = MonitorArgs(
            runtime=self.runtime, runtime_root=self.runtime_root, bundle=cdir, cid=cid, cdir=cdir,
            log_path=cdir / "container.log",
            log_max_size=int(hp["LogConfig"]["Config"]["max-size"]),
            log_max_file=int(hp["LogConfig"]["Config"]["max-file"]),
            terminal=rec["Config"]["Tty"], stdin=stdin or rec["Config"]["OpenStdin"], attach=attach,
            restart=hp["RestartPolicy"]["Name"], restart_max=hp["RestartPolicy"]["MaximumRetryCount"],
            oom_file=_oom_file(cid),
            health=(hc["Test"][1], hc["Interval"] // 10**9, hc["Timeout"] // 10**9, hc["Retries"]) if hc else None,
            health_start_period=(hc.get("StartPeriod") or 0) // 10**9 if hc else 0,
            exit_command=exit_cmd,
            adopt=self._own_runtime() and rec.get("Isolation", "container") == "container",
            delete_by_client=attach and hp["AutoRemove"] and self._own_runtime(),
        )
        # the network is connected while the container is created (they
        # meet only at the start, which waits for it); a foreign runtime
        # runs create in the monitor, after it
        try:
            if args.adopt:
                from berth.runtime import oci
                from berth.runtime.container import ops

                args.bundle_config = oci.load_bundle(str(cdir))
                args.cgroup = self._cgroups_made.pop(cid, None) or \
                    ops.precreate_cgroup(args.bundle_config[0]["linux"].get("cgroupsPath"), cid)
                net.prepare()
            # (run: the network first, so a network run cannot use fails it
            # like create would, leaving nothing; then the record, whose name
            # clash also leaves nothing. Storing it in the creating fork
            # instead measured slower: its import of sqlite3 holds the GIL
            # that fork needs to answer the init promptly)
            launch(args, on_listening, meanwhile=net.up if store is None else lambda: (net.up(), store()))
            _t("start: launched")
        except BaseException:
            net.down()
            self._remove_cgroups(cid)  # precreated, or left by a create that failed
            raise
        ports = net.published()
        if ports and ports != (rec.get("Network") or {}).get("Ports"):
            rec["Network"]["Ports"] = ports
            self.state.update_container(rec)
        if rec.get("Paused"):
            rec["Paused"] = False
            self.state.update_container(rec)
        return rec

    # ---- stop, kill, wait ---------------------------------------------------

    def _wait_exit(self, rec: dict, timeout: float | None) -> _status.RunState | None:
        """Poll until the monitor records an exit; None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            rs = self.run_state(rec)
            if rs.status not in RUNNING_STATES and not rs.monitor_alive:
                return rs
            if rs.status == "exited" and rs.monitor_alive and \
                    (self.cdir(rec["Id"]) / "stop-requested").exists():
                return rs
            if rs.status == "exited" and rec["HostConfig"]["RestartPolicy"]["Name"] == "no":
                return rs
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _request_stop(self, rec: dict) -> None:
        (self.cdir(rec["Id"]) / "stop-requested").write_text("")

    def stop(self, ref: str, timeout: int | None = None, signal: str | int | None = None) -> dict[str, Any]:
        """docker stop: the stop signal (or ``signal``), then SIGKILL after ``timeout`` seconds."""
        rec = self.get(ref)
        rs = self.run_state(rec)
        if rs.status not in RUNNING_STATES:
            return rec
        self._request_stop(rec)
        t = rec["Config"].get("StopTimeout", 10) if timeout is None else timeout
        if rs.status == "paused":
            self.unpause(rec["Id"])
        sig = str(parse_signal(signal or rec["Config"].get("StopSignal") or "SIGTERM"))
        self._rt("kill", rec["Id"], sig)
        if self._wait_exit(rec, t) is None:
            self._rt("kill", rec["Id"], "KILL")
            self._wait_exit(rec, 10)
        return rec

    def kill(self, ref: str, sig: str | int = "KILL") -> dict[str, Any]:
        """docker kill: send a signal (default SIGKILL) to the container's init."""
        rec = self.get(ref)
        n = parse_signal(sig)
        rs = self.run_state(rec)
        if rs.status not in RUNNING_STATES:
            raise Conflict(f"kill container {rec['Name']}: container is not running")
        if rs.status == "restarting":
            # nothing runs during the backoff: as docker, a kill then only
            # cancels the pending restart
            self._request_stop(rec)
            self._wait_exit(rec, 10)
            return rec
        if n in (_signal.SIGKILL, _signal.SIGTERM, _signal.SIGINT):
            self._request_stop(rec)
        self._rt("kill", rec["Id"], str(n), check=True)
        if n == _signal.SIGKILL:
            self._wait_exit(rec, 10)
        return rec

    def restart(self, ref: str, timeout: int | None = None) -> dict[str, Any]:
        rec = self.stop(ref, timeout)
        return self.start(rec["Id"])

    def wait(self, ref: str) -> int:
        """docker wait: block until the container exits; its exit code."""
        rec = self.get(ref)
        rs = self.run_state(rec)
        if rs.status == "created" and not (self.cdir(rec["Id"]) / "status.json").exists():
            while self.run_state(rec).status == "created":
                time.sleep(0.1)
        rs = self._wait_exit(rec, None)
        return rs.exit_code if rs else _status.UNKNOWN_EXIT

    # ---- pause --------------------------------------------------------------

    def pause(self, ref: str) -> dict[str, Any]:
        rec = self.get(ref)
        if self.run_state(rec).status != "running":
            raise Conflict(f"pause container {rec['Name']}: container is not running")
        self._rt("pause", rec["Id"], check=True)
        rec["Paused"] = True
        self.state.update_container(rec)
        return rec

    def unpause(self, ref: str) -> dict[str, Any]:
        rec = self.get(ref)
        if not rec.get("Paused"):
            raise Conflict(f"unpause container {rec['Name']}: container is not paused")
        self._rt("resume", rec["Id"], check=True)
        rec["Paused"] = False
        self.state.update_container(rec)
        return rec

    # ---- remove -------------------------------------------------------------

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> dict[str, Any]:
        """docker rm: everything of the container goes (processes, mounts,
        cgroups, network devices and rules, files, anonymous volumes with -v)."""
        cid = self.get(ref)["Id"]
        with self._lock(cid):
            rec = self.get(cid)  # NotFound when a concurrent rm won
            out = self._remove(rec, force, volumes)
        try:
            os.unlink(self.root / "locks" / cid)
        except OSError:
            pass
        return out

    def _remove(self, rec: dict, force: bool, volumes: bool) -> dict[str, Any]:
        cid = rec["Id"]
        rs = self.run_state(rec)
        if rs.status in RUNNING_STATES:
            if not force:
                raise Conflict(f"remove container {rec['Name']}: container is {rs.status}; "
                               "stop it first or use --force")
            self._request_stop(rec)
            if rs.status == "paused":
                self._rt("resume", cid)
            self._rt("kill", cid, "KILL")
            self._wait_exit(rec, 10)
        monitor = self._monitor_identity(rec)
        # The network's teardown waits mostly in the kernel (a veth's
        # deletion waits for RCU grace periods), with the GIL released: it
        # runs in a thread beside the rest.
        from berth import threads
        from berth.engine.netsetup import network_for

        net_done = threads.start(network_for(self, rec).down)
        _t("rm: net down")
        self._teardown_dir(self.cdir(cid))
        _t("rm: dir torn down")
        # the monitor runs the runtime's delete after recording the exit
        # (not for an attached run --rm: that is done here, in-process; in a
        # thread of its own, beside the rootfs's teardown, it measured no faster)
        self._finish_monitor(monitor)
        _t("rm: monitor gone")
        self._delete_runtime_state(cid)
        self._remove_cgroups(cid)
        net_done()
        _t("rm: net joined")
        self.state.remove_container(cid)
        _t("rm: record removed")
        if volumes and rec.get("AnonVolumes"):
            from berth.engine.volumes import Volumes

            vols = Volumes(self.root, self.state)
            for v in rec["AnonVolumes"]:
                try:
                    vols.remove(v, force=True)
                except BerthError:
                    pass
        return rec

    def _own_runtime(self) -> bool:
        """Whether the OCI runtime is this berth's own berth-runtime, whose
        code can then run in-process (no interpreter per call)."""
        if self._own is None:
            self._own = os.path.realpath(self.runtime) == os.path.realpath(_venv_runtime())
        return self._own

    def _delete_runtime_state(self, cid: str) -> None:
        """``runtime delete --force`` when the runtime still has state for ``cid``
        (the monitor deletes it itself after a normal exit, except for an
        attached ``run --rm``, which gets here at once)."""
        if not os.path.exists(os.path.join(self.runtime_root, cid)):
            return
        if self._own_runtime():
            from berth.runtime import backend

            try:
                backend.for_container(self.runtime_root, cid).delete(self.runtime_root, cid, True)
                return
            except BerthError:
                pass  # gone meanwhile, or unreadable: the runtime's CLI says which
        self._rt("delete", "--force", cid)

    def _monitor_identity(self, rec: dict) -> dict | None:
        import json

        try:
            return json.loads((self.cdir(rec["Id"]) / "status.json").read_text())
        except (OSError, ValueError):
            return None

    def _finish_monitor(self, st: dict | None) -> None:
        """Wait briefly for the monitor to exit; kill it if it lingers."""
        if not st or not _status.monitor_alive(st):
            return
        try:
            # a pidfd becomes readable the moment the process exits: no polling delay
            # (checked against the recorded start time first, so it is our monitor)
            fd = os.pidfd_open(st["monitor_pid"])
        except OSError:
            fd = -1
        if fd >= 0:
            import select

            try:
                select.select([fd], [], [], 3)
            finally:
                os.close(fd)
        else:
            deadline = time.monotonic() + 3
            while _status.monitor_alive(st) and time.monotonic() < deadline:
                time.sleep(0.005)
        if _status.monitor_alive(st):
            try:
                os.kill(st["monitor_pid"], _signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _drop_cgroup_made(self, cid: str) -> None:
        """Remove the cgroup create made for a start that did not take it."""
        if self._cgroups_made.pop(cid, None) is not None:
            self._remove_cgroups(cid)

    def _remove_cgroups(self, cid: str) -> None:
        # the runtime's delete removes them; this catches a runtime that died first
        base = Path("/sys/fs/cgroup")
        for d in [base / "berth" / cid, *base.glob(f"*/berth/{cid}")]:
            try:
                d.rmdir()
            except OSError:
                pass

    def _teardown_dir(self, cdir: Path) -> None:
        try:
            images.unmount_rootfs(cdir)
        except OSError:
            pass
        from berth.fs import remove_tree

        remove_tree(cdir, ignore_errors=True)

    # ---- rename -------------------------------------------------------------

    def rename(self, ref: str, new: str) -> dict[str, Any]:
        from berth.engine.options import CreateOptions as _CO

        validate(_CO(image="x", name=new))
        rec = self.get(ref)
        if rec["Name"] == new.lstrip("/"):
            raise Conflict(f"rename container {rec['Name']}: the new name is its current name")
        rec["Name"] = new.lstrip("/")
        self.state.update_container(rec)
        return rec

    # ---- listing ------------------------------------------------------------

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None) -> list[tuple[dict, _status.RunState]]:
        """docker ps: (record, run state) pairs, newest first."""
        out = []
        filters = filters or {}
        for key in filters:
            if key not in FILTERS:
                raise UsageError(f"invalid filter {key!r}: expected one of {', '.join(FILTERS)}")
        for v in filters.get("health", []):
            if v not in ("starting", "healthy", "unhealthy", "none"):
                raise UsageError(f"invalid filter health={v!r}: expected starting, healthy, unhealthy or none")
        recs = self.state.containers()
        # before=/since=: containers created before/after the named one (docker ps)
        for key in ("before", "since"):
            for ref in filters.get(key, []):
                ts = self.get(ref)["CreatedTs"]
                recs = [r for r in recs if (r["CreatedTs"] < ts if key == "before" else r["CreatedTs"] > ts)]
        for rec in recs:
            rs = self.run_state(rec)
            if not all and rs.status not in ("running", "paused", "restarting") and "status" not in filters:
                continue
            if not _match(rec, rs, filters):
                continue
            if "health" in filters and self._health(rec, rs) not in filters["health"]:
                continue
            out.append((rec, rs))
        return out

    def _health(self, rec: dict, rs: _status.RunState) -> str:
        """docker's health filter value: none, starting, healthy or unhealthy."""
        if not rec["Config"].get("Healthcheck") or rs.status != "running":
            return "none"
        import json

        try:
            return json.loads((self.cdir(rec["Id"]) / "health.json").read_text()).get("Status", "starting")
        except (OSError, ValueError):
            return "starting"

    def images_in_use(self) -> list[str]:
        return [r["ImageID"] for r in self.state.containers()]


def _match(rec: dict, rs: _status.RunState, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "status" and rs.status not in values:
            return False
        if key == "name" and not any(v.lstrip("/") in rec["Name"] for v in values):
            return False
        if key == "id" and not any(rec["Id"].startswith(v) for v in values):
            return False
        if key == "ancestor" and not any(v in (rec["Image"], rec["ImageID"]) or rec["ImageID"].startswith("sha256:" + v) for v in values):
            return False
        if key == "exited" and (rs.status != "exited" or str(rs.exit_code) not in values):
            return False
        if key == "isolation" and rec.get("Isolation", "container") not in values:
            return False
        if key == "network":
            net = rec.get("Network") or {}
            if not {net.get("Network"), net.get("Mode")} & set(values):
                return False
        if key == "volume":
            have = {m.get("Name") for m in rec.get("Mounts", [])} | {m.get("Source") for m in rec.get("Mounts", [])} | \
                {m.get("Destination") for m in rec.get("Mounts", [])}
            if not have & set(values):
                return False
        if key == "label":
            labels = rec["Config"].get("Labels") or {}
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
    return True


def _ensure_workdir(rootfs, cwd: str) -> None:
    """docker creates a missing working directory (root-owned, 0755) before
    the start. The path is resolved inside the rootfs, so an image's symlink
    (say /w -> /) cannot make berth create directories on the host."""
    if cwd in ("", "/"):
        return
    from berth.engine.fsutil import is_within, resolve_in_root

    target = resolve_in_root(rootfs, cwd)
    if os.path.lexists(target):
        return  # a file there fails at start, as in docker
    try:
        os.makedirs(target, mode=0o755)
    except OSError as e:
        raise UsageError(f"create working directory {cwd}: {e.strerror}") from None
    if not is_within(rootfs, target):
        raise UsageError(f"create working directory {cwd}: it resolves outside the container")


def _image_healthcheck(hc: dict | None):
    """The image's HEALTHCHECK (docker's config shape; durations in ns)."""
    from berth.engine.options import Healthcheck

    test = (hc or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        cmd = test[1] if len(test) > 1 else ""
    elif test[0] == "CMD":
        import shlex

        cmd = shlex.join(test[1:])
    else:
        return None
    sec = lambda v, d: max(1, int(v) // 10**9) if v else d  # noqa: E731
    return Healthcheck(cmd, sec(hc.get("Interval"), 30), sec(hc.get("Timeout"), 30), int(hc.get("Retries") or 3),
                       sec(hc.get("StartPeriod"), 0))


def _oom_file(cid: str) -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return f"/sys/fs/cgroup/berth/{cid}/memory.events"
    return f"/sys/fs/cgroup/memory/berth/{cid}/memory.oom_control"


def _init_mount() -> dict:
    from berth.paths import libexec

    exe = libexec("berth-init")
    if not exe.exists():
        raise NotFound(f"--init: {exe} is missing (run scripts/setup.sh)")
    return {"destination": "/dev/init", "type": "bind", "source": str(exe), "options": ["bind", "ro"]}


def sensitive(path: str) -> bool:
    return os.path.realpath(path) in SENSITIVE_PATHS


__all__ = ["Engine", "MountSpec", "parse_signal"]

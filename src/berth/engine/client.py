"""berth's Python API, shaped like docker-py's high-level client.

    import berth
    client = berth.Client()
    out = client.containers.run("busybox", ["echo", "hi"], remove=True)
    c = client.containers.run("busybox", "sleep 60", detach=True, isolation="container")
    c.exec_run("ls /"); c.stop(); c.remove()

The ``berth`` CLI is a thin layer over this same API.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from berth.engine.containers import Engine
from berth.engine.models import Container, ContainerError, ExecResult, Network, Volume
from berth.engine.options import (
    CreateOptions,
    Healthcheck,
    MountSpec,
    PortSpec,
    RestartPolicy,
    parse_memory,
    parse_mount,
    parse_port,
    parse_volume,
)
from berth.errors import UsageError
from berth.paths import DEFAULT_ENGINE_ROOT

__all__ = ["Client", "Container", "ContainerError", "ExecResult", "Network", "Volume"]


class Client:
    """Entry point of the API. Similar to ``docker.from_env()``.

    Args:
        root: engine state directory (default ``$BERTH_ROOT`` or /var/lib/berth).
        runtime: OCI runtime binary (default ``$BERTH_RUNTIME`` or berth-runtime).
    """

    def __init__(self, root: str | None = None, runtime: str | None = None):
        self.root = os.path.abspath(root or os.environ.get("BERTH_ROOT") or DEFAULT_ENGINE_ROOT)
        self.engine = Engine(self.root, runtime)
        self.containers = ContainerCollection(self)
        self.images = ImageCollection(self)
        self.volumes = VolumeCollection(self)
        self.networks = NetworkCollection(self)

    def _volumes(self):
        from berth.engine.volumes import Volumes

        return Volumes(self.root, self.engine.state)

    def info(self) -> dict[str, Any]:
        """Similar to the ``docker info`` command."""
        from berth.engine.system import info

        return info(self.engine)

    def version(self) -> dict[str, Any]:
        """Similar to the ``docker version`` command."""
        from berth.engine.system import version

        return version(self.engine)


def _ports(ports: dict | None) -> list[PortSpec]:
    """docker-py's ports: {'80/tcp': 8080 | ('127.0.0.1', 8080) | [8080, 8081] | None}."""
    out: list[PortSpec] = []
    for key, val in (ports or {}).items():
        cport, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        vals = val if isinstance(val, list) else [val]
        for v in vals:
            if v is None:
                spec = f"{cport}/{proto}"
            elif isinstance(v, tuple):
                hp = v[1] if len(v) > 1 and v[1] is not None else ""  # ('127.0.0.1', None): a random port
                spec = f"{v[0]}:{hp}:{cport}/{proto}"
            else:
                spec = f"{v}:{cport}/{proto}"
            out.extend(parse_port(spec))
    return out


def _volumes(volumes: dict | list | None) -> list[MountSpec]:
    """docker-py's volumes: {'/host' or 'name': {'bind': '/c', 'mode': 'ro'}} or ['a:/b:ro']."""
    if volumes is None:
        return []
    if isinstance(volumes, dict):
        specs = [f"{src}:{v['bind']}:{v.get('mode', 'rw')}" for src, v in volumes.items()]
    else:
        specs = list(volumes)
    return [parse_volume(s) for s in specs]


def _duration_s(ns: int | None, default: int) -> int:
    return default if not ns else max(1, int(ns) // 10**9)


def create_options(image: str, command: str | list[str] | None = None, **kw: Any) -> CreateOptions:
    """docker-py's ``containers.create`` keyword arguments -> CreateOptions."""
    known = {
        "name", "environment", "ports", "volumes", "entrypoint", "working_dir", "user", "hostname",
        "tty", "stdin_open", "network", "network_mode", "mem_limit", "nano_cpus", "cpus",
        "pids_limit", "read_only", "cap_add", "cap_drop", "security_opt", "privileged",
        "userns_mode", "restart_policy", "auto_remove", "init", "labels", "stop_signal",
        "healthcheck", "isolation", "tmpfs", "mounts", "dns", "extra_hosts", "publish_all_ports",
        "log_config", "network_aliases", "allow_sensitive_mounts", "stop_timeout", "detach",
        "kernel", "accel", "requires", "untrusted",
    }
    bad = set(kw) - known
    if bad:
        raise UsageError(f"create container: unknown argument {sorted(bad)[0]!r}")
    if isinstance(command, str):
        command = shlex.split(command)
    entry = kw.get("entrypoint")
    if isinstance(entry, str):
        entry = shlex.split(entry)
    env = kw.get("environment") or []
    if isinstance(env, dict):
        env = [f"{k}={v}" for k, v in env.items()]
    mounts = _volumes(kw.get("volumes"))
    for m in kw.get("mounts") or []:
        mounts.append(parse_mount(m) if isinstance(m, str) else m)
    for path, o in (kw.get("tmpfs") or {}).items():
        mounts.append(MountSpec("tmpfs", path, "", False, tuple(x for x in (o or "").split(",") if x)))
    rp = kw.get("restart_policy") or {}
    labels = kw.get("labels") or {}
    if isinstance(labels, list):
        labels = {k: "" for k in labels}
    hc = kw.get("healthcheck")
    health = None
    no_health = bool(hc) and (hc.get("test") or hc.get("Test")) in (["NONE"], "NONE")  # docker-py's off switch
    if hc and not no_health:
        test = hc.get("test") or hc.get("Test")
        if isinstance(test, list):
            test = test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:] if test[0] == "CMD" else test)
        for key in ("interval", "timeout", "retries", "start_period"):
            if int(hc.get(key) or 0) < 0:
                raise UsageError(f"create container: healthcheck {key} cannot be negative")
        health = Healthcheck(test, _duration_s(hc.get("interval"), 30), _duration_s(hc.get("timeout"), 30),
                             int(hc.get("retries") or 3), _duration_s(hc.get("start_period"), 0))
    cpus = float(kw.get("cpus") or 0) or (int(kw["nano_cpus"]) / 1e9 if kw.get("nano_cpus") else 0.0)
    extra = kw.get("extra_hosts") or {}
    if isinstance(extra, dict):
        extra = [f"{h}:{ip}" for h, ip in extra.items()]
    log = (kw.get("log_config") or {}).get("Config") or (kw.get("log_config") or {}).get("config") or {}
    from berth.engine.options import DEFAULT_LOG_MAX_FILE, DEFAULT_LOG_MAX_SIZE, parse_size

    return CreateOptions(
        image=image, command=list(command) if command else None, entrypoint=entry,
        name=kw.get("name"), env=list(env), workdir=kw.get("working_dir"), user=kw.get("user") or None,
        hostname=kw.get("hostname"), tty=bool(kw.get("tty")), stdin_open=bool(kw.get("stdin_open")),
        ports=_ports(kw.get("ports")), publish_all=bool(kw.get("publish_all_ports")), mounts=mounts,
        network=kw.get("network") or kw.get("network_mode") or "default",
        network_aliases=list(kw.get("network_aliases") or []),
        add_hosts=list(extra), dns=list(kw.get("dns") or []),
        memory=parse_memory(kw["mem_limit"]) if kw.get("mem_limit") else 0, cpus=cpus,
        pids_limit=int(kw["pids_limit"]) if kw.get("pids_limit") is not None else 2048,
        read_only=bool(kw.get("read_only")), cap_add=list(kw.get("cap_add") or []),
        cap_drop=list(kw.get("cap_drop") or []), security_opt=list(kw.get("security_opt") or []),
        privileged=bool(kw.get("privileged")), userns=kw.get("userns_mode") or "host",
        restart=RestartPolicy(rp.get("Name", "no") or "no", int(rp.get("MaximumRetryCount", 0) or 0)),
        auto_remove=bool(kw.get("auto_remove")), init=bool(kw.get("init")), labels=dict(labels),
        stop_signal=kw.get("stop_signal") or "SIGTERM", stop_timeout=int(kw.get("stop_timeout") or 10),
        healthcheck=health, no_healthcheck=no_health,
        log_max_size=parse_size(log.get("max-size", DEFAULT_LOG_MAX_SIZE), "log max-size"),
        log_max_file=int(log.get("max-file", DEFAULT_LOG_MAX_FILE)),
        isolation=kw.get("isolation") or "container",
        allow_sensitive_mounts=bool(kw.get("allow_sensitive_mounts")),
        kernel=str(kw["kernel"]) if kw.get("kernel") is not None else None, accel=kw.get("accel") or "auto",
        requires=[kw["requires"]] if isinstance(kw.get("requires"), str) else list(kw.get("requires") or []),
        untrusted=bool(kw.get("untrusted")),
    )


class ContainerCollection:
    """``client.containers``. Similar to docker-py's ``ContainerCollection``."""

    def __init__(self, client: Client):
        self.client = client

    @property
    def _engine(self) -> Engine:
        return self.client.engine

    def _model(self, rec: dict) -> Container:
        from berth.engine.inspect import inspect_container

        return Container(self.client, inspect_container(self._engine, rec))

    def create(self, image: str, command: str | list[str] | None = None, **kwargs: Any) -> Container:
        """Create a container without starting it. Similar to ``docker create``.

        Args:
            image: image reference (``busybox``).
            command: command to run (string or list).
            **kwargs: docker-py's names: name, environment, ports, volumes, entrypoint,
                working_dir, user, hostname, tty, stdin_open, network, mem_limit, nano_cpus,
                pids_limit, read_only, cap_add, cap_drop, security_opt, privileged,
                restart_policy, auto_remove, init, labels, stop_signal,
                healthcheck (docker-py's dict: test, and interval, timeout, start_period in
                nanoseconds, retries; {"test": ["NONE"]} disables the image's),
                isolation ("container", "vm" or "auto"), tmpfs, mounts, dns, extra_hosts, log_config;
                with isolation="auto" also requires (list of "strong-isolation", "own-kernel",
                "fast-start") and untrusted (bool): berth picks the mode and says why;
                for VMs also kernel (path of the guest kernel) and accel ("auto", "kvm", "tcg").
        Returns:
            Container
        Raises:
            NotFound: unknown image. UsageError: bad option. Conflict: name in use.
        """
        kwargs.pop("detach", None)
        rec, _ = self._engine.create(create_options(image, command, **kwargs))
        return self._model(rec)

    def run(self, image: str, command: str | list[str] | None = None, stdout: bool = True,
            stderr: bool = False, remove: bool = False, detach: bool = False, **kwargs: Any):
        """Create and start a container. Similar to the ``docker run`` command.

        Args:
            image, command, **kwargs: as ``create``.
            detach: return the running Container at once.
            remove: remove it when it exits (foreground), or set auto_remove (detached).
            stdout, stderr: which streams to return (foreground).
        Returns:
            The container's output (bytes) in the foreground, else a Container.
        Raises:
            ContainerError: it exited non-zero (foreground).
            CommandNotFound (127) / CannotInvoke (126): the command cannot run.
        """
        if detach and remove:
            kwargs["auto_remove"] = True
        c = self.create(image, command, **kwargs)
        try:
            self._engine.start(c.id)
        except BaseException:
            if remove or kwargs.get("auto_remove"):
                self._engine.remove(c.id, force=True)
            raise
        if detach:
            c.reload()
            return c
        code = self._engine.wait(c.id)
        out = c.logs(stdout=stdout, stderr=stderr)
        err = c.logs(stdout=False, stderr=True) if code != 0 else b""
        if remove:
            self._engine.remove(c.id, force=True)
        if code != 0:
            raise ContainerError(c, code, command, image, err)
        return out

    def get(self, container_id: str) -> Container:
        """By ID, unique ID prefix, or name. Raises NotFound."""
        return self._model(self._engine.get(container_id))

    def list(self, all: bool = False, filters: dict | None = None, limit: int = -1) -> list[Container]:
        """Similar to ``docker ps`` (``all``: include stopped ones)."""
        f = {k: (v if isinstance(v, list) else [v]) for k, v in (filters or {}).items()}
        recs = self._engine.list(all=all, filters=f)
        out = [self._model(r) for r, _ in recs]
        return out[:limit] if limit >= 0 else out

    def prune(self, filters: dict | None = None) -> dict[str, Any]:
        """Remove stopped containers. Similar to ``docker container prune``."""
        gone = []
        for rec, rs in self._engine.list(all=True):
            if rs.status in ("exited", "created"):
                self._engine.remove(rec["Id"], force=True)
                gone.append(rec["Id"])
        return {"ContainersDeleted": gone, "SpaceReclaimed": 0}


class ImageCollection:
    """``client.images``: thin over the image store. Similar to docker-py's."""

    def __init__(self, client: Client):
        self.client = client

    def _store(self):
        from berth.image.store import ImageStore

        store = ImageStore(self.client.root)
        # images that containers use are never removed from under them
        store.set_in_use_hook(self.client.engine.images_in_use)
        return store

    def get(self, name: str):
        """An image (``berth.image.store.Image``) by reference or ID. Raises NotFound."""
        from berth.engine.images import _not_found
        from berth.errors import NotFound

        try:
            return self._store().get(name)
        except NotFound:
            raise _not_found(name) from None

    def list(self) -> list:
        """Similar to ``docker images``."""
        return self._store().list()

    def pull(self, repository: str, tag: str | None = None, platform: str | None = None,
             insecure: bool = False):
        """Similar to ``docker pull``. Returns the Image."""
        from berth.image.registry import pull

        ref = f"{repository}:{tag}" if tag else repository
        return pull(self._store(), ref, platform=platform, insecure=insecure)

    def build(self, path: str, tag: str | list[str] | None = None, dockerfile: str | None = None,
              buildargs: dict | None = None, target: str | None = None, nocache: bool = False,
              quiet: bool = True):
        """Build an image from a context directory. Similar to ``docker build``.

        Returns:
            the built Image.
        """
        from pathlib import Path

        from berth.image import containerfile
        from berth.image.build import Builder, BuildOptions

        ctx = Path(path).resolve()
        text = (Path(dockerfile) if dockerfile else next(
            (ctx / n for n in ("Containerfile", "Dockerfile") if (ctx / n).is_file()), ctx / "Containerfile")
        ).read_text()
        opts = BuildOptions(context=ctx, build_args=dict(buildargs or {}), target=target, no_cache=nocache,
                            quiet=quiet, runtime=self.client.engine.runtime)
        tags = [tag] if isinstance(tag, str) else list(tag or [])
        return Builder(self._store(), Path(self.client.root), containerfile.parse(text), opts).build(tags)

    def remove(self, image: str, force: bool = False) -> None:
        """Similar to ``docker rmi``. Raises Conflict when a container uses it."""
        self._store().remove(image, force=force)


class VolumeCollection:
    """``client.volumes``. Similar to docker-py's ``VolumeCollection``."""

    def __init__(self, client: Client):
        self.client = client

    def create(self, name: str | None = None, driver: str | None = None, driver_opts: dict | None = None,
               labels: dict | None = None, **kwargs: Any) -> Volume:
        """Create a named volume (a random name when ``name`` is None). Similar to
        ``docker volume create``: an existing name is returned as it is.

        Args:
            driver: ``"local"`` (the only driver; default). labels: ``{key: value}``.
        Raises:
            UsageError: invalid name, another driver, or driver options.
        """
        if driver not in (None, "local"):
            raise UsageError(f"create volume: driver {driver!r} is not supported (local only)")
        if driver_opts or kwargs:
            raise UsageError(f"create volume: {'driver options' if driver_opts else sorted(kwargs)[0]!r} "
                             "not supported")
        return Volume(self.client, self.client._volumes().create(name, labels))

    def get(self, volume_id: str) -> Volume:
        """By name. Similar to ``docker volume inspect``. Raises NotFound."""
        return Volume(self.client, self.client._volumes().get(volume_id))

    def list(self, filters: dict | None = None, **kwargs: Any) -> list[Volume]:
        """Similar to ``docker volume ls``.

        Args:
            filters: ``name`` (a part), ``label`` (KEY or KEY=VALUE), ``driver``,
                ``dangling`` (True: no container uses it).
        """
        return [Volume(self.client, v) for v in self.client._volumes().list(filters)]

    def prune(self, filters: dict | None = None) -> dict[str, Any]:
        """Remove unused volumes. Similar to ``docker volume prune``: anonymous
        volumes, named ones too with ``filters={"all": True}``; ``label`` filters.

        Returns:
            ``{"VolumesDeleted": [names], "SpaceReclaimed": bytes}``
        """
        f = dict(filters or {})
        bad = set(f) - {"all", "label"}
        if bad:
            raise UsageError(f"prune volumes: invalid filter {sorted(bad)[0]!r}")
        every = f.get("all")
        every = every[0] if isinstance(every, list) else every
        labels = f.get("label")
        names, size = self.client._volumes().prune(
            all_volumes=str(every).lower() in ("true", "1") or every is True,
            labels=[labels] if isinstance(labels, str) else labels)
        return {"VolumesDeleted": names, "SpaceReclaimed": size}


class NetworkCollection:
    """``client.networks``: bridge and user-defined networks. Similar to docker-py's
    ``NetworkCollection``."""

    def __init__(self, client: Client):
        self.client = client

    def _nm(self):
        from berth.engine.netconnect import manager

        return manager(self.client.root)

    def create(self, name: str, driver: str | None = None, internal: bool = False, labels: dict | None = None,
               ipam: dict | None = None, **kwargs: Any) -> Network:
        """Create a bridge network. Similar to ``docker network create``.

        Args:
            name: the network's name (also its DNS scope).
            driver: ``"bridge"`` (the only driver; default).
            internal: no outbound access.
            labels: ``{key: value}``.
            ipam: docker-py's ``IPAMConfig`` shape, ``{"Config": [{"Subnet": "10.90.0.0/24",
                "Gateway": "10.90.0.1"}]}`` (or ``subnet=``/``gateway=`` keywords).
        Returns:
            Network
        Raises:
            Conflict: the name exists or the subnet overlaps one in use. UsageError: bad input.
        """
        if driver not in (None, "bridge"):
            raise UsageError(f"network create: driver {driver!r} is not supported (bridge only)")
        bad = set(kwargs) - {"subnet", "gateway", "check_duplicate", "attachable", "scope", "enable_ipv6"}
        if bad:
            raise UsageError(f"network create: unknown argument {sorted(bad)[0]!r}")
        if kwargs.get("enable_ipv6"):
            raise UsageError("network create: IPv6 is not supported")
        pools = (ipam or {}).get("Config") or (ipam or {}).get("pool_configs") or [{}]
        if len(pools) > 1:
            raise UsageError("network create: only one IPAM pool (subnet) per network")
        pool = {k.lower(): v for k, v in pools[0].items()}
        nm = self._nm()
        net = nm.create(name, subnet=kwargs.get("subnet") or pool.get("subnet"),
                        gateway=kwargs.get("gateway") or pool.get("gateway"), internal=internal,
                        labels=dict(labels or {}))
        return Network(self.client, nm.inspect(net.id))

    def get(self, network_id: str, **kwargs: Any) -> Network:
        """By name, ID or unique ID prefix. Similar to ``docker network inspect``.

        Raises:
            NotFound: no such network.
        """
        return Network(self.client, self._nm().inspect(network_id))

    def list(self, names: list[str] | None = None, ids: list[str] | None = None,
             filters: dict | None = None, **kwargs: Any) -> list[Network]:
        """Similar to ``docker network ls``.

        Args:
            names: only these names. ids: only these IDs (or prefixes).
            filters: docker's: ``name``, ``id`` (a part), ``label`` (KEY or KEY=VALUE),
                ``driver``, ``type`` (``custom`` or ``builtin``), ``dangling``.
        """
        from berth.engine.netconnect import select

        nm = self._nm()
        return [Network(self.client, d) for d in select([nm.inspect(n.id) for n in nm.list()], names, ids, filters)]

    def prune(self, filters: dict | None = None) -> dict[str, Any]:
        """Remove user networks without containers. Similar to ``docker network prune``.

        Args:
            filters: ``{"label": ["KEY" or "KEY=VALUE", ...]}``.
        Returns:
            ``{"NetworksDeleted": [names]}``
        """
        from berth.engine.netconnect import prune

        return {"NetworksDeleted": prune(self._nm(), filters)}

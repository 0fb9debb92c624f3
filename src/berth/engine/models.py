"""High-level objects of the Python API, shaped like docker-py's models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from berth.errors import BerthError, UsageError


class ContainerError(BerthError):
    """A container run in the foreground exited non-zero (like docker-py's).

    Attributes: container, exit_status, command, image, stderr.
    """

    def __init__(self, container: Container, exit_status: int, command, image: str, stderr: bytes):
        self.container = container
        self.exit_status = exit_status
        self.command = command
        self.image = image
        self.stderr = stderr
        err = f": {stderr.decode(errors='replace').strip()}" if stderr else ""
        super().__init__(f"command {command!r} in image {image!r} returned non-zero exit status {exit_status}{err}")


class ExecResult(NamedTuple):
    """Result of ``Container.exec_run``: exit code (None when detached) and output."""

    exit_code: int | None
    output: Any


class _Model:
    """What containers, volumes and networks share (docker-py's ``Model``):
    ``attrs``, equality by type and ID, ``<Kind: short_id>``."""

    def __init__(self, client, attrs: dict[str, Any]):
        self.client = client
        self.attrs = attrs

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.short_id}>"

    def __eq__(self, other) -> bool:
        return isinstance(other, type(self)) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


class Container(_Model):
    """One container. Similar to docker-py's ``Container``."""

    @property
    def _engine(self):
        return self.client.engine

    @property
    def id(self) -> str:
        return self.attrs["Id"]

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def name(self) -> str:
        return self.attrs["Name"].lstrip("/")

    @property
    def status(self) -> str:
        """created, running, paused, restarting or exited (as of the last reload)."""
        return self.attrs["State"]["Status"]

    @property
    def labels(self) -> dict[str, str]:
        return self.attrs["Config"].get("Labels") or {}

    @property
    def image(self):
        return self.client.images.get(self.attrs["Image"])

    @property
    def ports(self) -> dict[str, Any]:
        return self.attrs["NetworkSettings"]["Ports"]

    def reload(self) -> None:
        """Refresh ``attrs`` from the engine (docker-py's ``reload``)."""
        from berth.engine.inspect import inspect_container

        self.attrs = inspect_container(self._engine, self._engine.get(self.id))

    def start(self) -> None:
        """Start this container. Similar to the ``docker start`` command."""
        self._engine.start(self.id)
        self.reload()

    def stop(self, timeout: int | None = None) -> None:
        """Stop: the stop signal, then SIGKILL after ``timeout`` s. Similar to ``docker stop``."""
        self._engine.stop(self.id, timeout)
        self.reload()

    def kill(self, signal: str | int | None = None) -> None:
        """Send a signal (default SIGKILL). Similar to the ``docker kill`` command."""
        self._engine.kill(self.id, signal or "KILL")
        self.reload()

    def restart(self, timeout: int | None = None) -> None:
        """Similar to the ``docker restart`` command."""
        self._engine.restart(self.id, timeout)
        self.reload()

    def pause(self) -> None:
        """Freeze all processes. Similar to the ``docker pause`` command."""
        self._engine.pause(self.id)
        self.reload()

    def unpause(self) -> None:
        """Similar to the ``docker unpause`` command."""
        self._engine.unpause(self.id)
        self.reload()

    def rename(self, name: str) -> None:
        """Similar to the ``docker rename`` command."""
        self._engine.rename(self.id, name)
        self.reload()

    def remove(self, v: bool = False, force: bool = False) -> None:
        """Remove the container and everything it holds. Similar to ``docker rm``.

        Args:
            v: also remove its anonymous volumes.
            force: kill it first if it runs.
        Raises:
            Conflict: it runs and ``force`` is false.
        """
        self._engine.remove(self.id, force=force, volumes=v)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until it exits. Similar to ``docker wait``.

        Returns:
            ``{"StatusCode": code, "Error": None}``
        """
        code = self._engine.wait(self.id)
        return {"StatusCode": code, "Error": None}

    def logs(self, stdout: bool = True, stderr: bool = True, stream: bool = False,
             timestamps: bool = False, tail: str | int = "all", since: float | None = None,
             follow: bool | None = None) -> bytes | Iterator[bytes]:
        """The container's output. Similar to the ``docker logs`` command.

        Args:
            stream: return an iterator of chunks instead of bytes.
            follow: keep following (default: same as ``stream``).
            tail: number of lines at the end, or "all".
        Returns:
            bytes, or an iterator of bytes with ``stream``.
        """
        from berth.engine.logs import read_logs

        rec = self._engine.get(self.id)
        cdir = self._engine.cdir(self.id)
        n = None if tail == "all" else int(tail)
        follow = stream if follow is None else follow
        max_file = int(rec["HostConfig"]["LogConfig"]["Config"]["max-file"])

        def alive() -> bool:
            return self._engine.run_state(rec).status in ("running", "paused", "restarting")

        def gen() -> Iterator[bytes]:
            for e in read_logs(cdir / "container.log", max_file, tail=n, since=since,
                               follow=follow, alive=alive):
                if (e.stream == "stdout" and stdout) or (e.stream == "stderr" and stderr):
                    yield (e.time.encode() + b" " if timestamps else b"") + e.data

        if stream:
            return gen()
        return b"".join(gen())

    def exec_run(self, cmd: str | list[str], stdout: bool = True, stderr: bool = True,
                 stdin: bool = False, tty: bool = False, privileged: bool = False,
                 user: str = "", detach: bool = False, stream: bool = False,
                 environment: dict | list | None = None, workdir: str | None = None) -> ExecResult:
        """Run a command inside the running container. Similar to ``docker exec``.

        Returns:
            ExecResult(exit_code, output): output is bytes (None when detached).
        Raises:
            Conflict: the container is not running. CommandNotFound: no such executable.
        """
        import shlex

        from berth.engine.execute import exec_argv, run_exec

        argv = exec_argv(self._engine, self._engine.get(self.id), shlex.split(cmd) if isinstance(cmd, str) else list(cmd),
                         detach=detach, tty=False, env=_env_list(environment), user=user or None,
                         workdir=workdir, privileged=privileged)
        code, out = run_exec(argv, capture=not detach)
        if detach:
            return ExecResult(None, None)
        return ExecResult(code, out)

    def top(self) -> dict[str, Any]:
        """Processes in the container. Similar to the ``docker top`` command."""
        from berth.engine.observe import top

        titles, rows = top(self._engine, self._engine.get(self.id))
        return {"Titles": titles, "Processes": rows}

    def stats(self, stream: bool = False, decode: bool = True) -> dict[str, Any]:
        """Resource usage from cgroups. Similar to ``docker stats --no-stream``."""
        from berth.engine.observe import stats

        return stats(self._engine, self._engine.get(self.id))


def _env_list(environment: dict | list | None) -> list[str]:
    if environment is None:
        return []
    if isinstance(environment, dict):
        return [f"{k}={v}" for k, v in environment.items()]
    return list(environment)


class Volume(_Model):
    """A named volume. Similar to docker-py's ``Volume``."""

    @property
    def id(self) -> str:
        return self.attrs["Name"]

    name = id

    short_id = id

    def reload(self) -> None:
        """Refresh ``attrs``. Raises NotFound once it is removed."""
        self.attrs = self.client._volumes().get(self.name)

    def remove(self, force: bool = False) -> None:
        """Similar to the ``docker volume rm`` command. Raises Conflict while in use
        (also with ``force``, as docker's; ``force`` makes a removed volume no error)."""
        self.client._volumes().remove(self.name, force=force)


class Network(_Model):
    """A network. Similar to docker-py's ``Network``; ``attrs`` is ``network inspect``'s."""

    @property
    def id(self) -> str:
        return self.attrs["Id"]

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def name(self) -> str:
        return self.attrs["Name"]

    @property
    def containers(self) -> list[Container]:
        """The containers connected to it (as of the last ``reload``)."""
        from berth.errors import NotFound

        out = []
        for cid in self.attrs.get("Containers") or {}:
            try:
                out.append(self.client.containers.get(cid))
            except NotFound:
                pass  # removed since the last reload
        return out


    def _nm(self):
        from berth.engine.netconnect import manager

        return manager(self.client.root)

    def reload(self) -> None:
        """Refresh ``attrs``. Raises NotFound once the network is removed."""
        self.attrs = self._nm().inspect(self.id)

    def connect(self, container, aliases: list[str] | None = None, ipv4_address: str | None = None,
                **kwargs: Any) -> None:
        """Connect a container (Container, ID or name). Similar to ``docker network connect``.

        Args:
            aliases: extra DNS names of the container on this network.
            ipv4_address: a fixed address in the network's subnet.
        Raises:
            Conflict: already connected, or the container has no namespace of its own
                (``--network none|host|container:``, a VM). A container that has not
                started yet is connected when it starts.
            UsageError: bad alias or address, or an unsupported argument (links, IPv6).
        """
        from berth.engine.netconnect import connect

        bad = sorted(k for k, v in kwargs.items() if v)
        if bad:
            raise UsageError(f"network connect: argument {bad[0]!r} is not supported")
        connect(self.client.engine, self.id, getattr(container, "id", container), aliases or (), ipv4_address)

    def disconnect(self, container, force: bool = False) -> None:
        """Disconnect a container (Container, ID or name). Similar to ``docker network disconnect``.

        Args:
            force: also when the engine no longer knows the container.
        Raises:
            NotFound: it is not connected.
        """
        from berth.engine.netconnect import disconnect

        disconnect(self.client.engine, self.id, getattr(container, "id", container), force=force)

    def remove(self) -> None:
        """Similar to ``docker network rm``. Raises Conflict while containers use it."""
        self._nm().remove(self.id)

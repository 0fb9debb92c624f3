"""One call to wire a container's network for its mode, and one to undo it.

``setup_container`` does the run order of the package docstring (namespace,
endpoint, ports, hosts/resolv.conf) and, if any step fails, undoes the ones
before it, so a failed ``berth run`` leaves no namespace, device, address,
rule or file behind. ``teardown_container`` is what ``rm`` calls.
"""

from __future__ import annotations

import os
from pathlib import Path

from berth._sys import netns
from berth.engine._record import factory, record
from berth.engine.network.endpoint import Endpoint, prepare_netns
from berth.engine.network.mode import NetworkMode, parse_network_mode
from berth.engine.network.networks import NetworkManager
from berth.engine.network.ports import PortMapping
from berth.errors import UsageError


@record
class ContainerNetwork:
    """What the engine puts in config.json and records for the container."""

    mode: NetworkMode
    namespace: dict | None  # the linux.namespaces entry, None for host
    netns_path: str  # "" for host
    owns_netns: bool  # True when teardown must remove the namespace file
    endpoints: list[Endpoint] = factory(list)
    ports: list[PortMapping] = factory(list)
    hosts: Path | None = None
    resolv_conf: Path | None = None


def setup_container(nm: NetworkManager, container_id: str, mode: NetworkMode | str | None,
                    netns_path: str, *, name: str = "", hostname: str = "",
                    aliases: list[str] | tuple[str, ...] = (), ip: str | None = None,
                    mac: str | None = None, ports: list[PortMapping] | tuple = (),
                    extra_hosts: list[tuple[str, str]] | tuple = (),
                    dns_servers: list[str] | tuple = (), dns_search: list[str] | tuple = (),
                    dns_options: list[str] | tuple = ()) -> ContainerNetwork:
    """Wire the network of one container before its workload starts.

    ``netns_path``: where to pin the new namespace (none/bridge/NAME: it must
    not exist), or the peer's namespace for ``container:ID`` (resolved by
    the engine: its pinned path or ``/proc/PID/ns/net``); ignored for host.
    Raises ``UsageError`` for options the mode cannot honour (docker's
    "conflicting options"), ``Conflict``/``RuntimeFailure`` from the steps.
    """
    if not isinstance(mode, NetworkMode):
        mode = parse_network_mode(mode)
    if ports and mode.kind != "bridge":
        raise UsageError(f"publish ports: conflicting options: port publishing and the "
                         f"{mode.kind} network mode")
    if (aliases or ip or mac) and mode.kind != "bridge":
        raise UsageError(f"network options (--network-alias, --ip, --mac-address) need a "
                         f"bridge network, not {mode.kind}")
    hostname = hostname or container_id[:12]
    owns = mode.needs_netns
    net = ContainerNetwork(mode, None if mode.kind == "host" else mode.namespace_entry(netns_path),
                           "" if mode.kind == "host" else netns_path, owns)
    if owns:
        netns.create_netns(netns_path)
    try:
        if mode.kind == "none":
            prepare_netns(netns_path)
        elif mode.kind == "bridge":
            net.endpoints.append(nm.connect(mode.network, container_id, netns_path, name,
                                            aliases, ip, mac))
            net.ports = nm.publish(container_id, list(ports))
        elif mode.kind == "container" and not netns.is_netns(netns_path):
            raise UsageError(f"join network of container {mode.container}: {netns_path} is "
                             "not a network namespace (is the container running?)")
        net.hosts, net.resolv_conf = nm.write_files(
            container_id, hostname, mode=mode.kind, extra_hosts=extra_hosts,
            dns_servers=dns_servers, dns_search=dns_search, dns_options=dns_options)
    except BaseException:
        teardown_container(nm, container_id, netns_path if owns else None)
        raise
    return net


def teardown_container(nm: NetworkManager, container_id: str, netns_path: str | None) -> None:
    """Undo ``setup_container``: ports, endpoints, addresses, files, namespace.

    Idempotent; ``netns_path`` None when the container did not own one.
    """
    nm.release(container_id)
    if netns_path and os.path.lexists(netns_path):
        netns.remove_netns(netns_path)


def prune_netns_dir(directory: str | os.PathLike, known_ids: set[str] | list[str]) -> list[str]:
    """Unpin and delete namespace files in ``directory`` named after unknown IDs.

    For ``system prune`` after a crash: a pinned namespace is a mount and
    keeps its devices alive until it is unmounted. Returns the removed names.
    """
    known = set(known_ids)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    removed = []
    for n in names:
        if n not in known:
            netns.remove_netns(os.path.join(directory, n))
            removed.append(n)
    return removed

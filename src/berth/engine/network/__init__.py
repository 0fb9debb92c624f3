"""berth's container networking: bridges, veth/tap endpoints, IPAM, nftables, hosts files.

The engine drives everything through one object per engine root::

    from berth.engine.network import NetworkManager, parse_network_mode, parse_port_spec
    from berth._sys.netns import create_netns, remove_netns

    nm = NetworkManager(root)            # root = the engine root (opts.root)

API (exact signatures; every user-caused error is a ``berth.errors`` class
with a one-line message naming the operation and the object):

Networks (``berth network create/ls/inspect/rm/connect/disconnect``)
    nm.create(name: str, subnet: str | None = None, gateway: str | None = None,
              internal: bool = False, labels: dict[str, str] | None = None) -> Network
        UsageError (bad name/subnet/gateway), Conflict (name exists, "bridge"/
        "host"/"none" reserved, subnet overlaps one in use on the host).
    nm.ensure_default() -> Network           the ``bridge`` network (berth0, 10.88.0.0/16
                                             unless that collides with a host route)
    nm.remove(name_or_id: str) -> None       Conflict while endpoints exist; NotFound
    nm.remove_default() -> None              also the default network (prune --all)
    nm.prune() -> list[str]                  user networks without endpoints (network prune)
    nm.list() -> list[Network]
    nm.get(name_or_id: str) -> Network       NotFound
    nm.inspect(name_or_id: str) -> dict      shaped like ``docker network inspect``[0]
    nm.connect(network: str, container_id: str, netns_path: str, name: str = "",
               aliases=(), ip: str | None = None, mac: str | None = None) -> Endpoint
        veth into the namespace at ``netns_path`` (pinned file or /proc/PID/ns/net);
        the first network is eth0 with the default route, then eth1, ...
        Conflict (already connected, --ip taken, subnet full)
    nm.disconnect(network: str, container_id: str) -> None       NotFound
    nm.attach_tap(network: str, container_id: str, tap_name: str | None = None,
                  name: str = "", aliases=(), ip=None, mac=None,
                  owner_uid: int | None = None) -> Endpoint
        for VMs: a persistent tap on the bridge; QEMU:
        ``-netdev tap,id=n0,ifname=<ep.host_ifname>,script=no,downscript=no
          -device virtio-net-device,netdev=n0,mac=<ep.mac>``; the guest sets
        ``ep.ip/ep.prefixlen`` on its interface and a default route via ``ep.gateway``.
    nm.endpoints(container_id: str) -> list[Endpoint]    (eth0 first; for inspect)
    nm.container_settings(container_id: str) -> dict     docker inspect's NetworkSettings
    nm.net_stats(container_id: str) -> dict[str, int]    rx/tx bytes/packets (berth stats)

Module-level shorthands (same work, for callers holding a Network/Endpoint)
    attach(network: Network, netns_path: str, container_id: str, name: str = "",
           aliases=(), ip: str | None = None, mac: str | None = None) -> Endpoint
    attach_tap(network: Network, container_id: str, tap_name: str | None = None,
               name: str = "", aliases=(), ip=None, mac=None, owner_uid=None) -> Endpoint
    detach(endpoint: Endpoint) -> None
        ``network`` comes from nm.get/create/ensure_default/list, ``endpoint``
        from attach or nm.endpoints: each remembers its manager.

Ports (``-p``, ``-P``, ``berth port``)
    parse_port_spec(spec: str) -> list[PortMapping]      UsageError; "127.0.0.1:8080:80",
        "8080:80/udp", "80" (ephemeral host port), "8000-8001:80-81"
    nm.publish(container_id: str, mappings: list[PortMapping]) -> list[PortMapping]
        after connect; returns mappings with ephemeral ports filled in. Conflict when
        a host socket holds the port or another container published it.
    nm.ports(container_id: str) -> list[PortMapping]
    nm.unpublish(container_id: str) -> int

Name resolution (bind-mount these files at /etc/hosts and /etc/resolv.conf)
    nm.write_files(container_id: str, hostname: str, *, mode: str = "bridge",
                   extra_hosts=(), dns_servers=(), dns_search=(), dns_options=())
        -> tuple[Path, Path]                  call after connect, before start.
        ``mode`` "host" copies the host's files. Peers' hosts files are rewritten
        in place whenever a container joins or leaves one of their networks.
    nm.hosts_file(container_id: str) -> Path
    nm.resolv_conf(container_id: str) -> Path

Teardown and crashes
    nm.release(container_id: str) -> None     ports, endpoints, IPs, files; idempotent
                                              (call on rm, then remove_netns)
    nm.cleanup_orphans(known_container_ids) -> dict[str, list[str]]   system prune
    prune_netns_dir(directory, known_ids) -> list[str]   unpin namespaces of unknown IDs

Modes and namespaces
    parse_network_mode(text: str | None) -> NetworkMode    UsageError
        .kind in none|host|bridge|container; .network; .container; .needs_netns;
        .namespace_entry(netns_path) -> dict | None (for config.json)
    create_netns(path: str) -> None; remove_netns(path: str) -> None
    prepare_netns(path: str) -> None          brings lo up (for --network none)

All of it in one call, undone on any failure (the engine should use this)
    setup_container(nm, container_id: str, mode: NetworkMode | str | None,
                    netns_path: str, *, name="", hostname="", aliases=(), ip=None,
                    mac=None, ports: list[PortMapping] = (), extra_hosts=(),
                    dns_servers=(), dns_search=(), dns_options=()) -> ContainerNetwork
        .namespace (config.json entry or None), .netns_path, .owns_netns,
        .endpoints, .ports (ephemeral filled in), .hosts, .resolv_conf
    teardown_container(nm, container_id: str, netns_path: str | None) -> None
        (pass net.netns_path if net.owns_netns else None)

Run order for ``berth run`` with a bridge network (what setup_container does)::

    mode = parse_network_mode(args.network)
    create_netns(p)                        # e.g. <root>/netns/<cid>
    ep = nm.connect(mode.network, cid, p, name=cname, aliases=args.network_alias)
    nm.publish(cid, [m for s in args.publish for m in parse_port_spec(s)])
    hosts, resolv = nm.write_files(cid, hostname, extra_hosts=..., dns_servers=args.dns)
    config["linux"]["namespaces"].append(mode.namespace_entry(p))
    ... runtime create/start ...
    on rm: nm.release(cid); remove_netns(p)

See docs/networking.md for the rules, route_localnet and cleanup.
"""

from berth._sys.netns import create_netns, remove_netns
from berth.engine.network.endpoint import Endpoint, prepare_netns
from berth.engine.network.mode import NetworkMode, parse_network_mode
from berth.engine.network.networks import DEFAULT_NETWORK, Network, NetworkManager
from berth.engine.network.ports import PortMapping, parse_port_spec
from berth.engine.network.setup import (
    ContainerNetwork,
    prune_netns_dir,
    setup_container,
    teardown_container,
)


def attach(network: Network, netns_path: str, container_id: str, name: str = "",
           aliases: list[str] | tuple[str, ...] = (), ip: str | None = None,
           mac: str | None = None) -> Endpoint:
    """Connect a network namespace to ``network`` (see ``NetworkManager.connect``)."""
    return network.manager.connect(network.name, container_id, netns_path, name, aliases, ip,
                                   mac)


def attach_tap(network: Network, container_id: str, tap_name: str | None = None,
               name: str = "", aliases: list[str] | tuple[str, ...] = (),
               ip: str | None = None, mac: str | None = None,
               owner_uid: int | None = None) -> Endpoint:
    """A tap for a VM on ``network`` (see ``NetworkManager.attach_tap``)."""
    return network.manager.attach_tap(network.name, container_id, tap_name, name, aliases, ip,
                                      mac, owner_uid)


def detach(endpoint: Endpoint) -> None:
    """Remove an endpoint's device and free its address (``NetworkManager.disconnect``)."""
    endpoint.manager.disconnect(endpoint.network, endpoint.container_id)


__all__ = [
    "ContainerNetwork",
    "prune_netns_dir",
    "setup_container",
    "teardown_container",
    "attach",
    "attach_tap",
    "detach",
    "DEFAULT_NETWORK",
    "Endpoint",
    "Network",
    "NetworkManager",
    "NetworkMode",
    "PortMapping",
    "create_netns",
    "parse_network_mode",
    "parse_port_spec",
    "prepare_netns",
    "remove_netns",
]

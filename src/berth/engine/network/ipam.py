"""IP address management: subnets for new networks, addresses for endpoints.

Allocations live in the network's record (``ipam.allocations``: address ->
container ID), written under the networks lock, so two concurrent runs never
get the same address. Addresses are handed out lowest-first from the subnet,
skipping the network and broadcast addresses and the gateway.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from berth.errors import Conflict, UsageError

# Like podman: the default network on 10.88.0.0/16, user networks as /24s
# from 10.89.0.0 on. Subnets routed or addressed on the host are skipped.
DEFAULT_SUBNET = ipaddress.IPv4Network("10.88.0.0/16")
POOL = [ipaddress.IPv4Network(f"10.{n}.0.0/16") for n in range(89, 100)]
POOL_PREFIX = 24


def parse_subnet(text: str, network: str) -> ipaddress.IPv4Network:
    try:
        subnet = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise UsageError(f"create network {network}: invalid subnet {text!r}: {exc}") from None
    if subnet.prefixlen > 30:
        raise UsageError(f"create network {network}: subnet {text} is too small (at most /30)")
    if subnet.is_loopback or subnet.is_multicast or subnet.is_link_local:
        raise UsageError(f"create network {network}: subnet {text} is not usable for a bridge")
    return subnet


def pick_subnet(in_use: Iterable[ipaddress.IPv4Network],
                candidates: Iterable[ipaddress.IPv4Network] | None = None,
                ) -> ipaddress.IPv4Network:
    """The first candidate subnet that overlaps nothing in ``in_use``."""
    used = list(in_use)
    if candidates is None:
        candidates = (s for block in POOL for s in block.subnets(new_prefix=POOL_PREFIX))
    for subnet in candidates:
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise Conflict("create network: no free subnet left in the address pool "
                   f"({POOL[0]} .. {POOL[-1]}); pass --subnet")


def check_overlap(subnet: ipaddress.IPv4Network, in_use: Iterable[ipaddress.IPv4Network],
                  network: str) -> None:
    for u in in_use:
        if subnet.overlaps(u):
            raise Conflict(f"create network {network}: subnet {subnet} overlaps {u} "
                           "already in use on this host")


def default_gateway(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    return subnet.network_address + 1


def parse_gateway(text: str, subnet: ipaddress.IPv4Network,
                  network: str) -> ipaddress.IPv4Address:
    try:
        gw = ipaddress.IPv4Address(text)
    except ValueError:
        raise UsageError(f"create network {network}: invalid gateway {text!r}") from None
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise UsageError(f"create network {network}: gateway {gw} is not a host "
                         f"address of {subnet}")
    return gw


def allocate(record: dict, container_id: str, want: str | None = None) -> str:
    """Reserve an address in ``record`` for ``container_id`` and return it.

    ``want`` asks for a specific address (``--ip``); it must be a free host
    address of the subnet. Raises ``Conflict`` when the subnet is full.
    """
    subnet = ipaddress.IPv4Network(record["subnet"])
    gateway = ipaddress.IPv4Address(record["gateway"])
    allocations: dict[str, str] = record.setdefault("allocations", {})
    name = record["name"]
    if want is not None:
        try:
            ip = ipaddress.IPv4Address(want)
        except ValueError:
            raise UsageError(f"connect to network {name}: invalid IP address {want!r}") from None
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
            raise UsageError(f"connect to network {name}: {ip} is not a host address of "
                             f"{subnet}")
        if ip == gateway:
            raise Conflict(f"connect to network {name}: {ip} is the network's gateway")
        owner = allocations.get(str(ip))
        if owner is not None and owner != container_id:
            raise Conflict(f"connect to network {name}: address {ip} is already in use "
                           f"by container {owner[:12]}")
        allocations[str(ip)] = container_id
        return str(ip)
    for ip in subnet.hosts():
        if ip != gateway and str(ip) not in allocations:
            allocations[str(ip)] = container_id
            return str(ip)
    raise Conflict(f"connect to network {name}: no free IP address left in {subnet}")


def release(record: dict, container_id: str) -> list[str]:
    """Free every address ``container_id`` holds in ``record``; returns them."""
    allocations: dict[str, str] = record.setdefault("allocations", {})
    freed = [ip for ip, owner in allocations.items() if owner == container_id]
    for ip in freed:
        del allocations[ip]
    return freed


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the IPv4 address, as docker does."""
    octets = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in octets)

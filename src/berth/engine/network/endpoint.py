"""Kernel side of networks: bridges, veth pairs into namespaces, taps for VMs.

A container endpoint is a veth pair: the host end (``veth<random>``) is a port
of the network's bridge; the peer is created directly inside the
container's network namespace under its final name (``eth0``, ``eth1``…),
gets its address, and the first network also gets the default route.
A VM endpoint is a persistent tap device on the bridge that QEMU opens by
name; the guest configures the address berth hands out.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import struct

from berth._sys import netns
from berth.engine._record import factory, hidden, record
from berth.engine.network.netlink import Netlink
from berth.errors import RuntimeFailure

# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFNAMSIZ = 16


@record
class Endpoint:
    """One attachment of a container or VM to a network."""

    network: str
    network_id: str
    container_id: str
    name: str
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    ifname: str  # inside the container (eth0) or "" for a tap
    host_ifname: str  # veth<random>, tap<random> or the given tap name
    kind: str = "veth"  # or "tap"
    netns: str = ""
    aliases: list[str] = factory(list)
    endpoint_id: str = ""
    default_route: bool = False  # this endpoint carries the namespace's default route
    # The NetworkManager that made it (not persisted), for the module-level detach().
    manager: object = hidden(None)

    def guest_config(self) -> dict[str, str]:
        """What a VM guest configures on the NIC with MAC ``mac`` (tap endpoints)."""
        return {"mac": self.mac, "address": f"{self.ip}/{self.prefixlen}",
                "gateway": self.gateway if self.default_route else ""}

    def to_dict(self) -> dict:
        return {n: (list(v) if isinstance(v := getattr(self, n), list) else v)
                for n in self.__record_fields__ if n != "manager"}

    @classmethod
    def from_dict(cls, d: dict) -> Endpoint:
        known = set(cls.__record_fields__) - {"manager"}
        return cls(**{k: v for k, v in d.items() if k in known})


def host_ifname(prefix: str) -> str:
    """A fresh host-side device name (random; the endpoint record keeps it)."""
    return f"{prefix}{os.urandom(8).hex()[:15 - len(prefix)]}"


def ensure_bridge(bridge: str, gateway: str, prefixlen: int) -> bool:
    """Create ``bridge`` with the gateway address and bring it up; True when made.

    An existing bridge (after an engine restart) is left as is. The bridge
    gets a fixed MAC derived from the gateway so it does not change as ports
    come and go (a bridge takes its lowest port's MAC otherwise).
    """
    with Netlink() as nl:
        if nl.link_index(bridge) is not None:
            # Ours from before (a restart); make sure it still has the gateway.
            try:
                nl.add_addr(bridge, ipaddress.IPv4Interface(f"{gateway}/{prefixlen}"))
            except FileExistsError:
                pass
            nl.set_link(bridge, up=True)
            return False
        mac = "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(gateway).packed)
        nl.add_bridge(bridge, mac=mac)
        try:
            nl.add_addr(bridge, ipaddress.IPv4Interface(f"{gateway}/{prefixlen}"))
            _set_sysctl(f"net/ipv4/conf/{bridge}/route_localnet", "1")
            nl.set_link(bridge, up=True)
        except BaseException:
            nl.del_link(bridge)
            raise
    return True


def remove_link(name: str) -> bool:
    """Delete a device; it is gone from the device list when this returns
    (the kernel's slower cleanup after that runs in a helper: see
    ``Netlink.del_link_unlisted``). False when it did not exist."""
    with Netlink() as nl:
        return nl.del_link_unlisted(name)


def _set_sysctl(key: str, value: str) -> None:
    with open(f"/proc/sys/{key}", "w") as f:
        f.write(value)


def read_sysctl(key: str) -> str:
    with open(f"/proc/sys/{key}") as f:
        return f.read().strip()


def prepare_netns(netns_path: str) -> None:
    """Bring ``lo`` up in a namespace (every mode but host needs it)."""
    def up() -> None:
        with Netlink() as nl:
            nl.set_link("lo", up=True)
    netns.run_in_netns(netns_path, up)


def attach_veth(ep: Endpoint, bridge: str) -> None:
    """Create ``ep``'s veth pair on ``bridge`` and configure the peer in ``ep.netns``.

    Order: the pair is made with the peer already inside the namespace
    (named ``ep.ifname``, with ``ep.mac``); then, inside, lo and the peer go
    up, the address is added, then the default route (which needs the
    address's subnet route to reach the gateway); last the host end goes up.
    On any failure the host end is deleted, which deletes the peer too.
    """
    ns_fd = os.open(ep.netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        inner = netns.run_in_netns(ep.netns, Netlink)
    except BaseException:
        os.close(ns_fd)
        raise
    try:
        with Netlink() as nl:
            try:
                nl.add_veth(ep.host_ifname, ep.ifname, master=bridge, peer_netns_fd=ns_fd,
                            peer_mac=ep.mac)
            except FileExistsError as exc:
                raise RuntimeFailure(f"attach {ep.container_id[:12]} to network {ep.network}: "
                                     f"{exc.strerror} ({ep.host_ifname} or {ep.ifname} in "
                                     "the namespace)") from None
            try:
                inner.set_link("lo", up=True)
                inner.add_addr(ep.ifname, ipaddress.IPv4Interface(f"{ep.ip}/{ep.prefixlen}"))
                inner.set_link(ep.ifname, up=True)
                if ep.default_route:
                    inner.add_default_route(ipaddress.IPv4Address(ep.gateway), ep.ifname)
                nl.set_link(ep.host_ifname, up=True)
            except BaseException:
                nl.del_link(ep.host_ifname)
                raise
    finally:
        inner.close()
        os.close(ns_fd)


def attach_tap(ep: Endpoint, bridge: str, owner_uid: int | None = None) -> None:
    """Create ``ep.host_ifname`` as a persistent tap, a port of ``bridge``, up.

    QEMU opens it with ``-netdev tap,ifname=NAME,script=no,downscript=no``
    (``vnet_hdr`` is chosen per open, so it is not fixed here). ``owner_uid``
    lets an unprivileged QEMU open it (TUNSETOWNER).
    """
    name = ep.host_ifname.encode()
    if len(name) >= IFNAMSIZ:
        raise RuntimeFailure(f"create tap {ep.host_ifname}: name longer than 15 bytes")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH22x", name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        if owner_uid is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner_uid)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    except OSError as exc:
        raise RuntimeFailure(f"create tap {ep.host_ifname}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        with Netlink() as nl:
            nl.set_link(ep.host_ifname, master=bridge, up=True)
    except BaseException:
        remove_link(ep.host_ifname)
        raise


def detach(ep: Endpoint) -> bool:
    """Delete the endpoint's host device (a veth's peer goes with it).

    False when it was already gone (its namespace died, or a crash).
    """
    return remove_link(ep.host_ifname)

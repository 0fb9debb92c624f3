"""A small rtnetlink client: links, addresses and routes, nothing else.

Why not pyroute2: berth sets up a bridge endpoint on every ``berth run`` and
the whole run has a budget of about 3x a bare ``runc run`` (~36 ms here).
Importing pyroute2 0.9.7 takes 450-650 ms here (its package ``__init__``
imports every netlink family and asyncio); even its ``iproute.linux`` module
alone costs ~90-140 ms. This module imports in a few ms (mostly ``socket``) and speaks the same
protocol (rtnetlink(7), netlink(7)); the tests check its work independently,
through iproute2's JSON output (``ip -j``).

Messages are built with ``struct`` from the kernel's uapi layouts
(``linux/rtnetlink.h``, ``linux/if_link.h``); every request asks for an ACK
and a kernel error becomes ``OSError`` with the errno and the operation.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import struct
from collections.abc import Iterator

# netlink(7)
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

# rtnetlink(7)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTMGRP_LINK = 1
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFF_UP = 0x1

IFA_ADDRESS = 1
IFA_LOCAL = 2

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table proto scope type flags
_RTATTR = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr (type-length-value, padded to 4 bytes)."""
    raw = _RTATTR.pack(_RTATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Decode a run of rtattrs into ``{type: payload}`` (last one wins)."""
    out: dict[int, bytes] = {}
    off = 0
    while off + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, off)
        if length < _RTATTR.size:
            break
        out[kind & 0x3FFF] = data[off + _RTATTR.size: off + length]
        off += _align(length)
    return out


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


class Netlink:
    """An rtnetlink socket in the network namespace it was created in."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------
    def _send(self, mtype: int, flags: int, body: bytes) -> int:
        self.seq += 1
        msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), mtype, flags | NLM_F_REQUEST,
                             self.seq, 0) + body
        self.sock.send(msg)
        return self.seq

    def _replies(self, seq: int, what: str) -> Iterator[tuple[int, bytes]]:
        """Yield (type, payload) of each reply to ``seq`` until DONE or the ACK."""
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
                payload = data[off + _NLMSGHDR.size: off + length]
                off += _align(length)
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", payload)
                    if err:
                        raise OSError(-err, f"{what}: {os.strerror(-err)}")
                    return
                yield mtype, payload
                if not flags & NLM_F_MULTI:
                    return

    def request(self, mtype: int, body: bytes, what: str, flags: int = 0) -> None:
        """Send one change request and wait for its ACK."""
        seq = self._send(mtype, flags | NLM_F_ACK, body)
        for _ in self._replies(seq, what):
            pass

    def dump(self, mtype: int, body: bytes, what: str) -> list[bytes]:
        seq = self._send(mtype, NLM_F_DUMP, body)
        return [p for _t, p in self._replies(seq, what)]

    # --- links -----------------------------------------------------------
    def link_index(self, name: str) -> int | None:
        """The ifindex of ``name``, or None when there is no such link."""
        body = _IFINFOMSG.pack(0, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
        seq = self._send(RTM_GETLINK, NLM_F_ACK, body)
        try:
            for _t, payload in self._replies(seq, f"get link {name}"):
                return _IFINFOMSG.unpack_from(payload)[2]
        except OSError as exc:
            if exc.errno in (19,):  # ENODEV
                return None
            raise
        return None

    def links(self) -> dict[str, dict]:
        """All links: ``{name: {"index", "flags", "kind", "master", "mac"}}``."""
        out: dict[str, dict] = {}
        for payload in self.dump(RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0), "list links"):
            _fam, _type, index, flags, _chg = _IFINFOMSG.unpack_from(payload)
            attrs = parse_attrs(payload[_IFINFOMSG.size:])
            info = parse_attrs(attrs.get(IFLA_LINKINFO, b""))
            name = _cstr(attrs.get(IFLA_IFNAME, b""))
            out[name] = {
                "index": index,
                "flags": flags,
                "kind": _cstr(info.get(IFLA_INFO_KIND, b"")),
                "master": struct.unpack("=I", attrs[IFLA_MASTER])[0]
                if IFLA_MASTER in attrs else 0,
                "mac": ":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b"")),
            }
        return out

    def _require(self, name: str) -> int:
        index = self.link_index(name)
        if index is None:
            raise OSError(19, f"link {name}: No such device")
        return index

    def add_bridge(self, name: str, mac: str | None = None) -> None:
        extra = attr(IFLA_ADDRESS, mac_bytes(mac)) if mac else b""
        body = (_IFINFOMSG.pack(0, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name) + extra
                + attr(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "bridge")))
        self.request(RTM_NEWLINK, body, f"create bridge {name}", NLM_F_CREATE | NLM_F_EXCL)

    def add_veth(self, name: str, peer: str, master: str | None = None,
                 peer_netns_fd: int | None = None, peer_mac: str | None = None) -> None:
        """Create a veth pair; the peer may be born inside another namespace.

        Creating the peer directly in the target namespace (IFLA_NET_NS_FD in
        the peer's ifinfomsg) under its final name avoids a rename and a move,
        and the host never sees a device called ``eth0``.
        """
        peer_attrs = attr_str(IFLA_IFNAME, peer)
        if peer_netns_fd is not None:
            peer_attrs += attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
        if peer_mac:
            peer_attrs += attr(IFLA_ADDRESS, mac_bytes(peer_mac))
        info = attr_str(IFLA_INFO_KIND, "veth") + attr(
            IFLA_INFO_DATA, attr(VETH_INFO_PEER, _IFINFOMSG.pack(0, 0, 0, 0, 0) + peer_attrs))
        body = _IFINFOMSG.pack(0, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
        if master:
            body += attr_u32(IFLA_MASTER, self._require(master))
        body += attr(IFLA_LINKINFO, info)
        self.request(RTM_NEWLINK, body, f"create veth {name}", NLM_F_CREATE | NLM_F_EXCL)

    def set_link(self, name: str, up: bool | None = None, master: str | None = None,
                 mtu: int | None = None) -> None:
        index = self._require(name)
        flags = change = 0
        if up is not None:
            flags, change = (IFF_UP if up else 0), IFF_UP
        body = _IFINFOMSG.pack(0, 0, index, flags, change)
        if master is not None:
            body += attr_u32(IFLA_MASTER, self._require(master))
        if mtu is not None:
            body += attr_u32(IFLA_MTU, mtu)
        self.request(RTM_NEWLINK, body, f"set link {name}")

    def del_link(self, name: str) -> bool:
        """Delete ``name``; False when it did not exist."""
        body = _IFINFOMSG.pack(0, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
        try:
            self.request(RTM_DELLINK, body, f"delete link {name}")
        except OSError as exc:
            if exc.errno == 19:  # ENODEV
                return False
            raise
        return True

    def del_link_unlisted(self, name: str) -> bool:
        """Delete ``name`` and return as soon as the kernel has unlisted it;
        False when it did not exist.

        The kernel ACKs an RTM_DELLINK only after ``netdev_run_todo``, which
        waits for an RCU barrier and for the last reference to the device:
        20-40 ms here, while the device (with its addresses, routes, and a
        veth's peer) left the device list 2-7 ms after the request, as the
        RTM_DELLINK notification says. So a detached helper process
        (``berth-netdel``, C) makes the request and waits out the kernel's
        tail, and this returns at the notification (or at the helper's
        answer: an error, or a link that was gone already). Without the
        helper (not built, spawn failed, helper died) it deletes
        synchronously like ``del_link``.
        """
        index = self.link_index(name)
        if index is None:
            return False
        from berth.paths import libexec

        helper = str(libexec("berth-netdel"))
        if not os.access(helper, os.X_OK):
            return self.del_link(name)
        mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                            socket.NETLINK_ROUTE)
        r = w = -1
        try:
            mon.bind((0, RTMGRP_LINK))  # subscribed before the request: no race
            r, w = os.pipe()
            os.set_inheritable(w, True)
            try:
                # posix_spawn (vfork): forking this interpreter would cost ~1 ms
                # with the GIL held; the helper detaches itself (csrc/berth-netdel)
                pid = os.posix_spawn(helper, [helper, name, str(w)], {})
            except OSError:
                return self.del_link(name)
            os.close(w)
            w = -1
            try:
                return self._await_unlisted(mon, r, index, name)
            finally:
                os.waitpid(pid, 0)  # its first half, which exits at once
        finally:
            mon.close()
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)

    def _await_unlisted(self, mon: socket.socket, r: int, index: int, name: str) -> bool:
        poller = select.poll()
        poller.register(mon.fileno(), select.POLLIN)
        poller.register(r, select.POLLIN)
        while True:
            for fd, _ev in poller.poll():
                if fd == mon.fileno():
                    try:
                        data = mon.recv(1 << 16)
                    except OSError as exc:
                        if exc.errno != errno.ENOBUFS:
                            raise
                        # notifications were dropped: wait for the helper's answer
                        poller.unregister(mon.fileno())
                        continue
                    if _is_dellink_of(data, index):
                        return True
                    continue
                answer = os.read(r, 4)
                if len(answer) != 4:  # the helper died without answering
                    return self.del_link(name)
                (err,) = struct.unpack("=i", answer)
                if err == 0:
                    return True
                if err == errno.ENODEV:
                    return False
                raise OSError(err, f"delete link {name}: {os.strerror(err)}")

    # --- addresses and routes -------------------------------------------
    def add_addr(self, name: str, iface: ipaddress.IPv4Interface) -> None:
        index = self._require(name)
        packed = iface.ip.packed
        body = (_IFADDRMSG.pack(socket.AF_INET, iface.network.prefixlen, 0, 0, index)
                + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed))
        self.request(RTM_NEWADDR, body, f"add address {iface} to {name}",
                     NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, gateway: ipaddress.IPv4Address, dev: str) -> None:
        body = (_RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                            RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
                + attr(RTA_GATEWAY, gateway.packed) + attr_u32(RTA_OIF, self._require(dev)))
        self.request(RTM_NEWROUTE, body, f"add default route via {gateway}",
                     NLM_F_CREATE | NLM_F_EXCL)

    def ipv4_routes(self) -> list[ipaddress.IPv4Network]:
        """Destinations of every IPv4 route in every table (to avoid collisions)."""
        out = []
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        for payload in self.dump(RTM_GETROUTE, body, "list routes"):
            dst_len = payload[1]
            attrs = parse_attrs(payload[_RTMSG.size:])
            if RTA_DST in attrs and dst_len:
                out.append(ipaddress.IPv4Network((attrs[RTA_DST], dst_len), strict=False))
        return out

    def ipv4_addrs(self) -> list[ipaddress.IPv4Interface]:
        out = []
        body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        for payload in self.dump(RTM_GETADDR, body, "list addresses"):
            prefix = payload[1]
            attrs = parse_attrs(payload[_IFADDRMSG.size:])
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw:
                out.append(ipaddress.IPv4Interface((raw, prefix)))
        return out


def _is_dellink_of(data: bytes, index: int) -> bool:
    """True when the notifications in ``data`` include RTM_DELLINK of ``index``."""
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, mtype = _NLMSGHDR.unpack_from(data, off)[:2]
        if length < _NLMSGHDR.size:
            return False
        if mtype == RTM_DELLINK and length >= _NLMSGHDR.size + _IFINFOMSG.size and \
                _IFINFOMSG.unpack_from(data, off + _NLMSGHDR.size)[2] == index:
            return True
        off += _align(length)
    return False

"""Port publishing specs (``-p``) and host port checks.

Grammar, as docker's: ``[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`` where a
port may be a range ``A-B`` (host and container ranges of equal length), an
empty or missing HOST_PORT means an ephemeral port chosen at publish time,
and PROTO is ``tcp`` (default) or ``udp``.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from berth.engine._record import record, replace
from berth.errors import Conflict, UsageError


@record(frozen=True)
class PortMapping:
    """One published port. ``host_ip`` "" means every host address;
    ``host_port`` 0 means "pick a free one when publishing"."""

    container_port: int
    host_port: int = 0
    host_ip: str = ""
    proto: str = "tcp"

    def spec(self) -> str:
        ip = self.host_ip or "0.0.0.0"
        return f"{ip}:{self.host_port}->{self.container_port}/{self.proto}"


def _port_range(text: str, spec: str) -> list[int]:
    lo, sep, hi = text.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise UsageError(f"invalid port spec {spec!r}: {text!r} is not a port number") from None
    if not (1 <= a <= 65535 and 1 <= b <= 65535) or b < a:
        raise UsageError(f"invalid port spec {spec!r}: port {text} is out of range 1-65535")
    return list(range(a, b + 1))


def parse_port_spec(spec: str) -> list[PortMapping]:
    """Parse one ``-p`` value into mappings; raises ``UsageError`` when malformed."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise UsageError(f"invalid port spec {spec!r}: protocol must be tcp or udp")
    host_ip = ""
    if body.startswith("["):
        raise UsageError(f"invalid port spec {spec!r}: IPv6 host addresses are not supported")
    parts = body.split(":")
    if len(parts) == 3:
        host_ip, host, cont = parts
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise UsageError(f"invalid port spec {spec!r}: bad host IP {host_ip!r}") from None
        if host_ip == "0.0.0.0":
            host_ip = ""
    elif len(parts) == 2:
        host, cont = parts
    elif len(parts) == 1:
        host, cont = "", parts[0]
    else:
        raise UsageError(f"invalid port spec {spec!r}")
    if not cont:
        raise UsageError(f"invalid port spec {spec!r}: no container port")
    cports = _port_range(cont, spec)
    hports = _port_range(host, spec) if host not in ("", "0") else [0] * len(cports)
    if len(hports) != len(cports):
        raise UsageError(f"invalid port spec {spec!r}: host and container port ranges "
                         "differ in length")
    return [PortMapping(c, h, host_ip, proto) for h, c in zip(hports, cports, strict=True)]


def _sock_type(proto: str) -> int:
    return socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM


def host_port_free(host_ip: str, port: int, proto: str) -> bool:
    """True when no host socket holds ``host_ip:port/proto``.

    A trial bind answers it. For TCP, SO_REUSEADDR keeps TIME_WAIT leftovers
    from counting as in use, while a listening or bound socket still does;
    for UDP it would let the bind share a port another SO_REUSEADDR socket
    holds, so it is not set there.
    """
    with socket.socket(socket.AF_INET, _sock_type(proto)) as s:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_ip or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"publish {host_ip}:{port}/{proto}: {host_ip} is not an "
                                 "address of this host") from None
            raise
    return True


def overlaps(a: PortMapping, b: PortMapping) -> bool:
    return (a.proto == b.proto and a.host_port == b.host_port
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))


def resolve(mappings: list[PortMapping], taken: list[PortMapping]) -> list[PortMapping]:
    """Check every mapping against host sockets and ``taken`` (other containers'
    mappings); give ephemeral ones a free port. Raises ``Conflict``."""
    out: list[PortMapping] = []
    for m in mappings:
        if m.host_port == 0:
            m = replace(m, host_port=_ephemeral(m, taken + out))
        for other in taken + out:
            if overlaps(m, other):
                raise Conflict(f"publish {m.spec()}: port is already allocated")
        if not host_port_free(m.host_ip, m.host_port, m.proto):
            raise Conflict(f"publish {m.spec()}: address already in use on the host")
        out.append(m)
    return out


def _ephemeral(m: PortMapping, taken: list[PortMapping]) -> int:
    for _ in range(64):
        with socket.socket(socket.AF_INET, _sock_type(m.proto)) as s:
            s.bind((m.host_ip or "0.0.0.0", 0))
            port = s.getsockname()[1]
        if not any(overlaps(replace(m, host_port=port), t) for t in taken):
            return port
    raise Conflict(f"publish {m.spec()}: no free host port")

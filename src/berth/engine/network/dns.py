"""Name resolution for containers: generated /etc/hosts and /etc/resolv.conf.

On a user-defined network every container finds its peers by container name,
by ``--network-alias`` and by short ID, through its hosts file: berth
rewrites the hosts file of every running peer when a container joins or
leaves a network. The default ``bridge`` network gives no names (as docker's
docker0). The files are rewritten in place (truncate + write) because the
engine bind-mounts them and a bind mount pins the inode.

resolv.conf: the host's nameservers, except loopback ones (127.0.0.0/8,
::1), which mean nothing inside another network namespace (systemd-resolved,
dnsmasq on the host); if only loopback ones exist, the file lists none and
says why. ``--dns``/``--dns-search``/``--dns-option`` replace the host's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

HOST_RESOLV = "/etc/resolv.conf"


def hosts_text(hostname: str, own: list[tuple[str, list[str]]],
               peers: list[tuple[str, list[str]]], extra: Iterable[tuple[str, str]] = (),
               ) -> str:
    """The hosts file: localhost, ``--add-host`` entries, own addresses, peers.

    ``own`` and ``peers`` are ``(ip, names)``; ``extra`` is ``(name, ip)``.
    """
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{name}" for name, ip in extra]
    seen = {"localhost"}
    if not own:
        lines.append(f"127.0.1.1\t{hostname}")
        seen.add(hostname)
    for ip, names in own:
        first = [hostname] if hostname not in seen else []
        uniq = _uniq(first + names, seen)
        if uniq:
            lines.append(f"{ip}\t{' '.join(uniq)}")
    for ip, names in peers:
        uniq = _uniq(names, seen)
        if uniq:
            lines.append(f"{ip}\t{' '.join(uniq)}")
    return "\n".join(lines) + "\n"


def _uniq(names: list[str], seen: set[str]) -> list[str]:
    out = []
    for n in names:
        if n and n not in seen:
            seen.add(n)
            out.append(n)
    return out


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def resolv_text(dns: Iterable[str] = (), search: Iterable[str] = (),
                options: Iterable[str] = (), host_file: str = HOST_RESOLV) -> str:
    dns, search, options = list(dns), list(search), list(options)
    host_ns: list[str] = []
    host_search: list[str] = []
    host_opts: list[str] = []
    try:
        with open(host_file) as f:
            for line in f:
                words = line.split()
                if not words or words[0].startswith(("#", ";")):
                    continue
                if words[0] == "nameserver" and len(words) > 1:
                    host_ns.append(words[1])
                elif words[0] in ("search", "domain"):
                    host_search = words[1:]
                elif words[0] == "options":
                    host_opts += words[1:]
    except OSError:
        pass
    lines = []
    if dns:
        servers = dns
    else:
        servers = [s for s in host_ns if not _is_loopback(s)]
        if host_ns and not servers:
            lines.append("# the host's nameservers are loopback addresses, unreachable "
                         "from this network namespace; use --dns")
    lines += [f"nameserver {s}" for s in servers]
    if search or host_search:
        lines.append("search " + " ".join(search or host_search))
    if options or host_opts:
        lines.append("options " + " ".join(options or host_opts))
    return "\n".join(lines) + "\n"

"""berth's nftables rules: NAT, port publishing, isolation, one table.

Everything lives in one ``ip`` table of our own (``berth`` by default), made
on first use; berth never reads or changes anyone else's tables. Chains::

  prerouting  nat    hook prerouting  dstnat  fib daddr type local -> publish
  output      nat    hook output      -100    fib daddr type local -> publish
  publish     (regular) one DNAT rule per published port, comment "c:<cid> ..."
  postrouting nat    hook postrouting srcnat  per network: masquerade outbound,
                                             masquerade 127/8 sources, hairpin
  forward     filter hook forward     filter  internal networks' drops, then
                                             "ct status dnat accept", then
                                             per network: isolation between bridges
  guard       filter hook prerouting  raw     per network: drop 127/8 arriving
                                             on a bridge (CVE-2020-8558 class)

Every rule carries a comment naming its owner: ``c:<container-id> ...`` for
a published port, ``n:<network-id>`` for a network's rules. Removal lists
the table, picks rules by comment and deletes them by handle in one
transaction, so exactly the owner's rules go, and nothing else.

Connections from 127.0.0.1 on the host to a published port (podman's way,
no proxy process): the output hook DNATs 127.0.0.1:HP to the container;
the kernel then refuses to route a packet with a loopback source out of a
non-loopback device unless ``route_localnet`` is set on that device, so it
is set on each of our bridges (only there, not ``all``); postrouting then
masquerades the 127/8 source to the bridge address so the reply comes back.
``route_localnet`` also lets packets *to* 127/8 arrive on the bridge, which
would let a container reach the host's loopback-only services: the guard
chain drops those before routing.
"""

from __future__ import annotations

import ipaddress
import json

from berth._sys import nft
from berth.engine.network.ports import PortMapping

CHAINS = (
    ("prerouting", "type nat hook prerouting priority dstnat; policy accept;"),
    ("output", "type nat hook output priority -100; policy accept;"),
    ("publish", None),
    ("postrouting", "type nat hook postrouting priority srcnat; policy accept;"),
    ("forward", "type filter hook forward priority filter; policy accept;"),
    ("guard", "type filter hook prerouting priority raw; policy accept;"),
)


def _q(text: str) -> str:
    return json.dumps(text)  # nft accepts a double-quoted string


class Firewall:
    """The rules of one berth table (``table`` lets tests use their own)."""

    def __init__(self, table: str = "berth") -> None:
        self.table = table
        self.t = f"ip {table}"

    # --- table -----------------------------------------------------------
    def exists(self) -> bool:
        try:
            nft.run(f"list table {self.t}")
        except nft.NftError:
            return False
        return True

    def ensure(self) -> None:
        """Create the table and its chains when missing (caller holds the lock)."""
        if self.exists():
            return
        cmds = [f"add table {self.t}", f"add set {self.t} bridges {{ type ifname; }}"]
        for name, spec in CHAINS:
            cmds.append(f"add chain {self.t} {name}" + (f" {{ {spec} }}" if spec else ""))
        # Published ports are public: DNAT'd flows pass the isolation drops
        # appended below this rule (internal networks' drops are inserted above it).
        cmds.append(f"add rule {self.t} forward ct status dnat accept")
        cmds.append(f"add rule {self.t} prerouting fib daddr type local jump publish")
        cmds.append(f"add rule {self.t} output fib daddr type local jump publish")
        nft.run("\n".join(cmds))

    def delete_table(self) -> None:
        if self.exists():
            nft.run(f"delete table {self.t}")

    def other_berth_tables(self) -> list[str]:
        """Tables of other berth roots on this host (``berth``, ``berth_<hash>``)."""
        try:
            items = nft.run_json("list tables ip")
        except nft.NftError:
            return []
        names = [i["table"]["name"] for i in items if "table" in i]
        return [n for n in names if n != self.table and (n == "berth" or n.startswith("berth_"))]

    def rules(self) -> list[dict]:
        """Every rule of the table as nft JSON objects (empty when no table)."""
        try:
            items = nft.run_json(f"list table {self.t}")
        except nft.NftError:
            return []
        return [i["rule"] for i in items if "rule" in i]

    def _delete_where(self, pred) -> int:
        doomed = [r for r in self.rules() if pred(r.get("comment", ""))]
        if doomed:
            nft.run("\n".join(f"delete rule {self.t} {r['chain']} handle {r['handle']}"
                              for r in doomed))
        return len(doomed)

    # --- networks --------------------------------------------------------
    def add_network(self, net_id: str, bridge: str, subnet: str, internal: bool) -> None:
        """Rules for one bridge network; replaces any it already had."""
        self.ensure()
        self.remove_network(net_id, bridge)
        c = _q(f"n:{net_id}")
        br = _q(bridge)
        s = str(ipaddress.IPv4Network(subnet))
        cmds = [
            f"add element {self.t} bridges {{ {br} }}",
            f"add rule {self.t} guard iifname {br} ip daddr 127.0.0.0/8 drop comment {c}",
            # Published-port replies for 127/8 clients, and hairpin (a container
            # reaching a published port of a peer on the same bridge).
            f"add rule {self.t} postrouting oifname {br} ip saddr 127.0.0.0/8 "
            f"masquerade comment {c}",
            f"add rule {self.t} postrouting oifname {br} ct status dnat ip saddr {s} "
            f"masquerade comment {c}",
            # Networks are isolated from each other, as docker's are.
            f"add rule {self.t} forward iifname {br} oifname @bridges oifname != {br} "
            f"drop comment {c}",
        ]
        if internal:
            # inserted at the top: before the "ct status dnat accept" rule, so
            # not even a published port lets traffic in or out.
            cmds += [
                f"insert rule {self.t} forward iifname {br} oifname != {br} drop comment {c}",
                f"insert rule {self.t} forward oifname {br} iifname != {br} drop comment {c}",
            ]
        else:
            cmds.append(f"add rule {self.t} postrouting ip saddr {s} ip daddr != {s} "
                        f"oifname != {br} masquerade comment {c}")
        nft.run("\n".join(cmds))

    def remove_network(self, net_id: str, bridge: str) -> int:
        n = self._delete_where(lambda c: c == f"n:{net_id}")
        self.forget_bridge(bridge)
        return n

    def bridge_set(self) -> list[str]:
        """Bridges registered in the table's ``bridges`` set (ours, by construction)."""
        try:
            items = nft.run_json(f"list set {self.t} bridges")
        except nft.NftError:
            return []
        for i in items:
            if "set" in i:
                return [e if isinstance(e, str) else str(e) for e in i["set"].get("elem", [])]
        return []

    def forget_bridge(self, bridge: str) -> None:
        try:
            nft.run(f"delete element {self.t} bridges {{ {_q(bridge)} }}")
        except nft.NftError:
            pass  # not in the set (or no table)

    # --- published ports --------------------------------------------------
    def publish(self, container_id: str, container_ip: str,
                mappings: list[PortMapping]) -> None:
        """DNAT rules for ``mappings`` to ``container_ip``, all or none."""
        if not mappings:
            return
        self.ensure()
        cmds = []
        for m in mappings:
            comment = _q(f"c:{container_id} {m.proto} {m.host_ip or '0.0.0.0'}:{m.host_port} "
                         f"{container_ip}:{m.container_port}")
            match = f"ip daddr {m.host_ip} " if m.host_ip else ""
            cmds.append(f"add rule {self.t} publish {match}{m.proto} dport {m.host_port} "
                        f"dnat to {container_ip}:{m.container_port} comment {comment}")
        nft.run("\n".join(cmds))

    def unpublish(self, container_id: str) -> int:
        """Remove every published-port rule of ``container_id``; returns how many."""
        return self._delete_where(lambda c: c.split(" ", 1)[0] == f"c:{container_id}")

    def published(self) -> list[tuple[str, PortMapping, str]]:
        """``(container_id, mapping, container_ip)`` for every published port."""
        out = []
        for r in self.rules():
            parts = r.get("comment", "").split(" ")
            if len(parts) != 4 or not parts[0].startswith("c:"):
                continue
            hip, _, hport = parts[2].rpartition(":")
            cip, _, cport = parts[3].rpartition(":")
            m = PortMapping(int(cport), int(hport), "" if hip == "0.0.0.0" else hip, parts[1])
            out.append((parts[0][2:], m, cip))
        return out

    def owners(self) -> tuple[set[str], set[str]]:
        """(container IDs, network IDs) that own at least one rule."""
        cids, nids = set(), set()
        for r in self.rules():
            tag = r.get("comment", "").split(" ", 1)[0]
            if tag.startswith("c:"):
                cids.add(tag[2:])
            elif tag.startswith("n:"):
                nids.add(tag[2:])
        return cids, nids

"""Networks as objects: records, IPAM, endpoints, ports, hosts files, cleanup.

``NetworkManager(root)`` is the one entry point the engine uses; see the
package docstring for the API. State: ``<root>/networks/<name>.json`` per
network (config, IP allocations, endpoints), ``<root>/netfiles/<cid>/``
per container (hosts, resolv.conf, and what is needed to rewrite them).
Kernel objects: one bridge per network, one veth or tap per endpoint, the
rules of one nftables table (``firewall.py``).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import zlib
from pathlib import Path

from berth._sys import netns
from berth.engine._record import factory, hidden, record
from berth.engine.network import dns, endpoint, ipam, roots, store
from berth.engine.network.endpoint import Endpoint
from berth.engine.network.firewall import Firewall
from berth.engine.network.netlink import Netlink
from berth.engine.network.ports import PortMapping, resolve
from berth.errors import BerthError, Conflict, NotFound, RuntimeFailure, UsageError
from berth.fs import remove_tree
from berth.paths import DEFAULT_ENGINE_ROOT, NETFILES

DEFAULT_NETWORK = "bridge"
RESERVED = ("bridge", "host", "none", "default")
HOST_LOCK_DIR = Path("/run/berth-net")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
# Container IDs end up in nft comments and file names; names and aliases in
# hosts files. Only these characters, so none of them can inject a rule, a
# path component or a hosts line.
ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,252})$")
IFNAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$")


def _kernel_errors(op: str):
    """Turn a kernel or nftables failure (OSError) into one RuntimeFailure line.

    Our own OSErrors already read "operation object: reason"; others (open,
    sysctl writes) get their file name added.
    """
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except BerthError:
                raise
            except OSError as exc:
                why = exc.strerror or str(exc)
                if exc.filename:
                    why = f"{why}: {exc.filename}"
                raise RuntimeFailure(f"{op}: {why}") from exc
        return wrapper
    return deco


def _now_iso() -> str:
    import datetime  # here: ~1 ms of every `berth run` otherwise

    return datetime.datetime.now(datetime.UTC).isoformat()


def _check_id(container_id: str, what: str) -> None:
    if not ID_RE.match(container_id or ""):
        raise UsageError(f"{what}: invalid container ID {container_id!r}")


def _check_hostnames(names, what: str) -> None:
    for n in names:
        if not HOSTNAME_RE.match(n):
            raise UsageError(f"{what}: invalid name or alias {n!r}")


@record
class Network:
    """A network's configuration (what ``berth network inspect`` shows)."""

    name: str
    id: str
    subnet: str
    gateway: str
    bridge: str
    internal: bool = False
    labels: dict[str, str] = factory(dict)
    created: str = ""
    # The NetworkManager that loaded it (for the module-level attach()).
    manager: NetworkManager | None = hidden(None)

    @property
    def driver(self) -> str:
        return "bridge"

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_NETWORK

    @classmethod
    def from_record(cls, rec: dict, manager: NetworkManager | None = None) -> Network:
        return cls(rec["name"], rec["id"], rec["subnet"], rec["gateway"], rec["bridge"],
                   rec.get("internal", False), dict(rec.get("labels", {})),
                   rec.get("created", ""), manager)


class NetworkManager:
    """Networks of one engine root.

    ``table`` and ``default_bridge`` name the kernel objects shared by all
    networks of this root. By default they are ``berth``/``berth0`` for the
    default root (/var/lib/berth) and ``berth_<h>``/``berth<h>`` for any
    other root (``h`` a hash of its path), so two engine roots on one host
    (tests, ``--root``) never share a table or a default bridge: removing
    one root's last network must not delete another's rules. ``enable_ip_forward`` lets
    the first non-internal network turn on ``net.ipv4.ip_forward`` (as docker
    and podman do; the old value is recorded in ``networks/ip_forward.orig``).
    """

    def __init__(self, root: str | os.PathLike, *, table: str | None = None,
                 default_bridge: str | None = None,
                 default_subnet: str | None = None, enable_ip_forward: bool = True) -> None:
        self.root = Path(root)
        self.dir = self.root / "networks"
        self.files = self.root / NETFILES
        real = os.path.realpath(self.root)
        suffix = "" if real == DEFAULT_ENGINE_ROOT else f"{zlib.crc32(real.encode()):08x}"
        self.firewall = Firewall(table or (f"berth_{suffix}" if suffix else "berth"))
        self.default_bridge = default_bridge or (f"berth{suffix}" if suffix else "berth0")
        self.default_subnet = (ipaddress.IPv4Network(default_subnet) if default_subnet
                               else ipam.DEFAULT_SUBNET)
        self.enable_ip_forward = enable_ip_forward

    # --- records ------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _records(self) -> list[dict]:
        if not self.dir.is_dir():
            return []
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                out.append(store.read_json(p))
            except (OSError, ValueError):
                continue  # a foreign or damaged file: not a network
        return out

    def _record(self, name_or_id: str) -> dict:
        if NAME_RE.match(name_or_id) and self._path(name_or_id).is_file():
            return store.read_json(self._path(name_or_id))
        if len(name_or_id) >= 3 and re.fullmatch(r"[0-9a-f]+", name_or_id):
            hits = [r for r in self._records() if r["id"].startswith(name_or_id)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise Conflict(f"network {name_or_id}: ambiguous ID prefix")
        raise NotFound(f"network {name_or_id} not found")

    def _save(self, rec: dict, durable: bool = True) -> None:
        """``durable=False`` for endpoint changes: they matter only while the
        containers run, which a power loss ends; the network itself is saved
        durably when it is created."""
        store.write_json_atomic(self._path(rec["name"]), rec, durable)

    # --- networks -----------------------------------------------------------
    @_kernel_errors("create network")
    def create(self, name: str, subnet: str | None = None, gateway: str | None = None,
               internal: bool = False, labels: dict[str, str] | None = None) -> Network:
        """Create a bridge network (``docker network create``).

        Raises ``UsageError`` for a bad name/subnet/gateway, ``Conflict`` when the
        name exists or the subnet overlaps one in use on the host.
        """
        if not NAME_RE.match(name):
            raise UsageError(f"create network {name!r}: invalid name (letters, digits, "
                             "'_', '.', '-'; starting with a letter or digit)")
        if name in RESERVED:
            raise Conflict(f"create network {name}: {name} is a pre-defined network")
        return self._create(name, subnet, gateway, internal, labels or {})

    @_kernel_errors("set up the default network")
    def ensure_default(self) -> Network:
        """The default ``bridge`` network, created on first use."""
        with store.locked(self.dir):
            if self._path(DEFAULT_NETWORK).is_file():
                rec = store.read_json(self._path(DEFAULT_NETWORK))
                self._ensure_kernel(rec)
                return Network.from_record(rec, self)
            return self._create(DEFAULT_NETWORK, None, None, False, {})

    def _in_use(self) -> list[ipaddress.IPv4Network]:
        with Netlink() as nl:
            used = nl.ipv4_routes() + [a.network for a in nl.ipv4_addrs()]
        used += [ipaddress.IPv4Network(r["subnet"]) for r in self._records()]
        return [u for u in used if not u.is_loopback]

    def _create(self, name: str, subnet: str | None, gateway: str | None, internal: bool,
                labels: dict[str, str]) -> Network:
        with store.locked(self.dir):
            if self._path(name).exists():
                raise Conflict(f"create network {name}: a network with this name exists")
            # Host-wide: engine roots (and test runs) creating networks at the same
            # time would otherwise both see a subnet free and both take it. Held
            # until the bridge (whose route marks the subnet taken) exists.
            with store.locked(HOST_LOCK_DIR):
                return self._create_locked(name, subnet, gateway, internal, labels)

    def _create_locked(self, name: str, subnet: str | None, gateway: str | None,
                       internal: bool, labels: dict[str, str]) -> Network:
        roots.sweep()  # bridges and tables of roots deleted without a reset
        in_use = self._in_use()
        if subnet:
            net = ipam.parse_subnet(subnet, name)
            ipam.check_overlap(net, in_use, name)
        elif name == DEFAULT_NETWORK:
            # 10.88.0.0/16 like podman; when taken (another engine root), a
            # /24 from the pool, so many roots cannot exhaust the pool.
            net = ipam.pick_subnet(in_use, [self.default_subnet, *(
                s for b in ipam.POOL for s in b.subnets(new_prefix=ipam.POOL_PREFIX))])
        else:
            net = ipam.pick_subnet(in_use)
        gw = (ipam.parse_gateway(gateway, net, name) if gateway
              else ipam.default_gateway(net))
        net_id = os.urandom(32).hex()
        bridge = self.default_bridge if name == DEFAULT_NETWORK else f"br-{net_id[:12]}"
        rec = {
            "name": name, "id": net_id, "subnet": str(net), "gateway": str(gw),
            "bridge": bridge, "internal": internal, "labels": dict(labels),
            "created": _now_iso(),
            "allocations": {}, "endpoints": {},
        }
        self._ensure_kernel(rec)
        try:
            roots.register(self.firewall.table, self.root, bridge)
            self._save(rec)
        except BaseException:
            self._remove_kernel(rec)
            raise
        return Network.from_record(rec, self)

    def _ensure_kernel(self, rec: dict) -> None:
        """Bridge and rules of a network (again after a reboot or a crash)."""
        made = endpoint.ensure_bridge(rec["bridge"], rec["gateway"],
                                      ipaddress.IPv4Network(rec["subnet"]).prefixlen)
        try:
            if made:  # the registry is in /run: after a reboot, register again
                roots.register(self.firewall.table, self.root, rec["bridge"])
            if made or rec["id"] not in self.firewall.owners()[1]:
                self.firewall.add_network(rec["id"], rec["bridge"], rec["subnet"],
                                          rec.get("internal", False))
            if not rec.get("internal") and self.enable_ip_forward:
                self._enable_forwarding()
        except BaseException:
            if made:
                endpoint.remove_link(rec["bridge"])
            raise

    def _remove_kernel(self, rec: dict) -> None:
        self.firewall.remove_network(rec["id"], rec["bridge"])
        endpoint.remove_link(rec["bridge"])
        roots.unregister(self.firewall.table, rec["bridge"])

    def _enable_forwarding(self) -> None:
        key = "net/ipv4/ip_forward"
        if endpoint.read_sysctl(key) == "1":
            return
        orig = self.dir / "ip_forward.orig"
        if not orig.exists():
            orig.write_text("0\n")
        roots.register(self.firewall.table, self.root, ip_forward_orig="0")
        endpoint._set_sysctl(key, "1")

    def _restore_forwarding(self) -> None:
        """Put back the ip_forward value found before this root turned it on,
        unless another berth root on the host still has networks (and so may
        still route through it)."""
        orig = self.dir / "ip_forward.orig"
        if not orig.exists():
            return
        if not self.firewall.other_berth_tables():
            endpoint._set_sysctl("net/ipv4/ip_forward", orig.read_text().strip() or "0")
        orig.unlink()

    @_kernel_errors("remove network")
    def remove(self, name: str) -> None:
        """Remove a network, its bridge and its rules (``docker network rm``).

        Refuses while containers are attached, and refuses the default network.
        """
        with store.locked(self.dir):
            rec = self._record(name)
            if rec["name"] == DEFAULT_NETWORK:
                raise Conflict(f"remove network {name}: bridge is a pre-defined network "
                               "and cannot be removed")
            self._remove(rec)

    @_kernel_errors("remove the default network")
    def remove_default(self) -> None:
        """Remove the default network too (``system prune --all``, tests)."""
        with store.locked(self.dir):
            if self._path(DEFAULT_NETWORK).is_file():
                self._remove(store.read_json(self._path(DEFAULT_NETWORK)))

    def _remove(self, rec: dict) -> None:
        eps = rec.get("endpoints", {})
        if eps:
            names = ", ".join(sorted(e["name"] or cid[:12] for cid, e in eps.items()))
            raise Conflict(f"remove network {rec['name']}: network has active endpoints "
                           f"({names})")
        self._remove_kernel(rec)
        self._path(rec["name"]).unlink()
        if not self._records():
            # The last network is gone: so is our table (and any rule a
            # crash left in it), leaving the ruleset as berth found it.
            self.firewall.delete_table()
            self._restore_forwarding()
            roots.unregister(self.firewall.table)

    @_kernel_errors("prune networks")
    def prune(self) -> list[str]:
        """Remove every user-defined network without endpoints (``docker network prune``)."""
        removed = []
        with store.locked(self.dir):
            for rec in self._records():
                if rec["name"] != DEFAULT_NETWORK and not rec.get("endpoints"):
                    self._remove(rec)
                    removed.append(rec["name"])
        return removed

    def get(self, name_or_id: str) -> Network:
        return Network.from_record(self._record(name_or_id), self)

    def list(self) -> list[Network]:
        return [Network.from_record(r, self) for r in self._records()]

    def inspect(self, name_or_id: str) -> dict:
        """A dict shaped like one element of ``docker network inspect``."""
        rec = self._record(name_or_id)
        prefix = ipaddress.IPv4Network(rec["subnet"]).prefixlen
        containers = {
            cid: {"Name": e["name"], "EndpointID": e["endpoint_id"],
                  "MacAddress": e["mac"], "IPv4Address": f"{e['ip']}/{prefix}",
                  "IPv6Address": ""}
            for cid, e in sorted(rec.get("endpoints", {}).items())}
        return {
            "Name": rec["name"], "Id": rec["id"], "Created": rec.get("created", ""),
            "Scope": "local", "Driver": "bridge", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {},
                     "Config": [{"Subnet": rec["subnet"], "Gateway": rec["gateway"]}]},
            "Internal": bool(rec.get("internal")), "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": containers,
            "Options": {"com.docker.network.bridge.name": rec["bridge"]},
            "Labels": dict(rec.get("labels", {})),
        }

    # --- endpoints ----------------------------------------------------------
    def endpoints(self, container_id: str) -> list[Endpoint]:
        """Every endpoint of ``container_id``, in attachment order (eth0 first)."""
        eps = [Endpoint.from_dict(r["endpoints"][container_id]) for r in self._records()
               if container_id in r.get("endpoints", {})]
        for e in eps:
            e.manager = self
        return sorted(eps, key=lambda e: (e.kind, len(e.ifname), e.ifname))

    @_kernel_errors("connect to network")
    def connect(self, network: str, container_id: str, netns_path: str, name: str = "",
                aliases: list[str] | tuple[str, ...] = (), ip: str | None = None,
                mac: str | None = None) -> Endpoint:
        """Attach a container's network namespace (``docker network connect``).

        ``netns_path`` is a pinned namespace (``create_netns``) or
        ``/proc/PID/ns/net``. The first network of a container becomes
        ``eth0`` and carries the default route.
        """
        return self._attach(network, container_id, name, aliases, ip, mac, netns_path, None)

    @_kernel_errors("attach a VM to network")
    def attach_tap(self, network: str, container_id: str, tap_name: str | None = None,
                   name: str = "", aliases: list[str] | tuple[str, ...] = (),
                   ip: str | None = None, mac: str | None = None,
                   owner_uid: int | None = None) -> Endpoint:
        """Attach a VM: a tap on the network's bridge; the returned endpoint's
        ``ip``/``prefixlen``/``gateway``/``mac`` are what the guest configures
        (``host_ifname`` is the tap for QEMU's ``-netdev tap,ifname=``)."""
        return self._attach(network, container_id, name, aliases, ip, mac, None,
                            (tap_name, owner_uid))

    def _attach(self, network: str, container_id: str, name: str, aliases, ip, mac,
                netns_path: str | None, tap: tuple[str | None, int | None] | None) -> Endpoint:
        what = f"connect {name or container_id[:12]} to network {network}"
        _check_id(container_id, what)
        _check_hostnames([name, *aliases] if name else aliases, what)
        if netns_path is not None and not netns.is_netns(netns_path):
            raise UsageError(f"{what}: {netns_path} is not a network namespace")
        if tap and tap[0] is not None and not IFNAME_RE.match(tap[0]):
            raise UsageError(f"{what}: invalid tap name {tap[0]!r} (at most 15 characters)")
        with store.locked(self.dir):
            if network == DEFAULT_NETWORK and not self._path(DEFAULT_NETWORK).is_file():
                self._create(DEFAULT_NETWORK, None, None, False, {})
            rec = self._record(network)
            if container_id in rec.get("endpoints", {}):
                raise Conflict(f"{what}: already connected")
            if aliases and rec["name"] == DEFAULT_NETWORK:
                raise UsageError(f"{what}: network-scoped aliases are only supported for "
                                 "user-defined networks")
            mine = self.endpoints(container_id)
            addr = ipam.allocate(rec, container_id, ip)
            used = {e.ifname for e in mine}
            ifname = "" if tap else next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
            ep = Endpoint(
                network=rec["name"], network_id=rec["id"], container_id=container_id,
                name=name, ip=addr, prefixlen=ipaddress.IPv4Network(rec["subnet"]).prefixlen,
                gateway=rec["gateway"], mac=mac or ipam.mac_for(addr), ifname=ifname,
                host_ifname=(tap and tap[0]) or endpoint.host_ifname(
                    "tap" if tap else "veth"),
                kind="tap" if tap else "veth", netns=netns_path or "",
                aliases=list(aliases), endpoint_id=os.urandom(32).hex(),
                default_route=not rec.get("internal") and not any(e.default_route for e in mine))
            self._ensure_kernel(rec)
            if tap:
                endpoint.attach_tap(ep, rec["bridge"], tap[1])
            else:
                endpoint.attach_veth(ep, rec["bridge"])
            rec.setdefault("endpoints", {})[container_id] = ep.to_dict()
            try:
                self._save(rec, durable=False)
            except BaseException:
                endpoint.detach(ep)
                raise
            self._refresh_hosts(rec["name"])
            ep.manager = self
            return ep

    @_kernel_errors("disconnect from network")
    def disconnect(self, network: str, container_id: str) -> None:
        """Detach a container from a network (``docker network disconnect``)."""
        with store.locked(self.dir):
            rec = self._record(network)
            ep = rec.get("endpoints", {}).get(container_id)
            if ep is None:
                raise NotFound(f"disconnect {container_id[:12]} from network {rec['name']}: "
                               "container is not connected to the network")
            self._detach(rec, Endpoint.from_dict(ep))
            # the peers' files lose its name, and its own file their names
            self._refresh_hosts(rec["name"], also=container_id)

    def _detach(self, rec: dict, ep: Endpoint) -> None:
        endpoint.detach(ep)
        ipam.release(rec, ep.container_id)
        rec.get("endpoints", {}).pop(ep.container_id, None)
        self._save(rec, durable=False)

    # --- ports --------------------------------------------------------------
    @_kernel_errors("publish ports")
    def publish(self, container_id: str, mappings: list[PortMapping]) -> list[PortMapping]:
        """DNAT host ports to the container's first endpoint (``-p``/``-P``).

        Returns the mappings with ephemeral host ports filled in. Raises
        ``Conflict`` when a host port is bound on the host or published by
        another container; nothing is published then.
        """
        if not mappings:
            return []
        _check_id(container_id, "publish ports")
        with store.locked(self.dir):
            eps = self.endpoints(container_id)
            if not eps:
                raise UsageError(f"publish ports of {container_id[:12]}: the container has "
                                 "no bridge network")
            taken = [m for _cid, m, _ip in self.firewall.published()]
            final = resolve(mappings, taken)
            primary = next((e for e in eps if e.default_route), eps[0])
            self.firewall.publish(container_id, primary.ip, final)
            return final

    def ports(self, container_id: str) -> list[PortMapping]:
        """The published ports of ``container_id`` (``docker port``)."""
        return [m for cid, m, _ip in self.firewall.published() if cid == container_id]

    @_kernel_errors("unpublish ports")
    def unpublish(self, container_id: str) -> int:
        with store.locked(self.dir):
            return self.firewall.unpublish(container_id)

    # --- for inspect, port and stats ----------------------------------------
    def container_settings(self, container_id: str) -> dict:
        """``NetworkSettings`` of ``docker inspect`` for ``container_id``."""
        eps = self.endpoints(container_id)
        ports: dict[str, list[dict[str, str]]] = {}
        for m in self.ports(container_id):
            ports.setdefault(f"{m.container_port}/{m.proto}", []).append(
                {"HostIp": m.host_ip or "0.0.0.0", "HostPort": str(m.host_port)})
        networks = {
            e.network: {"NetworkID": e.network_id, "EndpointID": e.endpoint_id,
                        "Gateway": e.gateway, "IPAddress": e.ip, "IPPrefixLen": e.prefixlen,
                        "MacAddress": e.mac, "Aliases": list(e.aliases) or None,
                        "IPv6Gateway": "", "GlobalIPv6Address": "",
                        "GlobalIPv6PrefixLen": 0}
            for e in eps}
        primary = next((e for e in eps if e.network == DEFAULT_NETWORK), None)
        return {
            "Bridge": "", "SandboxKey": next((e.netns for e in eps if e.netns), ""),
            "Ports": ports, "Networks": networks,
            "IPAddress": primary.ip if primary else "",
            "IPPrefixLen": primary.prefixlen if primary else 0,
            "Gateway": primary.gateway if primary else "",
            "MacAddress": primary.mac if primary else "",
        }

    def net_stats(self, container_id: str) -> dict[str, int]:
        """Bytes and packets the container received and sent, over all endpoints.

        Read from the host ends' counters (``/sys/class/net/<dev>/statistics``),
        swapped: what the host end transmits, the container receives.
        """
        out = {"rx_bytes": 0, "tx_bytes": 0, "rx_packets": 0, "tx_packets": 0}
        for e in self.endpoints(container_id):
            base = f"/sys/class/net/{e.host_ifname}/statistics"
            for mine, host in (("rx_bytes", "tx_bytes"), ("tx_bytes", "rx_bytes"),
                               ("rx_packets", "tx_packets"), ("tx_packets", "rx_packets")):
                try:
                    with open(f"{base}/{host}") as f:
                        out[mine] += int(f.read())
                except (OSError, ValueError):
                    pass  # the device is gone (container stopped)
        return out

    # --- hosts and resolv.conf ---------------------------------------------
    def hosts_file(self, container_id: str) -> Path:
        return self.files / container_id / "hosts"

    def resolv_conf(self, container_id: str) -> Path:
        return self.files / container_id / "resolv.conf"

    @_kernel_errors("write hosts and resolv.conf")
    def write_files(self, container_id: str, hostname: str, *, mode: str = "bridge",
                    extra_hosts: list[tuple[str, str]] | tuple = (),
                    dns_servers: list[str] | tuple = (), dns_search: list[str] | tuple = (),
                    dns_options: list[str] | tuple = ()) -> tuple[Path, Path]:
        """Write the container's hosts and resolv.conf; returns their paths.

        Call before the container starts (after ``connect`` so its own
        addresses are in). ``mode`` "host" copies the host's hosts file.
        ``extra_hosts`` are ``(name, ip)`` from ``--add-host``.
        """
        what = f"write hosts file of {container_id[:12]}"
        _check_id(container_id, what)
        _check_hostnames([hostname, *(n for n, _ip in extra_hosts)], what)
        for _n, ip in extra_hosts:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise UsageError(f"{what}: invalid --add-host address {ip!r}") from None
        for server in dns_servers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise UsageError(f"{what}: invalid --dns address {server!r}") from None
        for word in (*dns_search, *dns_options):
            if not word or any(c.isspace() for c in word):
                raise UsageError(f"{what}: invalid --dns-search/--dns-option {word!r}")
        d = self.files / container_id
        d.mkdir(parents=True, exist_ok=True)
        meta = {"hostname": hostname, "mode": mode, "extra_hosts": [list(h) for h in extra_hosts]}
        # not fsync'd (a start after a reboot writes it again; readers skip a damaged one)
        store.write_json_atomic(d / "meta.json", meta, durable=False)
        if mode == "host":
            store.write_in_place(d / "resolv.conf", _read("/etc/resolv.conf"))
        else:
            store.write_in_place(d / "resolv.conf", dns.resolv_text(
                dns_servers, dns_search, dns_options))
        with store.locked(self.dir):
            self._write_hosts(container_id, meta, self._records())
        return self.hosts_file(container_id), self.resolv_conf(container_id)

    def _write_hosts(self, container_id: str, meta: dict, records: list[dict]) -> None:
        extra = [tuple(h) for h in meta.get("extra_hosts", [])]
        if meta.get("mode") == "host":
            text = _read("/etc/hosts") + "".join(f"{ip}\t{n}\n" for n, ip in extra)
            store.write_in_place(self.hosts_file(container_id), text)
            return
        own, peers = [], []
        for r in records:
            eps = r.get("endpoints", {})
            if container_id not in eps:
                continue
            me = eps[container_id]
            own.append((me["ip"], [me["name"], *me["aliases"]] if r["name"] != DEFAULT_NETWORK
                        else []))
            if r["name"] == DEFAULT_NETWORK:
                continue  # like docker0: no names on the default network
            for cid, e in sorted(eps.items()):
                if cid != container_id:
                    peers.append((e["ip"], [e["name"], *e["aliases"], cid[:12]]))
        text = dns.hosts_text(meta.get("hostname") or container_id[:12], own, peers, extra)
        store.write_in_place(self.hosts_file(container_id), text)

    def _refresh_hosts(self, network: str, also: str = "") -> None:
        """Rewrite the hosts file of every container on ``network`` that has
        one (and of container ``also``, just disconnected from it)."""
        records = self._records()
        rec = next((r for r in records if r["name"] == network), None)
        if rec is None:
            return
        for cid in [*rec.get("endpoints", {}), *([also] if also else [])]:
            try:
                meta = store.read_json(self.files / cid / "meta.json")
            except (OSError, ValueError):
                continue  # gone, or cut short by a power loss (it is not fsync'd)
            self._write_hosts(cid, meta, records)

    # --- teardown and cleanup ----------------------------------------------
    @_kernel_errors("release container network")
    def release(self, container_id: str, ports: bool = True) -> None:
        """Everything of a container: ports, endpoints, files (on ``rm``).

        ``ports=False``: it never published any, so the firewall is not
        listed. Safe to call twice and after a crash; each step ignores what
        is gone. (Unpinning the namespace first would take its veths along,
        but the kernel frees a namespace after a full RCU grace period, not
        the expedited one of a deletion: 17-43 ms here against 2-7.)
        """
        _check_id(container_id, "release network of container")
        with store.locked(self.dir):
            if ports:
                self.firewall.unpublish(container_id)
            records = self._records()
            touched = []
            for rec in records:
                ep = rec.get("endpoints", {}).get(container_id)
                if ep is not None:
                    self._detach(rec, Endpoint.from_dict(ep))
                    touched.append(rec["name"])
                elif container_id in rec.get("allocations", {}).values():
                    ipam.release(rec, container_id)
                    self._save(rec)
            remove_tree(self.files / container_id)
            for name in touched:
                self._refresh_hosts(name)

    @_kernel_errors("clean up network leftovers")
    def cleanup_orphans(self, known_container_ids: set[str] | list[str]) -> dict[str, list[str]]:
        """Remove what a crash left behind (``berth system prune``).

        Endpoints, addresses, port rules and files of containers not in
        ``known_container_ids``; rules of networks that have no record; veth
        and tap ports of our bridges that no endpoint owns; bridges in our
        table's set that no network owns. Returns what was removed.
        """
        known = set(known_container_ids)
        report: dict[str, list[str]] = {"containers": [], "rules": [], "links": []}
        with store.locked(self.dir):
            gone: set[str] = set()
            for rec in self._records():
                for cid in list(rec.get("endpoints", {})) + list(rec.get("allocations", {}).values()):
                    if cid not in known:
                        gone.add(cid)
            for cid in sorted(gone):
                self.release(cid)
            cids, nids = self.firewall.owners()
            for cid in sorted(cids - known):
                self.firewall.unpublish(cid)
                report["rules"].append(f"c:{cid}")
            records = self._records()
            ids = {r["id"] for r in records}
            bridges = {r["bridge"] for r in records}
            for nid in sorted(nids - ids):
                self.firewall._delete_where(lambda c, nid=nid: c == f"n:{nid}")
                report["rules"].append(f"n:{nid}")
            owned = {e["host_ifname"] for r in records for e in r.get("endpoints", {}).values()}
            with Netlink() as nl:
                links = nl.links()
                by_index = {v["index"]: k for k, v in links.items()}
                ours = set(self.firewall.bridge_set()) | bridges
                for lname, info in links.items():
                    master = by_index.get(info["master"])
                    if master in ours and lname not in owned and info["kind"] in ("veth", "tun"):
                        nl.del_link(lname)
                        report["links"].append(lname)
                for b in sorted(set(self.firewall.bridge_set()) - bridges):
                    if b in links:
                        nl.del_link(b)
                        report["links"].append(b)
                    self.firewall.forget_bridge(b)
            if self.files.is_dir():
                for d in self.files.iterdir():
                    if d.name not in known:
                        remove_tree(d)
                        gone.add(d.name)
            report["containers"] = sorted(gone)
        return report


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""

"""Bridge and user-defined networks for a container, over ``berth.engine.network``.

At create: the network is checked and the paths are fixed (the namespace is
pinned at ``<root>/netns/<id>``; /etc/hosts and /etc/resolv.conf are the
network library's files for the container), so config.json can name them.
At start (``up``): the namespace is created, connected (veth, IP, aliases),
ports published (-p/-P) and the files written; ``up`` is idempotent, so a
restarted container keeps its address. At rm (``down``): everything goes
(``release`` then the namespace), also after a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

from berth.engine.netsetup import NetPlan, netns_dir
from berth.errors import NotFound
from berth.paths import NETFILES

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


class BridgePlan(NetPlan):
    network: str = "bridge"
    hostname: str = ""
    extra_hosts: list = []
    dns: list = []
    extra: list = []  # further networks: [{"Network", "Aliases", "IPv4Address"}]

    @property
    def lib(self):
        """``berth.engine.network``, imported when first needed: ``run`` plans
        without it, and imports it while the container is being created."""
        from berth.engine import network

        return network

    def _nm(self):
        return self.lib.NetworkManager(str(self.engine.root))

    def _files(self) -> tuple[Path, Path]:
        """The hosts and resolv.conf the library writes (NetworkManager's
        hosts_file/resolv_conf), without importing it."""
        d = Path(self.engine.root) / NETFILES / self.cid
        return d / "hosts", d / "resolv.conf"

    def file_mounts(self, cdir: Path, hostname: str, opts) -> list[dict]:
        (cdir / "hostname").write_text(hostname + "\n")
        hosts, resolv = self._files()
        ro = "ro" if opts.read_only else "rw"
        return [
            {"destination": "/etc/hostname", "type": "bind", "source": str(cdir / "hostname"), "options": ["rbind", ro]},
            {"destination": "/etc/hosts", "type": "bind", "source": str(hosts), "options": ["rbind", ro]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": str(resolv), "options": ["rbind", ro]},
        ]

    def record(self) -> dict[str, Any]:
        d = super().record()
        d.update({"Network": self.network, "Hostname": self.hostname, "ExtraHosts": self.extra_hosts,
                  "Dns": self.dns, "NetnsPath": self.netns_path, "VM": self.vm, "Extra": self.extra})
        return d

    vm: bool = False

    def prepare(self) -> None:
        """What the runtime's create needs: the namespace it joins and the files
        it bind-mounts (empty until ``up`` writes them in place)."""
        if self.vm:
            return
        if not os.path.exists(self.netns_path):
            from berth._sys.netns import create_netns

            create_netns(self.netns_path)
        for f in self._files():
            if not f.exists():
                f.parent.mkdir(parents=True, exist_ok=True)
                f.touch()

    def up(self) -> None:
        if self.vm:
            self._up_vm()
            return
        nm = self._nm()
        path = self.netns_path
        if nm.endpoints(self.cid) and os.path.exists(path):
            return
        # the library writes the hosts/resolv.conf files the bundle already names
        if not os.path.exists(path):
            self.lib.create_netns(path)
        try:
            nm.connect(self.network, self.cid, path, name=self.name, aliases=list(self.aliases))
            for x in self.extra:  # ``network connect`` (berth.engine.netconnect)
                nm.connect(x["Network"], self.cid, path, name=self.name, aliases=x.get("Aliases") or [],
                           ip=x.get("IPv4Address"))
            maps = [self.lib.PortMapping(p["container_port"], p.get("host_port") or 0, p.get("host_ip") or "",
                                         p.get("proto") or "tcp") for p in self.endpoint.get("WantPorts", [])]
            if maps:
                self._reclaim_ports(nm, maps)
                nm.publish(self.cid, maps)
            hosts = _extra_hosts(self.extra_hosts, nm.endpoints(self.cid))
            nm.write_files(self.cid, self.hostname, mode="bridge", extra_hosts=hosts, dns_servers=self.dns)
        except BaseException:
            self.down()
            raise

    def _reclaim_ports(self, nm, maps) -> None:
        """docker frees a container's published ports when it stops: a stopped
        container of this root that still holds a wanted host port gives up its
        network now (``start`` brings it back). One that is being started or
        removed right now (its lock is held) keeps it, and publish then refuses."""
        import fcntl

        from berth.engine.containers import RUNNING_STATES
        from berth.engine.netsetup import network_for
        from berth.engine.network.ports import overlaps
        from berth.errors import NotFound

        holders = {cid for cid, m, _ip in nm.firewall.published()
                   if cid != self.cid and any(overlaps(m, w) for w in maps)}
        for cid in holders:
            try:
                rec = self.engine.get(cid)
            except NotFound:
                continue  # not this engine's container (another root's rule, or a crash: prune)
            lockdir = self.engine.root / "locks"
            lockdir.mkdir(exist_ok=True)
            fd = os.open(lockdir / cid, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                rs = self.engine.run_state(rec)
                if rs.status not in RUNNING_STATES and not rs.monitor_alive:
                    network_for(self.engine, rec).down()
            finally:
                os.close(fd)

    def _up_vm(self) -> None:
        """A VM gets a tap on the bridge instead of a veth in a namespace; the
        runtime learns it from annotations (written into config.json here)."""
        nm = self._nm()
        eps = nm.endpoints(self.cid)
        try:
            ep = eps[0] if eps else nm.attach_tap(self.network, self.cid, f"bt{self.cid[:11]}", name=self.name,
                                                  aliases=list(self.aliases))
            maps = [self.lib.PortMapping(p["container_port"], p.get("host_port") or 0, p.get("host_ip") or "",
                                         p.get("proto") or "tcp") for p in self.endpoint.get("WantPorts", [])]
            if maps and not eps:
                nm.publish(self.cid, maps)
            hosts = _extra_hosts(self.extra_hosts, [ep])
            nm.write_files(self.cid, self.hostname, mode="bridge", extra_hosts=hosts, dns_servers=self.dns)
        except BaseException:
            self.down()
            raise
        import json

        cfg_path = self.engine.cdir(self.cid) / "config.json"
        cfg = json.loads(cfg_path.read_text())
        ann = cfg.setdefault("annotations", {})
        ann["org.berth.vm.tap"] = ep.host_ifname
        ann["org.berth.vm.mac"] = ep.mac
        # the guest's address (proposed to berth.runtime.vm: eth0 with this config)
        ann["org.berth.vm.net"] = json.dumps({"ifname": "eth0", "address": ep.ip, "prefixlen": ep.prefixlen,
                                              "gateway": ep.gateway, "mac": ep.mac})
        tmp = cfg_path.with_name(".config.json.tmp")
        tmp.write_text(json.dumps(cfg))
        os.rename(tmp, cfg_path)

    def down(self) -> None:
        try:
            self._nm().release(self.cid, ports=bool(self.endpoint.get("WantPorts")))
        finally:
            if self.netns_path and not self.vm:
                self.lib.remove_netns(self.netns_path)

    def published(self) -> list[dict]:
        if not self.endpoint.get("WantPorts"):
            return []  # nothing was published: no need to list the firewall's rules
        return [{"container_port": m.container_port, "host_port": m.host_port, "host_ip": m.host_ip,
                 "proto": m.proto} for m in self._nm().ports(self.cid)]

    def settings(self) -> dict:
        return self._nm().container_settings(self.cid)


def _extra_hosts(specs: list[str], eps) -> list[tuple[str, str]]:
    """--add-host HOST:IP pairs; docker's ``host-gateway`` is the network's
    gateway, the host's address on the container's bridge."""
    gw = eps[0].gateway if eps else ""
    out = []
    for h in specs:
        name, _, ip = h.partition(":")
        out.append((name, gw if ip == "host-gateway" else ip.strip("[]")))
    return out


def _make(engine, mode: str, cid: str, name: str) -> BridgePlan:
    plan = BridgePlan(engine, mode, cid, name)
    plan.network = mode
    plan.netns_path = str(netns_dir(engine.root) / cid)
    return plan


def plan_bridge(engine, opts, mode: str, cid: str, name: str, hostname: str, check: bool = True) -> BridgePlan:
    """``check=False`` (run): the network is not looked up here; ``up``'s
    connect does it (NotFound, or the default network made), before the
    container starts."""
    plan = _make(engine, mode, cid, name)
    if check:
        nm = plan._nm()
        if mode == "bridge":
            try:
                # an existing default network's bridge and rules are checked
                # (and remade after a reboot) by connect at start: not twice per run
                nm.get(mode)
            except NotFound:
                nm.ensure_default()
        else:
            nm.get(mode)  # NotFound for an unknown network, before anything is made
    plan.vm = opts.isolation == "vm"
    if plan.vm:
        plan.netns_path = None
    plan.aliases = list(opts.network_aliases)
    plan.hostname = hostname
    plan.extra_hosts = list(opts.add_hosts)
    plan.dns = list(opts.dns)
    want = [{"container_port": p.container_port, "host_port": p.host_port, "host_ip": p.host_ip, "proto": p.proto}
            for p in opts.ports]
    if opts.publish_all:
        have = {(p["container_port"], p["proto"]) for p in want}
        for key in opts_exposed(opts):
            port, _, proto = key.partition("/")
            if (int(port), proto or "tcp") not in have:
                want.append({"container_port": int(port), "host_port": 0, "host_ip": "", "proto": proto or "tcp"})
    plan.endpoint = {"WantPorts": want}
    plan.ports = []
    return plan


def opts_exposed(opts) -> list[str]:
    return list(getattr(opts, "_exposed", []) or [])


def bridge_for(engine, rec: dict) -> BridgePlan:
    net = rec.get("Network") or {}
    plan = _make(engine, net.get("Network") or net.get("Mode", "bridge"), rec["Id"], rec["Name"])
    plan.vm = bool(net.get("VM"))
    plan.netns_path = None if plan.vm else (net.get("NetnsPath") or plan.netns_path)
    plan.aliases = net.get("Aliases") or []
    plan.hostname = net.get("Hostname") or rec["Config"]["Hostname"]
    plan.extra_hosts = net.get("ExtraHosts") or []
    plan.dns = net.get("Dns") or []
    plan.extra = net.get("Extra") or []
    plan.endpoint = net.get("Endpoint") or {}
    return plan

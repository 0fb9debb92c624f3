"""A container's network namespace and its /etc/hosts, /etc/resolv.conf, /etc/hostname.

Modes: ``none`` (a new namespace with only loopback), ``host`` (the host's
namespace), ``container:ID`` (join another container's namespace), and
``bridge`` (``default``) or a user network name, through
``berth.engine.network`` (see netbridge.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from berth.engine._record import factory, record
from berth.errors import Conflict, UsageError

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

LOCAL_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def _network_lib():
    """``berth.engine.network``, imported when first needed (~4 ms)."""
    from berth.engine import network

    return network


@record
class NetPlan:
    engine: Any
    mode: str
    cid: str
    name: str
    netns_path: str | None = None
    aliases: list[str] = factory(list)
    ports: list = factory(list)
    endpoint: dict = factory(dict)

    def file_mounts(self, cdir: Path, hostname: str, opts) -> list[dict]:
        """Write hostname/hosts/resolv.conf and return their bind mounts."""
        (cdir / "hostname").write_text(hostname + "\n")
        hosts = LOCAL_HOSTS
        if self.mode == "host":
            try:
                hosts = Path("/etc/hosts").read_text()
            except OSError:
                pass
        for h in opts.add_hosts:
            host, sep, ip = h.partition(":")
            if not sep or not host or not ip:
                raise UsageError(f"invalid --add-host {h!r}: expected HOST:IP")
            hosts += f"{'127.0.0.1' if ip == 'host-gateway' else ip.strip('[]')}\t{host}\n"  # host network: the host
        (cdir / "hosts").write_text(hosts)
        (cdir / "resolv.conf").write_text(_resolv_conf(opts.dns))
        ro = ["rbind", "rw"] if not opts.read_only else ["rbind", "ro"]
        return [{"destination": f"/etc/{f}", "type": "bind", "source": str(cdir / f), "options": list(ro)}
                for f in ("hostname", "hosts", "resolv.conf")]

    def record(self) -> dict[str, Any]:
        return {"Mode": self.mode, "Ports": [p.__dict__ for p in self.ports], "Aliases": self.aliases,
                "Endpoint": self.endpoint}

    def prepare(self) -> None:
        """Make what the runtime's create needs (then ``up`` may run beside it)."""

    def up(self) -> None:
        pass

    def down(self) -> None:
        pass

    def published(self) -> list[dict]:
        """Published ports after ``up`` (ephemeral host ports filled in)."""
        return []

    def settings(self) -> dict | None:
        """docker inspect's NetworkSettings, when the network library has them."""
        return None


def _resolv_conf(dns: list[str]) -> str:
    if dns:
        return "".join(f"nameserver {d}\n" for d in dns)
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    # a host resolver on 127.0.0.0/8 is unreachable from the container's namespace
    out = [ln for ln in lines if not (ln.split()[:1] == ["nameserver"] and ln.split()[1:2] and
                                      (ln.split()[1].startswith("127.") or ln.split()[1] == "::1"))]
    if not any(ln.startswith("nameserver") for ln in out):
        out += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(out) + "\n"


def plan_network(engine, opts, cid: str, name: str, hostname: str, check: bool = True) -> NetPlan:
    """``check=False`` (run): a bridge or user network is looked up at start
    (see netbridge.plan_bridge), not here."""
    mode = opts.network or "default"
    if mode == "default":
        mode = "bridge"
    if mode in ("none", "host"):
        if opts.ports and mode == "none":
            raise UsageError("publishing ports (-p) needs a network; --network none has none")
        return NetPlan(engine, mode, cid, name)
    if mode.startswith("container:"):
        other = engine.get(mode.split(":", 1)[1])
        rs = engine.run_state(other)
        if rs.status != "running" or not rs.pid:
            raise Conflict(f"join network of container {other['Name']}: container is not running")
        return NetPlan(engine, f"container:{other['Id']}", cid, name, netns_path=f"/proc/{rs.pid}/ns/net")
    # the network library (~4 ms of imports) is imported when first used
    from berth.engine.netbridge import plan_bridge

    return plan_bridge(engine, opts, mode, cid, name, hostname, check)


def network_for(engine, rec: dict) -> NetPlan:
    """The network plan of an existing container (to bring it up or down)."""
    net = rec.get("Network") or {}
    mode = net.get("Mode", "none")
    if mode in ("none", "host") or mode.startswith("container:"):
        return NetPlan(engine, mode, rec["Id"], rec["Name"])
    from berth.engine.netbridge import bridge_for

    return bridge_for(engine, rec)


def netns_dir(root: Path) -> Path:
    d = Path(root) / "netns"
    os.makedirs(d, exist_ok=True)
    return d

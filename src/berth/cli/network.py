"""``berth network create|ls|inspect|rm|connect|disconnect|prune`` over ``berth.engine.network``."""

from __future__ import annotations

import json
import sys

from berth.cli.common import Parser
from berth.errors import BerthError, Conflict, UsageError

SUBS = {
    "create": "Create a network", "ls": "List networks", "inspect": "Display network information",
    "rm": "Remove networks", "connect": "Connect a container to a network",
    "disconnect": "Disconnect a container from a network", "prune": "Remove unused networks",
}


def _nm(opts):
    from berth.engine.netsetup import _network_lib

    lib = _network_lib()
    if lib is None:
        raise UsageError("network: bridge and user networks are not available in this build yet")
    return lib, lib.NetworkManager(opts.root)


def main(name: str, argv: list[str], opts) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage: berth network COMMAND\n\nManage networks\n\nCommands:")
        for k, v in SUBS.items():
            print(f"  {k:<11} {v}")
        return 0
    verb = {"list": "ls", "remove": "rm"}.get(argv[0], argv[0])
    if verb not in SUBS:
        raise UsageError(f"'network {argv[0]}' is not a berth command (see 'berth network --help')")
    p = Parser(prog=f"berth network {verb}", description=SUBS[verb])
    rest = argv[1:]
    if verb == "create":
        p.add_argument("--subnet", help="CIDR, e.g. 10.90.0.0/24")
        p.add_argument("--gateway", help="gateway address in the subnet")
        p.add_argument("--internal", action="store_true", help="no outbound access")
        p.add_argument("--label", action="append", default=[], help="KEY=VALUE")
        p.add_argument("-d", "--driver", default="bridge", help="bridge (the only driver)")
        p.add_argument("name")
        a = p.parse_args(rest)
        if a.driver != "bridge":
            raise UsageError(f"network create: driver {a.driver!r} is not supported (bridge only)")
        from berth.engine.options import parse_labels

        _, nm = _nm(opts)
        net = nm.create(a.name, subnet=a.subnet, gateway=a.gateway, internal=a.internal,
                        labels=parse_labels(a.label))
        print(getattr(net, "id", a.name))
        return 0
    if verb == "ls":
        p.add_argument("-q", "--quiet", action="store_true", help="only IDs")
        p.add_argument("--format", help="table (default), json or a template")
        a = p.parse_args(rest)
        from berth.cli.format import print_rows

        _, nm = _nm(opts)
        rows = []
        for n in nm.list():
            d = nm.inspect(n.name)
            rows.append({"ID": d.get("Id", "")[:12], "Name": d.get("Name", n.name), "Driver": d.get("Driver", "bridge"),
                         "Scope": d.get("Scope", "local")})
        print_rows(rows, a.format, [("NETWORK ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver"), ("SCOPE", "Scope")],
                   "ID", a.quiet)
        return 0
    if verb == "inspect":
        p.add_argument("networks", nargs="+")
        a = p.parse_args(rest)
        _, nm = _nm(opts)
        print(json.dumps([nm.inspect(n) for n in a.networks], indent=4))
        return 0
    if verb == "rm":
        p.add_argument("networks", nargs="+")
        a = p.parse_args(rest)
        _, nm = _nm(opts)
        rc = 0
        for n in a.networks:
            try:
                nm.remove(n)
                print(n)
            except BerthError as e:
                sys.stderr.write(f"berth: {e}\n")
                rc = e.exit_code
        return rc
    if verb == "prune":
        p.add_argument("-f", "--force", action="store_true", help="do not prompt (berth never prompts)")
        p.parse_args(rest)
        _, nm = _nm(opts)
        for n in nm.list():
            if n.name == "bridge":
                continue
            try:
                nm.remove(n.name)
                print(n.name)
            except Conflict:
                pass
        return 0
    # connect / disconnect
    p.add_argument("network")
    p.add_argument("container")
    if verb == "connect":
        p.add_argument("--alias", action="append", default=[], help="extra DNS name")
        p.add_argument("--ip", help="IPv4 address")
    a = p.parse_args(rest)
    from berth.engine.containers import Engine

    eng = Engine(opts.root)
    rec = eng.get(a.container)
    _, nm = _nm(opts)
    if verb == "disconnect":
        nm.disconnect(a.network, rec["Id"])
        return 0
    rs = eng.run_state(rec)
    ns = (rec.get("Network") or {}).get("NetnsPath") or (f"/proc/{rs.pid}/ns/net" if rs.pid else "")
    if not ns or rs.status != "running" and not (rec.get("Network") or {}).get("NetnsPath"):
        raise Conflict(f"network connect {a.network} {rec['Name']}: container has no network namespace to connect")
    nm.connect(a.network, rec["Id"], ns, name=rec["Name"], aliases=a.alias, ip=a.ip)
    return 0

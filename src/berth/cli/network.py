"""``berth network create|ls|inspect|rm|connect|disconnect|prune`` over ``berth.engine.network``."""

from __future__ import annotations

import json
import sys

from berth.cli.common import Parser, parse_filters
from berth.errors import BerthError, UsageError

SUBS = {
    "create": "Create a network", "ls": "List networks", "inspect": "Display network information",
    "rm": "Remove networks", "connect": "Connect a container to a network",
    "disconnect": "Disconnect a container from a network", "prune": "Remove unused networks",
}


def _networks(opts):
    from berth.engine.client import Client

    return Client(opts.root).networks


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
        from berth.engine.options import parse_labels

        net = _networks(opts).create(a.name, driver=a.driver, internal=a.internal, labels=parse_labels(a.label),
                                     subnet=a.subnet, gateway=a.gateway)
        print(net.id)
        return 0
    if verb == "ls":
        p.add_argument("-q", "--quiet", action="store_true", help="only IDs")
        p.add_argument("--format", help="table (default), json or a template")
        p.add_argument("-f", "--filter", action="append", default=[],
                       help="name=, id=, label=KEY[=VALUE], driver=, type=custom|builtin, dangling=true|false")
        a = p.parse_args(rest)
        from berth.cli.format import print_rows

        rows = [{"ID": n.id[:12], "Name": n.name, "Driver": n.attrs["Driver"], "Scope": n.attrs["Scope"]}
                for n in _networks(opts).list(filters=parse_filters(a.filter))]
        print_rows(rows, a.format, [("NETWORK ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver"), ("SCOPE", "Scope")],
                   "ID", a.quiet)
        return 0
    if verb == "inspect":
        p.add_argument("networks", nargs="+")
        a = p.parse_args(rest)
        nets = _networks(opts)
        print(json.dumps([nets.get(n).attrs for n in a.networks], indent=4))
        return 0
    if verb == "rm":
        p.add_argument("networks", nargs="+")
        a = p.parse_args(rest)
        nets = _networks(opts)
        rc = 0
        for n in a.networks:
            try:
                nets.get(n).remove()
                print(n)
            except BerthError as e:
                sys.stderr.write(f"berth: {e}\n")
                rc = e.exit_code
        return rc
    if verb == "prune":
        p.add_argument("-f", "--force", action="store_true", help="do not prompt (berth never prompts)")
        p.add_argument("--filter", action="append", default=[], help="label=KEY[=VALUE]")
        a = p.parse_args(rest)
        for n in _networks(opts).prune(filters=parse_filters(a.filter))["NetworksDeleted"]:
            print(n)
        return 0
    # connect / disconnect
    p.add_argument("network")
    p.add_argument("container")
    if verb == "connect":
        p.add_argument("--alias", action="append", default=[], help="extra DNS name on this network")
        p.add_argument("--ip", help="IPv4 address in the network's subnet")
    else:
        p.add_argument("-f", "--force", action="store_true",
                       help="also when berth no longer knows the container")
    a = p.parse_args(rest)
    net = _networks(opts).get(a.network)
    if verb == "disconnect":
        net.disconnect(a.container, force=a.force)
    else:
        net.connect(a.container, aliases=a.alias, ipv4_address=a.ip)
    return 0

"""``berth volume create|ls|inspect|rm|prune``."""

from __future__ import annotations

import json

from berth.cli.common import Parser
from berth.errors import BerthError, UsageError


def _vols(opts):
    from berth.engine.client import Client

    return Client(opts.root)._volumes()


def main(name: str, argv: list[str], opts) -> int:
    subs = {"create": "Create a volume", "ls": "List volumes", "inspect": "Display volume information",
            "rm": "Remove volumes", "prune": "Remove unused volumes"}
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage: berth volume COMMAND\n\nManage volumes\n\nCommands:")
        for k, v in subs.items():
            print(f"  {k:<8} {v}")
        return 0
    verb = {"list": "ls", "remove": "rm"}.get(argv[0], argv[0])
    if verb not in subs:
        raise UsageError(f"'volume {argv[0]}' is not a berth command (see 'berth volume --help')")
    p = Parser(prog=f"berth volume {verb}", description=subs[verb])
    vols = _vols(opts)
    if verb == "create":
        p.add_argument("--label", action="append", default=[], help="KEY=VALUE")
        p.add_argument("name", nargs="?")
        a = p.parse_args(argv[1:])
        from berth.engine.options import parse_labels

        print(vols.create(a.name, parse_labels(a.label))["Name"])
    elif verb == "ls":
        p.add_argument("-q", "--quiet", action="store_true", help="only names")
        p.add_argument("--format", help="table (default), json or a template")
        a = p.parse_args(argv[1:])
        from berth.cli.format import print_rows

        rows = [{"Driver": v["Driver"], "Name": v["Name"], "Mountpoint": v["Mountpoint"]} for v in vols.list()]
        print_rows(rows, a.format, [("DRIVER", "Driver"), ("VOLUME NAME", "Name")], "Name", a.quiet)
    elif verb == "inspect":
        p.add_argument("names", nargs="+")
        a = p.parse_args(argv[1:])
        print(json.dumps([vols.get(n) for n in a.names], indent=4))
    elif verb == "rm":
        p.add_argument("-f", "--force", action="store_true", help="(accepted for docker compatibility)")
        p.add_argument("names", nargs="+")
        a = p.parse_args(argv[1:])
        rc = 0
        for n in a.names:
            try:
                vols.remove(n, a.force)
                print(n)
            except BerthError as e:
                import sys

                sys.stderr.write(f"berth: {e}\n")
                rc = e.exit_code
        return rc
    elif verb == "prune":
        p.add_argument("-f", "--force", action="store_true", help="do not prompt (berth never prompts)")
        p.parse_args(argv[1:])
        names, size = vols.prune()
        for n in names:
            print(n)
        print(f"Total reclaimed space: {size}B")
    return 0

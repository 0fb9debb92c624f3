"""``berth volume create|ls|inspect|rm|prune``."""

from __future__ import annotations

import json

from berth.cli.common import Parser, parse_filters
from berth.errors import BerthError, UsageError


def _vols(opts):
    from berth.engine.client import Client

    return Client(opts.root).volumes


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

        print(vols.create(a.name, labels=parse_labels(a.label)).name)
    elif verb == "ls":
        p.add_argument("-q", "--quiet", action="store_true", help="only names")
        p.add_argument("--format", help="table (default), json or a template")
        p.add_argument("-f", "--filter", action="append", default=[],
                       help="name=, label=KEY[=VALUE], driver=, dangling=true|false")
        a = p.parse_args(argv[1:])
        from berth.cli.format import print_rows

        rows = [{k: v.attrs[k] for k in ("Driver", "Name", "Mountpoint")}
                for v in vols.list(filters=parse_filters(a.filter))]
        print_rows(rows, a.format, [("DRIVER", "Driver"), ("VOLUME NAME", "Name")], "Name", a.quiet)
    elif verb == "inspect":
        p.add_argument("names", nargs="+")
        a = p.parse_args(argv[1:])
        print(json.dumps([vols.get(n).attrs for n in a.names], indent=4))
    elif verb == "rm":
        p.add_argument("-f", "--force", action="store_true", help="no error for a volume that does not exist")
        p.add_argument("names", nargs="+")
        a = p.parse_args(argv[1:])
        rc = 0
        for n in a.names:
            try:
                vols.client._volumes().remove(n, force=a.force)
                print(n)
            except BerthError as e:
                import sys

                sys.stderr.write(f"berth: {e}\n")
                rc = e.exit_code
        return rc
    elif verb == "prune":
        p.add_argument("-f", "--force", action="store_true", help="do not prompt (berth never prompts)")
        p.add_argument("-a", "--all", action="store_true", help="also named volumes (default: anonymous only)")
        p.add_argument("--filter", action="append", default=[], help="label=KEY[=VALUE]")
        a = p.parse_args(argv[1:])
        f = parse_filters(a.filter)
        if a.all:
            f["all"] = ["true"]
        r = vols.prune(filters=f)
        names, size = r["VolumesDeleted"], r["SpaceReclaimed"]
        for n in names:
            print(n)
        print(f"Total reclaimed space: {size}B")
    return 0

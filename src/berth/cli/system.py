"""``berth system info|df|prune|reset`` and ``berth version``, ``berth info``."""

from __future__ import annotations

import json

from berth.cli.common import Parser
from berth.errors import UsageError


def _client(opts):
    from berth.engine.client import Client

    return Client(opts.root)


def cmd_info(argv, opts, prog) -> int:
    p = Parser(prog=prog, description="Display system-wide information")
    p.add_argument("-f", "--format", help="json")
    a = p.parse_args(argv)
    d = _client(opts).info()
    if a.format == "json" or (a.format and "json" in a.format):
        print(json.dumps(d))
        return 0
    for k, v in d.items():
        if k == "VMAccelerator" and isinstance(v, dict):  # "tcg (why)", not a dict's repr
            v = f"{v.get('Name') or 'none'} ({v.get('Reason')})"
        print(f"{k}: {v}")
    return 0


def cmd_df(argv, opts, prog) -> int:
    from berth.cli.format import human_size, print_rows
    from berth.engine.system import df

    p = Parser(prog=prog, description="Show berth disk usage")
    p.add_argument("--format", help="table (default), json or a template")
    a = p.parse_args(argv)
    rows = [dict(r, Size=human_size(r["Size"])) for r in df(_client(opts).engine)]
    print_rows(rows, a.format, [("TYPE", "Type"), ("TOTAL", "Total"), ("ACTIVE", "Active"), ("SIZE", "Size")])
    return 0


def cmd_prune(argv, opts, prog) -> int:
    from berth.engine.system import prune

    p = Parser(prog=prog, description="Remove stopped containers, dangling images and what crashed runs left behind")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt (berth never prompts)")
    p.add_argument("--volumes", action="store_true", help="also remove unused volumes")
    p.add_argument("-a", "--all", action="store_true", help="remove every unused image, not only dangling ones")
    a = p.parse_args(argv)
    r = prune(_client(opts).engine, volumes=a.volumes, all_images=a.all)
    _print_deleted(r)
    print(f"Total reclaimed space: {r['SpaceReclaimed']}B")
    return 0


# (result key, what a line says) in the order prune and reset print them
_DELETED = [("ContainersDeleted", "deleted container"), ("Leftovers", "cleaned leftover"),
            ("VolumesDeleted", "deleted volume"), ("ImagesDeleted", "deleted image"),
            ("NetworksDeleted", "deleted network")]


def _print_deleted(result: dict) -> None:
    for key, what in _DELETED:
        for item in result.get(key, ()):
            print(f"{what} {item}")


def cmd_reset(argv, opts, prog) -> int:
    from berth.engine.system import reset

    p = Parser(prog=prog, description="Remove every container, image, volume and network of this root, "
                                      "the default bridge and berth's firewall table included (like podman system reset)")
    p.add_argument("-f", "--force", action="store_true", help="required: berth never prompts")
    a = p.parse_args(argv)
    if not a.force:
        raise UsageError("system reset removes every container, image, volume and network of "
                         f"{opts.root}: confirm with --force")
    _print_deleted(reset(_client(opts).engine))
    return 0


def cmd_version(argv, opts, prog) -> int:
    p = Parser(prog=prog, description="Show the berth version information")
    p.add_argument("-f", "--format", help="json")
    a = p.parse_args(argv)
    d = _client(opts).version()
    if a.format:
        print(json.dumps(d))
        return 0
    for k, v in d.items():
        print(f"{k}: {v}")
    return 0


SUB = {"info": cmd_info, "df": cmd_df, "prune": cmd_prune, "reset": cmd_reset}


def main(name: str, argv: list[str], opts) -> int:
    if name == "version":
        return cmd_version(argv, opts, "berth version")
    if name == "info":
        return cmd_info(argv, opts, "berth info")
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage: berth system COMMAND\n\nManage berth\n\nCommands:\n"
              "  df     Show disk usage\n  info   Display system-wide information\n"
              "  prune  Remove stopped containers and leftovers of crashes\n"
              "  reset  Remove everything of this root, the default network included")
        return 0
    if argv[0] not in SUB:
        raise UsageError(f"'system {argv[0]}' is not a berth command (see 'berth system --help')")
    return SUB[argv[0]](argv[1:], opts, f"berth system {argv[0]}")

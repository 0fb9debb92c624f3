"""``berth compare IMAGE [-- CMD...]``: the VM-versus-container table, measured here."""

import json
import os
import sys

from berth.cli.common import Parser
from berth.errors import UsageError

USAGE = ("berth compare IMAGE [-- CMD...] [--runs N] [--scale K] [--modes container,vm,gvisor]\n"
         "       [--memory-budget SIZE] [--json] [--html FILE]")


def _parser() -> Parser:
    p = Parser(prog="berth compare", usage=USAGE,
               description="Run IMAGE as a container, a microVM and a gVisor sandbox, and measure "
                           "the article's table row by row on this host.")
    p.add_argument("image", help="image in the engine's store, or the built-in busybox")
    p.add_argument("--runs", type=int, metavar="N", default=5, help="warm runs per mode for the start-time percentiles (default 5)")
    p.add_argument("--scale", type=int, metavar="K", default=4, help="instances started concurrently (default 4)")
    p.add_argument("--modes", default="container,vm,gvisor", metavar="LIST", help="modes to measure, comma-separated (default container,vm,gvisor)")
    p.add_argument("--memory-budget", metavar="SIZE", help="budget for the instances-that-fit figure (default: MemAvailable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (schema: berth/engine/compare/schema.json)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with plots")
    return p


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _print_table(doc: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from berth.engine.compare.table import ROWS, cells, use_case_cell

    modes = list(doc["modes"])
    t = Table(title=f"berth compare {doc['image']['ref']}: {' '.join(doc['workload']['argv'])}  "
                    f"(runs={doc['params']['runs']}, K={doc['params']['scale']})", show_lines=False)
    t.add_column("", style="bold", no_wrap=True)
    for m in modes:
        t.add_column(f"{m}\n[dim]{doc['modes'][m]['via']}[/dim]", overflow="fold")
    cols = {m: cells(doc, m) for m in modes}
    last = None
    for i, (section, label, _) in enumerate(ROWS):
        if section != last:
            t.add_row(f"[cyan]{section}[/cyan]", *[""] * len(modes), end_section=False)
            last = section
        t.add_row(f"  {label}", *[cols[m][i] for m in modes])
    t.add_row("[cyan]Use cases[/cyan]", *[""] * len(modes))
    t.add_row("  chosen by isolation auto for", *[use_case_cell(doc, m) for m in modes])
    # Piped output is read in wide viewers and logs: do not squeeze it to 80 columns.
    con = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    con.print(t)
    rec = doc["use_cases"]["recommendation"]
    for label, r in (("Recommendation for this workload", rec), ("For untrusted code", rec["untrusted"])):
        con.print(f"{label}: [bold]{r['mode'] or 'none of the modes measured'}[/bold] ({escape(r['reason'])})",
                  highlight=False)
    con.print("[dim]Every figure measured in this run; isolation score rules in docs/compare.md.[/dim]")


def main(name: str, argv: list[str], opts) -> int:
    from berth.engine.compare.core import compare, parse_modes, parse_size

    own, cmd = _split(argv)
    args = _parser().parse_args(own)
    if args.runs < 1 or args.scale < 1:
        raise UsageError("compare: --runs and --scale must be at least 1")
    modes = parse_modes(args.modes)
    budget = parse_size(args.memory_budget) if args.memory_budget else None
    if args.html:
        parent = os.path.dirname(os.path.abspath(args.html))
        if not os.path.isdir(parent):
            raise UsageError(f"compare: --html {args.html}: directory {parent} does not exist")
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status("measuring…") as status:
            doc = compare(opts.root, args.image, cmd or None, runs=args.runs, scale=args.scale, modes=modes,
                          memory_budget=budget, progress=lambda s: status.update(f"measuring {s}"))
    else:
        doc = compare(opts.root, args.image, cmd or None, runs=args.runs, scale=args.scale, modes=modes,
                      memory_budget=budget)
    if args.html:
        from berth.engine.compare.html import render

        tmp = f"{args.html}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(render(doc))
        os.replace(tmp, args.html)
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        _print_table(doc)
    return 0

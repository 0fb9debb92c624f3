"""The table's rows as text: one definition shared by the terminal table and the HTML report."""

from collections.abc import Callable

Cell = Callable[[dict], str]


def mib(b: float | None) -> str:
    if b is None:
        return "?"
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB" if b >= 2**20 else f"{b / 1024:.0f} KiB"


def secs(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def _row(key: str, fn: Cell) -> Cell:
    def cell(col: dict) -> str:
        data = col.get(key)
        if data is None:
            return f"failed: {col['errors'].get(key, '?')}" if col["available"] else "—"
        return fn(data)

    return cell


def _virt_kernel(v: dict) -> str:
    return f"{v['kernel_release']} ({'host' if v['host_kernel'] else 'own'})"


def _procs(r: dict) -> str:
    by: dict[str, int] = {}
    for p in r["idle_processes"]:
        by[p["comm"]] = by.get(p["comm"], 0) + p["pss_bytes"]
    top = sorted(by.items(), key=lambda kv: -kv[1])[:3]
    return f"{mib(r['idle_memory_bytes'])} ({', '.join(f'{c} {mib(b)}' for c, b in top)})"


def _onoff(b: bool) -> str:
    return "yes" if b else "no"


def _listed(i: dict, key: str) -> str:
    """What succeeded: named when it acts on the host kernel, counted when on the mode's own."""
    items = i["findings"][key]
    ok = [k for k, v in items.items() if v]
    if not ok:
        return f"none of {len(items)}"
    if not i["findings"]["host_kernel"]:
        return f"{len(ok)} of {len(items)}, in its own kernel"
    return f"{len(ok)} of {len(items)} on the host kernel: {', '.join(ok)}"


def _ops(i: dict) -> str:
    return _listed(i, "ops")


def _writable(i: dict) -> str:
    return _listed(i, "writable")


def _rules(i: dict) -> str:
    return "; ".join(f"-{r['penalty']} {r['rule']}" + (f" ({r['detail']})" if r["detail"] else "") for r in i["rules"]) or "no rule matched"


def _pkgs(p: dict) -> str:
    if not p["host_packages"]:
        return "nothing beyond berth and the kernel"
    names = ", ".join(x["name"] for x in p["host_packages"])
    return f"{names} ({mib(p['host_bytes'])} installed)"


def _seccomp(i: dict) -> str:
    f = i["findings"]
    mode = {0: "off", 1: "strict", 2: "filter"}.get(f["seccomp_mode"], "?")
    return f"{f['capabilities']} caps (CapEff {f['capeff']}), seccomp {mode}"


# (section, label, cell); sections follow the article's summary table.
ROWS: list[tuple[str, str, Cell]] = [
    ("Level of virtualization", "kernel seen inside", _row("virtualization", _virt_kernel)),
    ("Level of virtualization", "PID 1", _row("virtualization", lambda v: v["pid1"] or "?")),
    ("Level of virtualization", "CPUs / memory visible",
     _row("virtualization", lambda v: f"{v['cpus']} / {mib(v['memtotal_bytes'])}")),
    ("Resource consumption", "host memory per idle instance (PSS)", _row("resources", _procs)),
    ("Resource consumption", "CPU time to start (host processes)", _row("resources", lambda r: secs(r["start_cpu_seconds"]))),
    ("Resource consumption", "disk: image / per instance",
     _row("resources", lambda r: f"{mib(r['image_disk_bytes'])} / {mib(r['instance_disk_bytes'])}")),
    ("Startup", "cold: first output / exit",
     _row("startup", lambda s: f"{secs(s['cold']['first_output_s'])} / {secs(s['cold']['exit_s'])}")),
    ("Startup", "warm to first output p50 / p95",
     _row("startup", lambda s: f"{secs(s['warm']['first_output_s']['p50'])} / {secs(s['warm']['first_output_s']['p95'])}")),
    ("Startup", "warm to exit p50 / p95",
     _row("startup", lambda s: f"{secs(s['warm']['exit_s']['p50'])} / {secs(s['warm']['exit_s']['p95'])}")),
    ("Isolation", "score (0-10)", _row("isolation", lambda i: f"{i['score']}/10")),
    ("Isolation", "rules that took points off", _row("isolation", _rules)),
    ("Isolation", "host kernel / processes / NICs visible",
     _row("isolation", lambda i: " / ".join(_onoff(i["findings"][k]) for k in ("host_kernel", "host_pids_visible", "host_netifs_visible")))),
    ("Isolation", "capabilities, seccomp", _row("isolation", _seccomp)),
    ("Isolation", "dangerous operations that succeeded", _row("isolation", _ops)),
    ("Isolation", "writable kernel settings", _row("isolation", _writable)),
    ("Portability", "image size / bytes to fetch",
     _row("portability", lambda p: f"{mib(p['image_bytes'])} / {mib(p['fetch_bytes'])}")),
    ("Portability", "the host also needs", _row("portability", _pkgs)),
    ("Scalability", "start / stop K concurrently",
     _row("scalability", lambda s: f"K={s['k']}: {secs(s['start_all_s'])} / {secs(s['stop_all_s'])}")),
    ("Scalability", "instances in the memory budget (computed)",
     _row("scalability", lambda s: f"{s['fit_in_budget']['instances']} in {mib(s['fit_in_budget']['budget_bytes'])}")),
]


def use_case_cell(doc: dict, mode: str) -> str:
    u = doc["use_cases"].get(mode)
    if not doc["modes"][mode]["available"] or not u:
        return "—"
    return ", ".join(u["recommended_for"]) or "(not chosen by any declared need here)"


def cells(doc: dict, mode: str) -> list[str]:
    col = doc["modes"][mode]
    if not col["available"]:
        return [f"unavailable: {col['reason']}"] + ["—"] * (len(ROWS) - 1)
    return [fn(col) for _, _, fn in ROWS]

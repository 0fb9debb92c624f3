"""Output shapes shared by the engine's commands: tables, Go-template-like
``--format`` strings (``{{.ID}}``, ``{{json .}}``, ``table …``) and docker's
human durations ("Up 3 seconds", "Exited (0) 2 minutes ago")."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from berth.errors import UsageError

_FIELD = re.compile(r"{{\s*(json\s+)?\.([A-Za-z]*)(?:\s+\"([^\"]*)\")?\s*}}")


def human_duration(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 14:
        return f"{h // 24} days"
    return f"{h // (24 * 7)} weeks"


def human_size(n: float) -> str:
    """docker's units.HumanSize: decimal, 3 significant digits (``4.26MB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}"


def render_template(fmt: str, row: dict[str, Any]) -> str:
    def sub(m: re.Match) -> str:
        is_json, key, arg = bool(m.group(1)), m.group(2), m.group(3)
        if key == "Label" and arg is not None:  # docker's {{.Label "com.example.key"}}
            labels = dict(x.partition("=")[::2] for x in str(row.get("Labels", "")).split(",") if x)
            return labels.get(arg, "")
        if not key:
            return json.dumps(row, ensure_ascii=False)
        if key not in row:
            raise UsageError(f"invalid --format: unknown field .{key} (fields: {', '.join(row)})")
        v = row[key]
        return json.dumps(v, ensure_ascii=False) if is_json else str(v)

    fmt = fmt.encode().decode("unicode_escape") if "\\" in fmt else fmt
    return _FIELD.sub(sub, fmt)


def print_rows(rows: list[dict[str, Any]], fmt: str | None, columns: list[tuple[str, str]],
               quiet_key: str | None = None, quiet: bool = False) -> None:
    """Print ``rows`` as docker does: table (default), ``json`` lines, or a template."""
    if quiet and quiet_key:
        for r in rows:
            print(r[quiet_key])
        return
    if fmt == "json":
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
        return
    if fmt and fmt != "table":
        table = fmt.startswith("table ")
        body = fmt[6:] if table else fmt
        lines = [render_template(body, r) for r in rows]
        if table:
            header = _FIELD.sub(lambda m: _header(m.group(2), columns), body)
            header = header.encode().decode("unicode_escape") if "\\" in header else header
            print_table([header.split("\t")] + [ln.split("\t") for ln in lines])
        else:
            for ln in lines:
                print(ln)
        return
    table = [[h for h, _ in columns]] + [[str(r[k]) for _, k in columns] for r in rows]
    print_table(table)


def _header(key: str, columns: list[tuple[str, str]]) -> str:
    for h, k in columns:
        if k == key:
            return h
    return re.sub(r"(?<!^)(?=[A-Z])", " ", key).upper()


def print_table(table: list[list[str]]) -> None:
    """Left-aligned columns three spaces apart, as docker prints them."""
    if not table:
        return
    ncol = max(len(r) for r in table)
    widths = [max((len(r[i]) for r in table if i < len(r)), default=0) for i in range(ncol)]
    for r in table:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        print("   ".join(cells).rstrip())


def since(ts: float) -> str:
    return human_duration(time.time() - ts)

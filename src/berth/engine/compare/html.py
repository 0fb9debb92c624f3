"""``--html FILE``: a self-contained report, the table plus plots drawn as inline SVG.

Plots: start-time distributions (every warm sample and the cold start, on a log
time axis since container and VM differ by orders of magnitude), host memory per
idle instance, and the time to start K instances.
"""

import html
import math

from .table import ROWS, cells, mib, secs, use_case_cell

COLORS = {"container": "#2a7ab9", "vm": "#c2452d", "gvisor": "#3a9a5b"}
W, ROW_H, LEFT = 640, 34, 110


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _svg(h: int, body: str, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" '
            f'role="img" aria-label="{_esc(title)}" font-family="sans-serif" font-size="12">'
            f'<rect width="{W}" height="{h}" fill="#fff"/>{body}</svg>')


def _tick(s: float) -> str:
    return f"{s * 1000:g} ms" if s < 1 else f"{s:g} s"


def start_plot(doc: dict) -> str:
    """Warm samples as dots and the cold start as a ring, per mode, on a log axis."""
    modes = [m for m, c in doc["modes"].items() if c["available"] and c.get("startup")]
    if not modes:
        return ""
    vals = [v for m in modes for v in doc["modes"][m]["startup"]["warm"]["exit_s"]["samples"]]
    vals += [doc["modes"][m]["startup"]["cold"]["exit_s"] for m in modes]
    lo = 10 ** math.floor(math.log10(max(min(vals), 1e-4)))
    hi = 10 ** math.ceil(math.log10(max(vals)))
    if hi <= lo:
        hi = lo * 10
    x = lambda v: LEFT + (W - LEFT - 40) * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))  # noqa: E731
    h = 40 + ROW_H * len(modes) + 30
    parts = ['<text x="10" y="18" font-weight="bold">Start to exit (warm dots, cold ring), log scale</text>']
    d = lo
    while d <= hi * 1.0001:
        parts.append(f'<line x1="{x(d):.1f}" y1="28" x2="{x(d):.1f}" y2="{h - 28}" stroke="#ddd"/>'
                     f'<text x="{x(d):.1f}" y="{h - 12}" text-anchor="middle" fill="#555">{_tick(d)}</text>')
        d *= 10
    for i, m in enumerate(modes):
        y = 40 + ROW_H * i + ROW_H / 2
        st = doc["modes"][m]["startup"]
        parts.append(f'<text x="10" y="{y + 4:.0f}">{_esc(m)}</text>')
        for v in st["warm"]["exit_s"]["samples"]:
            parts.append(f'<circle cx="{x(v):.1f}" cy="{y:.0f}" r="4" fill="{COLORS.get(m, "#555")}" fill-opacity="0.6"/>')
        p50 = st["warm"]["exit_s"]["p50"]
        parts.append(f'<line x1="{x(p50):.1f}" y1="{y - 10:.0f}" x2="{x(p50):.1f}" y2="{y + 10:.0f}" stroke="#000"/>')
        parts.append(f'<circle cx="{x(st["cold"]["exit_s"]):.1f}" cy="{y:.0f}" r="6" fill="none" stroke="{COLORS.get(m, "#555")}" stroke-width="2"/>')
        parts.append(f'<text x="{x(p50) + 8:.1f}" y="{y - 8:.0f}" fill="#333">p50 {secs(p50)}</text>')
    return _svg(h, "".join(parts), "start-time distributions")


def bar_plot(doc: dict, title: str, row: str, key: str, fmt) -> str:
    modes = [m for m, c in doc["modes"].items() if c["available"] and c.get(row)]
    if not modes:
        return ""
    vals = {m: doc["modes"][m][row][key] for m in modes}
    top = max(vals.values()) or 1
    h = 40 + ROW_H * len(modes)
    parts = [f'<text x="10" y="18" font-weight="bold">{_esc(title)}</text>']
    for i, m in enumerate(modes):
        y = 32 + ROW_H * i
        w = max(1.0, (W - LEFT - 120) * vals[m] / top)
        parts.append(f'<text x="10" y="{y + 17}">{_esc(m)}</text>'
                     f'<rect x="{LEFT}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 10}" fill="{COLORS.get(m, "#555")}"/>'
                     f'<text x="{LEFT + w + 6:.1f}" y="{y + 17}">{_esc(fmt(vals[m]))}</text>')
    return _svg(h, "".join(parts), title)


def render(doc: dict) -> str:
    modes = list(doc["modes"])
    head = "".join(f"<th>{_esc(m)}<br><small>{_esc(doc['modes'][m]['via'])}</small></th>" for m in modes)
    cols = {m: cells(doc, m) for m in modes}
    rows, last = [], None
    for i, (section, label, _) in enumerate(ROWS):
        if section != last:
            rows.append(f'<tr class="sec"><td colspan="{len(modes) + 1}">{_esc(section)}</td></tr>')
            last = section
        rows.append(f"<tr><td>{_esc(label)}</td>" + "".join(f"<td>{_esc(cols[m][i])}</td>" for m in modes) + "</tr>")
    rows.append(f'<tr class="sec"><td colspan="{len(modes) + 1}">Use cases</td></tr>')
    rows.append("<tr><td>chosen by isolation auto for</td>" + "".join(f"<td>{_esc(use_case_cell(doc, m))}</td>" for m in modes) + "</tr>")
    rec = doc["use_cases"]["recommendation"]
    k = doc["params"]["scale"]
    plots = [
        start_plot(doc),
        bar_plot(doc, "Host memory per idle instance (PSS)", "resources", "idle_memory_bytes", mib),
        bar_plot(doc, f"Time to start {k} instances concurrently", "scalability", "start_all_s", secs),
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>berth compare {_esc(doc['image']['ref'])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px }}
table {{ border-collapse: collapse; margin: 1em 0 }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; font-size: 13px }}
tr.sec td {{ background: #eef; font-weight: bold }} figure {{ margin: 1em 0 }} small {{ color: #666; font-weight: normal }}
</style></head><body>
<h1>berth compare {_esc(doc['image']['ref'])}</h1>
<p>Measured {_esc(doc['measured_at'])} on kernel {_esc(doc['host']['kernel'])}, {doc['host']['cpus']} CPUs;
workload <code>{_esc(' '.join(doc['workload']['argv']))}</code>, {doc['params']['runs']} warm runs, K={k}.
KVM: {_esc('usable' if doc['host']['kvm'] else 'not usable (' + doc['host']['kvm_reason'] + ')')}.</p>
{''.join(f'<figure>{p}</figure>' for p in plots if p)}
<table><tr><th></th>{head}</tr>
{''.join(rows)}
</table>
<p><b>Recommendation:</b> {_esc(rec['mode'])} — {_esc(rec['reason'])}.<br>
<b>For untrusted code:</b> {_esc(rec['untrusted']['mode'])} — {_esc(rec['untrusted']['reason'])}.</p>
<p><small>Every figure above was measured in this run. Isolation score rules: docs/compare.md.</small></p>
</body></html>
"""

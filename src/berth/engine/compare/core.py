"""``berth compare``: the article's table, measured on this host for one image."""

import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from berth import __version__
from berth.engine.advise import HostCaps, choose
from berth.errors import BerthError, UsageError

from .enginedrv import EngineDriver
from .image import ImageRef, resolve
from .measure import ModeMeasurer, mem_available
from .modes import ModeDriver, RuntimeCLIDriver
from .probe import HostMarker, host_view
from .vmbackend import VMBackendDriver
from .vmdirect import QemuVMDriver

SCHEMA_ID = "https://berth.dev/schemas/compare/v1.json"
ALL_MODES = ("container", "vm", "gvisor")
DEFAULT_ARGV = ["echo", "hello"]
TIMEOUTS = {"container": 30.0, "gvisor": 60.0, "vm": 120.0}
# Declared requirements the use-cases row asks isolation auto about.
SCENARIOS: list[tuple[str, set[str], bool]] = [
    ("nothing declared", set(), False),
    ("fast-start", {"fast-start"}, False),
    ("untrusted", set(), True),
    ("strong-isolation", {"strong-isolation"}, False),
    ("own-kernel", {"own-kernel"}, False),
    ("untrusted + fast-start", {"fast-start"}, True),
]


def container_driver(workdir: Path) -> ModeDriver:
    """berth's own runtime when it answers, else runc (the reference runtime)."""
    ours = RuntimeCLIDriver("container", [str(Path(sys.prefix) / "bin" / "berth-runtime")], workdir)
    if ours.available()[0]:
        return ours
    return RuntimeCLIDriver("container", ["runc"], workdir)


def _engine_runs() -> bool:
    from berth.cli.main import COMMANDS

    return "run" in COMMANDS


def make_driver(name: str, workdir: Path, root: str, image: ImageRef) -> ModeDriver:
    """The engine (``berth run``) for images in its store; else the runtime or QEMU directly."""
    engine_why = ""
    if name in ("container", "vm") and image.source == "store" and _engine_runs():
        d = EngineDriver(name, name, root, image)
        ok, engine_why = d.available()
        if ok:
            return d
    if name == "container":
        d = container_driver(workdir)
    elif name == "gvisor":
        d = RuntimeCLIDriver("gvisor", ["runsc"], workdir, global_flags=["--network=none"])
    else:
        d = VMBackendDriver(workdir)
        if not d.available()[0]:
            d = QemuVMDriver(workdir)
    if engine_why:
        short = engine_why if len(engine_why) <= 80 else "…" + engine_why[-80:].split(" ", 1)[-1]
        d.via += f" (berth run --isolation {name} failed: {short})"
    return d


def parse_size(text: str) -> int:
    """``512M``, ``8G``, ``1.5g`` or plain bytes (binary units, as docker's --memory)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"compare: invalid size {text!r} (e.g. 512M, 8G)")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in ALL_MODES]
    if bad or not modes:
        raise UsageError(f"compare: unknown mode {', '.join(bad) or '(none)'} (modes: {', '.join(ALL_MODES)})")
    return list(dict.fromkeys(modes))


def _fmt_s(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def use_cases(modes: dict, caps: HostCaps, labels: dict[str, str]) -> dict:
    """Which declared requirements pick each mode (isolation auto's rules), with reasons from the rows."""
    ran = tuple(m for m, col in modes.items() if col["available"])
    out: dict = {m: {"recommended_for": [], "reasons": []} for m in modes}
    for label, reqs, untrusted in SCENARIOS:
        try:
            mode, _ = choose(reqs, untrusted, labels, caps, modes=ran)
        except BerthError:
            continue
        if mode in out and mode in ran:
            out[mode]["recommended_for"].append(label)
    for m in ran:
        col = modes[m]
        st, res, iso = col.get("startup"), col.get("resources"), col.get("isolation")
        if st:
            out[m]["reasons"].append(f"warm start to exit p50 {_fmt_s(st['warm']['exit_s']['p50'])}")
        if res:
            out[m]["reasons"].append(f"{res['idle_memory_bytes'] / 2**20:.1f} MiB per idle instance")
        if iso:
            top = iso["rules"][0]["text"] if iso["rules"] else "no finding reached the host"
            out[m]["reasons"].append(f"isolation {iso['score']}/10: {top}")
    # The image's own org.berth.requires label counts as declared for this workload.
    out["recommendation"] = dict(_safe_choose(False, caps, ran, labels),
                                 untrusted=_safe_choose(True, caps, ran, labels))
    return out


def _safe_choose(untrusted: bool, caps: HostCaps, ran: tuple, labels: dict[str, str]) -> dict:
    try:
        mode, why = choose(set(), untrusted, labels, caps, modes=ran)
        return {"mode": mode if mode in ran else None, "reason": why}
    except BerthError as e:
        return {"mode": None, "reason": str(e)}


def compare(root: str, ref: str, argv: list[str] | None = None, *, runs: int = 5, scale: int = 4,
            modes: list[str] | None = None, progress: Callable[[str], None] = lambda s: None,
            drivers: dict[str, ModeDriver] | None = None, memory_budget: int | None = None) -> dict:
    """Measure ``ref`` in each mode; returns the document ``schema.json`` describes.

    ``drivers`` replaces the default driver of a mode (tests, other runtimes).
    """
    if runs < 1 or scale < 1:
        raise UsageError("compare: --runs and --scale must be at least 1")
    modes = modes or list(ALL_MODES)
    argv = argv or DEFAULT_ARGV
    work = Path(root) / "compare" / f"run-{os.getpid()}-{int(time.time())}"
    cache = Path(root) / "compare" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True)
    progress(f"resolving {ref}")
    image = resolve(root, ref, cache)
    host = host_view()
    caps = HostCaps.probe()
    marker = HostMarker.start()
    cols: dict = {}
    t0 = time.time()
    try:
        for name in modes:
            d = (drivers or {}).get(name) or make_driver(name, work, root, image)
            ok, why = d.available()
            if not ok:
                cols[name] = {"available": False, "reason": why, "via": d.via, "errors": {}}
                continue
            try:
                cols[name] = ModeMeasurer(d, image, argv, host, marker, TIMEOUTS.get(name, 60.0),
                                          progress).all(runs, scale, memory_budget)
            finally:
                d.close()
    finally:
        marker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "$schema": SCHEMA_ID,
        "schema_version": 1,
        "berth_version": __version__,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "duration_s": time.time() - t0,
        "image": {"ref": ref, "source": image.source, "size_bytes": image.size_bytes,
                  "fetch_bytes": image.fetch_bytes, "notes": image.notes, "labels": image.labels},
        "workload": {"argv": argv},
        "params": {"runs": runs, "scale": scale, "modes": modes, "memory_budget_bytes": memory_budget},
        "host": {"kernel": host["kernel"], "cpus": host["nproc"], "mem_available_bytes": mem_available(),
                 "kvm": caps.kvm, "kvm_reason": caps.kvm_reason, "vm": caps.vm, "vm_reason": caps.vm_reason,
                 "runsc": caps.runsc},
        "modes": cols,
        "use_cases": use_cases(cols, caps, image.labels),
    }

"""Host-wide registry of the engine roots that own kernel network objects.

A root with networks has ``/run/berth-net/roots/<table>.json``:
``{"root": <realpath>, "bridges": [...], "ip_forward_orig": "0" | null}``.
Bridges and nft tables live in the kernel, not in the root: a root deleted
from disk without ``berth system reset`` (a test's, a benchmark's, a checker's
temporary root) would leave its bridges and table behind with nothing left
that can reach them. The next root that creates a network sweeps those
orphans: entries whose root no longer has a ``networks`` directory.

``register`` and ``sweep`` run under the host-wide network lock; ``unregister``
only touches its own root's entry (under that root's lock), which ``sweep``
never removes while the root exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from berth.engine.network import endpoint, store
from berth.engine.network.firewall import Firewall

REGISTRY = Path("/run/berth-net/roots")


def _path(table: str) -> Path:
    return REGISTRY / f"{table}.json"


def _read(table: str) -> dict:
    try:
        return store.read_json(_path(table))
    except (OSError, ValueError):
        return {}


def register(table: str, root: str | os.PathLike, bridge: str | None = None,
             ip_forward_orig: str | None = None) -> None:
    """Record that ``root`` (its nft ``table``) owns ``bridge`` / turned ip_forward on."""
    REGISTRY.mkdir(parents=True, exist_ok=True, mode=0o700)
    ent = _read(table) or {"root": os.path.realpath(root), "bridges": [], "ip_forward_orig": None}
    if bridge is not None and bridge not in ent["bridges"]:
        ent["bridges"].append(bridge)
    if ip_forward_orig is not None and ent.get("ip_forward_orig") is None:
        ent["ip_forward_orig"] = ip_forward_orig
    store.write_json_atomic(_path(table), ent, durable=False)


def unregister(table: str, bridge: str | None = None) -> None:
    """Forget ``bridge`` (every bridge, and the entry, when ``None``)."""
    ent = _read(table)
    if not ent:
        return
    ent["bridges"] = [] if bridge is None else [b for b in ent["bridges"] if b != bridge]
    if bridge is not None and ent["bridges"]:
        store.write_json_atomic(_path(table), ent, durable=False)
    else:
        _path(table).unlink(missing_ok=True)


def sweep() -> list[str]:
    """Remove the bridges and tables of roots that are gone; their names."""
    if not REGISTRY.is_dir():
        return []
    gone: list[str] = []
    forward_orig = None
    for f in sorted(REGISTRY.glob("*.json")):
        table = f.stem
        ent = _read(table)
        if ent and os.path.isdir(os.path.join(ent.get("root", ""), "networks")):
            continue
        for bridge in ent.get("bridges", []):
            if endpoint.remove_link(bridge):
                gone.append(bridge)
        fw = Firewall(table)
        if fw.exists():
            fw.delete_table()
            gone.append(table)
        forward_orig = forward_orig or ent.get("ip_forward_orig")
        f.unlink(missing_ok=True)
    # The swept roots turned forwarding on; put it back when no berth root is left.
    if forward_orig is not None and not Firewall("").other_berth_tables():
        endpoint._set_sysctl("net/ipv4/ip_forward", forward_orig)
    return gone

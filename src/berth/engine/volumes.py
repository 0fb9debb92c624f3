"""Named volumes: ``<root>/volumes/<name>/_data``, recorded in the engine database.

A volume's content outlives its containers; a volume a container uses (even a
stopped one) cannot be removed, as docker's.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from berth.engine.state import State
from berth.errors import Conflict, NotFound, UsageError

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class Volumes:
    """The volumes of one engine root (docker volume ...)."""

    def __init__(self, root: str | Path, state: State):
        self.root = Path(root)
        self.base = self.root / "volumes"
        self.state = state

    def _rec(self, name: str, labels: dict | None, anonymous: bool) -> dict[str, Any]:
        from berth.engine.containers import now_rfc3339

        return {"Name": name, "Driver": "local", "Mountpoint": str(self.base / name / "_data"),
                "CreatedAt": now_rfc3339(), "Labels": labels or {}, "Scope": "local",
                "Options": {}, "Anonymous": anonymous}

    def create(self, name: str | None = None, labels: dict | None = None) -> dict[str, Any]:
        """docker volume create: idempotent for an existing name."""
        from berth.engine.names import new_id

        name = name or new_id()
        if not _NAME.match(name):
            raise UsageError(f"create volume {name!r}: invalid name; only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        return self.ensure(name, labels=labels)

    def ensure(self, name: str, anonymous: bool = False, labels: dict | None = None) -> dict[str, Any]:
        rec = self.state.get_volume(name)
        if rec:
            return rec
        rec = self._rec(name, labels, anonymous)
        Path(rec["Mountpoint"]).mkdir(parents=True, exist_ok=True)
        if not self.state.add_volume(name, time.time(), rec):
            return self.state.get_volume(name) or rec
        return rec

    def get(self, name: str) -> dict[str, Any]:
        rec = self.state.get_volume(name)
        if not rec:
            raise NotFound(f"no such volume: {name}")
        return rec

    def list(self, filters: dict | None = None) -> list[dict[str, Any]]:
        """``docker volume ls --filter``: ``name`` (a part), ``label`` (KEY or
        KEY=VALUE), ``driver``, ``dangling`` (true: no container uses it)."""
        f = {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in (filters or {}).items()}
        bad = set(f) - {"name", "label", "driver", "dangling"}
        if bad:
            raise UsageError(f"list volumes: invalid filter {sorted(bad)[0]!r}")
        out = []
        for v in self.state.volumes():
            labels = v.get("Labels") or {}
            if "name" in f and not any(x in v["Name"] for x in f["name"]):
                continue
            if "driver" in f and v["Driver"] not in f["driver"]:
                continue
            if "label" in f and not all(k in labels and (not sep or labels[k] == val)
                                        for k, sep, val in (x.partition("=") for x in f["label"])):
                continue
            if "dangling" in f and str(not self.users(v["Name"])).lower() not in [x.lower() for x in f["dangling"]]:
                continue
            out.append(v)
        return out

    def users(self, name: str) -> list[str]:
        return [c["Name"] for c in self.state.containers()
                if any(m.get("Type") == "volume" and m.get("Name") == name for m in c.get("Mounts", []))]

    def remove(self, name: str, force: bool = False) -> None:
        """docker volume rm: refused while a container (running or not) uses it;
        ``force`` (docker's ``-f``) only makes an unknown name no error."""
        if force and not self.state.get_volume(name):
            return
        self.get(name)
        users = self.users(name)
        if users:
            raise Conflict(f"remove volume {name}: volume is in use by container(s) {', '.join(users)}")
        self.state.remove_volume(name)
        shutil.rmtree(self.base / name, ignore_errors=True)

    def prune(self, all_volumes: bool = False, labels: list[str] | None = None) -> tuple[list[str], int]:
        """Remove anonymous volumes no container uses (named ones too with
        ``all_volumes``, docker >= 23's ``-a``; only those with ``labels``,
        KEY or KEY=VALUE, when given); (names, bytes reclaimed)."""
        removed, size = [], 0
        for v in self.list({"label": labels} if labels else None):
            if (all_volumes or v.get("Anonymous")) and not self.users(v["Name"]):
                size += dir_size(Path(v["Mountpoint"]))
                self.remove(v["Name"])
                removed.append(v["Name"])
        return removed, size


def dir_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total

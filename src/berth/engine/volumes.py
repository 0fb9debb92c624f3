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

    def list(self) -> list[dict[str, Any]]:
        return self.state.volumes()

    def users(self, name: str) -> list[str]:
        return [c["Name"] for c in self.state.containers()
                if any(m.get("Type") == "volume" and m.get("Name") == name for m in c.get("Mounts", []))]

    def remove(self, name: str, force: bool = False) -> None:
        """docker volume rm: refused while a container (running or not) uses it."""
        self.get(name)
        users = self.users(name)
        if users:
            raise Conflict(f"remove volume {name}: volume is in use by container(s) {', '.join(users)}")
        self.state.remove_volume(name)
        shutil.rmtree(self.base / name, ignore_errors=True)

    def prune(self, all_volumes: bool = False) -> tuple[list[str], int]:
        """Remove anonymous volumes no container uses (named ones too with
        ``all_volumes``, docker >= 23's ``-a``); (names, bytes reclaimed)."""
        removed, size = [], 0
        for v in self.list():
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

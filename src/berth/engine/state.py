"""Engine metadata: one SQLite database (WAL) under the engine root.

``<root>/engine.db`` holds a row per container (its creation record as JSON)
and per named volume. SQLite's locking makes concurrent CLI invocations safe;
a unique index on names makes two ``--name x`` races end with one Conflict.
The container's *runtime* state (running, exit code) is not stored here: the
monitor owns it in ``<root>/containers/<id>/status.json`` (see ``status.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from berth.errors import Conflict, NotFound, UsageError

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    data TEXT NOT NULL
);
"""


class State:
    """Access to the engine database of one root."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        # imported here, not at the top: loading libsqlite3 costs ~4 ms, which
        # `berth run` spends while the container is being created
        import sqlite3

        self._IntegrityError = sqlite3.IntegrityError
        self.db = sqlite3.connect(self.root / "engine.db", timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    # ---- containers -------------------------------------------------------

    def add_container(self, rec: dict[str, Any]) -> None:
        try:
            self.db.execute(
                "INSERT INTO containers (id, name, created, data) VALUES (?, ?, ?, ?)",
                (rec["Id"], rec["Name"], rec["CreatedTs"], json.dumps(rec)),
            )
        except self._IntegrityError:
            raise Conflict(
                f"create container: the name {rec['Name']!r} is already in use; "
                "remove or rename that container first"
            ) from None

    def update_container(self, rec: dict[str, Any]) -> None:
        try:
            self.db.execute("UPDATE containers SET name = ?, data = ? WHERE id = ?",
                            (rec["Name"], json.dumps(rec), rec["Id"]))
        except self._IntegrityError:
            raise Conflict(f"rename container: the name {rec['Name']!r} is already in use") from None

    def remove_container(self, cid: str) -> None:
        self.db.execute("DELETE FROM containers WHERE id = ?", (cid,))

    def containers(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT data FROM containers ORDER BY created DESC").fetchall()
        return [json.loads(r[0]) for r in rows]

    def names(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM containers")}

    def find_container(self, ref: str) -> dict[str, Any]:
        """By full ID, exact name, or unique ID prefix (docker's rules).

        Raises:
            NotFound: nothing matches.
            Conflict: the prefix matches more than one container.
        """
        if not ref:
            raise UsageError("container name or ID must not be empty")
        row = self.db.execute("SELECT data FROM containers WHERE id = ? OR name = ?",
                              (ref, ref.lstrip("/"))).fetchone()
        if row:
            return json.loads(row[0])
        if all(c in "0123456789abcdef" for c in ref):
            rows = self.db.execute("SELECT data FROM containers WHERE id LIKE ?",
                                   (ref + "%",)).fetchall()
            if len(rows) == 1:
                return json.loads(rows[0][0])
            if len(rows) > 1:
                raise Conflict(f"container ID prefix {ref!r} is ambiguous: {len(rows)} containers match")
        raise NotFound(f"no such container: {ref}")

    # ---- volumes ----------------------------------------------------------

    def add_volume(self, name: str, created: float, data: dict[str, Any]) -> bool:
        """Insert; False when the volume already exists."""
        try:
            self.db.execute("INSERT INTO volumes (name, created, data) VALUES (?, ?, ?)",
                            (name, created, json.dumps(data)))
            return True
        except self._IntegrityError:
            return False

    def get_volume(self, name: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM volumes WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def volumes(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.db.execute("SELECT data FROM volumes ORDER BY name")]

    def remove_volume(self, name: str) -> None:
        self.db.execute("DELETE FROM volumes WHERE name = ?", (name,))

    def close(self) -> None:
        self.db.close()

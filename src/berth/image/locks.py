"""Store locks: ``flock`` on files under the store, so concurrent ``berth``
processes (and threads of one process) cooperate.

Two locks, always taken in this order so two processes cannot deadlock:

* ``gc.lock`` -- held *shared* by everything that adds or reads blobs and layer
  directories (pull, load, build, unpack), *exclusive* by what deletes them
  (rmi, prune, fsck --repair). A blob committed by a pull that has not yet
  written its index entry is therefore never collected under it.
* ``index.lock`` -- *exclusive* around every read-modify-write of ``index.json``;
  readers need no lock because the index is replaced atomically (rename).

Each acquisition opens its own file description: flock(2) locks belong to the
open file description, so this excludes threads of one process as well as other
processes. A thread that already holds a lock re-enters it for free.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FileLock:
    """A shared/exclusive ``flock`` on ``path``, re-entrant per thread."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()

    @contextmanager
    def _hold(self, op: int, blocking: bool = True) -> Iterator[None]:
        held = getattr(self._local, "mode", None)
        if held is not None:
            if op == fcntl.LOCK_EX and held != fcntl.LOCK_EX:
                raise RuntimeError(f"lock {self.path}: shared holder asked for exclusive")
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, op if blocking else op | fcntl.LOCK_NB)
            self._local.mode = op
            try:
                yield
            finally:
                self._local.mode = None
        finally:
            os.close(fd)  # closing the description drops the flock

    def shared(self):
        return self._hold(fcntl.LOCK_SH)

    def exclusive(self, blocking: bool = True):
        """Raises BlockingIOError when not ``blocking`` and someone else holds the lock."""
        return self._hold(fcntl.LOCK_EX, blocking)

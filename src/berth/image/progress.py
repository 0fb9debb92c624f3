"""Progress reporting for pulls and pushes: rich bars per layer on a terminal,
plain lines when piped, nothing with ``--quiet``. Safe to call from threads."""

from __future__ import annotations

import sys
import threading


class Progress:
    """Silent reporter; the base of the others."""

    def start(self, key: str, label: str, total: int) -> None: ...

    def advance(self, key: str, n: int) -> None: ...

    def done(self, key: str, status: str) -> None: ...

    def note(self, line: str) -> None: ...

    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LineProgress(Progress):
    """One line when a layer starts and one when it ends (docker's wording)."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.lock = threading.Lock()

    def _print(self, line: str) -> None:
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def start(self, key: str, label: str, total: int) -> None:
        pass

    def done(self, key: str, status: str) -> None:
        self._print(f"{key}: {status}")

    def note(self, line: str) -> None:
        self._print(line)


class RichProgress(Progress):
    def __init__(self):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RP

        self.rp = RP(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            transient=False,
        )
        self.tasks: dict[str, tuple[object, int]] = {}
        self.rp.start()

    def start(self, key: str, label: str, total: int) -> None:
        self.tasks[key] = (self.rp.add_task(f"{key}: {label}", total=total or None), total)

    def advance(self, key: str, n: int) -> None:
        if key in self.tasks:
            self.rp.advance(self.tasks[key][0], n)  # type: ignore[arg-type]

    def done(self, key: str, status: str) -> None:
        if key in self.tasks:
            t, total = self.tasks[key]
            self.rp.update(t, description=f"{key}: {status}", completed=total)  # type: ignore[arg-type]
        else:
            self.rp.console.print(f"{key}: {status}")

    def note(self, line: str) -> None:
        self.rp.console.print(line)

    def close(self) -> None:
        self.rp.stop()


def make_progress(quiet: bool = False, out=None) -> Progress:
    if quiet:
        return Progress()
    out = out or sys.stdout
    if out.isatty():
        return RichProgress()
    return LineProgress(out)

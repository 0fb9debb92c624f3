"""How the launchers (``berth``, ``berth-runtime``; see scripts/setup.sh) end.

Like ``sys.exit(main())``, minus the interpreter's tear-down (module and
object finalization) and, for ``berth``, SQLite's checkpoint when its
connection closes: a few ms of every container start. Nothing of ours needs
atexit: threads are daemons or joined, files are closed by their ``with``
blocks, and the WAL left behind is folded in by the next connection
(SQLite's own recovery).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable


running = False  # set while a launcher runs its command (this process then exits)


def run(main: Callable[[], int]) -> None:
    """``main()``, flush stdout and stderr, then ``os._exit`` with its code."""
    global running
    running = True
    rc = main()
    from berth.runtime import trace

    trace.mark("exit")
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        rc = rc or 125
    os._exit(rc)

"""Optional timeline of a runtime invocation, to see where a container start goes.

With ``BERTH_RUNTIME_TRACE=FILE`` set, every ``mark(what)`` appends one line
"PID MONOTONIC_NS WHAT" to FILE (P0, P1, P2 and the priming thread alike; the
clock is shared). bench/runtime_vs_runc.py --trace prints the phases. Off by
default, and then a mark costs one attribute test.
"""

import os
import time

_fd = -1
_path = os.environ.get("BERTH_RUNTIME_TRACE")
if _path:
    try:
        _fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        _fd = -1


def mark(what: str) -> None:
    if _fd >= 0:
        try:
            os.write(_fd, f"{os.getpid()} {time.monotonic_ns()} {what}\n".encode())
        except OSError:
            pass

"""Short-lived helper threads, on ``_thread`` (``threading`` is one import
more on every ``berth run``, and none of its features are needed here).

Used where a thread does what the caller must not: change its own network
namespace (``berth._sys.netns``), or wait in the kernel beside the caller's
own work with the GIL released (the network's teardown in ``rm``).
"""

from __future__ import annotations

import _thread
from collections.abc import Callable


def start(fn: Callable[[], object]) -> Callable[[], object]:
    """Run ``fn()`` in a new thread; returns ``join()``, which waits for it and
    returns its result or raises its error."""
    done = _thread.allocate_lock()
    done.acquire()
    box: dict[str, object] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            box["error"] = exc
        finally:
            done.release()

    _thread.start_new_thread(body, ())

    def join() -> object:
        with done:
            pass
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box.get("value")

    return join


def run(fn: Callable[[], object]) -> object:
    """``fn()`` in a fresh thread, waited for: its result, or its error raised."""
    return start(fn)()

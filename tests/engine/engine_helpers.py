"""Shared by the engine tests (a unique module name: tests/*/conftest.py are many)."""

import sys
from pathlib import Path

BERTH = str(Path(sys.executable).parent / "berth")


def wait_for(pred, timeout=20.0, step=0.05):
    """Poll ``pred`` (a bound on waiting for an event, not a timing assertion)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()

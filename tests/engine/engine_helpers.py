"""Shared by the engine tests (a unique module name: tests/*/conftest.py are many)."""

import sys
from pathlib import Path

BERTH = str(Path(sys.executable).parent / "berth")

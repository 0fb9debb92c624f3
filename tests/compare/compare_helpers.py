"""Running the installed ``berth`` CLI from the compare tests."""

import subprocess
import sys
from pathlib import Path

BERTH = str(Path(sys.executable).parent / "berth")


def run_berth(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([BERTH, "--root", str(root), *args], capture_output=True, text=True,
                          timeout=600, env=env)

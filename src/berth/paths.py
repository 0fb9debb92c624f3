"""Where berth's installed helpers and default state live."""

import os
import sys

DEFAULT_RUNTIME_ROOT = "/run/berth-runtime"
DEFAULT_ENGINE_ROOT = "/var/lib/berth"
NETFILES = "netfiles"  # <engine root>/netfiles/<container id>/{hosts,resolv.conf,meta.json}


def libexec(name: str) -> "Path":  # noqa: F821 - pathlib imported lazily: berth-runtime starts per container
    """Path of a C helper built at set-up (``csrc/NAME``) into the venv.

    ``BERTH_LIBEXEC`` overrides the directory (tests, packagers).
    """
    from pathlib import Path

    base = os.environ.get("BERTH_LIBEXEC") or os.path.join(sys.prefix, "libexec", "berth")
    return Path(base) / name

"""Fixtures for the runtime library tests (cgroups, seccomp, default spec).

Every cgroup is named ``berth-test-<pid>-<random>`` and removed in a
finalizer; every process a test starts is killed by its PID in one.
"""

from __future__ import annotations

import pytest
from rtlib_helpers import Procs, kill_everything_in, unique_name

from berth.runtime.container import cgroups


@pytest.fixture
def procs():
    ps = Procs()
    yield ps
    ps.cleanup()


@pytest.fixture
def cg(procs):
    """A fresh container cgroup (created) at an absolute unique path."""
    c = cgroups.open_cgroup("/" + unique_name(), "x")
    c.create()
    yield c
    procs.cleanup()  # tasks first, or rmdir would give EBUSY
    kill_everything_in(c)
    c.destroy()

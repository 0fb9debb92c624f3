"""Fixtures for the runtime library tests (cgroups, seccomp, default spec).

Every cgroup is named ``berth-test-<pid>-<random>`` and removed in a
finalizer; every process a test starts is killed by its PID in one.
"""

from __future__ import annotations

import os

import pytest
from rtlib_helpers import Procs, kill_everything_in, unique_name

from berth.runtime.container import cgroups
from berth.runtime.container.cgroups.v2 import V2Cgroup


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


@pytest.fixture
def v2cg(procs):
    """A V2Cgroup in the host's bare unified hierarchy; no controller is enabled
    (that would change the host's tree), so only controller-free files work."""
    unified = cgroups.detect().unified
    if unified is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    mnt = unified[0]
    name = unique_name()
    c = V2Cgroup("/" + name, os.path.join(mnt, name), mnt, controllers=frozenset())
    c.create()
    yield c
    procs.cleanup()
    kill_everything_in(c)
    c.destroy()

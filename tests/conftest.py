"""Fixtures shared by every test area.

Tests run as root on the real kernel. Each test that creates kernel objects
(mounts, cgroups, links, rules) names them uniquely and removes them in a
finalizer, so a failing test leaves nothing behind.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

from berth.image.busybox import make_rootfs

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def busybox_rootfs_template(tmp_path_factory) -> Path:
    """A busybox root filesystem built once per session; copy it, don't write to it."""
    return make_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def busybox_rootfs(busybox_rootfs_template, tmp_path) -> Path:
    """A private, writable copy of the busybox root filesystem."""
    dest = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs_template, dest, symlinks=True)
    return dest


@pytest.fixture
def venv_bin() -> Path:
    """The directory holding the installed console scripts and python."""
    return VENV_BIN


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="berth's tests run as root on the real kernel")
        for item in items:
            item.add_marker(skip)

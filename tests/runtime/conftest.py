"""Fixtures for berth-runtime's tests: a busybox bundle and the CLI under a
private --root.

Every container gets a unique ID (test pid + random suffix) and is deleted
with ``delete --force`` in a finalizer (that also removes its cgroup), so a
failing test leaves no process, cgroup or state behind.
"""

import pytest
from rt_helpers import Bundle, Runtime


@pytest.fixture
def bundle(busybox_rootfs, tmp_path) -> Bundle:
    """A bundle around a private busybox rootfs, with berth's default config
    (read-write root, as docker runs containers)."""
    from berth.runtime.container.spec import default_spec

    b = Bundle(tmp_path)
    assert b.rootfs == busybox_rootfs
    cfg = default_spec(["/bin/true"])
    cfg["root"]["readonly"] = False  # as docker runs images; tests write results into the rootfs
    b.write(cfg)
    return b.set()


@pytest.fixture
def rt(tmp_path):
    r = Runtime(tmp_path / "state")
    yield r
    r.cleanup()

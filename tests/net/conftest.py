"""The ``env`` fixture: a private NetworkManager whose objects are all removed."""

import pytest
from nethelpers import Env


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path / "root")
    yield e
    e.close()

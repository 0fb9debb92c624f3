"""Fixtures for the extraction tests."""

import pytest
from layer_tars import LayerTar


@pytest.fixture
def layer():
    return LayerTar


@pytest.fixture
def box(tmp_path):
    """A directory holding the layer's destination and a sibling that must stay empty."""
    (tmp_path / "outside").mkdir()
    return tmp_path

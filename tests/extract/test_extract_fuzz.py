"""Random member names and links never make extraction write outside the layer."""

import io
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layer_tars import LayerTar

from berth.image.extract import LayerError, extract_layer

COMPONENTS = ["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", ".wh.", "OUT"]


def _path(parts: list[str], outside: str) -> str:
    return "/".join(outside if p == "OUT" else p for p in parts)


member = st.tuples(
    st.sampled_from(["file", "dir", "symlink", "hardlink"]),
    st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=5),
    st.lists(st.sampled_from(COMPONENTS), min_size=0, max_size=5),
    st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(member, min_size=1, max_size=8))
def test_random_members_never_escape_dest(members):
    box = Path(tempfile.mkdtemp(prefix="berth-fuzz-"))
    try:
        outside = box / "outside"
        outside.mkdir()
        t = LayerTar()
        for kind, name, target, absolute in members:
            n = _path(name, str(outside))
            tg = ("/" if absolute else "") + _path(target, str(outside))
            if kind == "file":
                t.file(n, b"pwned")
            elif kind == "dir":
                t.dir(n)
            elif kind == "symlink":
                t.symlink(n, tg)
            else:
                t.hardlink(n, tg)
        try:
            extract_layer(io.BytesIO(t.bytes()), box / "dest")
        except LayerError:
            assert not (box / "dest").exists()
        assert os.listdir(outside) == []
        assert sorted(os.listdir(box)) in (["outside"], ["dest", "outside"])
    finally:
        shutil.rmtree(box)

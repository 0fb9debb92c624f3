"""One real ``berth compare`` run shared by the report tests (it boots QEMU: ~15 s under TCG)."""

import json
import os
from pathlib import Path

import pytest
from compare_helpers import run_berth


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, Path]:
    d = tmp_path_factory.mktemp("compare")
    r = run_berth(d / "root", "compare", "busybox", "--runs", "2", "--scale", "2",
                  "--modes", "container,vm,gvisor", "--json", "--html", str(d / "report.html"))
    try:
        assert r.returncode == 0, r.stderr
        yield json.loads(r.stdout), d / "report.html", d / "root"
    finally:
        run_berth(d / "root", "system", "reset", "--force")  # the root's default bridge and nft table


@pytest.fixture(scope="session")
def schema() -> dict:
    import berth.engine.compare as pkg

    return json.loads((Path(pkg.__file__).parent / "schema.json").read_text())


@pytest.fixture
def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "BERTH_ROOT"}

"""Modes that cannot run, rows that fail, and bad input: reported in one line, never a crash."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
from compare_helpers import run_berth

from berth.engine.compare.core import compare
from berth.engine.compare.modes import RuntimeCLIDriver
from berth.engine.compare.probe import HostMarker, parse
from berth.engine.compare.score import findings, score
from berth.errors import RuntimeFailure


def test_gvisor_without_runsc_is_reported_not_crashed_on(tmp_path, clean_env):
    env = dict(clean_env, PATH=str(tmp_path / "empty-path"))
    r = run_berth(tmp_path / "root", "compare", "busybox", "--modes", "gvisor", "--json", env=env)
    assert r.returncode == 0, r.stderr
    col = json.loads(r.stdout)["modes"]["gvisor"]
    assert col["available"] is False and "runsc is not installed" in col["reason"]


def test_unavailable_mode_shows_its_reason_in_the_table(tmp_path, clean_env):
    env = dict(clean_env, PATH=str(tmp_path / "empty-path"))
    r = run_berth(tmp_path / "root", "compare", "busybox", "--modes", "gvisor", env=env)
    assert r.returncode == 0, r.stderr
    assert "unavailable: runsc is not installed" in r.stdout


class _BrokenIdle(RuntimeCLIDriver):
    """runc, except that an idle instance cannot be started (as when a runtime hangs)."""

    def start_idle(self, image, *, timeout=60.0):
        raise RuntimeFailure("start idle container: refused for this test")


def test_a_failing_row_is_recorded_and_the_others_still_measured(tmp_path, schema):
    root = tmp_path / "root"
    drivers = {
        "container": _BrokenIdle("container", ["runc"], tmp_path / "w"),
        "vm": RuntimeCLIDriver("vm", ["/nonexistent/qemu-for-test"], tmp_path / "w"),
    }
    doc = compare(str(root), "busybox", runs=1, scale=1, modes=["container", "vm"], drivers=drivers)
    jsonschema.validate(doc, schema)
    col = doc["modes"]["container"]
    assert col["resources"] is None and col["scalability"] is None
    assert "refused for this test" in col["errors"]["resources"]
    assert col["startup"] is not None and col["isolation"] is not None
    assert doc["modes"]["vm"]["available"] is False and "not installed" in doc["modes"]["vm"]["reason"]


def test_probe_run_on_the_host_does_see_the_marker_and_scores_low():
    """The probe's detection can fail: on the host itself it finds the marker and the host kernel."""
    from berth.engine.compare.probe import host_view

    m = HostMarker.start()
    try:
        out = subprocess.run(["/bin/busybox", *m.probe_argv()], capture_output=True, text=True, timeout=60).stdout
    finally:
        m.stop()
    f = findings(parse(out), host_view())
    assert f["host_pids_visible"] and f["host_kernel"] and f["host_netifs_visible"] is (len(host_view()["macs"]) > 0)
    s, rules = score(f)
    assert {"host-kernel", "host-pids"} <= {r["rule"] for r in rules}
    assert s <= 5


def _berth_err(tmp_path, *args):
    r = run_berth(tmp_path / "root", "compare", *args)
    return r.returncode, r.stderr.strip().splitlines()


def test_bad_input_gets_one_line_and_exit_125(tmp_path):
    for args, words in [
        (["busybox", "--modes", "container,bogus"], "unknown mode bogus"),
        (["busybox", "--runs", "0"], "at least 1"),
        (["no-such-image:1"], "no such image"),
        (["busybox", "--html", str(tmp_path / "nodir" / "r.html")], "does not exist"),
        ([], "the following arguments are required"),
    ]:
        code, lines = _berth_err(tmp_path, *args)
        assert code == 125 and len(lines) == 1 and words in lines[0], (args, lines)
        assert "Traceback" not in lines[0]
    assert not (tmp_path / "nodir").exists()


def test_initramfs_layers_apply_whiteouts(tmp_path):
    from berth.engine.compare.initramfs import _merged

    low, up = tmp_path / "low", tmp_path / "up"
    (low / "etc").mkdir(parents=True)
    (low / "etc" / "gone").write_text("x")
    (low / "etc" / "kept").write_text("x")
    (low / "opq").mkdir()
    (low / "opq" / "old").write_text("x")
    (up / "etc").mkdir(parents=True)
    (up / "etc" / ".wh.gone").write_text("")
    (up / "opq").mkdir()
    (up / "opq" / ".wh..wh..opq").write_text("")
    (up / "opq" / "new").write_text("y")
    files = _merged([low, up])
    assert "etc/kept" in files and "etc/gone" not in files
    assert "opq/new" in files and "opq/old" not in files
    assert files["opq/new"] == up / "opq" / "new"


def test_schema_file_ships_with_the_package():
    import berth.engine.compare as pkg

    assert (Path(pkg.__file__).parent / "schema.json").is_file()
    assert sys.executable  # the venv's python runs the marker

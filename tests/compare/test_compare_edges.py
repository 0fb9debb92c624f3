"""Modes that cannot run, rows that fail, and bad input: reported in one line, never a crash."""

import json
import os
import stat
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
        (["busybox", "--memory-budget", "lots"], "invalid size"),
    ]:
        code, lines = _berth_err(tmp_path, *args)
        assert code == 125 and len(lines) == 1 and words in lines[0], (args, lines)
        assert "Traceback" not in lines[0]
    assert not (tmp_path / "nodir").exists()


def test_vm_initramfs_applies_the_layers_whiteouts(tmp_path):
    """Layers as the store unpacks them (0:0 whiteouts, opaque dirs) flatten into the VM's initramfs."""
    from berth.engine.compare.initramfs import init_archive, write_image_archive
    from berth.image.extract import OVERLAY_OPAQUE_XATTR

    low, up = tmp_path / "low", tmp_path / "up"
    for d in (low / "etc", low / "opq", up / "etc", up / "opq"):
        d.mkdir(parents=True)
    for f in ("etc/gone", "etc/kept", "opq/old"):
        (low / f).write_text("x")
    os.mknod(up / "etc" / "gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    os.setxattr(up / "opq", OVERLAY_OPAQUE_XATTR, b"y")
    (up / "opq" / "new").write_text("y")
    arch = tmp_path / "img.cpio"
    write_image_archive([low, up], arch)
    with open(arch, "ab") as f:
        f.write(init_archive("#!/bin/sh\n"))
    names = subprocess.run(["cpio", "-it", "--quiet"], stdin=open(arch, "rb"), capture_output=True,
                           text=True, check=True).stdout.split()
    assert "etc/kept" in names and "opq/new" in names and "init" in names
    assert "etc/gone" not in names and "opq/old" not in names


def test_schema_file_ships_with_the_package():
    import berth.engine.compare as pkg

    assert (Path(pkg.__file__).parent / "schema.json").is_file()
    assert sys.executable  # the venv's python runs the marker


def test_memory_budget_sizes_parse_in_binary_units():
    from berth.engine.compare.core import parse_size

    assert parse_size("512M") == 512 * 2**20 and parse_size("1.5g") == 3 * 2**29
    assert parse_size("8GiB") == 8 * 2**30 and parse_size("4096") == 4096

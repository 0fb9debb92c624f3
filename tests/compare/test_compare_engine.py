"""An image in the engine's store is measured through berth's own engine (berth run)."""

import json

import pytest
from compare_helpers import run_berth

from berth.cli.main import COMMANDS


@pytest.mark.skipif("run" not in COMMANDS or "image" not in COMMANDS,
                    reason="the engine (berth run) and the image store are not in this build yet")
def test_store_image_runs_through_berth_run_and_weighs_monitor_runtime_and_qemu(tmp_path):
    root = tmp_path / "root"
    r = run_berth(root, "image", "bootstrap", "busybox")
    assert r.returncode == 0, r.stderr
    r = run_berth(root, "compare", "busybox", "--modes", "container,vm", "--runs", "1", "--scale", "1", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    col = doc["modes"]["container"]
    assert doc["image"]["source"] == "store"
    assert col["via"] == "berth run --isolation container", col["via"]
    comms = {p["comm"] for p in col["resources"]["idle_processes"]}
    assert "berth-monitor" in comms and "sleep" in comms
    assert col["virtualization"]["host_kernel"] and not col["isolation"]["findings"]["host_pids_visible"]
    vm = doc["modes"]["vm"]
    if vm["via"] == "berth run --isolation vm":  # the engine's VM path works on this host
        assert vm["errors"] == {}, vm["errors"]
        assert not vm["virtualization"]["host_kernel"]
        comms = {p["comm"] for p in vm["resources"]["idle_processes"]}
        assert {"berth-monitor", "qemu-system-x86"} <= comms, comms
        assert vm["resources"]["instance_disk_bytes"] > 0  # its qcow2 overlay
    else:
        assert "berth run --isolation vm failed" in vm["via"], vm["via"]
    # Nothing of compare's is left in the engine: its containers were removed.
    ps = run_berth(root, "ps", "-a", "-q")
    assert ps.returncode == 0 and ps.stdout.strip() == ""

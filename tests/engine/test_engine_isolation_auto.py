"""``--isolation auto``: berth picks container or vm, says why in one line, and
records what it picked (create only: nothing boots)."""

import json

import pytest


def _created_isolation(berth, *flags):
    r = berth("create", "--isolation", "auto", *flags, "busybox", "true")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        return json.loads(berth.out("inspect", cid))[0]["Isolation"], r.stderr
    finally:
        berth("rm", "-f", cid)


def test_isolation_auto_picks_a_vm_for_untrusted_and_explains(berth):
    mode, err = _created_isolation(berth, "--untrusted")
    assert mode == "vm"
    line = [x for x in err.splitlines() if x.startswith("isolation auto:")]
    assert line and line[0].startswith("isolation auto: vm (untrusted: ")


def test_isolation_auto_picks_a_container_for_fast_start_and_explains(berth):
    mode, err = _created_isolation(berth, "--require", "fast-start")
    assert mode == "container"
    assert "isolation auto: container (fast-start: " in err


def test_isolation_auto_with_nothing_declared_is_a_container(berth):
    mode, _ = _created_isolation(berth)
    assert mode == "container"


@pytest.mark.parametrize("flags, message", [
    (["--isolation", "auto", "--require", "bogus"], "unknown requirement bogus"),
    (["--untrusted"], "--untrusted: only with --isolation auto"),
    (["--require", "fast-start"], "--require: only with --isolation auto"),
])
def test_isolation_auto_bad_input_is_one_line_and_leaves_nothing(berth, flags, message):
    before = berth.ids()
    r = berth("create", *flags, "busybox", "true")
    assert r.returncode == 125
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert berth.ids() == before


def test_python_api_isolation_auto(client):
    c = client.containers.create("busybox", "true", isolation="auto", requires=["own-kernel"])
    try:
        assert c.attrs["Isolation"] == "vm"
    finally:
        c.remove(force=True)

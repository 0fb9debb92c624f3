"""Order-sensitive steps, checked with a recording fake of the _sys layer
(no kernel state changes: every call below is intercepted)."""

from berth._sys import caps as sys_caps
from berth._sys import proc as sys_proc
from berth.runtime.container import init


def test_privileges_drop_in_capabilities7_order(monkeypatch):
    calls = []

    def rec(name):
        return lambda *a: calls.append((name, *a))

    monkeypatch.setattr(sys_caps, "drop_bounding", rec("bounding-drop"))
    monkeypatch.setattr(sys_caps, "capset", rec("capset"))
    monkeypatch.setattr(sys_caps, "ambient_clear", rec("ambient-clear"))
    monkeypatch.setattr(sys_caps, "ambient_raise", rec("ambient-raise"))
    monkeypatch.setattr(sys_proc, "set_keepcaps", rec("keepcaps"))
    monkeypatch.setattr(init.os, "setgroups", rec("setgroups"))
    monkeypatch.setattr(init.os, "setgid", rec("setgid"))
    monkeypatch.setattr(init.os, "setuid", rec("setuid"))
    proc = {"user": {"uid": 1000, "gid": 100, "additionalGids": [5]},
            "capabilities": {s: ["CAP_CHOWN", "CAP_KILL"] for s in
                             ("bounding", "effective", "permitted", "inheritable", "ambient")}}
    init.drop_privileges(proc, userns=False)
    names = [c[0] for c in calls]
    first_keep = names.index("keepcaps")
    assert set(names[:first_keep]) == {"bounding-drop"}  # all drops while CAP_SETPCAP is held
    assert ("bounding-drop", 0) not in calls and ("bounding-drop", 5) not in calls  # CHOWN, KILL kept
    assert names[first_keep:first_keep + 6] == ["keepcaps", "setgroups", "setgid", "setuid",
                                                "keepcaps", "capset"]
    assert calls[first_keep] == ("keepcaps", True) and calls[first_keep + 4] == ("keepcaps", False)
    assert calls[first_keep + 1] == ("setgroups", [5])
    assert names[first_keep + 6:] == ["ambient-clear", "ambient-raise", "ambient-raise"]
    assert calls[first_keep + 5] == ("capset", 0b100001, 0b100001, 0b100001)

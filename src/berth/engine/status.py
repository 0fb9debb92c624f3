"""A container's run state, from the monitor's status file and liveness.

The monitor writes ``status.json`` atomically at each transition. A status
that says running while its monitor is gone (killed, host crash) is reported
as exited with the unknown-code marker ``-1``, never as running: the monitor's
pid is checked together with its start time, so a recycled pid is not taken
for a live monitor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from berth.engine._record import record

UNKNOWN_EXIT = -1


@record
class RunState:
    status: str  # created | running | paused | restarting | exited
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    started_at: str = ""
    finished_at: str = ""
    restart_count: int = 0
    error: str = ""
    monitor_pid: int = 0
    monitor_alive: bool = False


def _proc_start(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its reaper
        return None
    return int(fields[19])  # field 22 overall: starttime


def monitor_alive(st: dict) -> bool:
    pid = st.get("monitor_pid") or 0
    if pid > 0:
        try:
            # the CLI's own child (see monitor._fork_adopting): reap it if it
            # ended, or its zombie would look alive
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return pid > 0 and _proc_start(pid) == st.get("monitor_start")


def read_status(cdir: Path, paused: bool = False) -> RunState:
    try:
        st = json.loads((cdir / "status.json").read_text())
    except (OSError, ValueError):
        return RunState("created")
    alive = monitor_alive(st)
    state = st.get("state", "created")
    rs = RunState(state, st.get("pid", 0), st.get("exit_code", 0), bool(st.get("oom_killed")),
                  st.get("started_at", ""), st.get("finished_at", ""), st.get("restart_count", 0),
                  st.get("error", ""), st.get("monitor_pid", 0), alive)
    if state in ("created", "running", "restarting") and not alive:
        # the monitor died without recording an exit: never claim running
        rs.status, rs.exit_code, rs.pid = "exited", UNKNOWN_EXIT, 0
    elif state == "created":
        rs.status = "running"  # between the runtime's create and start
    if rs.status == "running" and paused:
        rs.status = "paused"
    return rs

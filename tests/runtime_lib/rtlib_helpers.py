"""Helpers shared by the runtime library tests (imported as ``rtlib_helpers``)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import traceback

from berth.runtime.container.cgroups._base import procs_recursive, signal_pids


def unique_name(prefix: str = "berth-test") -> str:
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"


class Procs:
    """Processes a test started; all killed (by PID) at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def python(self, code: str) -> subprocess.Popen:
        """A Python child that runs ``code`` after one byte arrives on stdin.

        The pause lets the test move it into a cgroup before it does anything.
        """
        prog = "import sys\nsys.stdin.buffer.read(1)\n" + code
        p = subprocess.Popen(
            [sys.executable, "-c", prog],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.started.append(p)
        return p

    def sleep(self) -> subprocess.Popen:
        p = subprocess.Popen(["sleep", "600"])
        self.started.append(p)
        return p

    @staticmethod
    def go(p: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
        out, err = p.communicate(b"g", timeout=timeout)
        return p.returncode, out.decode(), err.decode()

    def cleanup(self) -> None:
        for p in self.started:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def kill_everything_in(c) -> None:
    """SIGKILL what is left in the test's own cgroup (e.g. grandchildren)."""
    dirs = c.dirs.values() if c.version == "v1" else [c.dir]
    for d in dirs:
        if os.path.isdir(d):
            signal_pids(procs_recursive(d), signal.SIGKILL)


def in_child(fn) -> tuple[int, str]:
    """Run ``fn()`` in a forked child; returns (wait status, what fn returned).

    For seccomp: the filter must be installed in a process the test can throw
    away. The child never returns into pytest: it always ends in os._exit.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            out = str(fn())
        except BaseException:
            out = "EXC " + traceback.format_exc()
            code = 3
        try:
            os.write(w, out.encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks).decode()

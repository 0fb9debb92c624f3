"""Start a host command, time its first output and its exit, and account its CPU.

Shared by every mode driver: a mode is a command line on the host (``runc run``,
``runsc run``, ``qemu-system-x86_64``, ``berth run``) whose stdout carries the
workload's output, possibly framed by markers (a VM's serial console also
carries the guest kernel's and init's lines).
"""

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

BEGIN = b"@@BERTH-BEGIN@@\n"


@dataclass
class RunResult:
    """One run of the workload in one mode; times are seconds from launch."""

    stdout: str
    exit_code: int
    t_first_output: float | None
    t_exit: float
    cpu_seconds: float  # user+system of the launcher and every process it reaped
    stderr: str = ""
    timed_out: bool = False
    t_wall: float = 0.0  # launch to reap, before add_prep

    def add_prep(self, seconds: float) -> None:
        """Count ``seconds`` of preparation (bundle, initrd) before the launch into the start times."""
        seconds = max(0.0, seconds)
        self.t_exit += seconds
        if self.t_first_output is not None:
            self.t_first_output += seconds


class Launched:
    """A host command started in its own session, with its stdout read as it comes."""

    def __init__(self, argv: list[str], *, begin: bytes | None = None, env: dict | None = None):
        self.begin = begin
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env=env,
        )
        self.out = bytearray()
        self.err = bytearray()
        self.t_first: float | None = None
        self._payload_at: int | None = 0 if begin is None else None
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ, self.out)
        self._sel.register(self.proc.stderr, selectors.EVENT_READ, self.err)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def payload(self) -> bytes:
        """Bytes after the begin marker (all of stdout when there is none)."""
        return bytes(self.out[self._payload_at :]) if self._payload_at is not None else b""

    def pump(self, until: Callable[[bytes], bool] | None, deadline: float) -> bool:
        """Read output until ``until(payload)`` holds or both pipes close; False on deadline."""
        while self._sel.get_map():
            if until is not None and until(self.payload()):
                return True
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            for key, _ in self._sel.select(min(left, 0.5)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    self._sel.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                self._note_payload()
        return until is None or until(self.payload())

    def _note_payload(self) -> None:
        if self._payload_at is None:
            i = self.out.find(self.begin)
            if i >= 0:
                self._payload_at = i + len(self.begin)
        if self.t_first is None and self._payload_at is not None and len(self.out) > self._payload_at:
            self.t_first = time.perf_counter() - self.t0

    def reap(self) -> tuple[int, float, float]:
        """Wait for the launcher: (exit code, seconds from launch, CPU seconds of it and its reaped children)."""
        _, status, ru = os.wait4(self.proc.pid, 0)
        t_exit = time.perf_counter() - self.t0
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        return self.proc.returncode, t_exit, ru.ru_utime + ru.ru_stime

    def kill(self) -> None:
        """SIGKILL the launcher's whole session (it was started in its own)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_timed(argv: list[str], timeout: float, *, begin: bytes | None = None,
              cleanup: Callable[[], None] | None = None, env: dict | None = None) -> RunResult:
    """Run ``argv`` to completion; on timeout kill it (and call ``cleanup``)."""
    lp = Launched(argv, begin=begin, env=env)
    try:
        done = lp.pump(None, lp.t0 + timeout)
    except BaseException:  # ^C: the launcher is in its own session and would outlive us
        lp.kill()
        lp.reap()
        if cleanup:
            cleanup()
        raise
    if not done:
        lp.kill()
        if cleanup:
            cleanup()
    code, t_exit, cpu = lp.reap()
    return RunResult(t_wall=t_exit,
        stdout=lp.payload().decode(errors="replace"), exit_code=code, t_first_output=lp.t_first,
        t_exit=t_exit, cpu_seconds=cpu, stderr=lp.err.decode(errors="replace"), timed_out=not done,
    )

"""Foreground I/O with a running container through its monitor's attach socket."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

from berth.engine.monitor import connect, read_frames

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from typing import BinaryIO


def _pump_stdin(sock: socket.socket, src: BinaryIO) -> None:
    fd = src.fileno()
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _send_winsize(cdir: Path) -> None:
    """Tell the monitor the terminal's new size (file + SIGWINCH)."""
    import json

    try:
        cols, rows = os.get_terminal_size(0 if os.isatty(0) else 1)
        tmp = cdir / ".winsize.tmp"
        tmp.write_text(f"{rows} {cols}\n")
        os.rename(tmp, cdir / "winsize")
        st = json.loads((cdir / "status.json").read_text())
        os.kill(st["monitor_pid"], signal.SIGWINCH)
    except (OSError, ValueError, KeyError):
        pass


class _RawTerminal:
    """Put the caller's terminal in raw mode while attached to a -t container."""

    def __init__(self, fd: int):
        self.fd = fd
        self.saved = None

    def __enter__(self):
        import termios
        import tty

        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def __exit__(self, *exc):
        import termios

        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def attach(cdir: Path, stdin: BinaryIO | None, stdout: BinaryIO, stderr: BinaryIO, tty: bool = False,
           on_signal=None, sock: socket.socket | None = None) -> None:
    """Copy the container's output to ``stdout``/``stderr`` (and ``stdin`` in)
    until the monitor closes the socket (the container exited)."""
    sock = sock or connect(cdir)
    old = {}
    if on_signal is not None:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            old[s] = signal.signal(s, lambda n, f: on_signal(n))
    try:
        if stdin is not None:
            import threading

            threading.Thread(target=_pump_stdin, args=(sock, stdin), daemon=True).start()
        else:
            sock.shutdown(socket.SHUT_WR)
        raw = _RawTerminal(stdin.fileno()) if (tty and stdin is not None and stdin.isatty()) else None
        if raw:
            raw.__enter__()
        if tty and (os.isatty(0) or os.isatty(1)):
            old[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda n, f: _send_winsize(cdir))
        try:
            for sid, data in read_frames(sock):
                out = stderr if sid == 2 else stdout
                out.write(data)
                out.flush()
        finally:
            if raw:
                raw.__exit__()
    finally:
        sock.close()
        for s, h in old.items():
            signal.signal(s, h)


def stdin_or_none(interactive: bool) -> BinaryIO | None:
    return sys.stdin.buffer if interactive else None

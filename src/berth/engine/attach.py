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


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
# docker's names of the control characters 0..31 (moby/term's ASCII table)
_CTRL = ["ctrl-@", *(f"ctrl-{chr(c)}" for c in range(ord("a"), ord("z") + 1)),
         "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_"]


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's ``--detach-keys`` (``ctrl-p,ctrl-q``, ``ctrl-a,x``, ``DEL``) -> bytes.

    Empty or None is the default, as docker's. Raises UsageError (one line).
    """
    from berth.errors import UsageError

    codes = bytearray()
    for key in (spec or DEFAULT_DETACH_KEYS).split(","):
        if key in _CTRL:
            codes.append(_CTRL.index(key))
        elif key == "DEL":
            codes.append(127)
        elif len(key.encode()) == 1:
            codes += key.encode()
        else:
            raise UsageError(f"invalid detach keys {spec!r}: unknown key {key!r} (expected ctrl-<a-z>, "
                             "ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_, DEL or one character)")
    return bytes(codes)


class EscapeFilter:
    """Finds the detach sequence in attached input, as docker's escape proxy.

    A read that is exactly the next key(s) of the sequence is held back; a
    read with anything else lets the held keys through in front of it and
    starts over. So typed keys detach (each key press is its own read) while
    bulk input that merely contains the bytes (a paste, a file on a pipe)
    does not, and two ctrl-p in a row send one through.
    """

    def __init__(self, keys: bytes):
        self.keys = keys
        self.pos = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send on, whether the sequence is complete)."""
        k = self.keys
        if k and data and data == k[self.pos:self.pos + len(data)]:
            self.pos += len(data)
            return b"", self.pos == len(k)
        held, self.pos = k[:self.pos], 0
        return held + data, False


def _pump_stdin(sock: socket.socket, src: BinaryIO, keys: bytes, detached: list, on_detach) -> None:
    fd = src.fileno()
    esc = EscapeFilter(keys)
    try:
        while True:
            data = os.read(fd, 65536)
            out, done = esc.feed(data)
            if done:
                # both directions: the output loop's recv returns, the monitor
                # sees the client go (a pty container keeps its stdin open)
                detached.append(True)
                if on_detach is not None:
                    on_detach()  # before the monitor can see the client go
                sock.shutdown(socket.SHUT_RDWR)
                return
            if out:
                sock.sendall(out)
            if not data:
                break
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
            # TCSANOW: the default TCSAFLUSH would drop what was typed ahead
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc):
        import termios

        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def attach(cdir: Path, stdin: BinaryIO | None, stdout: BinaryIO, stderr: BinaryIO, tty: bool = False,
           on_signal=None, sock: socket.socket | None = None, detach_keys: bytes | None = None,
           on_detach=None) -> bool:
    """Copy the container's output to ``stdout``/``stderr`` (and ``stdin`` in)
    until the monitor closes the socket (the container exited), or until the
    detach keys (``parse_detach_keys``; default ctrl-p,ctrl-q) are typed on
    ``stdin``: then ``on_detach()`` is called, the container keeps running
    and True is returned."""
    sock = sock or connect(cdir)
    detached: list[bool] = []
    old = {}
    if on_signal is not None:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            old[s] = signal.signal(s, lambda n, f: on_signal(n))
    try:
        # raw first: keys typed from now on reach the reader as they are (ctrl-q is no XON)
        raw = _RawTerminal(stdin.fileno()) if (tty and stdin is not None and stdin.isatty()) else None
        if raw:
            raw.__enter__()
        if stdin is not None:
            import threading

            keys = parse_detach_keys(None) if detach_keys is None else detach_keys
            threading.Thread(target=_pump_stdin, args=(sock, stdin, keys, detached, on_detach), daemon=True).start()
        else:
            sock.shutdown(socket.SHUT_WR)
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
    return bool(detached)


def stdin_or_none(interactive: bool) -> BinaryIO | None:
    return sys.stdin.buffer if interactive else None

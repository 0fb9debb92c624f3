"""The pipe protocol between the CLI (P0) and the processes it forks (P1, P2).

Children write newline-framed messages on one pipe (writes under PIPE_BUF are
atomic, so P1 and P2 may share it); P0 answers on another. Messages:
``PID n`` (P1: the container's init pid), ``USERNS`` (P1 unshared a user
namespace: write its id maps), and answers every ``PID`` with ``G`` once
P2 is in the container's cgroup, ``HOOKS`` (P2: run prestart/createRuntime now),
``READY`` (P2: set up, waiting for start), ``ERR code message``.
"""

import os

from berth.errors import BerthError


class ChildError(BerthError):
    """An error a child reported, with the exit code it chose (127 for a missing executable)."""

    def __init__(self, message: str, code: int = 125):
        super().__init__(message)
        self.exit_code = code


def send(fd: int, msg: str) -> None:
    os.write(fd, (msg.replace("\n", " ") + "\n").encode(errors="replace"))


def describe(e: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an exception raised in a child."""
    if isinstance(e, BerthError):
        return e.exit_code, str(e)
    if isinstance(e, OSError):
        msg = e.strerror or str(e)
        if e.filename is not None and str(e.filename) not in msg:
            msg = f"{msg}: {e.filename}"
        return 125, msg
    return 125, f"{type(e).__name__}: {e}"


def send_error(fd: int, e: BaseException) -> None:
    code, msg = describe(e)
    try:
        send(fd, f"ERR {code} {msg}")
    except OSError:
        os.write(2, f"berth-runtime: {msg}\n".encode(errors="replace"))


class Reader:
    """Reads the children's messages, one line at a time."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""

    def next(self) -> str | None:
        """The next message, or None at end of file (every writer gone)."""
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")


def raise_if_error(msg: str) -> None:
    if msg.startswith("ERR "):
        _, code, text = msg.split(" ", 2)
        raise ChildError(text, int(code))


def read_byte(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 1)
        except InterruptedError:
            continue


def read_line(fd: int) -> str:
    """A reply line from P0 (read byte by byte: the pipe is shared in order)."""
    out = bytearray()
    while True:
        b = os.read(fd, 1)
        if not b or b == b"\n":
            return out.decode()
        out += b

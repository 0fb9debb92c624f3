"""The guest's serial console (kernel messages, panics) into a bounded log file.

QEMU connects its ttyS0 chardev to a socket berth listens on; a thread copies what
arrives into ``console.log`` and keeps the file under ``CAP`` bytes by dropping the
oldest half when it grows past it. A guest that floods its console costs the host
a copy loop and at most CAP bytes of disk; if nobody reads any more (the owner
exited), QEMU's socket chardev drops the output instead of blocking the guest.
The console never carries the workload's stdout (that is the virtio-serial port).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

CAP = 256 * 1024


class ConsoleLog:
    def __init__(self, listener: socket.socket, path: Path, cap: int = CAP):
        self.listener = listener
        self.path = path
        self.cap = cap
        self.total = 0
        self._thread = threading.Thread(target=self._run, name="vm-console", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        finally:
            self.listener.close()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        size = os.fstat(fd).st_size
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                self.total += len(chunk)
                os.write(fd, chunk)
                size += len(chunk)
                if size > self.cap:
                    size = self._trim(fd)
        except OSError:
            pass
        finally:
            conn.close()
            os.close(fd)

    def _trim(self, fd: int) -> int:
        """Keep the newest cap/2 bytes (rewritten in place; the log is only ours)."""
        keep = self.cap // 2
        with open(self.path, "rb") as f:
            f.seek(-keep, os.SEEK_END)
            data = f.read()
        os.ftruncate(fd, 0)
        os.write(fd, b"[... older console output dropped ...]\n" + data)
        return os.fstat(fd).st_size

    def join(self, timeout: float = 2.0) -> None:
        self._thread.join(timeout)


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a console log, as text ('' if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").replace("\r", "")
    # The console is written by the guest: keep tabs, drop other control characters
    # (escape sequences would reach the user's terminal inside an error message).
    return "\n".join("".join(c if c.isprintable() or c == "\t" else "?" for c in line)
                     for line in text.splitlines()[-lines:])

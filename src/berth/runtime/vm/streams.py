"""Host side of one process's stdio over an agent channel (the workload or an exec).

Sources for stdin: None (closed at once), bytes, a file descriptor, or a binary
file object. Sinks for stdout/stderr: None (discarded), a file descriptor, or an
object with ``write(bytes)``.
"""

from __future__ import annotations

import os
import threading

from berth.runtime.vm import agent_protocol as ap


def _write(sink: object, data: bytes) -> None:
    if sink is None:
        return
    if isinstance(sink, int):
        view = memoryview(data)
        while view:
            view = view[os.write(sink, view):]
        return
    sink.write(data)
    if hasattr(sink, "flush"):
        sink.flush()


class Session:
    """Pumps one stream: a reader thread for the agent's frames, a writer for stdin."""

    def __init__(self, chan: ap.Channel, stream: int, stdout: object = None, stderr: object = None,
                 on_exit=None):
        self.chan = chan
        self.stream = stream
        self.stdout = stdout
        self.stderr = stderr
        self.on_exit = on_exit
        self.status: int | None = None
        self.error: dict | None = None
        self.done = threading.Event()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"vm-stream-{stream}", daemon=True)

    def send(self, data: bytes) -> None:
        with self._send_lock:
            self.chan.send(data)

    def start(self, stdin: object = None) -> None:
        self._reader.start()
        threading.Thread(target=self._feed, args=(stdin,), name="vm-stdin", daemon=True).start()

    def _feed(self, stdin: object) -> None:
        try:
            if isinstance(stdin, bytes | bytearray):
                self.send(ap.encode_data(ap.STDIN, self.stream, bytes(stdin)))
            elif stdin is not None:
                while not self.done.is_set():
                    chunk = os.read(stdin, ap.MAX_PAYLOAD) if isinstance(stdin, int) else stdin.read(ap.MAX_PAYLOAD)
                    if not chunk:
                        break
                    self.send(ap.encode_data(ap.STDIN, self.stream, chunk))
            if not self.done.is_set():
                self.send(ap.encode(ap.STDIN, self.stream))
        except OSError:
            pass

    def _read(self) -> None:
        try:
            while True:
                f = self.chan.recv()
                if f is None:
                    break
                if f.stream != self.stream:
                    continue
                if f.type == ap.STDOUT:
                    _write(self.stdout, f.payload)
                elif f.type == ap.STDERR:
                    _write(self.stderr, f.payload)
                elif f.type == ap.ERROR:
                    self.error = f.json()
                    msg = ap.printable(self.error.get("message", "error"))
                    self.error["message"] = msg
                    _write(self.stderr, f"berth: {msg}\n".encode())
                elif f.type == ap.EXIT:
                    self.status = int(f.json().get("status", 125))
                    if self.on_exit:
                        self.on_exit(self)
                    break
        except (OSError, ConnectionError):
            pass
        finally:
            self.done.set()

    def signal(self, sig: int, stream: int | None = None) -> None:
        self.send(ap.encode_json(ap.SIGNAL, stream or self.stream, {"signal": int(sig)}))

    def resize(self, rows: int, cols: int) -> None:
        self.send(ap.encode_json(ap.RESIZE, self.stream, {"rows": rows, "cols": cols}))

    def wait(self, timeout: float | None = None) -> int | None:
        self.done.wait(timeout)
        return self.status

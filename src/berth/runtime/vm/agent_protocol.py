"""The wire protocol between berth (host) and berth-agent (PID 1 in the guest).

Transport: virtio-serial ports (``virtio-serial-device`` on the microvm machine).
Each port is a byte stream between a host unix socket and ``/dev/vportNpM`` in the
guest, found by name under ``/sys/class/virtio-ports/*/name``:

``org.berth.main``
    The workload: the host sends INIT then START and the workload's stdin; the
    agent sends READY, the workload's output and its EXIT. QEMU connects to a
    socket the host listens on (``main.sock``), so the owner of the instance is the
    only reader.
``org.berth.exec.N`` (N = 0..3)
    One ``exec`` session each. QEMU listens (``exec.N.sock``); any host process
    may connect, holding ``exec.N.lock`` (flock) while it uses the port. When the
    client disconnects the agent kills the session's process.

Frames, both directions::

    +--------+-------------------+-------------------+-----------------+
    | type   | stream id         | length            | payload         |
    | 1 byte | 4 bytes, big end. | 4 bytes, big end. | length bytes    |
    +--------+-------------------+-------------------+-----------------+

``length`` is at most ``MAX_PAYLOAD`` (64 KiB); a larger length desynchronizes the
session and the agent drops it. Control payloads are UTF-8 JSON objects; data
payloads are raw bytes. Stream 1 is always the workload; exec streams are chosen
by the host and must be >= 2.

Host to guest:

=========  =====  ================================================================
INIT       1      JSON guest set-up: ``root`` {device, fstype, readonly}, ``mounts``
                  [{tag, type, target, readonly}], ``net`` {ifname, address,
                  prefixlen, gateway, mtu}, ``hostname``, ``files`` [{target,
                  hex, mode, readonly}] (single files bound by value),
                  ``process`` (see EXEC). Main port only, once.
START      2      Run the workload (OCI create -> start). Main port only.
STDIN      3      Bytes for the stream's stdin; an empty payload closes it.
SIGNAL     4      JSON {"signal": N} to the stream's process (stream 1 from any port).
EXEC       5      JSON process: args, env ["K=V"], cwd, uid, gid, gids, tty,
                  rows, cols, caps {bounding, effective, permitted,
                  inheritable, ambient}, rlimits [{type, soft, hard}],
                  no_new_privs, seccomp (hex of a classic-BPF program,
                  struct sock_filter[]). Exec ports only.
RESIZE     6      JSON {"rows", "cols"} for a tty stream.
SHUTDOWN   7      Acknowledges EXIT of stream 1: the agent syncs and powers off.
=========  =====  ================================================================

Guest to host:

=========  =====  ================================================================
READY      10     JSON {"kernel": uname -r}: set-up done, waiting for START.
STARTED    11     JSON {"pid": N}: the process was exec'd.
STDOUT     12     Bytes the stream's process wrote to stdout (or its tty).
STDERR     13     Bytes the stream's process wrote to stderr.
EXIT       14     JSON {"status": N}: exit code, or 128+signal.
ERROR      15     JSON {"code": 125|126|127, "message": ...}: set-up or exec
                  failed; an EXIT follows.
=========  =====  ================================================================

Power-off: after EXIT of stream 1 the agent waits up to 5 s for SHUTDOWN (so the
EXIT frame has surely left the virtqueue; with KVM's ioeventfd the kick is
asynchronous), or for the host to close the main port, then kills every guest
process, syncs and calls reboot(2); with ``reboot=t`` and QEMU's ``-no-reboot``
that ends the QEMU process.
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass

INIT, START, STDIN, SIGNAL, EXEC, RESIZE, SHUTDOWN = 1, 2, 3, 4, 5, 6, 7
READY, STARTED, STDOUT, STDERR, EXIT, ERROR = 10, 11, 12, 13, 14, 15

MAIN_STREAM = 1
MAX_PAYLOAD = 64 * 1024
MAIN_PORT = "org.berth.main"
EXEC_PORTS = 4
_HDR = struct.Struct(">BII")


def exec_port_name(n: int) -> str:
    return f"org.berth.exec.{n}"


@dataclass(frozen=True)
class Frame:
    type: int
    stream: int
    payload: bytes

    def json(self) -> dict:
        try:
            value = json.loads(self.payload.decode("utf-8", "replace") or "{}")
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


def printable(text: object, limit: int = 512) -> str:
    """Guest-supplied text made safe to print on the host: no control characters
    (terminal escape injection), bounded length. The guest is untrusted."""
    s = str(text)[:limit]
    return "".join(c if c.isprintable() else "?" for c in s)


def encode(type_: int, stream: int, payload: bytes = b"") -> bytes:
    """One frame; payloads above MAX_PAYLOAD must be split by the caller."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return _HDR.pack(type_, stream, len(payload)) + payload


def encode_json(type_: int, stream: int, value: dict) -> bytes:
    return encode(type_, stream, json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def encode_data(type_: int, stream: int, data: bytes) -> bytes:
    """Data split into as many frames as needed (an empty ``data`` is one empty frame)."""
    if not data:
        return encode(type_, stream)
    return b"".join(encode(type_, stream, data[i : i + MAX_PAYLOAD]) for i in range(0, len(data), MAX_PAYLOAD))


class Channel:
    """Frames over a connected stream socket (one end of a virtio-serial port)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> Frame | None:
        """The next frame, or None at end of stream."""
        while True:
            if len(self._buf) >= _HDR.size:
                type_, stream, length = _HDR.unpack_from(self._buf)
                if length > MAX_PAYLOAD:
                    raise ConnectionError(f"agent frame of {length} bytes exceeds {MAX_PAYLOAD}")
                end = _HDR.size + length
                if len(self._buf) >= end:
                    frame = Frame(type_, stream, bytes(self._buf[_HDR.size : end]))
                    del self._buf[:end]
                    return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buf += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

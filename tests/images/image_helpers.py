"""Helpers for the image tests (imported by conftest and the tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BERTH = str(Path(sys.executable).parent / "berth")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def berth(root: Path, *args: str, input: bytes | None = None, check: bool = False,
          env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run([BERTH, "--root", str(root), *args], capture_output=True, input=input,
                       timeout=timeout, env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        raise AssertionError(f"berth {' '.join(args)} failed ({r.returncode}): {r.stderr.decode()}")
    return r


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    """Non-zero exit, exactly one line on stderr, no traceback, containing the needles."""
    err = r.stderr.decode()
    assert r.returncode != 0, err
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err


class FakeRegistry:
    """A tiny registry on 127.0.0.1 serving what a test puts in it — including what a
    real registry would refuse to store (wrong bytes for a digest), slow blobs, and
    Bearer token auth with its own token endpoint."""

    def __init__(self):
        import base64
        import http.server
        import threading

        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.slow = 0.0
        self.redirects: dict[str, str] = {}  # blob digest -> Location
        self.drop_once: set[str] = set()  # blob digests whose first GET is cut off midway
        self.bearer: tuple[str, str] | None = None  # (user, password) the token server wants
        self.tokens: set[str] = set()
        self.log: list[str] = []
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code, body=b"", headers=None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                fake.log.append(self.path)
                if self.path.startswith("/token"):
                    want = "Basic " + base64.b64encode(":".join(fake.bearer).encode()).decode()
                    if self.headers.get("Authorization") != want:
                        return self._send(401)
                    tok = f"tok-{len(fake.tokens)}-{os.getpid()}"
                    fake.tokens.add(tok)
                    return self._send(200, json.dumps({"token": tok}).encode())
                if fake.bearer is not None:
                    auth = self.headers.get("Authorization", "")
                    if not auth.startswith("Bearer ") or auth[7:] not in fake.tokens:
                        host = self.headers["Host"]
                        return self._send(401, b"{}", {"WWW-Authenticate":
                            f'Bearer realm="http://{host}/token",service="fake",scope="repository:x:pull"'})
                parts = self.path.split("/")
                if self.path == "/v2/":
                    return self._send(200, b"{}")
                if "manifests" in parts:
                    ref = parts[-1]
                    if ref in fake.manifests:
                        body, mtype = fake.manifests[ref]
                        return self._send(200, body, {"Content-Type": mtype})
                    return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')
                if "blobs" in parts:
                    d = parts[-1]
                    if d in fake.redirects:
                        return self._send(307, b"", {"Location": fake.redirects[d]})
                    if d not in fake.blobs:
                        return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}')
                    data = fake.blobs[d]
                    if d in fake.drop_once:
                        fake.drop_once.discard(d)
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return None
                    if not fake.slow:
                        return self._send(200, data)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    for i in range(0, len(data), 65536):
                        self.wfile.write(data[i:i + 65536])
                        self.wfile.flush()
                        time.sleep(fake.slow)
                    return None
                return self._send(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_image(self, name_tag: str, config: dict, layers: list[bytes], layer_type: str,
                  diff_ids: list[str], manifest_type: str = "application/vnd.oci.image.manifest.v1+json",
                  served_layers: list[bytes] | None = None) -> str:
        """Serve an image; ``served_layers`` replaces the bytes sent for each layer."""
        import hashlib
        import json as _json

        def dg(b):
            return "sha256:" + hashlib.sha256(b).hexdigest()

        config = dict(config, rootfs={"type": "layers", "diff_ids": diff_ids})
        cbytes = _json.dumps(config).encode()
        self.blobs[dg(cbytes)] = cbytes
        descs = []
        for i, data in enumerate(layers):
            descs.append({"mediaType": layer_type, "digest": dg(data), "size": len(data)})
            self.blobs[dg(data)] = (served_layers or layers)[i]
        cfg_type = ("application/vnd.docker.container.image.v1+json" if "docker" in manifest_type
                    else "application/vnd.oci.image.config.v1+json")
        m = {"schemaVersion": 2, "mediaType": manifest_type,
             "config": {"mediaType": cfg_type, "digest": dg(cbytes), "size": len(cbytes)}, "layers": descs}
        mb = _json.dumps(m).encode()
        tag = name_tag.rsplit(":", 1)[1]
        self.manifests[tag] = (mb, manifest_type)
        self.manifests[dg(mb)] = (mb, manifest_type)
        return dg(mb)

    def close(self):
        self.server.shutdown()
        self.server.server_close()



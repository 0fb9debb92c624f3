"""Fixtures for the image tests: a real registry (Debian's docker-registry) on
127.0.0.1, one with htpasswd auth, stores in temporary roots, and the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from image_helpers import FakeRegistry, free_port

from berth.image.store import ImageStore


@dataclass
class RegistryProc:
    host: str
    pid: int
    dir: Path
    user: str | None = None
    password: str | None = None


def _start_registry(tmp: Path, htpasswd: Path | None = None,
                    tls: tuple[Path, Path] | None = None) -> tuple[subprocess.Popen, str]:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (scripts/setup.sh)")
    port = free_port()
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {htpasswd}\n"
    (tmp / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp}/data\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        + auth
    )
    log = open(tmp / "log", "wb")
    p = subprocess.Popen(["docker-registry", "serve", str(tmp / "config.yml")], stdout=log, stderr=log)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/v2/"
    ctx = None
    if tls:
        import ssl

        ctx = ssl.create_default_context(cafile=str(tls[0]))
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1, context=ctx).read()
            break
        except urllib.error.HTTPError:
            break  # 401 from the auth registry: it is up
        except OSError:
            if p.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(tmp / 'log').read_text()[-500:]}") from None
            time.sleep(0.05)
    else:
        p.kill()
        raise RuntimeError("docker-registry did not start")
    return p, f"127.0.0.1:{port}"


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """An anonymous docker-registry on 127.0.0.1, storage in a temp dir, for the session."""
    tmp = tmp_path_factory.mktemp("registry")
    p, host = _start_registry(tmp)
    yield RegistryProc(host, p.pid, tmp)
    _stop(p)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory):
    """A docker-registry that demands Basic auth (htpasswd, bcrypt)."""
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd (apache2-utils) is not installed")
    tmp = tmp_path_factory.mktemp("authreg")
    user, password = "tester", f"pw-{os.getpid()}"
    subprocess.run(["htpasswd", "-Bbc", str(tmp / "htpasswd"), user, password], check=True,
                   capture_output=True)
    p, host = _start_registry(tmp, tmp / "htpasswd")
    yield RegistryProc(host, p.pid, tmp, user, password)
    _stop(p)


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory):
    """A docker-registry serving HTTPS with a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    tmp = tmp_path_factory.mktemp("tlsreg")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    p, host = _start_registry(tmp, tls=(cert, key))
    yield RegistryProc(host, p.pid, tmp)
    _stop(p)


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def store(root) -> ImageStore:
    return ImageStore(root)


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory) -> Path:
    """A docker-archive of the bootstrapped busybox image, made once, for loading into stores."""
    from berth.image.archive import save
    from berth.image.bootstrap import bootstrap_busybox

    d = tmp_path_factory.mktemp("bbarchive")
    s = ImageStore(d / "root")
    bootstrap_busybox(s)
    save(s, ["busybox"], str(d / "busybox.tar"))
    return d / "busybox.tar"


@pytest.fixture
def bb_store(store, busybox_archive) -> ImageStore:
    """A store holding busybox:latest."""
    from berth.image.archive import load

    load(store, str(busybox_archive))
    return store


@pytest.fixture
def fake_registry():
    f = FakeRegistry()
    yield f
    f.close()

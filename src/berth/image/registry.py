"""A Docker Registry HTTP API v2 / OCI distribution client: pull, push, login.

Pull fetches the manifest (following an index to the requested platform), the
config and the layers (a thread pool, blobs already in the store skipped). Every
blob is hashed while it streams to a temp file and committed only if its digest
and size match the manifest; the image becomes visible (index entry) only after
every blob is in. A wrong byte anywhere fails the pull and nothing is tagged.

Transport: HTTPS with verified certificates by default. Registries marked
insecure, and loopback ones (as docker does), may fall back to plain HTTP.
Auth: anonymous, Basic, or Bearer tokens from the ``WWW-Authenticate`` realm.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from berth.errors import BerthError, NotFound, UsageError
from berth.image import auth, reference
from berth.image import mediatypes as mt
from berth.image.blobs import CHUNK, DigestMismatch, HashingWriter, digest_bytes, new_temp
from berth.image.progress import Progress
from berth.image.reference import Reference
from berth.image.store import Image, ImageStore

MAX_MANIFEST = 4 << 20  # distribution's own limit for manifests
MAX_TOKEN = 1 << 20
MAX_CONFIG = 64 << 20
PULL_WORKERS = 4
DOWNLOAD_ATTEMPTS = 3
PUSH_WORKERS = 4
CHUNKED_THRESHOLD = 64 << 20  # blobs larger than this are sent in PATCH chunks
CHUNK_SIZE = 16 << 20
TIMEOUT = 60
USER_AGENT = "berth/0.1"
HUB_REGISTRY = "registry-1.docker.io"
ACCEPT_MANIFESTS = ", ".join([mt.OCI_INDEX, mt.DOCKER_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST])


class RegistryError(BerthError):
    """The registry refused a request or answered something berth cannot use."""


class Unauthorized(RegistryError):
    pass


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    resp: http.client.HTTPResponse
    url: str

    def header(self, name: str, default: str = "") -> str:
        return self.resp.getheader(name, default) or default

    def read(self, limit: int | None = None) -> bytes:
        if limit is None:
            return self.resp.read()
        data = self.resp.read(limit + 1)
        if len(data) > limit:
            self.resp.close()
            raise RegistryError(f"GET {self.url}: response larger than {limit} bytes")
        return data


class Registry:
    """One registry host; connections are per thread and reused."""

    def __init__(self, host: str, *, root: str | os.PathLike, insecure: bool = False,
                 creds: tuple[str, str] | None = None):
        self.host = host
        self.api_host = HUB_REGISTRY if host == reference.DEFAULT_DOMAIN else host
        self.insecure = insecure or host in auth.insecure_registries(root)
        self.allow_http = self.insecure or auth.is_loopback(host)
        self.creds = creds if creds is not None else auth.credentials(root, host)
        self.scheme: str | None = None
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._local = threading.local()
        self._lock = threading.Lock()

    # ---- connections -----------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self.insecure:
            # no CA store to load (about 120 ms) when nothing will be verified
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context()

    def _speaks_tls(self) -> bool:
        """Does the (loopback) registry answer a TLS handshake at all?

        Checked with an unverifying context, which is cheap; a registry that does
        speak TLS is then used with full verification like any other.
        """
        import socket

        u = urllib.parse.urlsplit(f"https://{self.api_host}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((u.hostname, u.port or 443), timeout=TIMEOUT) as raw:
                with ctx.wrap_socket(raw, server_hostname=u.hostname):
                    return True
        except (ssl.SSLError, OSError):
            return False

    def _conn(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool = self._local.__dict__.setdefault("pool", {})
        key = (scheme, netloc)
        c = pool.get(key)
        if c is None:
            if scheme == "https":
                c = http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=self._ssl_context(),
                                                blocksize=CHUNK)
            else:
                c = http.client.HTTPConnection(netloc, timeout=TIMEOUT, blocksize=CHUNK)
            pool[key] = c
        return c

    def _drop(self, scheme: str, netloc: str) -> None:
        pool = self._local.__dict__.setdefault("pool", {})
        c = pool.pop((scheme, netloc), None)
        if c is not None:
            c.close()

    def _raw(self, method: str, url: str, headers: dict, body=None) -> Response:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("https", "http") or (u.scheme == "http" and not self.allow_http):
            # a redirect or upload Location may not downgrade to plain HTTP or leave HTTP(S)
            raise RegistryError(f"{method} {url[:100]}: refusing {u.scheme or 'relative'} URL "
                                f"for registry {self.host}")
        path = u.path + (f"?{u.query}" if u.query else "")
        for attempt in (0, 1):
            c = self._conn(u.scheme, u.netloc)
            try:
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                return Response(r.status, r.headers, r, url)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # a kept-alive connection the server closed: retry once on a new one
                self._drop(u.scheme, u.netloc)
                if attempt or (body is not None and hasattr(body, "read")):
                    raise
            except BaseException:
                self._drop(u.scheme, u.netloc)
                raise
        raise AssertionError("unreachable")

    def _base(self) -> str:
        if self.scheme is None:
            self.ping()
        return f"{self.scheme}://{self.api_host}"

    def ping(self) -> Response:
        """GET /v2/ to choose the scheme and learn the auth.

        HTTPS with a verified certificate, except: an insecure registry may use
        unverified HTTPS or plain HTTP, and a loopback registry plain HTTP if it
        does not speak TLS at all. A server that speaks TLS with a bad
        certificate is never retried over HTTP (that would be a downgrade).
        """
        with self._lock:
            errors = []
            if self.insecure:
                schemes: tuple[str, ...] = ("https", "http")
            elif self.allow_http:
                schemes = ("https",) if self._speaks_tls() else ("http",)
            else:
                schemes = ("https",)
            for scheme in schemes:
                try:
                    r = self._raw("GET", f"{scheme}://{self.api_host}/v2/", self._headers())
                    r.read()
                except (ssl.SSLError, OSError, http.client.HTTPException) as e:
                    errors.append(f"{scheme}: {e}")
                    continue
                if r.status not in (200, 401):  # e.g. 400 from a TLS server spoken to in HTTP
                    errors.append(f"{scheme}: /v2/ answered {r.status}")
                    continue
                self.scheme = scheme
                return r
            text = "; ".join(errors)
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in text:
                hint = " (trust its CA, or use --insecure to skip verification)"
            elif not self.allow_http:
                hint = " (use --insecure for a plain-HTTP registry)"
            raise RegistryError(f"connect to registry {self.host}: {text}{hint}")

    # ---- auth -----------------------------------------------------------------

    def _headers(self, scope: str | None = None, extra: dict | None = None) -> dict:
        h = {"User-Agent": USER_AGENT}
        if scope and scope in self._tokens:
            h["Authorization"] = f"Bearer {self._tokens[scope]}"
        elif self._basic and self.creds:
            h["Authorization"] = "Basic " + base64.b64encode(
                f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
        if extra:
            h.update(extra)
        return h

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, params = auth.parse_challenge(challenge)
        if scheme == "basic":
            if not self.creds:
                raise Unauthorized(f"registry {self.host}: authentication required (berth login {self.host})")
            if self._basic:
                raise Unauthorized(f"registry {self.host}: unauthorized: incorrect username or password")
            self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise Unauthorized(f"registry {self.host}: unsupported authentication {challenge[:60]!r}")
        realm = params["realm"]
        ru = urllib.parse.urlsplit(realm)
        if ru.scheme not in ("https", "http") or (ru.scheme == "http" and not self.allow_http):
            raise Unauthorized(f"registry {self.host}: refusing token realm {realm!r} (not HTTPS)")
        q = {}
        if params.get("service"):
            q["service"] = params["service"]
        q["scope"] = params.get("scope") or scope
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(q)
        h = {"User-Agent": USER_AGENT}
        if self.creds:
            h["Authorization"] = "Basic " + base64.b64encode(
                f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
        r = self._raw("GET", url, h)
        body = r.read(MAX_TOKEN)
        if r.status != 200:
            raise Unauthorized(f"registry {self.host}: token request for {scope} refused ({r.status})")
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise Unauthorized(f"registry {self.host}: token server sent no token")
        self._tokens[scope] = token

    def request(self, method: str, path_or_url: str, scope: str, *, headers: dict | None = None,
                body=None, ok=(200,)) -> Response:
        """A request with auth handled: on 401 answer the challenge once and retry."""
        url = path_or_url if "://" in path_or_url else self._base() + path_or_url
        for attempt in range(3):
            if hasattr(body, "seek"):
                body.seek(0)
            r = self._raw(method, url, self._headers(scope, headers), body)
            if r.status == 401 and attempt < 2:
                r.read()
                challenge = r.header("WWW-Authenticate")
                if not challenge:
                    raise Unauthorized(f"{method} {url}: unauthorized")
                self._authenticate(challenge, scope)
                continue
            if r.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                r.read()
                loc = urllib.parse.urljoin(url, r.header("Location"))
                return self._follow(method, loc, url, headers, scope)
            if r.status not in ok:
                raise self._error(method, url, r)
            return r
        raise Unauthorized(f"{method} {url}: unauthorized")

    def _follow(self, method: str, url: str, origin: str, headers: dict | None, scope: str) -> Response:
        """Follow a blob redirect (storage backends); credentials only go to the same host."""
        for _ in range(5):
            same = urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(origin).netloc
            h = dict(headers or {}, **{"User-Agent": USER_AGENT})
            if same:
                h = self._headers(scope, h)
            r = self._raw(method, url, h)
            if r.status in (301, 302, 303, 307, 308):
                r.read()
                url = urllib.parse.urljoin(url, r.header("Location"))
                continue
            if r.status != 200:
                raise self._error(method, url, r)
            return r
        raise RegistryError(f"{method} {origin}: too many redirects")

    def _error(self, method: str, url: str, r: Response) -> RegistryError:
        try:
            body = r.read(64 << 10)
        except RegistryError:
            body = b""
        detail = ""
        with contextlib.suppress(ValueError, AttributeError, IndexError, KeyError, TypeError):
            e = json.loads(body)["errors"][0]
            detail = f"{e.get('code', '')}: {e.get('message', '')}"
        path = urllib.parse.urlsplit(url).path
        if r.status == 401:
            return Unauthorized(f"{method} {self.host}{path}: unauthorized {detail}".rstrip())
        if r.status == 404:
            return NotFound(f"{method} {self.host}{path}: not found {detail}".rstrip())
        return RegistryError(f"{method} {self.host}{path}: {r.status} {r.resp.reason} {detail}".rstrip())


def _scope(ref: Reference, push: bool = False) -> str:
    return f"repository:{ref.path}:{'pull,push' if push else 'pull'}"


def client_for(store: ImageStore, ref: Reference, insecure: bool = False) -> Registry:
    return Registry(ref.domain, root=store.root, insecure=insecure)


def parallel(fn, items: list, workers: int) -> None:
    """Run ``fn(item)`` on up to ``workers`` threads; stop handing out work after the
    first failure and re-raise it. (Plain threads: concurrent.futures costs ~40 ms
    of imports on every ``berth pull``.)"""
    items = list(items)
    if len(items) <= 1 or workers <= 1:
        for it in items:
            fn(it)
        return
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if errors or not items:
                    return
                it = items.pop(0)
            try:
                fn(it)
            except BaseException as e:  # re-raised in the caller's thread
                with lock:
                    errors.append(e)
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(workers, len(items)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# ---- platforms ------------------------------------------------------------------


def default_platform() -> str:
    m = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)
    return f"linux/{arch}"


def parse_platform(text: str | None) -> tuple[str, str, str | None]:
    text = text or default_platform()
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}: want os/arch[/variant]")
    os_, arch = parts[0].lower(), parts[1].lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    variant = parts[2].lower() if len(parts) == 3 else None
    return os_, arch, variant


def select_platform(index: dict, platform: str | None, what: str) -> dict:
    os_, arch, variant = parse_platform(platform)
    candidates = []
    for d in index.get("manifests", []):
        p = d.get("platform") or {}
        if p.get("os") == os_ and p.get("architecture") == arch:
            if variant and p.get("variant", "v8" if arch == "arm64" else None) != variant:
                continue
            candidates.append(d)
    if not candidates:
        have = sorted({
            "/".join(x for x in (d.get("platform", {}).get("os"), d.get("platform", {}).get("architecture"),
                                 d.get("platform", {}).get("variant")) if x)
            for d in index.get("manifests", [])
        })
        raise NotFound(f"pull {what}: no manifest for {os_}/{arch}{'/' + variant if variant else ''} "
                       f"(image has: {', '.join(have) or 'none'})")
    return candidates[0]


# ---- pull -----------------------------------------------------------------------


def _media_type(data: dict, header: str) -> str:
    mtype = data.get("mediaType") or header.split(";")[0].strip()
    if mtype in mt.INDEXES or mtype in mt.MANIFESTS:
        return mtype
    if data.get("schemaVersion") == 1 or mtype == mt.DOCKER_SCHEMA1:
        raise RegistryError("pull: Docker image manifest schema 1 is not supported (deprecated)")
    if "manifests" in data:
        return mt.OCI_INDEX
    if "layers" in data and "config" in data:
        return mt.OCI_MANIFEST
    raise RegistryError(f"pull: unsupported manifest media type {mtype!r}")


def fetch_manifest(reg: Registry, ref: Reference, target: str) -> tuple[bytes, dict, str]:
    """GET a manifest by tag or digest; verify it against the digest when one is known."""
    r = reg.request("GET", f"/v2/{ref.path}/manifests/{target}", _scope(ref),
                    headers={"Accept": ACCEPT_MANIFESTS})
    body = r.read(MAX_MANIFEST)
    digest = digest_bytes(body)
    if target.startswith("sha256:") and digest != target:
        raise DigestMismatch(f"pull {ref}: manifest digest mismatch: expected {target}, got {digest}")
    announced = r.header("Docker-Content-Digest")
    if announced.startswith("sha256:") and announced != digest:
        raise DigestMismatch(f"pull {ref}: manifest digest mismatch: registry said {announced}, got {digest}")
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except ValueError as e:
        raise RegistryError(f"pull {ref}: manifest is not JSON: {e}") from e
    return body, data, _media_type(data, r.header("Content-Type"))


def _download_blob(reg: Registry, store: ImageStore, ref: Reference, desc: dict,
                   progress: Progress) -> bool:
    """Fetch one blob unless the store has it; True if it was downloaded."""
    digest, size = desc["digest"], int(desc.get("size", -1))
    key = digest[7:19]
    if store.has_blob(digest, size if size >= 0 else None):
        progress.done(key, "Already exists")
        return False
    progress.start(key, "Downloading", size)
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            _fetch_blob(reg, store, ref, digest, size, key, progress)
            break
        except (OSError, http.client.HTTPException) as e:
            # a dropped connection is retried (docker retries too); wrong bytes are not
            reg._local.__dict__.pop("pool", None)
            if attempt == DOWNLOAD_ATTEMPTS:
                raise RegistryError(f"pull {ref}: download of {digest} failed: {e}") from e
            progress.note(f"{key}: Retrying in {attempt} second{'s' if attempt > 1 else ''}")
            time.sleep(attempt)
    progress.done(key, "Pull complete")
    return True


def _fetch_blob(reg: Registry, store: ImageStore, ref: Reference, digest: str, size: int, key: str,
                progress: Progress) -> None:
    r = reg.request("GET", f"/v2/{ref.path}/blobs/{digest}", _scope(ref))
    f, tmp = new_temp(store.tmp_dir)
    try:
        with f:
            w = HashingWriter(f)
            while True:
                chunk = r.resp.read(CHUNK)
                if not chunk:
                    break
                w.write(chunk)
                progress.advance(key, len(chunk))
                if size >= 0 and w.size > size:
                    r.resp.close()
                    raise DigestMismatch(f"pull {ref}: blob {digest} is larger than its {size} bytes")
            if size >= 0 and w.size < size:
                # http.client's read(n) reports a cut connection as a short body
                raise http.client.IncompleteRead(b"", size - w.size)
            f.flush()
            os.fsync(f.fileno())
        store.commit_temp_blob(tmp, w.digest, w.size, digest, size if size >= 0 else None,
                               f"pull {ref}: blob")
    finally:
        tmp.unlink(missing_ok=True)


def pull(store: ImageStore, name: str, *, platform: str | None = None, insecure: bool = False,
         progress: Progress | None = None) -> Image:
    """Pull ``name`` into ``store`` (like ``docker pull``) and return the image.

    Raises:
        UsageError: invalid reference or platform.
        NotFound: no such repository, tag or platform.
        DigestMismatch: a manifest or blob does not match its digest (nothing is tagged).
        RegistryError, Unauthorized.
    """
    ref = reference.parse(name)
    parse_platform(platform)
    progress = progress or Progress()
    reg = client_for(store, ref, insecure)
    target = ref.digest or ref.tag or "latest"
    try:
        with store.gc_lock.shared(), progress:
            body, data, mtype = fetch_manifest(reg, ref, target)
            top_digest = digest_bytes(body)
            if mtype in mt.INDEXES:
                chosen = select_platform(data, platform, str(ref))
                body, data, mtype = fetch_manifest(reg, ref, reference.check_digest(chosen["digest"]))
                if mtype not in mt.MANIFESTS:
                    raise RegistryError(f"pull {ref}: index entry {chosen['digest']} is not an image manifest")
            manifest = store.parse_manifest(body, f"pull {ref}")
            for d in [manifest["config"], *manifest.get("layers", [])]:
                # sizes bound every download (a registry cannot stream forever)
                if not isinstance(d.get("size"), int) or d["size"] < 0:
                    raise RegistryError(f"pull {ref}: descriptor {d.get('digest')} has no valid size")
            if manifest["config"]["size"] > MAX_CONFIG:
                raise RegistryError(f"pull {ref}: image config of {manifest['config']['size']} bytes is too large")
            for d in manifest.get("layers", []):
                if d.get("mediaType", mt.OCI_LAYER_GZIP) not in mt.LAYERS:
                    raise RegistryError(f"pull {ref}: unsupported layer media type {d.get('mediaType')!r}")
            progress.note(f"{target}: Pulling from {ref.familiar_repository}")
            _download_blob(reg, store, ref, manifest["config"], Progress())
            blobs = [d for d in manifest.get("layers", []) if not d.get("urls")]
            fetched: list[bool] = []
            parallel(lambda d: fetched.append(_download_blob(reg, store, ref, d, progress)),
                     blobs, PULL_WORKERS)
            tags = [str(ref)] if ref.tag and not ref.digest else []
            digests = [f"{ref.repository}@{top_digest}"]
            try:
                before = store.get(str(ref)).digest
            except NotFound:
                before = None
            img = store.commit_image(body, tags, digests)
            img.extra["up_to_date"] = before == img.digest and not any(fetched)
    except BaseException:
        # blobs this pull committed are unreferenced now; collect them if no one else is busy
        store.try_collect()
        raise
    return img


# ---- push -----------------------------------------------------------------------


def _upload_location(reg: Registry, r: Response, url: str) -> str:
    loc = r.header("Location")
    if not loc:
        raise RegistryError(f"push: registry gave no upload location for {url}")
    return urllib.parse.urljoin(url, loc)


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


def _push_blob(reg: Registry, store: ImageStore, ref: Reference, desc: dict, progress: Progress,
               chunk_threshold: int, chunk_size: int, mount_from: str | None = None) -> None:
    digest, size = desc["digest"], int(desc["size"])
    key = digest[7:19]
    scope = _scope(ref, push=True)
    try:
        r = reg.request("HEAD", f"/v2/{ref.path}/blobs/{digest}", scope)
        r.read()
        progress.done(key, "Layer already exists")
        return
    except NotFound:
        pass
    progress.start(key, "Pushing", size)
    start_url = reg._base() + f"/v2/{ref.path}/blobs/uploads/"
    if mount_from:
        # cross-repository mount: the registry links the blob it already has (201)
        # or falls back to an ordinary upload session (202)
        url = _with_query(start_url, mount=digest, **{"from": mount_from})
        r = reg.request("POST", url, f"{scope} repository:{mount_from}:pull",
                        headers={"Content-Length": "0"}, ok=(201, 202))
        r.read()
        if r.status == 201:
            progress.done(key, f"Mounted from {mount_from}")
            return
    else:
        r = reg.request("POST", start_url, scope, headers={"Content-Length": "0"}, ok=(202,))
        r.read()
    loc = _upload_location(reg, r, start_url)
    with store.open_blob(digest) as f:
        if size <= chunk_threshold:
            r = reg.request("PUT", _with_query(loc, digest=digest), scope, body=_Counted(f, progress, key),
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Length": str(size)}, ok=(201, 204))
            r.read()
        else:
            offset = 0
            while offset < size:
                data = f.read(chunk_size)
                r = reg.request("PATCH", loc, scope, body=data, ok=(202,), headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(data)),
                    "Content-Range": f"{offset}-{offset + len(data) - 1}",
                })
                r.read()
                loc = _upload_location(reg, r, loc)
                offset += len(data)
                progress.advance(key, len(data))
            r = reg.request("PUT", _with_query(loc, digest=digest), scope,
                            headers={"Content-Length": "0"}, ok=(201, 204))
            r.read()
    progress.done(key, "Pushed")


class _Counted:
    """A file body that reports progress as http.client reads it."""

    def __init__(self, f: BinaryIO, progress: Progress, key: str):
        self.f, self.progress, self.key = f, progress, key

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.progress.advance(self.key, len(data))
        return data

    def seek(self, pos: int) -> None:
        self.f.seek(pos)


def push(store: ImageStore, name: str, *, insecure: bool = False, progress: Progress | None = None,
         chunk_threshold: int = CHUNKED_THRESHOLD, chunk_size: int = CHUNK_SIZE) -> tuple[str, int]:
    """Push the image named ``name`` to its registry (like ``docker push``).

    Returns (manifest digest, manifest size).
    """
    ref = reference.parse(name)
    progress = progress or Progress()
    with store.gc_lock.shared(), progress:
        img = store.get(name)
        reg = client_for(store, ref, insecure)
        progress.note(f"The push refers to repository [{ref.repository}]")
        blobs = [d for d in img.layers if not d.get("urls")]
        # a repository on the same registry this image came from can lend its blobs
        mount_from = None
        for known in img.repo_digests:
            rd = reference.parse(known, default_tag=False)
            if rd.domain == ref.domain and rd.path != ref.path:
                mount_from = rd.path
                break
        parallel(lambda d: _push_blob(reg, store, ref, d, progress, chunk_threshold, chunk_size,
                                      mount_from), blobs, PUSH_WORKERS)
        _push_blob(reg, store, ref, img.manifest["config"], Progress(), chunk_threshold, chunk_size)
        body = store.read_blob(img.digest)
        mtype = img.manifest.get("mediaType") or mt.OCI_MANIFEST
        target = ref.digest or ref.tag or "latest"
        if ref.digest and ref.digest != img.digest:
            raise UsageError(f"push {name}: the image's manifest digest is {img.digest}")
        r = reg.request("PUT", f"/v2/{ref.path}/manifests/{target}", _scope(ref, push=True), body=body,
                        headers={"Content-Type": mtype, "Content-Length": str(len(body))}, ok=(201, 202))
        r.read()
        got = r.header("Docker-Content-Digest")
        if got and got != img.digest:
            raise DigestMismatch(f"push {name}: registry stored manifest {got}, expected {img.digest}")
    return img.digest, len(body)


def check_login(root: str | os.PathLike, server: str, username: str, password: str,
                insecure: bool = False) -> None:
    """Verify credentials against ``server``'s /v2/ (Basic or a Bearer token)."""
    reg = Registry(server, root=root, insecure=insecure, creds=(username, password))
    r = reg.ping()
    if r.status == 200:
        return
    if r.status != 401:
        raise RegistryError(f"login {server}: unexpected answer {r.status} from /v2/")
    reg.request("GET", "/v2/", "registry:catalog:*")


def blob_iter(store: ImageStore, img: Image) -> Iterator[dict]:
    yield img.manifest["config"]
    yield from img.layers

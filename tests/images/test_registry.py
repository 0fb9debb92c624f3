"""Pull and push against a real registry (Debian's docker-registry), skopeo as the
peer, and a small fake registry for what a real one would never serve."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard
from image_helpers import assert_one_line_error, berth

from berth.errors import NotFound, UsageError
from berth.image import mediatypes as mt
from berth.image import registry as reg
from berth.image.blobs import DigestMismatch, digest_bytes
from berth.image.registry import Registry, Unauthorized, pull, push
from berth.image.store import ImageStore


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_push_then_pull_into_an_empty_store_gives_the_same_digests(bb_store, registry, tmp_path):
    ref = f"{registry.host}/berth/busybox:rt"
    bb_store.tag("busybox", ref)
    digest, _ = push(bb_store, ref)
    src = bb_store.get(ref)
    assert digest == src.digest
    empty = ImageStore(tmp_path / "other")
    img = pull(empty, ref)
    assert (img.id, img.digest, img.diff_ids) == (src.id, src.digest, src.diff_ids)
    assert img.repo_tags == [ref]
    assert img.repo_digests == [f"{registry.host}/berth/busybox@{digest}"]
    assert empty.fsck() == []
    # by digest too
    again = ImageStore(tmp_path / "third")
    assert pull(again, f"{registry.host}/berth/busybox@{digest}").id == src.id


def test_second_push_and_pull_skip_existing_blobs(bb_store, registry, tmp_path):
    ref = f"{registry.host}/berth/skip:1"
    bb_store.tag("busybox", ref)
    push(bb_store, ref)
    from berth.image.progress import LineProgress

    out = io.StringIO()
    push(bb_store, ref, progress=LineProgress(out))
    assert "Layer already exists" in out.getvalue()
    out = io.StringIO()
    pull(bb_store, ref, progress=LineProgress(out))
    assert "Already exists" in out.getvalue()


def test_chunked_upload_roundtrip(store, registry, tmp_path):
    plain = tar_bytes({"big": os.urandom(300_000)})
    desc = store.put_blob(gzip.compress(plain, mtime=0), mt.OCI_LAYER_GZIP)
    desc["diff_id"] = digest_bytes(plain)
    store.write_image({"config": {}}, [desc], ["chunky:1"])
    ref = f"{registry.host}/berth/chunky:1"
    store.tag("chunky:1", ref)
    digest, _ = push(store, ref, chunk_threshold=1000, chunk_size=64 * 1024)
    img = pull(ImageStore(tmp_path / "o"), ref)
    assert img.digest == digest and img.layers[0]["digest"] == desc["digest"]


@pytest.mark.parametrize("kind", ["zstd", "plain"])
def test_zstd_and_uncompressed_layers_pull(store, registry, tmp_path, kind):
    plain = tar_bytes({"etc/kind": kind.encode(), "data": os.urandom(1000)})
    blob = zstandard.ZstdCompressor().compress(plain) if kind == "zstd" else plain
    mtype = mt.OCI_LAYER_ZSTD if kind == "zstd" else mt.OCI_LAYER
    desc = store.put_blob(blob, mtype)
    desc["diff_id"] = digest_bytes(plain)
    store.write_image({"config": {"Cmd": ["x"]}}, [desc], [f"{registry.host}/berth/{kind}:1"])
    push(store, f"{registry.host}/berth/{kind}:1")
    other = ImageStore(tmp_path / "o")
    img = pull(other, f"{registry.host}/berth/{kind}:1")
    assert img.layers[0]["mediaType"] == mtype
    pytest.importorskip("berth.image.extract")
    (d,) = other.layer_dirs(img)
    assert (d / "etc" / "kind").read_text() == kind


def test_skopeo_reads_what_berth_pushed_and_berth_pulls_what_skopeo_pushed(bb_store, registry, tmp_path):
    ref = f"{registry.host}/berth/interop:1"
    bb_store.tag("busybox", ref)
    digest, _ = push(bb_store, ref)
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out)["Digest"] == digest
    oci = tmp_path / "oci"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{oci}:x"],
                   check=True, capture_output=True)
    peer = f"{registry.host}/berth/peer:2"
    # skopeo re-compresses and writes its own manifest: a different digest, same config
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-compress-format", "zstd",
                    f"oci:{oci}:x", f"docker://{peer}"], check=True, capture_output=True)
    img = pull(ImageStore(tmp_path / "p"), peer)
    assert img.id == bb_store.get("busybox").id


def _put_index(registry_host: str, repo: str, entries: list[tuple[str, dict]], tag: str) -> None:
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": d, "size": s, "platform": p} for (d, s), p in
        [((e[0], e[1]["size"]), e[1]["platform"]) for e in entries]]}
    r = Registry(registry_host, root="/nonexistent")
    body = json.dumps(index).encode()
    r.request("PUT", f"/v2/{repo}/manifests/{tag}", f"repository:{repo}:pull,push", body=body,
              headers={"Content-Type": mt.OCI_INDEX}, ok=(201,)).read()


def test_index_selects_the_platform(bb_store, registry, tmp_path):
    ref = f"{registry.host}/berth/multi:base"
    bb_store.tag("busybox", ref)
    digest, size = push(bb_store, ref)
    _put_index(registry.host, "berth/multi", [
        (digest, {"size": size, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}),
        (digest, {"size": size, "platform": {"os": "linux", "architecture": "amd64"}}),
    ], "idx")
    img = pull(ImageStore(tmp_path / "a"), f"{registry.host}/berth/multi:idx")
    assert img.digest == digest
    img = pull(ImageStore(tmp_path / "b"), f"{registry.host}/berth/multi:idx", platform="linux/arm64")
    assert img.digest == digest
    with pytest.raises(NotFound, match="linux/s390x.*linux/amd64, linux/arm64/v8"):
        pull(ImageStore(tmp_path / "c"), f"{registry.host}/berth/multi:idx", platform="linux/s390x")
    with pytest.raises(UsageError):
        pull(ImageStore(tmp_path / "d"), f"{registry.host}/berth/multi:idx", platform="linux")


def test_pull_of_missing_tag_is_not_found(store, registry):
    with pytest.raises(NotFound):
        pull(store, f"{registry.host}/berth/none:nope")
    assert store.list() == []


def test_layer_with_wrong_bytes_fails_the_pull_and_commits_nothing(store, fake_registry):
    good = tar_bytes({"a": b"good"})
    gz_good = gzip.compress(good, mtime=0)
    flipped = bytearray(gz_good)
    flipped[len(flipped) // 2] ^= 0x01  # same size, one bit off
    gz_evil = bytes(flipped)
    fake_registry.add_image("x/y:1", {"config": {}}, [gz_good], mt.OCI_LAYER_GZIP,
                            [digest_bytes(good)], served_layers=[gz_evil])
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        pull(store, f"{fake_registry.host}/x/y:1")
    assert store.list() == []
    assert not store.has_blob(digest_bytes(gz_good))
    assert not store.has_blob(digest_bytes(gz_evil))
    assert list(store.tmp_dir.iterdir()) == []
    # and through the CLI: one line, non-zero
    r = berth(store.root, "pull", f"{fake_registry.host}/x/y:1")
    assert_one_line_error(r, "digest mismatch")


def test_layer_longer_than_its_size_is_cut_off(store, fake_registry):
    good = gzip.compress(tar_bytes({"a": b"x"}), mtime=0)
    fake_registry.add_image("x/long:1", {"config": {}}, [good], mt.OCI_LAYER_GZIP,
                            [digest_bytes(b"")], served_layers=[good + b"\0" * 100_000])
    with pytest.raises(DigestMismatch):
        pull(store, f"{fake_registry.host}/x/long:1")
    assert store.list() == []


def test_manifest_not_matching_the_requested_digest_is_refused(store, fake_registry):
    d = fake_registry.add_image("x/m:1", {"config": {}}, [], mt.OCI_LAYER_GZIP, [])
    body, mtype = fake_registry.manifests[d]
    fake_registry.manifests[d] = (body + b" ", mtype)
    with pytest.raises(DigestMismatch):
        pull(store, f"{fake_registry.host}/x/m@{d}")
    assert store.list() == []


def test_docker_v2_schema2_manifest_pulls(store, fake_registry):
    plain = tar_bytes({"f": b"1"})
    fake_registry.add_image("x/d:1", {"config": {"Cmd": ["sh"]}}, [gzip.compress(plain)],
                            mt.DOCKER_LAYER_GZIP, [digest_bytes(plain)], manifest_type=mt.DOCKER_MANIFEST)
    img = pull(store, f"{fake_registry.host}/x/d:1")
    assert img.manifest["mediaType"] == mt.DOCKER_MANIFEST
    assert img.config["config"]["Cmd"] == ["sh"]


def test_schema1_manifest_is_refused_clearly(store, fake_registry):
    fake_registry.manifests["1"] = (b'{"schemaVersion":1,"name":"x","fsLayers":[]}', mt.DOCKER_SCHEMA1)
    with pytest.raises(reg.RegistryError, match="schema 1"):
        pull(store, f"{fake_registry.host}/x/old:1")


def test_bearer_token_from_the_www_authenticate_realm(store, root, fake_registry):
    plain = tar_bytes({"f": b"tok"})
    fake_registry.add_image("x/t:1", {"config": {}}, [gzip.compress(plain)], mt.OCI_LAYER_GZIP,
                            [digest_bytes(plain)])
    fake_registry.bearer = ("alice", "s3cret")
    with pytest.raises(Unauthorized):
        pull(store, f"{fake_registry.host}/x/t:1")
    from berth.image import auth

    auth.store_credentials(root, fake_registry.host, "alice", "s3cret")
    img = pull(store, f"{fake_registry.host}/x/t:1")
    assert img.repo_tags == [f"{fake_registry.host}/x/t:1"]
    assert any(p.startswith("/token?") and "scope=repository" in p for p in fake_registry.log)


def test_basic_auth_registry_login_push_pull_logout(bb_store, root, auth_registry, tmp_path):
    host = auth_registry.host
    ref = f"{host}/berth/private:1"
    bb_store.tag("busybox", ref)
    with pytest.raises(Unauthorized):
        push(bb_store, ref)
    r = berth(root, "login", "-u", auth_registry.user, "--password-stdin", host, input=b"wrong\n")
    assert_one_line_error(r, "unauthorized")
    r = berth(root, "login", "-u", auth_registry.user, "--password-stdin", host,
              input=auth_registry.password.encode() + b"\n", check=True)
    assert b"Login Succeeded" in r.stdout
    cfg = root / "auth.json"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert host in json.loads(cfg.read_text())["auths"]
    push(bb_store, ref)
    other = ImageStore(tmp_path / "o")
    with pytest.raises(Unauthorized):
        pull(other, ref)  # that store's root has no credentials
    env_cfg = {"BERTH_AUTH_CONFIG": str(cfg)}
    r = berth(tmp_path / "o", "pull", "-q", ref, env=env_cfg, check=True)
    assert r.stdout.decode().strip() == ref
    berth(root, "logout", host, check=True)
    assert host not in json.loads(cfg.read_text())["auths"]


def test_plain_http_only_for_loopback_or_insecure(tmp_path):
    assert Registry("127.0.0.1:5000", root=tmp_path).allow_http
    assert Registry("localhost:5000", root=tmp_path).allow_http
    assert Registry("[::1]:5000", root=tmp_path).allow_http
    assert not Registry("registry.example.com", root=tmp_path).allow_http
    assert not Registry("10.1.2.3:5000", root=tmp_path).allow_http
    assert Registry("10.1.2.3:5000", root=tmp_path, insecure=True).allow_http
    (tmp_path / "registries.json").write_text(json.dumps({"insecure-registries": ["reg.lan:5000"]}))
    assert Registry("reg.lan:5000", root=tmp_path).allow_http
    assert not Registry("reg.lan:5001", root=tmp_path).allow_http


def test_concurrent_pulls_into_one_store_are_safe(bb_store, registry, tmp_path):
    ref = f"{registry.host}/berth/conc:1"
    bb_store.tag("busybox", ref)
    push(bb_store, ref)
    target = ImageStore(tmp_path / "c")
    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(lambda _: pull(target, ref).id, range(4)))
    procs = [subprocess.Popen([sys.executable, "-m", "berth.cli.main", "--root", str(target.root),
                               "pull", "-q", ref], stdout=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        p.communicate(timeout=60)
        assert p.returncode == 0
    assert len(ids) == 1 and len(target.list()) == 1
    assert target.fsck() == []


def test_kill_9_mid_pull_leaves_no_visible_image(store, root, fake_registry):
    plain = tar_bytes({"big": os.urandom(2_000_000)})
    fake_registry.add_image("x/slow:1", {"config": {}}, [plain], mt.OCI_LAYER, [digest_bytes(plain)])
    fake_registry.slow = 0.05
    p = subprocess.Popen([sys.executable, "-m", "berth.cli.main", "--root", str(root), "pull",
                          f"{fake_registry.host}/x/slow:1"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tmps = list(store.tmp_dir.glob("blob-*")) if store.tmp_dir.exists() else []
            if any(t.stat().st_size > 0 for t in tmps):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the pull never started writing its layer")
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert store.list() == []
    assert not store.has_blob(digest_bytes(plain))
    fake_registry.slow = 0
    img = pull(store, f"{fake_registry.host}/x/slow:1")
    assert store.has_blob(digest_bytes(plain)) and img.repo_tags
    store.collect()
    assert list(store.tmp_dir.iterdir()) == []


def test_bad_references_fail_before_any_network(tmp_path):
    for bad in ("me/App", "a b", "x@sha256:123", "x:-t"):
        r = berth(tmp_path / "r", "pull", bad)
        assert_one_line_error(r, "invalid")
    assert not (tmp_path / "r").exists()


def test_pull_cli_prints_lines_when_piped(bb_store, registry, tmp_path):
    ref = f"{registry.host}/berth/cli:1"
    bb_store.tag("busybox", ref)
    r = berth(bb_store.root, "push", ref, check=True)
    assert b"digest: sha256:" in r.stdout
    r = berth(tmp_path / "o", "pull", ref, check=True)
    lines = r.stdout.decode().splitlines()
    assert any(line.endswith("Pull complete") for line in lines)
    assert lines[-1] == ref
    assert any("Downloaded newer image" in line for line in lines)
    r = berth(tmp_path / "o", "pull", ref, check=True)
    assert "Status: Image is up to date" in r.stdout.decode()
    r = berth(tmp_path / "q", "pull", "-q", ref, check=True)
    assert r.stdout.decode() == ref + "\n"


def test_unreachable_registry_is_one_line(tmp_path):
    from image_helpers import free_port

    r = berth(tmp_path / "r", "pull", f"127.0.0.1:{free_port()}/x:1")
    assert_one_line_error(r, "connect to registry")


def test_hashlib_used_for_digests_matches_sha256():
    assert digest_bytes(b"") == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_blob_redirect_to_a_non_http_url_is_refused(store, fake_registry):
    plain = tar_bytes({"f": b"1"})
    fake_registry.add_image("x/r:1", {"config": {}}, [plain], mt.OCI_LAYER, [digest_bytes(plain)])
    fake_registry.redirects[digest_bytes(plain)] = "file:///etc/shadow"
    with pytest.raises(reg.RegistryError, match="refusing file URL"):
        pull(store, f"{fake_registry.host}/x/r:1")
    assert store.list() == []


def test_blob_redirect_to_another_host_gets_no_credentials(store, root, fake_registry):
    from image_helpers import FakeRegistry

    from berth.image import auth

    plain = tar_bytes({"f": b"2"})
    fake_registry.add_image("x/s:1", {"config": {}}, [plain], mt.OCI_LAYER, [digest_bytes(plain)])
    other = FakeRegistry()
    try:
        other.blobs[digest_bytes(plain)] = plain
        fake_registry.redirects[digest_bytes(plain)] = f"http://localhost:{other.host.split(':')[1]}/v2/x/blobs/{digest_bytes(plain)}"
        seen = []
        orig = other.server.RequestHandlerClass.do_GET

        def spy(h):
            seen.append(h.headers.get("Authorization"))
            return orig(h)

        other.server.RequestHandlerClass.do_GET = spy
        auth.store_credentials(root, fake_registry.host, "u", "p")
        fake_registry.bearer = ("u", "p")
        img = pull(store, f"{fake_registry.host}/x/s:1")
        assert img.repo_tags and seen and seen[0] is None
    finally:
        other.close()


def test_descriptor_without_size_is_refused(store, fake_registry):
    d = fake_registry.add_image("x/n:1", {"config": {}}, [b"abc"], mt.OCI_LAYER, [digest_bytes(b"abc")])
    body, mtype = fake_registry.manifests[d]
    m = json.loads(body)
    del m["layers"][0]["size"]
    fake_registry.manifests["1"] = (json.dumps(m).encode(), mtype)
    with pytest.raises(reg.RegistryError, match="no valid size"):
        pull(store, f"{fake_registry.host}/x/n:1")


def test_token_realm_over_plain_http_is_refused_for_a_tls_registry(tmp_path):
    r = Registry("registry.example.com", root=tmp_path)  # no request is made: refused first
    with pytest.raises(Unauthorized, match="not HTTPS"):
        r._authenticate('Bearer realm="http://evil.example/token",service="x"', "repository:a:pull")


def test_manifest_naming_a_digest_that_is_a_path_is_refused(store, fake_registry):
    m = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
         "config": {"mediaType": mt.OCI_CONFIG, "digest": "sha256:../../../../etc/passwd", "size": 2},
         "layers": []}
    fake_registry.manifests["1"] = (json.dumps(m).encode(), mt.OCI_MANIFEST)
    with pytest.raises(Exception, match="not an image manifest"):
        pull(store, f"{fake_registry.host}/x/p:1")
    assert store.list() == []


def test_oversized_manifest_is_refused(store, fake_registry):
    fake_registry.manifests["1"] = (b"{" + b" " * (5 << 20) + b"}", mt.OCI_MANIFEST)
    with pytest.raises(reg.RegistryError, match="larger than"):
        pull(store, f"{fake_registry.host}/x/big:1")


def test_push_to_another_repository_mounts_blobs_across_repositories(bb_store, registry, tmp_path):
    from berth.image.progress import LineProgress

    first = f"{registry.host}/berth/mount-src:1"
    bb_store.tag("busybox", first)
    push(bb_store, first)
    other = ImageStore(tmp_path / "o")
    pull(other, first)  # records the repo digest on this registry
    second = f"{registry.host}/berth/mount-dst:1"
    other.tag(first, second)
    out = io.StringIO()
    digest, _ = push(other, second, progress=LineProgress(out))
    assert "Mounted from berth/mount-src" in out.getvalue()
    assert pull(ImageStore(tmp_path / "p"), second).digest == digest


def test_rmi_of_the_last_tag_removes_a_pulled_image_and_its_digest_reference(bb_store, registry, tmp_path):
    ref = f"{registry.host}/berth/rmi:1"
    bb_store.tag("busybox", ref)
    push(bb_store, ref)
    s = ImageStore(tmp_path / "o")
    img = pull(s, ref)
    out = s.remove(ref)
    assert out == [f"Untagged: {ref}", f"Untagged: {img.repo_digests[0]}", f"Deleted: {img.id}"]
    assert s.list() == [] and list(s.blob_dir.iterdir()) == []


@pytest.mark.parametrize("config", [
    [1, 2],
    {"rootfs": {"diff_ids": ["sha256:../../../tmp/x"]}},
    {"rootfs": {"diff_ids": "notalist"}},
    {"config": "notadict", "rootfs": {"diff_ids": []}},
])
def test_hostile_image_config_is_refused_and_nothing_is_tagged(store, fake_registry, config):
    import json as _json

    cbytes = _json.dumps(config).encode()
    d = digest_bytes(cbytes)
    fake_registry.blobs[d] = cbytes
    m = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
         "config": {"mediaType": mt.OCI_CONFIG, "digest": d, "size": len(cbytes)}, "layers": []}
    fake_registry.manifests["1"] = (_json.dumps(m).encode(), mt.OCI_MANIFEST)
    with pytest.raises(Exception, match="not an image config|lists"):
        pull(store, f"{fake_registry.host}/x/c:1")
    assert store.list() == []


def test_a_connection_cut_mid_layer_is_retried(store, fake_registry):
    plain = tar_bytes({"f": os.urandom(200_000)})
    fake_registry.add_image("x/cut:1", {"config": {}}, [plain], mt.OCI_LAYER, [digest_bytes(plain)])
    fake_registry.drop_once.add(digest_bytes(plain))
    img = pull(store, f"{fake_registry.host}/x/cut:1")
    assert img.repo_tags and store.fsck() == []
    assert fake_registry.log.count(f"/v2/x/cut/blobs/{digest_bytes(plain)}") == 2


def test_https_registry_certificate_is_verified_unless_insecure(bb_store, tls_registry, tmp_path):
    ref = f"{tls_registry.host}/berth/tls:1"
    bb_store.tag("busybox", ref)
    # a self-signed certificate is refused, and berth does not fall back to plain HTTP
    r = berth(bb_store.root, "push", ref)
    assert_one_line_error(r, "CERTIFICATE_VERIFY_FAILED")
    berth(bb_store.root, "push", "--insecure", ref, check=True)
    r = berth(tmp_path / "a", "pull", ref)
    assert_one_line_error(r, "CERTIFICATE_VERIFY_FAILED")
    # trusting the certificate (as a CA bundle) makes it work verified, no --insecure
    r = berth(tmp_path / "b", "pull", "-q", ref, env={"SSL_CERT_FILE": str(tls_registry.dir / "cert.pem")},
              check=True)
    assert r.stdout.decode().strip() == ref

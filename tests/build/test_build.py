"""berth build end to end: a real store, overlayfs steps, RUN through an OCI runtime.

RUN steps use runc (runc-compatible CLI, installed) until berth-runtime runs
bundles; set BERTH_BUILD_RUNTIME to try another runtime.
"""

import json
import os
import subprocess
import tarfile

import pytest

store_mod = pytest.importorskip(
    "berth.image.store", reason="the image store (branch images) is not merged yet"
)
from berth.image.rootfs import mount_rootfs, unmount_rootfs  # noqa: E402

RUNTIME = os.environ.get("BERTH_BUILD_RUNTIME", "runc")

MULTI = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS builder
ARG GREETING=hello
RUN mkdir -p /out && echo "$GREETING from run" > /out/file && rm /bin/vi
WORKDIR /src
COPY hello.txt ./
RUN cat hello.txt >> /out/file

FROM busybox
ENV APP=/app \\
    MODE=prod
COPY --from=builder /out/file ${APP}/file
COPY --chown=65534:65534 data/ /data/
ADD archive.tar /unpacked/
LABEL org.example.name="demo app" version=1
EXPOSE 8080 53/udp
VOLUME /data
WORKDIR app
USER nobody
RUN id -u > /tmp/uid
ENTRYPOINT ["/bin/cat"]
"""


def _berth(root, *args, check=True, cwd=None, input=None):
    env = dict(os.environ, BERTH_BUILD_RUNTIME=RUNTIME)
    p = subprocess.run(
        ["berth", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        input=input,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"berth {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


@pytest.fixture
def engine(tmp_path, venv_bin, monkeypatch):
    monkeypatch.setenv("PATH", f"{venv_bin}:{os.environ['PATH']}")
    root = tmp_path / "root"
    _berth(root, "image", "bootstrap", "busybox")
    return root


@pytest.fixture
def context(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "data/sub").mkdir(parents=True)
    (ctx / "Containerfile").write_text(MULTI)
    (ctx / "hello.txt").write_text("copied\n")
    (ctx / "data/sub/d").write_text("d")
    (ctx / "data/ignored.log").write_text("no")
    (ctx / ".dockerignore").write_text("**/*.log\n")
    src = tmp_path / "arc"
    (src / "in").mkdir(parents=True)
    (src / "in/x").write_text("x")
    with tarfile.open(ctx / "archive.tar", "w") as tf:
        tf.add(src / "in", arcname="in")
    return ctx


def _mounted_view(root, ref, tmp_path):
    store = store_mod.ImageStore(root)
    img = store.get(ref)
    ctr = tmp_path / f"view-{os.getpid()}-{ref.replace(':', '-')}"
    ctr.mkdir()
    return img, ctr, mount_rootfs(store.layer_dirs(img), ctr)


def test_build_multistage_config_and_files(engine, context, tmp_path):
    out = _berth(engine, "build", "-t", "demo:1", "--build-arg", "GREETING=hi", str(context)).stdout
    assert "Successfully tagged demo:1" in out
    img, ctr, rootfs = _mounted_view(engine, "demo:1", tmp_path)
    try:
        assert (rootfs / "app/file").read_text() == "hi from run\ncopied\n"
        assert (rootfs / "tmp/uid").read_text().strip() == "65534"  # RUN as USER nobody
        assert os.path.exists(rootfs / "bin/vi")  # removed in the builder stage only
        assert sorted(os.listdir(rootfs / "data")) == ["sub"]  # *.log ignored
        assert os.stat(rootfs / "data/sub/d").st_uid == 65534
        assert (rootfs / "unpacked/in/x").read_text() == "x"  # ADD unpacked the tar
    finally:
        unmount_rootfs(ctr)
    cfg = img.config["config"]
    assert "APP=/app" in cfg["Env"] and "MODE=prod" in cfg["Env"]
    assert not any(e.startswith("GREETING=") for e in cfg["Env"])  # ARGs stay out
    assert cfg["Entrypoint"] == ["/bin/cat"] and cfg.get("Cmd") is None  # inherited CMD reset
    assert cfg["WorkingDir"] == "/app" and cfg["User"] == "nobody"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["Labels"] == {"org.example.name": "demo app", "version": "1"}
    hist = [h for h in img.config["history"] if h.get("comment") == "berth build"]
    layered = [h["created_by"] for h in hist if not h.get("empty_layer")]
    assert layered[0].startswith("COPY --from=builder /out/file") and layered[-1].startswith(
        "RUN /bin/sh -c id -u"
    )
    assert len(img.layers) == len(img.diff_ids) == 1 + len(layered)


def test_build_whiteout_of_base_file_lands_in_layer(engine, context, tmp_path):
    _berth(engine, "build", "--target", "builder", "-t", "demo:builder", str(context))
    img, ctr, rootfs = _mounted_view(engine, "demo:builder", tmp_path)
    try:
        assert not os.path.lexists(rootfs / "bin/vi")
        assert (rootfs / "out/file").read_text() == "hello from run\ncopied\n"
    finally:
        unmount_rootfs(ctr)
    store = store_mod.ImageStore(engine)
    names = []
    for d in img.layers:
        with tarfile.open(store.blob_path(d["digest"])) as tf:
            names += tf.getnames()
    assert "bin/.wh.vi" in names


def test_build_cache_hit_no_cache_and_content_change(engine, context):
    first = _berth(engine, "build", "-q", "-t", "demo:1", str(context)).stdout.strip()
    again = _berth(engine, "build", "-t", "demo:1", str(context)).stdout
    assert again.count("using cache") == 7  # every RUN/COPY/ADD step (3 + 4)
    same = _berth(engine, "build", "-q", "-t", "demo:1", str(context)).stdout.strip()
    assert first.startswith("sha256:") and same == first
    fresh = _berth(engine, "build", "--no-cache", "-t", "demo:2", str(context)).stdout
    assert "using cache" not in fresh
    (context / "hello.txt").write_text("changed\n")
    changed = _berth(engine, "build", "-t", "demo:3", str(context)).stdout
    # the two steps before COPY hello.txt still hit; COPY and everything after it run again
    assert changed.count("using cache") == 1


def test_build_errors_name_the_line_and_leave_nothing(engine, tmp_path):
    ctx = tmp_path / "bad"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM busybox\nRUN true\nHEALTHCHECK CMD true\n")
    p = _berth(engine, "build", "-t", "bad:1", str(ctx), check=False)
    assert p.returncode == 125 and "line 3: HEALTHCHECK is not supported" in p.stderr
    assert "Traceback" not in p.stderr
    (ctx / "Containerfile").write_text("FROM busybox\nRUN touch /x\nRUN exit 7\n")
    p = _berth(engine, "build", "-t", "bad:1", str(ctx), check=False)
    assert p.returncode != 0 and "line 3: RUN exit 7: returned a non-zero code: 7" in p.stderr
    (ctx / "Containerfile").write_text("FROM busybox\nADD http://example.com/x /x\n")
    p = _berth(engine, "build", "-t", "bad:1", str(ctx), check=False)
    assert p.returncode == 125 and "line 2" in p.stderr and "URL" in p.stderr
    (ctx / "Containerfile").write_text("FROM busybox\nCOPY missing /x\n")
    p = _berth(engine, "build", "-t", "bad:1", str(ctx), check=False)
    assert p.returncode == 125 and "missing" in p.stderr
    assert "bad" not in _berth(engine, "images").stdout
    assert list((engine / "build-tmp").iterdir()) == []
    with open("/proc/self/mountinfo") as f:
        assert str(engine) not in f.read()


def test_build_from_scratch_with_stdin_containerfile(engine, tmp_path):
    ctx = tmp_path / "s"
    ctx.mkdir()
    (ctx / "f").write_text("only")
    _berth(
        engine,
        "build",
        "-t",
        "mini",
        "-f",
        "-",
        str(ctx),
        input='FROM scratch\nCOPY f /f\nCMD ["/f"]\n',
    )
    img = store_mod.ImageStore(engine).get("mini")
    assert len(img.layers) == 1 and img.config["config"]["Cmd"] == ["/f"]
    assert any(e.startswith("PATH=") for e in img.config["config"]["Env"])
    assert json.loads(json.dumps(img.config))["rootfs"]["type"] == "layers"


def test_build_context_symlink_cannot_copy_host_files(engine, tmp_path):
    ctx = tmp_path / "evil"
    ctx.mkdir()
    (ctx / "etc").symlink_to("/etc")
    (ctx / "Containerfile").write_text("FROM busybox\nCOPY etc/shadow /stolen\n")
    p = _berth(engine, "build", "-t", "evil", str(ctx), check=False)
    assert p.returncode == 125 and "etc/shadow: Too many levels of symbolic links" in p.stderr


def test_build_copy_from_an_image_and_exec_form_run(engine, tmp_path):
    ctx = tmp_path / "img"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(
        'FROM scratch\nCOPY --from=busybox /bin/busybox /bin/busybox\nRUN ["/bin/busybox", "mkdir", "/made"]\n'
    )
    _berth(engine, "build", "-t", "fromimg", str(ctx))
    img, ctr, rootfs = _mounted_view(engine, "fromimg", tmp_path)
    try:
        assert os.access(rootfs / "bin/busybox", os.X_OK) and (rootfs / "made").is_dir()
    finally:
        unmount_rootfs(ctr)
    assert img.config["history"][-1]["created_by"] == "RUN /bin/busybox mkdir /made"

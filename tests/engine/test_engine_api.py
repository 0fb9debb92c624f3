"""The Python API (berth.Client), shaped like docker-py."""

import os

import pytest

from berth.errors import CommandNotFound, Conflict, NotFound


def test_run_foreground_returns_output(client):
    out = client.containers.run("busybox", ["echo", "hello"], remove=True)
    assert out == b"hello\n"


def test_run_nonzero_raises_container_error(client):
    from berth.engine.models import ContainerError

    with pytest.raises(ContainerError) as e:
        client.containers.run("busybox", "sh -c 'echo bad >&2; exit 3'", remove=True)
    assert e.value.exit_status == 3 and b"bad" in e.value.stderr


def test_run_missing_command_raises_127(client):
    with pytest.raises(CommandNotFound):
        client.containers.run("busybox", "/no/such", remove=True)


def test_detached_container_object(client):
    name = f"api{os.getpid()}"
    c = client.containers.run("busybox", "sh -c 'echo up; exec sleep 60'", detach=True, name=name,
                              environment={"A": "1"}, labels={"k": "v"})
    assert c.name == name and len(c.id) == 64 and c.status == "running"
    assert client.containers.get(name).id == c.id
    assert client.containers.get(c.id[:10]) == c
    assert [x.id for x in client.containers.list(filters={"label": "k=v"})] == [c.id]
    r = c.exec_run("sh -c 'echo $A'")
    assert r.exit_code == 0 and r.output == b"1\n"
    for _ in range(50):
        if c.logs() == b"up\n":
            break
        __import__("time").sleep(0.1)
    assert c.logs() == b"up\n"
    assert c.attrs["Config"]["Labels"]["k"] == "v"
    assert c.attrs["State"]["Running"] is True
    c.pause()
    assert c.status == "paused"
    c.unpause()
    c.stop(timeout=1)
    assert c.status == "exited"
    assert c.wait() == {"StatusCode": 137, "Error": None} or c.wait()["StatusCode"] in (0, 143, 137)
    with pytest.raises(Conflict):
        c.exec_run("true")
    c.remove()
    with pytest.raises(NotFound):
        client.containers.get(c.id)


def test_logs_stream(client):
    c = client.containers.run("busybox", "sh -c 'for i in 1 2 3; do echo $i; sleep 0.1; done'", detach=True)
    chunks = list(c.logs(stream=True, follow=True))
    assert b"".join(chunks) == b"1\n2\n3\n"
    c.remove()


def test_create_then_start_and_wait(client):
    c = client.containers.create("busybox", "sh -c 'exit 4'")
    assert c.status == "created"
    c.start()
    assert c.wait()["StatusCode"] == 4
    c.remove()


def test_volumes_api(client):
    v = client.volumes.create(f"apivol{os.getpid()}")
    out = client.containers.run("busybox", "sh -c 'echo data > /v/f; cat /v/f'", remove=True,
                                volumes={v.name: {"bind": "/v", "mode": "rw"}})
    assert out == b"data\n"
    assert v.name in [x.name for x in client.volumes.list()]
    v.remove()
    with pytest.raises(NotFound):
        client.volumes.get(v.name)


def test_remove_running_needs_force(client):
    c = client.containers.run("busybox", "sleep 60", detach=True)
    with pytest.raises(Conflict):
        c.remove()
    c.remove(force=True)


def test_isolation_is_recorded(client):
    c = client.containers.create("busybox", "true", isolation="container")
    assert c.attrs["Isolation"] == "container" and c.attrs["HostConfig"]["Isolation"] == "container"
    c.remove()


def test_images_api_and_in_use_image_is_kept(client):
    img = client.images.get("busybox")
    assert any(t.startswith("busybox") for t in img.repo_tags)
    assert img.id in [i.id for i in client.images.list()]
    c = client.containers.create("busybox", "true")
    try:
        with pytest.raises(Conflict):
            client.images.remove(img.id)
    finally:
        c.remove()


def test_images_build_then_run(client, tmp_path):
    (tmp_path / "Containerfile").write_text("FROM busybox\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n")
    tag = f"berth-api-test-{os.getpid()}:1"
    img = client.images.build(str(tmp_path), tag=tag)
    try:
        assert client.containers.run(tag, remove=True) == b"built\n"
    finally:
        client.images.remove(img.id, force=True)

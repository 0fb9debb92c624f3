"""client.networks and client.volumes, shaped like docker-py's, end to end:
real containers on real bridges, reached over TCP by name and alias."""

import json
import os
import subprocess

import pytest

from berth.errors import Conflict, NotFound, UsageError

HTTPD = "echo {0} > /tmp/who; exec httpd -f -p 80 -h /tmp"


def _fetch(c, host: str, tries: int = 1) -> str | None:
    """GET http://HOST/who from inside container ``c`` (busybox wget), or None."""
    # (not wget -T: busybox 1.35's wget crashes with it, on the host too)
    r = c.exec_run(["sh", "-c", f"for i in $(seq {tries}); do timeout 3 wget -qO- http://{host}/who && exit 0; "
                                "sleep 0.2; done; exit 1"])
    return r.output.decode().strip() if r.exit_code == 0 else None


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


@pytest.fixture
def networks(client):
    """Networks a test makes; removed (their containers first) even when it fails."""
    made = []
    yield made
    for net in made:
        try:
            net.reload()
            for c in net.containers:
                c.remove(force=True)
            net.remove()
        except NotFound:
            pass


def test_network_connect_with_alias_then_disconnect_ends_reachability(client, networks):
    pid = os.getpid()
    prefix = f"10.{200 + pid % 50}.{pid % 251}."  # per test run: other runs may be on this host
    net = client.networks.create(f"apinet{pid}", driver="bridge", labels={"suite": "api"},
                                 ipam={"Config": [{"Subnet": prefix + "0/24", "Gateway": prefix + "1"}]})
    networks.append(net)
    bridge = net.attrs["Options"]["com.docker.network.bridge.name"]
    assert bridge in _links() and net.attrs["IPAM"]["Config"][0]["Subnet"] == prefix + "0/24"
    a = client.containers.run("busybox", ["sh", "-c", HTTPD.format("a")], detach=True,
                              name=f"apia{pid}", network=net.name)
    b = client.containers.run("busybox", ["sh", "-c", HTTPD.format("b")], detach=True, name=f"apib{pid}")
    assert _fetch(a, b.name) is None  # b is on the default bridge only: no name, no route

    net.connect(b, aliases=["late-alias"])
    net.reload()
    assert {c.id for c in net.containers} == {a.id, b.id}
    assert all(type(c).__name__ == "Container" for c in net.containers)
    b.reload()
    settings = b.attrs["NetworkSettings"]["Networks"][net.name]
    assert settings["Aliases"] == ["late-alias"] and settings["IPAddress"].startswith(prefix)
    b_ip = settings["IPAddress"]
    assert _fetch(a, b.name, tries=20) == "b"  # by name
    assert _fetch(a, "late-alias", tries=20) == "b"  # by alias
    assert _fetch(b, a.name, tries=20) == "a"  # and back

    net.disconnect(b)
    net.reload()
    assert list(net.attrs["Containers"]) == [a.id]
    assert _fetch(a, b_ip) is None  # its address on the network is gone
    assert _fetch(a, "late-alias") is None and _fetch(b, a.name) is None  # and the names both ways
    assert "late-alias" not in a.exec_run("cat /etc/hosts").output.decode()
    assert a.name not in b.exec_run("cat /etc/hosts").output.decode()
    with pytest.raises(NotFound):
        net.disconnect(b)
    with pytest.raises(Conflict):
        net.remove()  # a is still on it
    a.remove(force=True)
    b.remove(force=True)
    net.remove()
    assert bridge not in _links()
    with pytest.raises(NotFound):
        client.networks.get(net.id)


def test_network_connect_refuses_what_cannot_be_connected(client, networks, berth):
    pid = os.getpid()
    net = client.networks.create(f"apiref{pid}")
    networks.append(net)
    none = client.containers.run("busybox", "sleep 300", detach=True, network="none")
    host = client.containers.create("busybox", "true", network="host")
    with pytest.raises(Conflict):
        net.connect(none)
    with pytest.raises(Conflict):
        net.connect(host)
    with pytest.raises(NotFound):
        net.connect("no-such-container")
    with pytest.raises(UsageError):
        net.connect(none, links=["x"])
    # the CLI is the same code: one line, docker's exit code
    r = berth("network", "connect", net.name, none.id)
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "none" in r.stderr, r.stderr
    r = berth("network", "disconnect", net.name, host.id)
    assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
    net.reload()
    assert net.attrs["Containers"] == {}


def test_a_created_container_connected_joins_the_network_at_start(client, networks):
    pid = os.getpid()
    net = client.networks.create(f"apicr{pid}")
    networks.append(net)
    a = client.containers.run("busybox", ["sh", "-c", HTTPD.format("a")], detach=True, network=net.name)
    b = client.containers.create("busybox", ["sh", "-c", HTTPD.format("b")], name=f"apicrb{pid}")
    net.connect(b, aliases=["pending"])
    with pytest.raises(Conflict):
        net.connect(b)  # once
    net.reload()
    assert list(net.attrs["Containers"]) == [a.id]  # not before it starts
    b.start()
    assert _fetch(a, "pending", tries=20) == "b" and _fetch(b, a.name, tries=20) == "a"
    assert set(b.attrs["NetworkSettings"]["Networks"]) == {"bridge", net.name}
    b.stop(timeout=1)
    b.start()  # a restart keeps both networks
    assert _fetch(a, "pending", tries=20) == "b"
    net.disconnect(b)
    b.reload()
    assert set(b.attrs["NetworkSettings"]["Networks"]) == {"bridge"}


def test_network_connect_alias_and_disconnect_through_the_cli(berth, client, networks):
    pid = os.getpid()
    net = client.networks.create(f"clinet{pid}")
    networks.append(net)
    a = berth.out("run", "-d", "--network", net.name, "busybox", "sh", "-c", HTTPD.format("a")).strip()
    b = berth.out("run", "-d", "busybox", "sh", "-c", HTTPD.format("b")).strip()
    berth.out("network", "connect", "--alias", "cli-alias", net.name, b)
    assert _fetch(client.containers.get(a), "cli-alias", tries=20) == "b"
    berth.out("network", "disconnect", net.name, b)
    assert _fetch(client.containers.get(a), "cli-alias") is None
    assert json.loads(berth.out("network", "inspect", net.name))[0]["Containers"].keys() == {a}
    r = berth("network", "disconnect", net.name, b)
    assert r.returncode == 125 and r.stderr.count("\n") == 1


def test_networks_list_get_and_prune_with_filters(client, networks, berth):
    pid = os.getpid()
    keep = client.networks.create(f"keep{pid}", labels={"suite": f"p{pid}", "keep": "1"})
    drop = client.networks.create(f"drop{pid}", labels={"suite": f"p{pid}"})
    other = client.networks.create(f"other{pid}")
    networks.extend([keep, drop, other])
    c = client.containers.run("busybox", "sleep 300", detach=True, network=keep.name)
    mine = {n.name for n in client.networks.list(filters={"label": f"suite=p{pid}"})}
    assert mine == {keep.name, drop.name}
    assert [n.name for n in client.networks.list(names=[drop.name])] == [drop.name]
    assert [n.name for n in client.networks.list(ids=[other.id[:12]])] == [other.name]
    assert [n.name for n in client.networks.list(filters={"type": "builtin"})] == ["bridge"]
    assert {n.name for n in client.networks.list(filters={"label": f"suite=p{pid}", "dangling": "true"})} \
        == {drop.name}
    assert client.networks.get(keep.id[:12]) == keep and client.networks.get(keep.name).containers == [c]
    assert berth.out("network", "ls", "-q", "--filter", f"name=drop{pid}").split() == [drop.id[:12]]
    with pytest.raises(UsageError):
        client.networks.list(filters={"colour": "red"})
    # prune: only the labelled unused one; keep is in use, other has no label
    assert client.networks.prune(filters={"label": f"suite=p{pid}"}) == {"NetworksDeleted": [drop.name]}
    assert {n.name for n in client.networks.list()} >= {keep.name, other.name, "bridge"}
    assert drop.name not in {n.name for n in client.networks.list()}
    c.remove(force=True)
    assert berth.out("network", "prune", "-f", "--filter", "label=keep=1").split() == [keep.name]
    other.remove()


def test_volumes_api_create_list_get_reload_prune(client):
    pid = os.getpid()
    v1 = client.volumes.create(f"va{pid}", driver="local", labels={"suite": f"v{pid}"})
    v2 = client.volumes.create(f"vb{pid}", labels={"suite": f"v{pid}", "keep": "1"})
    c = None
    try:
        c = client.containers.create("busybox", "true", volumes={v2.name: {"bind": "/v", "mode": "rw"}})
        assert client.volumes.create(v1.name) == v1  # idempotent, as docker's
        assert {v.name for v in client.volumes.list(filters={"label": f"suite=v{pid}"})} == {v1.name, v2.name}
        assert [v.name for v in client.volumes.list(filters={"label": f"suite=v{pid}", "dangling": True})] \
            == [v1.name]
        assert [v.name for v in client.volumes.list(filters={"name": f"vb{pid}"})] == [v2.name]
        got = client.volumes.get(v1.name)
        assert got.attrs["Labels"] == {"suite": f"v{pid}"} and got.id == got.name == v1.name
        with pytest.raises(UsageError):
            client.volumes.create(f"vc{pid}", driver="nfs")
        with pytest.raises(UsageError):
            client.volumes.list(filters={"colour": "red"})
        with pytest.raises(Conflict):
            v2.remove(force=True)  # in use by c: force does not change that, as docker's
        # prune with a label: only v1 (v2 is in use), named ones need "all"
        assert client.volumes.prune(filters={"label": f"suite=v{pid}"})["VolumesDeleted"] == []
        r = client.volumes.prune(filters={"label": f"suite=v{pid}", "all": True})
        assert r["VolumesDeleted"] == [v1.name]
        with pytest.raises(NotFound):
            v1.reload()
        v1.remove(force=True)  # gone already: no error with force
        c.remove()
        v2.reload()
        v2.remove()
        assert not client.volumes.list(filters={"label": f"suite=v{pid}"})
    finally:
        if c is not None:
            c.remove(force=True) if c in client.containers.list(all=True) else None
        for v in (v1, v2):
            v.remove(force=True)

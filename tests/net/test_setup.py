"""setup_container/teardown_container: every mode, and nothing left after a failure."""

import os
import socket

import pytest
from nethelpers import NETNS_DIR, links, ns_links

from berth._sys.netns import is_netns
from berth.engine.network import parse_port_spec, setup_container, teardown_container
from berth.errors import Conflict, UsageError

pytestmark = pytest.mark.net


def _path(env, name):
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    p = str(NETNS_DIR / f"s{env.tag}-{name}")
    env.namespaces.append(p)  # removed by the fixture even if the test fails
    return p


def test_bridge_mode_end_to_end_and_teardown(env):
    net = env.net()
    cid, p = env.cid(), _path(env, "a")
    got = setup_container(env.nm, cid, net.name, p, name="web", aliases=["w"],
                          ports=parse_port_spec("127.0.0.1::80"), dns_servers=["192.0.2.53"])
    assert got.namespace == {"type": "network", "path": p} and got.owns_netns
    assert is_netns(p) and "eth0" in ns_links(p)
    assert got.ports[0].host_port > 0 and got.endpoints[0].name == "web"
    assert "nameserver 192.0.2.53" in got.resolv_conf.read_text()
    veth = got.endpoints[0].host_ifname
    teardown_container(env.nm, cid, p)
    assert not os.path.lexists(p) and veth not in links() and env.nm.ports(cid) == []
    assert not got.hosts.exists()
    teardown_container(env.nm, cid, p)  # idempotent


def test_failed_setup_leaves_no_namespace_device_address_or_file(env):
    net = env.net()
    cid, p = env.cid(), _path(env, "b")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        with pytest.raises(Conflict):
            setup_container(env.nm, cid, net.name, p,
                            ports=parse_port_spec(f"127.0.0.1:{held.getsockname()[1]}:80"))
    assert not os.path.lexists(p)
    assert env.nm.inspect(net.name)["Containers"] == {}
    assert not [n for n, i in links().items() if i.get("master") == net.bridge]
    assert not (env.nm.files / cid).exists()


def test_none_host_and_container_modes(env):
    cid, p = env.cid(), _path(env, "none")
    got = setup_container(env.nm, cid, "none", p, hostname="solo")
    assert set(ns_links(p)) == {"lo"} and got.namespace["path"] == p
    assert "127.0.1.1\tsolo" in got.hosts.read_text()
    h = env.cid()
    host = setup_container(env.nm, h, "host", "", hostname="h")
    assert host.namespace is None and host.netns_path == "" and not host.owns_netns
    joiner = env.cid()
    j = setup_container(env.nm, joiner, f"container:{cid}", p)
    assert j.namespace == {"type": "network", "path": p} and not j.owns_netns
    teardown_container(env.nm, joiner, None)
    assert is_netns(p)  # the peer's namespace is not the joiner's to remove
    teardown_container(env.nm, cid, p)
    teardown_container(env.nm, h, None)


def test_mode_conflicts_are_usage_errors_and_create_nothing(env):
    for mode in ("none", "host"):
        p = _path(env, f"c{mode}")
        with pytest.raises(UsageError, match="conflicting options"):
            setup_container(env.nm, env.cid(), mode, p, ports=parse_port_spec("80"))
        with pytest.raises(UsageError, match="bridge network"):
            setup_container(env.nm, env.cid(), mode, p, aliases=["x"])
        assert not os.path.lexists(p)
    other = _path(env, "notns")
    with open(other, "w"):
        pass
    with pytest.raises(UsageError, match="not a network namespace"):
        setup_container(env.nm, env.cid(), "container:abc", other)
    os.unlink(other)


def test_prune_netns_dir_unpins_unknown_namespaces(env, tmp_path):
    from berth._sys.netns import create_netns
    from berth.engine.network import prune_netns_dir

    d = tmp_path / "netns"
    d.mkdir()
    keep, lost = d / "keep", d / "lost"
    env.namespaces += [str(keep), str(lost)]
    create_netns(str(keep))
    create_netns(str(lost))
    assert prune_netns_dir(d, {"keep"}) == ["lost"]
    assert is_netns(str(keep)) and not lost.exists()
    assert str(lost) not in open("/proc/self/mounts").read()

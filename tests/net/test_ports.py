"""Port publishing through nftables DNAT, reached from 127.0.0.1 on the host."""

import socket
import subprocess
import sys

import pytest
from nethelpers import httpd, links, table_json, wait_tcp

from berth.engine.network import parse_port_spec
from berth.errors import Conflict, UsageError

pytestmark = pytest.mark.net


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int) -> str:
    r = subprocess.run(["curl", "-fsS", "-m", "5", f"http://127.0.0.1:{port}/index.html"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def container(env, net, name, text, port=80, tmp=None):
    ns, cid = env.netns(), env.cid()
    env.nm.connect(net, cid, ns, name=name)
    httpd(env, ns, port, tmp / name, text)
    wait_tcp(ns, "127.0.0.1", port)
    return ns, cid


def test_published_tcp_port_is_reachable_on_loopback(env, tmp_path):
    net = env.net()
    _ns, cid = container(env, net.name, "web", "hello\n", tmp=tmp_path)
    p = free_port()
    got = env.nm.publish(cid, parse_port_spec(f"127.0.0.1:{p}:80") + parse_port_spec("80"))
    assert got[0].host_port == p and got[1].host_port > 0  # -P style ephemeral port
    assert http_get(p) == "hello\n"
    assert http_get(got[1].host_port) == "hello\n"  # all-addresses mapping covers 127.0.0.1
    assert env.nm.ports(cid) == got
    env.nm.unpublish(cid)
    assert env.nm.ports(cid) == []
    r = subprocess.run(["curl", "-fsS", "-m", "2", f"http://127.0.0.1:{p}/"], capture_output=True)
    assert r.returncode != 0


def test_published_port_on_the_default_bridge(env, tmp_path):
    _ns, cid = container(env, "bridge", "dflt", "default\n", port=8080, tmp=tmp_path)
    p = free_port()
    env.nm.publish(cid, parse_port_spec(f"127.0.0.1:{p}:8080"))
    assert http_get(p) == "default\n"


ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(512)
    s.sendto(b"echo:" + data, peer)
"""


def test_published_udp_port_round_trips(env):
    net = env.net()
    ns, cid = env.netns(), env.cid()
    env.nm.connect(net.name, cid, ns)
    srv = env.spawn(["nsenter", f"--net={ns}", sys.executable, "-c", ECHO],
                    stdout=subprocess.PIPE, text=True)
    assert srv.stdout.readline().strip() == "ready"
    p = free_port(socket.SOCK_DGRAM)
    env.nm.publish(cid, parse_port_spec(f"127.0.0.1:{p}:5353/udp"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(5)
        c.sendto(b"ping", ("127.0.0.1", p))
        assert c.recvfrom(512)[0] == b"echo:ping"


def test_port_in_use_on_host_or_by_another_container_is_refused(env, tmp_path):
    net = env.net()
    ns1, c1 = env.netns(), env.cid()
    ns2, c2 = env.netns(), env.cid()
    env.nm.connect(net.name, c1, ns1)
    env.nm.connect(net.name, c2, ns2)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        before = table_json(env.table)
        with pytest.raises(Conflict, match="already in use"):
            env.nm.publish(c1, parse_port_spec(f"127.0.0.1:{busy}:80"))
        with pytest.raises(Conflict, match="already in use"):
            env.nm.publish(c1, parse_port_spec(f"{busy}:80"))  # 0.0.0.0 overlaps 127.0.0.1
        assert table_json(env.table) == before  # nothing half-published
    p = free_port()
    env.nm.publish(c1, parse_port_spec(f"{p}:80"))
    with pytest.raises(Conflict, match="already allocated"):
        env.nm.publish(c2, parse_port_spec(f"127.0.0.1:{p}:81"))
    # a batch with one bad mapping publishes none of it
    q = free_port()
    with pytest.raises(Conflict):
        env.nm.publish(c2, parse_port_spec(f"{q}:80") + parse_port_spec(f"{p}:80"))
    assert env.nm.ports(c2) == []
    env.nm.publish(c2, parse_port_spec(f"{p}:80/udp"))  # same number, other protocol
    env.nm.unpublish(c2)
    assert [m.host_port for m in env.nm.ports(c1)] == [p]  # exactly c2's rules went


def test_udp_port_held_on_the_host_even_with_reuseaddr_is_refused(env):
    net = env.net()
    ns, cid = env.netns(), env.cid()
    env.nm.connect(net.name, cid, ns)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", 0))
        with pytest.raises(Conflict, match="already in use"):
            env.nm.publish(cid, parse_port_spec(f"127.0.0.1:{held.getsockname()[1]}:53/udp"))
    assert env.nm.ports(cid) == []


def test_publish_needs_an_endpoint(env):
    with pytest.raises(UsageError, match="no bridge network"):
        env.nm.publish(env.cid(), parse_port_spec("80"))


def test_release_and_remove_leave_no_device_and_no_rule(env, tmp_path):
    # Other test runs share this kernel: compare only the objects this test made.
    net = env.net()
    _ns, cid = container(env, net.name, "gone", "x\n", tmp=tmp_path)
    env.nm.publish(cid, parse_port_spec(f"127.0.0.1:{free_port()}:80"))
    veth = env.nm.endpoints(cid)[0].host_ifname
    assert {net.bridge, veth} <= set(links())
    assert any(cid in r.get("rule", {}).get("comment", "") for r in table_json(env.table))
    env.nm.release(cid)
    assert veth not in links() and env.nm.ports(cid) == []
    assert not any(cid in str(r) for r in table_json(env.table))
    env.nm.remove(net.name)
    assert net.bridge not in links()
    assert table_json(env.table) == []  # our table went with the last network
    assert not (env.nm.files / cid).exists()

"""Concurrent engine processes never hand out the same address or lose an endpoint."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.net

CONNECT = """
import sys
from berth.engine.network import NetworkManager
root, table, bridge, net, cid, ns = sys.argv[1:]
nm = NetworkManager(root, table=table, default_bridge=bridge, enable_ip_forward=False)
print(nm.connect(net, cid, ns).ip)
"""


def test_parallel_connects_get_distinct_addresses(env):
    net = env.net()
    jobs = [(env.cid(), env.netns()) for _ in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", CONNECT, str(env.nm.root), env.table,
                               env.nm.default_bridge, net.name, cid, ns],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cid, ns in jobs]
    ips = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ips.append(out.strip())
    assert len(set(ips)) == 6
    containers = env.nm.inspect(net.name)["Containers"]
    assert sorted(c["IPv4Address"].split("/")[0] for c in containers.values()) == sorted(ips)


CREATE = """
import sys
from berth.engine.network import NetworkManager
nm = NetworkManager(sys.argv[1], enable_ip_forward=False)
print(nm.create("racer").subnet)
"""


def test_parallel_creates_in_different_roots_get_distinct_subnets(tmp_path):
    from berth.engine.network import NetworkManager

    roots = [tmp_path / f"r{i}" for i in range(4)]
    try:
        procs = [subprocess.Popen([sys.executable, "-c", CREATE, str(r)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in roots]
        subnets = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            subnets.append(out.strip())
        assert len(set(subnets)) == 4
    finally:
        for r in roots:
            nm = NetworkManager(r, enable_ip_forward=False)
            for n in nm.list():
                nm.remove(n.name)

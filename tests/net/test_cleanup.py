"""Crash leftovers are found and removed by cleanup_orphans (``system prune``)."""

import subprocess

import pytest
from nethelpers import links, table_json

from berth.engine.network import parse_port_spec

pytestmark = pytest.mark.net


def test_cleanup_orphans_removes_unknown_containers_only(env):
    net = env.net()
    (ns1, c1), (ns2, c2) = (env.netns(), env.cid()), (env.netns(), env.cid())
    ep1 = env.nm.connect(net.name, c1, ns1, name="keep")
    ep2 = env.nm.connect(net.name, c2, ns2, name="lost")
    env.nm.write_files(c2, "lost")
    env.nm.publish(c1, parse_port_spec("127.0.0.1::80"))
    env.nm.publish(c2, parse_port_spec("127.0.0.1::80"))
    report = env.nm.cleanup_orphans({c1})
    assert c2 in report["containers"]
    assert ep2.host_ifname not in links() and ep1.host_ifname in links()
    assert env.nm.ports(c2) == [] and len(env.nm.ports(c1)) == 1
    assert list(env.nm.inspect(net.name)["Containers"]) == [c1]
    assert not (env.nm.files / c2).exists()
    assert env.nm.cleanup_orphans({c1}) == {"containers": [], "rules": [], "links": []}


def test_cleanup_orphans_removes_a_stray_veth_on_our_bridge(env):
    net = env.net()
    stray = f"vs{env.tag}"
    subprocess.run(["ip", "link", "add", stray, "type", "veth", "peer", "name", f"vp{env.tag}"],
                   check=True)
    try:
        subprocess.run(["ip", "link", "set", stray, "master", net.bridge], check=True)
        report = env.nm.cleanup_orphans(set())
        assert stray in report["links"] and stray not in links()
        assert f"vp{env.tag}" not in links()
    finally:
        subprocess.run(["ip", "link", "del", stray], capture_output=True)


def test_cleanup_orphans_removes_bridge_and_rules_of_a_lost_network_record(env):
    net = env.net()
    (env.nm.dir / f"{net.name}.json").unlink()  # the crash lost the record
    assert net.bridge in links()
    report = env.nm.cleanup_orphans(set())
    assert net.bridge in report["links"] and net.bridge not in links()
    assert f"n:{net.id}" in report["rules"]
    assert not any(net.id in str(i) or net.bridge in str(i) for i in table_json(env.table))


def test_release_twice_and_after_the_namespace_died_is_harmless(env):
    net = env.net()
    ns, cid = env.netns(), env.cid()
    ep = env.nm.connect(net.name, cid, ns)
    from berth._sys.netns import remove_netns
    remove_netns(ns)  # the namespace (and so the veth) is gone first
    env.nm.release(cid)
    env.nm.release(cid)
    assert ep.host_ifname not in links() and env.nm.endpoints(cid) == []


def test_a_root_deleted_without_reset_has_its_bridges_and_table_swept_by_the_next_network(tmp_path):
    import shutil

    from berth.engine.network import NetworkManager

    gone_root, live_root = tmp_path / "gone", tmp_path / "live"
    gone = NetworkManager(gone_root)
    net = gone.create("sweepme")
    bridge, table = net.bridge, gone.firewall.table
    assert bridge in links() and gone.firewall.exists()
    shutil.rmtree(gone_root)  # deleted without `system reset`: nothing can reach its objects now
    live = NetworkManager(live_root)
    try:
        live.create("fresh")
        assert bridge not in links()
        assert table not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert live.firewall.exists()  # a live root is never swept
    finally:
        live.remove("fresh")
        assert not live.firewall.exists()

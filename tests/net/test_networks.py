"""Networks and endpoints on the real kernel: bridges, veths, addresses, names."""

import ipaddress
import os
import subprocess

import pytest
from nethelpers import (
    httpd,
    in_ns,
    links,
    ns_links,
    ns_routes,
    rootfs_with_hosts,
    table_json,
    wait_tcp,
)

from berth.errors import Conflict, NotFound, UsageError

pytestmark = pytest.mark.net


def test_create_inspect_remove_network(env):
    with open("/proc/sys/net/ipv4/conf/all/route_localnet") as f:
        all_before = f.read()
    net = env.net(labels={"team": "a"})
    assert net.bridge in links()
    assert links()[net.bridge]["linkinfo"]["info_kind"] == "bridge"
    info = env.nm.inspect(net.name)
    assert info["Name"] == net.name and info["Driver"] == "bridge"
    assert info["IPAM"]["Config"] == [{"Subnet": net.subnet, "Gateway": net.gateway}]
    assert info["Labels"] == {"team": "a"} and info["Containers"] == {}
    assert env.nm.get(net.id[:12]).name == net.name
    assert net.name in [n.name for n in env.nm.list()]
    # the subnet does not overlap any route the host had
    with open(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet") as f:
        assert f.read().strip() == "1"  # on our bridge only:
    with open("/proc/sys/net/ipv4/conf/all/route_localnet") as f:
        assert f.read() == all_before
    env.nm.remove(net.name)
    assert net.bridge not in links()
    with pytest.raises(NotFound):
        env.nm.inspect(net.name)


def test_create_refuses_bad_and_conflicting_input(env):
    net = env.net()
    with pytest.raises(Conflict, match="exists"):
        env.nm.create(net.name)
    with pytest.raises(Conflict, match="overlaps"):
        env.nm.create(f"x{env.tag}", subnet=net.subnet)
    for kw in ({"subnet": "10.1.2.3/24"}, {"subnet": "nonsense"},
               {"subnet": "10.77.0.0/24", "gateway": "10.78.0.1"}):
        with pytest.raises(UsageError):
            env.nm.create(f"y{env.tag}", **kw)
    for name in ("bridge", "host", "none"):
        with pytest.raises(Conflict, match="pre-defined"):
            env.nm.create(name)
    with pytest.raises(UsageError, match="invalid name"):
        env.nm.create("../etc")
    assert not any(n.name.startswith(("x", "y")) for n in env.nm.list())


def test_connect_configures_eth0_and_default_route_then_disconnect_removes_veth(env):
    net = env.net()
    ns, cid = env.netns(), env.cid()
    ep = env.nm.connect(net.name, cid, ns, name="web")
    inside = ns_links(ns)
    assert inside["lo"]["operstate"] in ("UNKNOWN", "UP")
    addrs = [a["local"] for a in inside["eth0"]["addr_info"] if a["family"] == "inet"]
    assert addrs == [ep.ip] and ipaddress.IPv4Address(ep.ip) in ipaddress.IPv4Network(net.subnet)
    assert inside["eth0"]["address"] == ep.mac
    assert {"dst": "default", "gateway": net.gateway, "dev": "eth0"}.items() <= \
        next(r for r in ns_routes(ns) if r["dst"] == "default").items()
    host = links()
    assert host[ep.host_ifname]["master"] == net.bridge
    assert env.nm.inspect(net.name)["Containers"][cid]["IPv4Address"] == f"{ep.ip}/24"
    with pytest.raises(Conflict, match="in use|already connected"):
        env.nm.connect(net.name, cid, ns)
    with pytest.raises(Conflict, match="active endpoints"):
        env.nm.remove(net.name)
    env.nm.disconnect(net.name, cid)
    assert ep.host_ifname not in links() and "eth0" not in ns_links(ns)
    with pytest.raises(NotFound):
        env.nm.disconnect(net.name, cid)
    env.nm.remove(net.name)


def test_second_network_is_eth1_without_a_second_default_route(env):
    a, b = env.net(), env.net()
    ns, cid = env.netns(), env.cid()
    env.nm.connect(a.name, cid, ns)
    ep2 = env.nm.connect(b.name, cid, ns, ip=str(ipaddress.IPv4Network(b.subnet)[9]))
    assert ep2.ifname == "eth1" and ep2.ip.endswith(".9")
    assert [r["dev"] for r in ns_routes(ns) if r["dst"] == "default"] == ["eth0"]
    assert [e.network for e in env.nm.endpoints(cid)] == [a.name, b.name]


def test_static_ip_conflict_and_exhaustion_leave_no_device(env):
    net = env.net(subnet=f"10.{90 + os.getpid() % 9}.{os.getpid() % 250}.0/30")
    ns1, ns2 = env.netns(), env.netns()
    c1, c2 = env.cid(), env.cid()
    before = set(links())
    env.nm.connect(net.name, c1, ns1)  # a /30 has one address besides the gateway
    with pytest.raises(Conflict, match="no free IP"):
        env.nm.connect(net.name, c2, ns2)
    with pytest.raises(Conflict, match="in use"):
        env.nm.connect(net.name, c2, ns2, ip=env.nm.endpoints(c1)[0].ip)
    assert len(set(links()) - before) == 1 and "eth0" not in ns_links(ns2)
    env.nm.release(c1)
    assert env.nm.connect(net.name, c2, ns2).ip == env.nm.inspect(net.name)["Containers"][
        c2]["IPv4Address"].split("/")[0]


def test_two_containers_talk_tcp_by_ip_by_name_and_by_alias(env, busybox_rootfs, tmp_path):
    net = env.net()
    ns_srv, ns_cli = env.netns(), env.netns()
    srv, cli = env.cid(), env.cid()
    ep = env.nm.connect(net.name, srv, ns_srv, name="srv", aliases=["db"])
    env.nm.write_files(srv, "srv")
    env.nm.connect(net.name, cli, ns_cli, name="cli")
    hosts, resolv = env.nm.write_files(cli, "cli")
    httpd(env, ns_srv, 80, tmp_path / "www", "pong\n")
    wait_tcp(ns_srv, "127.0.0.1", 80)
    chroot = rootfs_with_hosts(busybox_rootfs, hosts)
    for target in (ep.ip, "srv", "db", srv[:12]):
        r = in_ns(ns_cli, [*chroot, "wget", "-qO-", f"http://{target}/index.html"])
        assert (r.returncode, r.stdout) == (0, "pong\n"), (target, r.stderr)
    # the server's own hosts file learned about the client when it joined
    assert "\tcli " in env.nm.hosts_file(srv).read_text()


def test_hosts_file_is_rewritten_in_place_when_a_peer_joins_and_leaves(env, busybox_rootfs,
                                                                       tmp_path):
    net = env.net()
    ns_a, ns_b = env.netns(), env.netns()
    a, b = env.cid(), env.cid()
    env.nm.connect(net.name, a, ns_a, name="alpha")
    hosts, _ = env.nm.write_files(a, "alpha")
    inode = os.stat(hosts).st_ino
    assert "beta" not in hosts.read_text()
    ep_b = env.nm.connect(net.name, b, ns_b, name="beta", aliases=["bee"])
    assert os.stat(hosts).st_ino == inode  # same file: a bind mount of it sees this
    assert f"{ep_b.ip}\tbeta bee {b[:12]}" in hosts.read_text().splitlines()
    # through a bind mount made before the peer joined, as in a running container
    httpd(env, ns_b, 8080, tmp_path / "www", "hi\n")
    wait_tcp(ns_b, "127.0.0.1", 8080)
    r = in_ns(ns_a, [*rootfs_with_hosts(busybox_rootfs, hosts), "wget", "-qO-",
                     "http://bee:8080/index.html"])
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    env.nm.release(b)
    assert "beta" not in hosts.read_text() and os.stat(hosts).st_ino == inode


def test_default_network_has_no_names_and_refuses_aliases(env):
    ns1, ns2 = env.netns(), env.netns()
    c1, c2 = env.cid(), env.cid()
    env.nm.connect("bridge", c1, ns1, name="one")
    env.nm.connect("bridge", c2, ns2, name="two")
    assert "two" not in env.nm.write_files(c1, "one")[0].read_text()
    with pytest.raises(UsageError, match="aliases"):
        env.nm.connect("bridge", env.cid(), env.netns(), aliases=["x"])
    with pytest.raises(Conflict, match="pre-defined"):
        env.nm.remove("bridge")
    assert env.nm.get("bridge").bridge == env.nm.default_bridge


def test_tap_for_a_vm_is_a_port_of_the_bridge(env):
    net = env.net()
    cid = env.cid()
    ep = env.nm.attach_tap(net.name, cid, f"tp{env.tag}", name="vm1")
    info = links()[ep.host_ifname]
    assert info["master"] == net.bridge and info["linkinfo"]["info_kind"] == "tun"
    assert ep.gateway == net.gateway and ep.mac.startswith("02:42:") and ep.kind == "tap"
    env.nm.release(cid)
    assert ep.host_ifname not in links()


def test_alias_with_a_newline_cannot_inject_a_hosts_entry(env):
    net = env.net()
    ns, cid = env.netns(), env.cid()
    with pytest.raises(UsageError, match="invalid name or alias"):
        env.nm.connect(net.name, cid, ns, name="web", aliases=["x\n6.6.6.6 bank.example"])
    with pytest.raises(UsageError, match="invalid name or alias"):
        env.nm.write_files(cid, "web", extra_hosts=[("a b", "192.0.2.1")])
    with pytest.raises(UsageError, match="--add-host"):
        env.nm.write_files(cid, "web", extra_hosts=[("ok", "192.0.2.1\n1.2.3.4 evil")])
    assert env.nm.endpoints(cid) == [] and "eth0" not in ns_links(ns)


def test_container_id_cannot_inject_a_firewall_rule_or_a_path(env):
    net = env.net()
    for bad in ('x" accept comment "', "../../etc", ""):
        with pytest.raises(UsageError, match="invalid container ID"):
            env.nm.connect(net.name, bad, env.netns())
        with pytest.raises(UsageError, match="invalid container ID"):
            env.nm.write_files(bad, "h")


def test_connect_refuses_a_path_that_is_not_a_network_namespace(env, tmp_path):
    net = env.net()
    (tmp_path / "f").write_text("")
    for path in (str(tmp_path / "f"), "/proc/self/ns/mnt", str(tmp_path / "missing")):
        with pytest.raises(UsageError, match="not a network namespace"):
            env.nm.connect(net.name, env.cid(), path)
    assert env.nm.inspect(net.name)["Containers"] == {}


def test_internal_network_gets_no_default_route_and_no_masquerade(env):
    inner, outer = env.net(internal=True), env.net()
    ns, cid = env.netns(), env.cid()
    env.nm.connect(inner.name, cid, ns)
    assert not [r for r in ns_routes(ns) if r["dst"] == "default"]
    ep = env.nm.connect(outer.name, cid, ns)  # the first non-internal one gets it
    assert ep.default_route and [r["dev"] for r in ns_routes(ns) if r["dst"] == "default"] == \
        ["eth1"]
    rules = [r["rule"] for r in table_json(env.table) if "rule" in r]
    masq = [r for r in rules if r["chain"] == "postrouting" and "masquerade" in str(r["expr"])
            and inner.subnet.split("/")[0] in str(r["expr"])]
    # only the hairpin rule (ct status dnat) mentions the internal subnet
    assert all("dnat" in str(r["expr"]) for r in masq)
    drops = [r for r in rules if r["chain"] == "forward" and r.get("comment") == f"n:{inner.id}"]
    assert len(drops) == 3  # isolation + no traffic in + no traffic out


def test_two_engine_roots_do_not_share_a_table_or_a_default_bridge(tmp_path):
    from berth.engine.network import NetworkManager

    a = NetworkManager(tmp_path / "a", enable_ip_forward=False)
    b = NetworkManager(tmp_path / "b", enable_ip_forward=False)
    try:
        assert a.firewall.table != b.firewall.table and a.default_bridge != b.default_bridge
        na, nb = a.ensure_default(), b.ensure_default()
        assert not ipaddress.IPv4Network(na.subnet).overlaps(ipaddress.IPv4Network(nb.subnet))
        a.remove_default()  # a's last network: a's table goes, b's stays
        assert table_json(a.firewall.table) == [] and table_json(b.firewall.table)
        assert nb.bridge in links() and na.bridge not in links()
    finally:
        a.remove_default()
        b.remove_default()


def test_inspect_settings_and_stats_of_a_container(env, tmp_path):
    from berth.engine.network import parse_port_spec

    net = env.net()
    ns_a, ns_b = env.netns(), env.netns()
    a, b = env.cid(), env.cid()
    ep = env.nm.connect(net.name, a, ns_a, name="a", aliases=["web"])
    env.nm.connect(net.name, b, ns_b, name="b")
    env.nm.publish(a, parse_port_spec("127.0.0.1::80"))
    s = env.nm.container_settings(a)
    assert s["Networks"][net.name]["IPAddress"] == ep.ip
    assert s["Networks"][net.name]["Aliases"] == ["web"]
    assert list(s["Ports"]) == ["80/tcp"] and s["Ports"]["80/tcp"][0]["HostIp"] == "127.0.0.1"
    before = env.nm.net_stats(a)
    httpd(env, ns_a, 80, tmp_path / "www", "x" * 5000)
    wait_tcp(ns_a, "127.0.0.1", 80)
    r = in_ns(ns_b, ["busybox", "wget", "-qO-", f"http://{ep.ip}/index.html"])
    assert r.returncode == 0 and len(r.stdout) == 5000
    after = env.nm.net_stats(a)
    assert after["tx_bytes"] - before["tx_bytes"] >= 5000  # the container sent the page
    assert after["rx_packets"] > before["rx_packets"]


def test_none_mode_namespace_has_lo_up_and_a_hosts_file(env):
    from berth.engine.network import prepare_netns

    ns, cid = env.netns(), env.cid()
    prepare_netns(ns)
    assert "UP" in ns_links(ns)["lo"]["flags"] and set(ns_links(ns)) == {"lo"}
    hosts, _ = env.nm.write_files(cid, "lonely", mode="none")
    assert "127.0.1.1\tlonely" in hosts.read_text().splitlines()


def test_module_level_attach_and_detach(env):
    from berth.engine import network as lib

    net = env.net()
    ns, cid = env.netns(), env.cid()
    ep = lib.attach(env.nm.get(net.name), ns, cid, "solo", aliases=["s"])
    assert ep.ifname == "eth0" and ep.host_ifname in links()
    lib.detach(env.nm.endpoints(cid)[0])
    assert ep.host_ifname not in links() and env.nm.endpoints(cid) == []
    tap = lib.attach_tap(env.nm.get(net.name), cid, name="vm")
    lib.detach(tap)
    assert tap.host_ifname not in links()


def test_a_kernel_failure_is_one_runtime_failure_line(env):
    from berth.errors import RuntimeFailure

    net = env.net()
    ns, cid = env.netns(), env.cid()
    # a device named eth0 already in the namespace: the veth peer cannot be made
    subprocess.run(["nsenter", f"--net={ns}", "ip", "link", "add", "eth0", "type", "veth",
                    "peer", "name", "x0"], check=True)
    with pytest.raises(RuntimeFailure) as e:
        env.nm.connect(net.name, cid, ns)
    assert "\n" not in str(e.value) and "to network" in str(e.value)
    assert env.nm.inspect(net.name)["Containers"] == {}
    assert not [n for n, i in links().items() if i.get("master") == net.bridge]


def test_a_vm_on_a_user_network_has_a_name_and_publishes_like_a_container(env):
    from berth.engine.network import parse_port_spec

    net = env.net()
    ns, c = env.netns(), env.cid()
    vm = env.cid()
    env.nm.connect(net.name, c, ns, name="app")
    hosts, _ = env.nm.write_files(c, "app")
    ep = env.nm.attach_tap(net.name, vm, name="vm1", aliases=["guest"])
    assert f"{ep.ip}\tvm1 guest {vm[:12]}" in hosts.read_text().splitlines()
    assert ep.guest_config() == {"mac": ep.mac, "address": f"{ep.ip}/24",
                                 "gateway": net.gateway}
    got = env.nm.publish(vm, parse_port_spec("127.0.0.1::8080"))
    rules = [r["rule"] for r in table_json(env.table) if "rule" in r]
    dnat = [r for r in rules if r.get("comment", "").startswith(f"c:{vm}")]
    assert len(dnat) == 1 and f"{ep.ip}:8080" in dnat[0]["comment"]
    assert f"127.0.0.1:{got[0].host_port}" in dnat[0]["comment"]


def test_network_prune_removes_only_unused_user_networks(env):
    used, unused = env.net(), env.net()
    env.nm.ensure_default()
    env.nm.connect(used.name, env.cid(), env.netns())
    assert env.nm.prune() == [unused.name]
    assert {n.name for n in env.nm.list()} == {used.name, "bridge"}
    assert unused.bridge not in links()

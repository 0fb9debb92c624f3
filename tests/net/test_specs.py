"""Parsing and text generation: port specs, --network modes, hosts, resolv.conf, IPAM."""

import ipaddress

import pytest

from berth.engine.network import ipam
from berth.engine.network.dns import hosts_text, resolv_text
from berth.engine.network.mode import parse_network_mode
from berth.engine.network.ports import PortMapping, parse_port_spec
from berth.errors import Conflict, UsageError


@pytest.mark.parametrize("spec,want", [
    ("80", [PortMapping(80)]),
    ("8080:80", [PortMapping(80, 8080)]),
    ("127.0.0.1:8080:80", [PortMapping(80, 8080, "127.0.0.1")]),
    ("127.0.0.1::80/udp", [PortMapping(80, 0, "127.0.0.1", "udp")]),
    ("0.0.0.0:53:53/udp", [PortMapping(53, 53, "", "udp")]),
    ("8000-8001:80-81", [PortMapping(80, 8000), PortMapping(81, 8001)]),
])
def test_port_spec_parses_like_docker(spec, want):
    assert parse_port_spec(spec) == want


@pytest.mark.parametrize("spec", ["", "x", "80/sctp", "70000:80", "1:2:3:4", "a.b.c.d:1:2",
                                  "8000-8002:80-81", "9-8:80", "[::1]:80:80", "80:"])
def test_bad_port_spec_is_one_usage_error(spec):
    with pytest.raises(UsageError) as e:
        parse_port_spec(spec)
    assert "\n" not in str(e.value) and "port spec" in str(e.value)


def test_network_modes():
    assert parse_network_mode(None).kind == "bridge"
    assert parse_network_mode("bridge").network == "bridge"
    assert parse_network_mode("host").namespace_entry("/x") is None
    m = parse_network_mode("mynet")
    assert (m.kind, m.network, m.user_defined, m.needs_netns) == ("bridge", "mynet", True, True)
    c = parse_network_mode("container:abc")
    assert (c.kind, c.container, c.needs_netns) == ("container", "abc", False)
    assert c.namespace_entry("/proc/1/ns/net") == {"type": "network", "path": "/proc/1/ns/net"}
    assert parse_network_mode("none").namespace_entry("/n") == {"type": "network", "path": "/n"}
    for bad in ("container:", "a/b", "x:y"):
        with pytest.raises(UsageError):
            parse_network_mode(bad)


def test_hosts_text_lists_self_peers_and_added_hosts_once():
    text = hosts_text("web", [("10.89.0.2", ["web", "w"])],
                      [("10.89.0.3", ["db", "database", "abcdef123456"]),
                       ("10.89.1.3", ["db"])], [("gw.example", "192.0.2.9")])
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "192.0.2.9\tgw.example" in lines
    assert "10.89.0.2\tweb w" in lines
    assert "10.89.0.3\tdb database abcdef123456" in lines
    assert not any(ln.startswith("10.89.1.3") for ln in lines)  # first answer wins


def test_resolv_conf_drops_loopback_nameservers(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch lan\noptions ndots:2\n")
    assert resolv_text(host_file=str(host)) == (
        "nameserver 192.0.2.53\nsearch lan\noptions ndots:2\n")
    host.write_text("nameserver 127.0.0.53\n")
    out = resolv_text(host_file=str(host))
    assert "nameserver" not in out.replace("nameservers", "") and "--dns" in out
    assert resolv_text(["192.0.2.1"], ["x"], host_file=str(host)) == (
        "nameserver 192.0.2.1\nsearch x\n")


def test_ipam_allocates_lowest_free_and_reports_exhaustion():
    rec = {"name": "n", "subnet": "10.99.0.0/29", "gateway": "10.99.0.1"}
    got = [ipam.allocate(rec, f"c{i}") for i in range(5)]
    assert got == [f"10.99.0.{i}" for i in range(2, 7)]
    with pytest.raises(Conflict, match="no free IP address"):
        ipam.allocate(rec, "c9")
    assert ipam.release(rec, "c1") == ["10.99.0.3"]
    assert ipam.allocate(rec, "c9") == "10.99.0.3"
    with pytest.raises(Conflict, match="already in use"):
        ipam.allocate(rec, "c10", "10.99.0.2")
    with pytest.raises(Conflict, match="gateway"):
        ipam.allocate(rec, "c10", "10.99.0.1")
    with pytest.raises(UsageError):
        ipam.allocate(rec, "c10", "10.98.0.5")


def test_subnet_pool_skips_host_routes():
    used = [ipaddress.IPv4Network("10.89.0.0/24"), ipaddress.IPv4Network("10.89.1.0/25")]
    assert str(ipam.pick_subnet(used)) == "10.89.2.0/24"
    with pytest.raises(Conflict):
        ipam.check_overlap(ipaddress.IPv4Network("10.89.1.0/24"), used, "n")

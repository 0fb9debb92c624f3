"""Deleting a device returns once the kernel has unlisted it; the kernel's
slower cleanup runs in a detached helper that does not pass for the caller."""

import errno
import secrets
import subprocess
import sys

import pytest
from nethelpers import links, ns_links

from berth._sys import netns
from berth.engine.network import endpoint


def test_veth_and_its_peer_are_gone_when_remove_link_returns(env):
    net = env.net()
    ns, cid = env.netns(), env.cid()
    ep = env.nm.connect(net.name, cid, ns)
    assert ep.host_ifname in links() and "eth0" in ns_links(ns)
    assert endpoint.remove_link(ep.host_ifname) is True
    assert ep.host_ifname not in links()
    assert "eth0" not in ns_links(ns)
    assert endpoint.remove_link(ep.host_ifname) is False  # already gone


def test_a_refused_delete_is_an_error_not_a_hang(env):
    ns = env.netns()
    # the loopback device cannot be deleted (no rtnl_link_ops): in a private namespace
    with pytest.raises(OSError) as exc:
        netns.run_in_netns(ns, lambda: endpoint.remove_link("lo"))
    assert exc.value.errno == errno.EOPNOTSUPP
    assert "lo" in ns_links(ns)


def test_the_delete_helper_does_not_show_the_callers_command_line(env):
    """A caller's command line names its container (``berth rm -f ID``): the
    helper outliving it must not, or it would look like a leftover."""
    net = env.net()
    ns, cid = env.netns(), env.cid()
    ep = env.nm.connect(net.name, cid, ns)
    marker = f"marker-{secrets.token_hex(4)}"
    code = ("import sys; from berth.engine.network import endpoint;"
            "print(endpoint.remove_link(sys.argv[1]))")
    r = subprocess.run([sys.executable, "-c", code, ep.host_ifname, marker], capture_output=True,
                       text=True, check=True)
    seen = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert r.stdout.strip() == "True"
    assert marker not in seen
    # the helper (csrc/berth-netdel) holds none of the caller's descriptors
    # either: the caller's pipes end at its exit, whatever the helper waits for
    assert ep.host_ifname not in links()

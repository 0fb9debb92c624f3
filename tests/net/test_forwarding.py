"""Routed paths (hairpin DNAT, isolation between networks, internal networks).

These need ``ip_forward=1``, which the host's namespace must not get from a
test: the scenario runs in a private network namespace (``unshare --net``),
where ``ip_forward``, the bridges and the nftables table are all its own
(and a private mount namespace, so its namespace files vanish with it).
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.net

SCENARIO = r"""
import os, subprocess, sys, time
from pathlib import Path
# this private namespace's roots are registered (berth.engine.network.roots)
# on a tmpfs of its private mount namespace, not in the host's /run
os.makedirs("/run/berth-net", exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/berth-net"], check=True)
from berth.engine.network import NetworkManager, create_netns, parse_port_spec
work = Path(sys.argv[1])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
initial_forward = open("/proc/sys/net/ipv4/ip_forward").read().strip()
nm = NetworkManager(work / "root")  # ip_forward allowed: this namespace is private
a_net = nm.create("front")
b_net = nm.create("back")
i_net = nm.create("sealed", internal=True)
procs = []

def box(net, name):
    ns = str(work / name)
    create_netns(ns)
    ep = nm.connect(net, name * 8, ns, name=name)
    return ns, ep

def reach(ns, ip, port):
    # a dropped SYN never gets an answer: bound the wait (busybox wget -T crashes)
    code = f"import socket; socket.create_connection(({ip!r}, {port}), timeout=2)"
    r = subprocess.run(["nsenter", f"--net={ns}", sys.executable, "-c", code],
                       capture_output=True)
    return "ok" if r.returncode == 0 else "FAIL"

def get(ns, url):
    r = subprocess.run(["nsenter", f"--net={ns}", "busybox", "wget", "-qO-", url],
                       capture_output=True, text=True, timeout=20)
    return r.stdout if r.returncode == 0 else "FAIL"

try:
    web_ns, web = box("front", "web")
    cli_ns, _cli = box("front", "cli")
    other_ns, _ = box("back", "other")
    sealed_ns, _ = box("sealed", "sealed")
    (work / "www").mkdir()
    (work / "www" / "index.html").write_text("ok\n")
    procs.append(subprocess.Popen(["nsenter", f"--net={web_ns}", "busybox", "httpd", "-f",
                                   "-p", "80", "-h", str(work / "www")]))
    nm.publish("web" * 8, parse_port_spec("8080:80"))
    for _ in range(100):
        if get(web_ns, "http://127.0.0.1/index.html") == "ok\n":
            break
        time.sleep(0.05)
    # A new netns starts from the host's value: the old value is recorded only
    # when berth had to turn forwarding on.
    print("forward", open("/proc/sys/net/ipv4/ip_forward").read().strip(),
          (work / "root" / "networks" / "ip_forward.orig").exists() == (initial_forward == "0"))
    print("direct", get(cli_ns, f"http://{web.ip}/index.html").strip())
    print("hairpin", get(cli_ns, f"http://{a_net.gateway}:8080/index.html").strip())
    print("loopback", subprocess.run(["busybox", "wget", "-qO-",
                                      "http://127.0.0.1:8080/index.html"],
                                     capture_output=True, text=True).stdout.strip())
    print("cross", reach(other_ns, web.ip, 80))
    print("sealed", reach(sealed_ns, web.ip, 80))
    print("sealed-gateway", reach(sealed_ns, a_net.gateway, 8080))
    print("published-from-other", get(other_ns, f"http://{b_net.gateway}:8080/index.html").strip())
finally:
    for p in procs:
        p.kill()
        p.wait()
"""


def test_hairpin_isolation_and_internal_networks_in_a_private_namespace(tmp_path):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", sys.executable, "-c", SCENARIO, str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    got = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert got["forward"] == "1 True"  # turned on, and the old value recorded
    assert got["direct"] == "ok"
    assert got["hairpin"] == "ok"  # a peer reaching a published port via the gateway
    assert got["loopback"] == "ok"
    assert got["published-from-other"] == "ok"  # published ports are for everyone
    assert got["cross"] == "FAIL"  # networks are isolated from each other
    assert got["sealed"] == "FAIL"  # an internal network reaches nothing outside
    assert got["sealed-gateway"] == "FAIL"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() in ("0", "1")


RESTORE = r"""
import os, subprocess, sys
# this private namespace's roots are registered (berth.engine.network.roots)
# on a tmpfs of its private mount namespace, not in the host's /run
os.makedirs("/run/berth-net", exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/berth-net"], check=True)
from berth.engine.network import NetworkManager
root = sys.argv[1]
fwd = "/proc/sys/net/ipv4/ip_forward"
open(fwd, "w").write("0")
nm = NetworkManager(root)
nm.create("fwd-a")
on = open(fwd).read().strip()
nm.remove("fwd-a")
print(on, open(fwd).read().strip())
"""


def test_last_network_removed_puts_ip_forward_back_in_a_private_namespace(tmp_path):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", sys.executable, "-c", RESTORE,
                        str(tmp_path / "root")], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "0"]  # turned on for the network, put back with the last one

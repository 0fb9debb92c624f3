"""Networks through the engine: published ports, names on a user network, cleanup."""

import json
import os
import socket
import subprocess
import time
import urllib.request


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _get(url: str, tries: int = 50) -> str | None:
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            time.sleep(0.1)
    return None


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _ports_of(bridge: str) -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_published_port_reachable_on_loopback_and_logged(berth):
    port = _free_port()
    name = f"web{os.getpid()}"
    links0 = _links()
    berth.out("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", "busybox", "sh", "-c",
              "echo served > /tmp/index.html; exec httpd -f -v -p 8080 -h /tmp")
    assert _get(f"http://127.0.0.1:{port}/index.html") == "served\n"
    assert berth.out("port", name, "8080") == f"127.0.0.1:{port}\n"
    assert f"127.0.0.1:{port}->8080/tcp" in berth.out("ps", "-f", f"name={name}")
    for _ in range(50):
        if "response:200" in berth("logs", name).stderr:
            break
        time.sleep(0.1)
    assert "response:200" in berth("logs", name).stderr
    bridge = json.loads(berth.out("network", "inspect", "bridge"))[0]["Options"]["com.docker.network.bridge.name"]
    ports = _ports_of(bridge)
    assert ports and ports <= _links() - links0  # the container's veth, on this root's bridge
    berth.out("rm", "-f", name)
    # the veth went with the container (the bridge itself may stay for the network);
    # only this root's bridge is looked at: other roots may be busy on this host
    assert _ports_of(bridge) == set() and not ports & _links()
    assert _get(f"http://127.0.0.1:{port}/index.html", tries=3) is None


def test_port_in_use_is_refused_and_nothing_is_left(berth):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        before = berth.ids()
        r = berth("run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
        assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
        assert berth.ids() == before
    finally:
        s.close()


def test_containers_on_a_user_network_reach_each_other_by_name(berth):
    net = f"n{os.getpid()}"
    srv = f"srv{os.getpid()}"
    berth.out("network", "create", net)
    try:
        berth.out("run", "-d", "--name", srv, "--network", net, "--network-alias", "api", "busybox", "sh", "-c",
                  "echo pong > /tmp/p; exec httpd -f -p 80 -h /tmp")
        r = berth("run", "--rm", "--network", net, "busybox", "sh", "-c",
                  f"for i in $(seq 20); do wget -qO- http://{srv}/p && wget -qO- http://api/p && exit 0; sleep 0.2; done; exit 1")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "pong\npong\n"
        assert berth("network", "rm", net).returncode == 125  # in use
        berth.out("rm", "-f", srv)
    finally:
        berth("rm", "-f", srv)
        berth("network", "rm", net)
    assert net not in berth.out("network", "ls")


def test_network_none_and_host(berth):
    r = berth("run", "--rm", "--network", "none", "busybox", "sh", "-c", "ls /sys/class/net")
    assert r.stdout.split() == ["lo"]
    r = berth("run", "--rm", "--network", "host", "busybox", "cat", "/proc/net/dev")
    host = open("/proc/net/dev").read().count("\n")
    assert abs(r.stdout.count("\n") - host) <= 2


def test_unknown_network_is_one_line(berth):
    r = berth("run", "--rm", "--network", "no-such-net", "busybox", "true")
    assert r.returncode == 125 and r.stderr.count("\n") == 1


def test_network_container_mode_shares_the_namespace(berth):
    srv = f"shared{os.getpid()}"
    berth.out("run", "-d", "--name", srv, "busybox", "sh", "-c", "echo same-ns > /tmp/i; exec httpd -f -p 8081 -h /tmp")
    r = berth("run", "--rm", "--network", f"container:{srv}", "busybox", "sh", "-c",
              "for i in $(seq 20); do wget -qO- http://127.0.0.1:8081/i && exit 0; sleep 0.2; done; exit 1")
    assert r.returncode == 0 and r.stdout == "same-ns\n", r.stderr


def test_network_connect_and_disconnect_a_running_container(berth):
    net = f"cn{os.getpid()}"
    berth.out("network", "create", net)
    cid = berth.out("run", "-d", "busybox", "sleep", "60").strip()
    try:
        berth.out("network", "connect", net, cid)
        assert "eth1" in berth.out("exec", cid, "ls", "/sys/class/net")
        berth.out("network", "disconnect", net, cid)
        assert "eth1" not in berth.out("exec", cid, "ls", "/sys/class/net")
    finally:
        berth("rm", "-f", cid)
        berth("network", "rm", net)

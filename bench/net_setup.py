"""Benchmark: wiring a container's network, berth against podman's netavark.

One sample = make a network namespace, attach it to a bridge network with one
published port, then tear everything down. berth runs in a fresh Python
process (as ``berth run`` does); the peer is podman's backend, ``netavark
setup``/``teardown`` (Debian's podman package) plus ``ip netns add``/``del``.

Everything runs inside a private network namespace made for the benchmark
(``unshare --net``): bridges, veths, nftables/iptables tables and
``ip_forward`` are per namespace, so the host's network is never touched.
Prints medians and the ratio. Usage: ``.venv/bin/python bench/net_setup.py [N]``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

NETAVARK = next((p for p in ("/usr/lib/podman/netavark", "/usr/libexec/podman/netavark")
                 if os.path.exists(p)), None)

BERTH_SAMPLE = """
import sys, time
t0 = time.perf_counter()
from berth.engine.network import NetworkManager, create_netns, parse_port_spec, remove_netns
root, ns, cid = sys.argv[1:]
nm = NetworkManager(root)
t1 = time.perf_counter()
create_netns(ns)
nm.connect("benchnet", cid, ns, name="bench")
nm.publish(cid, parse_port_spec("127.0.0.1:47123:80"))
t2 = time.perf_counter()
nm.release(cid)
remove_netns(ns)
t3 = time.perf_counter()
print(f"{(t1-t0)*1e3:.2f} {(t2-t1)*1e3:.2f} {(t3-t2)*1e3:.2f}")
"""


def median_ms(fn, n: int) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    if os.environ.get("BERTH_BENCH_INNER") != "1":
        # re-run inside a private network namespace (and mount namespace for /run/netns)
        env = dict(os.environ, BERTH_BENCH_INNER="1")
        return subprocess.call(["unshare", "--net", "--mount", sys.executable, __file__,
                                str(n)], env=env)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from berth.engine.network import NetworkManager

    work = tempfile.mkdtemp(prefix="berth-bench-net-")
    try:
        root = os.path.join(work, "root")
        nm = NetworkManager(root)
        net = nm.create("benchnet", subnet="10.89.7.0/24")
        cid = "c" * 64
        ns = os.path.join(work, "ns")
        phases = []

        def berth_once() -> None:
            out = subprocess.run([sys.executable, "-c", BERTH_SAMPLE, root, ns, cid],
                                 check=True, capture_output=True, text=True).stdout
            phases.append([float(x) for x in out.split()])

        ours = median_ms(berth_once, n)
        imp, setup, down = (statistics.median(p[i] for p in phases) for i in range(3))
        print(f"berth   fresh process, netns + veth + address + route + 1 port, and back: "
              f"{ours:.1f} ms (import {imp:.1f}, setup {setup:.1f}, teardown {down:.1f})")
        nm.remove("benchnet")

        if not NETAVARK:
            print("netavark not installed (apt-get install podman): no peer figure")
            return 0
        conf = os.path.join(work, "netavark")
        os.makedirs(conf)
        opts = {
            "container_id": cid, "container_name": "bench",
            "networks": {"benchnet": {"interface_name": "eth0",
                                      "static_ips": ["10.89.7.2"]}},
            "network_info": {"benchnet": {
                "name": "benchnet", "id": net.id, "driver": "bridge",
                "network_interface": "nvbench0",
                "subnets": [{"subnet": "10.89.7.0/24", "gateway": "10.89.7.1"}],
                "ipv6_enabled": False, "internal": False, "dns_enabled": False,
                "ipam_options": {"driver": "host-local"}}},
            "port_mappings": [{"host_ip": "127.0.0.1", "container_port": 80,
                               "host_port": 47123, "range": 1, "protocol": "tcp"}],
        }
        blob = json.dumps(opts)
        os.makedirs("/run/netns", exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/netns"], check=True)

        def netavark_once() -> None:
            subprocess.run(["ip", "netns", "add", "benchns"], check=True)
            path = "/run/netns/benchns"
            for verb in ("setup", "teardown"):
                subprocess.run([NETAVARK, "--config", conf, verb, path], input=blob, text=True,
                               check=True, capture_output=True)
            subprocess.run(["ip", "netns", "del", "benchns"], check=True)

        theirs = median_ms(netavark_once, n)
        print(f"netavark 1.x ({NETAVARK}) + ip netns add/del, same work: {theirs:.1f} ms")
        print(f"ratio berth/netavark: {ours / theirs:.2f} (median of {n})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

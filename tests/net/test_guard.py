"""route_localnet on our bridges must not let a container reach the host's loopback.

With ``route_localnet=1`` (set so that 127.0.0.1 -> published port works),
the kernel would accept a packet *to* 127.0.0.1 arriving on the bridge and
deliver it to host services bound to loopback (the CVE-2020-8558 class,
kube-proxy's bug). The guard chain drops such packets. The test crafts the
packet by hand (a container with CAP_NET_RAW can), and as a control sends
the same packet to the gateway address, which must arrive.
"""

import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.net

SEND = r"""
import socket, struct, sys
dst, port, gw_mac, src = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
payload = b"from-container"
udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                  socket.inet_aton(src), socket.inet_aton(dst))
s = sum(struct.unpack("!10H", hdr))
s = (s >> 16) + (s & 0xFFFF); s += s >> 16
hdr = hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:]
eth = bytes.fromhex(gw_mac.replace(":", "")) + bytes.fromhex(
    open("/sys/class/net/eth0/address").read().strip().replace(":", "")) + b"\x08\x00"
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as r:
    r.bind(("eth0", 0))
    for _ in range(3):
        r.send(eth + hdr + udp)
"""


def _send(ns, dst, port, gw_mac, src):
    subprocess.run(["nsenter", f"--net={ns}", sys.executable, "-c", SEND, dst, str(port),
                    gw_mac, src], check=True)


def _received(sock) -> bool:
    sock.settimeout(1.0)
    try:
        return sock.recvfrom(64)[0] == b"from-container"
    except TimeoutError:
        return False


def test_container_cannot_reach_host_loopback_through_route_localnet(env):
    net = env.net()
    ns, cid = env.netns(), env.cid()
    ep = env.nm.connect(net.name, cid, ns)
    with open(f"/sys/class/net/{net.bridge}/address") as f:
        gw_mac = f.read().strip()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as lo, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gw:
        lo.bind(("127.0.0.1", 0))
        gw.bind((net.gateway, 0))
        # control: the hand-made packet does reach the host when addressed normally
        _send(ns, net.gateway, gw.getsockname()[1], gw_mac, ep.ip)
        assert _received(gw)
        _send(ns, "127.0.0.1", lo.getsockname()[1], gw_mac, ep.ip)
        assert not _received(lo)

"""Helpers for the network tests: a private engine root, table, bridges, namespaces.

Every kernel object carries this run's tag (pid + random), so tests of other
helpers running on this machine never see ours, and the finalizers remove
each one even when a test fails. Traffic goes only to 127.0.0.1 or to
addresses inside namespaces created here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from berth._sys import netns
from berth.engine.network import NetworkManager

NETNS_DIR = Path("/run/berth-test-netns")


def tag() -> str:
    return f"{os.getpid() % 10000}{secrets.token_hex(2)}"


def links() -> dict[str, dict]:
    out = subprocess.run(["ip", "-j", "-d", "link"], check=True, capture_output=True,
                         text=True).stdout
    return {i["ifname"]: i for i in json.loads(out)}


def ns_links(path: str) -> dict[str, dict]:
    out = subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "addr"], check=True,
                         capture_output=True, text=True).stdout
    return {i["ifname"]: i for i in json.loads(out)}


def ns_routes(path: str) -> list[dict]:
    out = subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "route"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def table_json(table: str) -> list[dict]:
    r = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True,
                       text=True)
    if r.returncode != 0:
        return []
    return [i for i in json.loads(r.stdout)["nftables"] if "metainfo" not in i]


class Env:
    """A NetworkManager on a private root plus everything to undo."""

    def __init__(self, root: Path) -> None:
        self.tag = tag()
        self.table = f"berth_t{self.tag}"
        self.nm = NetworkManager(root, table=self.table, default_bridge=f"bt{self.tag}",
                                 enable_ip_forward=False)
        self.containers: set[str] = set()
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def netns(self) -> str:
        NETNS_DIR.mkdir(parents=True, exist_ok=True)
        path = str(NETNS_DIR / f"ns{self.tag}-{len(self.namespaces)}")
        netns.create_netns(path)
        self.namespaces.append(path)
        return path

    def cid(self) -> str:
        c = secrets.token_hex(32)
        self.containers.add(c)
        return c

    def spawn(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def net(self, **kw):
        return self.nm.create(f"tn{self.tag}-{secrets.token_hex(2)}", **kw)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for c in self.containers:
            try:
                self.nm.release(c)
            except Exception:  # noqa: BLE001 - keep cleaning
                pass
        for n in self.nm.list():
            try:
                if n.is_default:
                    self.nm.remove_default()
                else:
                    self.nm.remove(n.name)
            except Exception:  # noqa: BLE001
                subprocess.run(["ip", "link", "del", n.bridge], capture_output=True)
        subprocess.run(["nft", "delete", "table", "ip", self.table], capture_output=True)
        for path in self.namespaces:
            netns.remove_netns(path)
        from berth.engine.network import roots

        roots.unregister(self.table)  # (a test may have lost a network's record on purpose)


def in_ns(path: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True,
                          text=True, **kw)


def rootfs_with_hosts(rootfs: Path, hosts: Path) -> list[str]:
    """argv prefix: a private mount namespace where ``hosts`` is bind-mounted on
    the rootfs' /etc/hosts (as the engine does), then chroot."""
    (rootfs / "etc" / "hosts").touch()
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount --bind "{hosts}" "{rootfs}/etc/hosts" && exec chroot "{rootfs}" "$@"',
            "sh"]


def wait_tcp(ns: str, ip: str, port: int, tries: int = 100) -> None:
    code = ("import socket,sys\n"
            f"s=socket.create_connection(('{ip}',{port}),timeout=1)\n")
    for _ in range(tries):
        if in_ns(ns, [sys.executable, "-c", code]).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{ip}:{port} never accepted in {ns}")


def httpd(env: Env, ns: str, port: int, docroot: Path, text: str) -> None:
    docroot.mkdir(parents=True, exist_ok=True)
    (docroot / "index.html").write_text(text)
    env.spawn(["nsenter", f"--net={ns}", shutil.which("busybox") or "/bin/busybox", "httpd",
               "-f", "-p", str(port), "-h", str(docroot)])

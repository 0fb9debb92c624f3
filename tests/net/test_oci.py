"""A real OCI container (runc, the reference runtime berth-runtime mirrors) joins
a namespace set up by ``setup_container``: busybox httpd inside it is reached
on 127.0.0.1 through the published port and by name from a second container.
"""

import json
import shutil
import subprocess
import time

import pytest
from nethelpers import NETNS_DIR

from berth.engine.network import parse_port_spec, setup_container, teardown_container

pytestmark = [pytest.mark.net,
              pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")]


def bundle(dir, rootfs_template, args, net, hosts_mounts=True):
    dir.mkdir()
    shutil.copytree(rootfs_template, dir / "rootfs", symlinks=True)
    subprocess.run(["runc", "spec"], cwd=dir, check=True)
    cfg = json.loads((dir / "config.json").read_text())
    cfg["process"].update(args=args, terminal=False)
    cfg["root"]["readonly"] = False
    cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"]
                                  if ns["type"] != "network"] + [net.namespace]
    for f, src in (("hosts", net.hosts), ("resolv.conf", net.resolv_conf)):
        (dir / "rootfs" / "etc" / f).touch()
        cfg["mounts"].append({"destination": f"/etc/{f}", "type": "bind", "source": str(src),
                              "options": ["rbind", "ro"]})
    (dir / "config.json").write_text(json.dumps(cfg))
    return dir


def test_runc_container_is_served_on_loopback_and_by_name(env, busybox_rootfs_template,
                                                         tmp_path):
    net = env.net()
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    state = tmp_path / "runc"
    srv, cli = env.cid(), env.cid()
    p_srv, p_cli = str(NETNS_DIR / f"o{env.tag}-s"), str(NETNS_DIR / f"o{env.tag}-c")
    env.namespaces += [p_srv, p_cli]
    n_srv = setup_container(env.nm, srv, net.name, p_srv, name="websrv",
                            ports=parse_port_spec("127.0.0.1::80"))
    n_cli = setup_container(env.nm, cli, net.name, p_cli, name="client")
    b_srv = bundle(tmp_path / "srv", busybox_rootfs_template,
                   ["sh", "-c", "mkdir -p /www && echo served > /www/index.html && "
                                "exec httpd -f -p 80 -h /www"], n_srv)
    b_cli = bundle(tmp_path / "cli", busybox_rootfs_template,
                   ["wget", "-qO-", "http://websrv/index.html"], n_cli)
    name = f"netsrv{env.tag}"
    subprocess.run(["runc", "--root", str(state), "run", "-d", "--bundle", str(b_srv), name],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    try:
        port = n_srv.ports[0].host_port
        body = ""
        for _ in range(100):
            r = subprocess.run(["curl", "-fsS", "-m", "2", f"http://127.0.0.1:{port}/index.html"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                body = r.stdout
                break
            time.sleep(0.05)
        assert body == "served\n"
        r = subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(b_cli),
                            f"netcli{env.tag}"], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout) == (0, "served\n"), r.stderr
    finally:
        subprocess.run(["runc", "--root", str(state), "delete", "-f", name], capture_output=True)
        subprocess.run(["runc", "--root", str(state), "delete", "-f", f"netcli{env.tag}"],
                       capture_output=True)
        teardown_container(env.nm, srv, p_srv)
        teardown_container(env.nm, cli, p_cli)

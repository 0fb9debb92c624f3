"""The README's first command: berth's main job on the built-in busybox image.

A service with a published port on 127.0.0.1, talked to from the host, then
``ps``, ``logs``, ``exec``, ``stats``, and everything removed. Each step prints
the ``berth`` command it runs, so the demo doubles as a tutorial.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BERTH = str(Path(sys.executable).parent / "berth")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _run(*args: str, check: bool = True, show: bool = True) -> subprocess.CompletedProcess:
    if show:
        print(f"\n$ berth {shlex.join(args)}", flush=True)
    p = subprocess.run([BERTH, *args], capture_output=True, text=True)
    if show:
        sys.stdout.write(p.stdout)
        sys.stdout.write(p.stderr)
        sys.stdout.flush()
    if check and p.returncode != 0:
        raise SystemExit(f"demo: berth {' '.join(args)} failed with exit code {p.returncode}")
    return p


def main() -> int:
    if os.geteuid() != 0:
        sys.stderr.write("berth demo: run as root (containers need namespaces, cgroups and mounts)\n")
        return 1
    print("berth demo: a web service in a busybox container, reachable on 127.0.0.1")
    r = subprocess.run([BERTH, "--help"], capture_output=True, text=True)
    if "\n  image " in r.stdout:
        _run("image", "bootstrap", "busybox")
    name = f"berth-demo-{os.getpid()}"
    port = _free_port()
    _run("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", "--memory", "64m", "busybox",
         "sh", "-c", 'echo "hello from a berth container" > /tmp/index.html; exec httpd -f -v -p 8080 -h /tmp')
    try:
        body = None
        print(f"\n$ curl http://127.0.0.1:{port}/index.html", flush=True)
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        if body is None:
            raise SystemExit(f"demo: the service did not answer on 127.0.0.1:{port}")
        sys.stdout.write(body)
        _run("ps", "--filter", f"name={name}")
        time.sleep(0.2)
        _run("logs", name)
        _run("exec", name, "sh", "-c", "echo \"inside: $(hostname), pid 1 is $(cat /proc/1/comm), $(ls /tmp)\"")
        _run("stats", "--no-stream", name)
        _run("inspect", "--format", "{{.State.Status}} {{.Isolation}} {{json .NetworkSettings.Ports}}", name)
        print("\n$ echo 'one-shot' | berth run -i --rm busybox sh -c 'tr a-z A-Z; exit 3'; echo $?", flush=True)
        p = subprocess.run([BERTH, "run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z; exit 3"],
                           input="one-shot\n", capture_output=True, text=True)
        sys.stdout.write(p.stdout + p.stderr + f"{p.returncode}\n")
    finally:
        _run("rm", "-f", name, check=False)
    left = _run("ps", "-a", "-q", "--filter", f"name={name}", show=False).stdout.strip()
    print(f"\ncleaned up: {'yes' if not left else 'NO: ' + left}")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())

"""The README's first command: berth's main job on the built-in busybox image.

Until the engine lands this runs a busybox bundle through ``berth-runtime``
(the OCI runtime, like runc): it builds a bundle in a temporary directory
(busybox-static root filesystem + ``berth-runtime spec``'s secure defaults),
runs a few commands that show the isolation, and removes everything again.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from berth.image.busybox import make_rootfs
from berth.runtime.container.spec import default_spec

SCRIPT = r"""
echo "hello from a berth container"
echo "kernel:   $(uname -sr) (shared with the host)"
echo "hostname: $(hostname) (own UTS namespace)"
echo "user:     $(id)"
echo "pid:      $$ (PID 1 of its own PID namespace); processes: $(ls /proc | grep -c '^[0-9]')"
echo "caps:     $(grep CapEff /proc/self/status | cut -f2) (docker's 14)"
echo "nnp:      $(grep NoNewPrivs /proc/self/status | cut -f2), seccomp mode: $(grep '^Seccomp:' /proc/self/status | cut -f2)"
echo "network:  $(ls /sys/class/net | tr '\n' ' ')(own network namespace)"
echo "pids.max: $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
unshare -m true 2>/dev/null && echo "unshare:  allowed (!)" || echo "unshare:  denied"
(echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo "/proc/sys: writable (!)" || echo "/proc/sys: read-only"
"""


def _runtime() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "berth-runtime")
    return exe if os.path.exists(exe) else "berth-runtime"


def main() -> int:
    if os.geteuid() != 0:
        sys.stderr.write("berth demo: needs root (namespaces, cgroups, mounts)\n")
        return 1
    tmp = tempfile.mkdtemp(prefix="berth-demo-")
    try:
        bundle = os.path.join(tmp, "bundle")
        make_rootfs(os.path.join(bundle, "rootfs"))
        cfg = default_spec(["/bin/sh", "-c", SCRIPT])
        cfg["process"]["terminal"] = False
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        cmd = [_runtime(), "--root", os.path.join(tmp, "state"), "run", "--bundle", bundle,
               f"demo-{os.getpid()}"]
        print(f"$ {' '.join(cmd[:1] + cmd[3:])}", flush=True)
        return subprocess.run(cmd).returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""The probe: a busybox sh script run inside each mode, reporting what the workload sees.

Every line it prints is ``key=value``. Dangerous operations are attempted for
real (in a subshell, output discarded) and reported ``ok`` or ``denied``;
writability is tested with ``test -w`` (access(2) reports EROFS for read-only
mounts), so nothing on a host that lets the write through is changed.

The host marker: compare starts a host process whose argv holds a random token;
the probe looks for it in every /proc/PID/cmdline it can see. The token is
spliced together at run time so the probe's own command line never contains it.
"""

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass

# (key, what it tries, shell command); ok = exit status 0.
DANGEROUS: list[tuple[str, str, str]] = [
    ("mount_tmpfs", "mount(2) a tmpfs", "mkdir -p /tmp/.pm && mount -t tmpfs none /tmp/.pm && umount /tmp/.pm"),
    ("unshare_mount_ns", "unshare(CLONE_NEWNS)", "unshare -m true"),
    ("unshare_user_ns", "unshare(CLONE_NEWUSER)", "unshare -U true"),
    ("setns_pid1", "setns(2) into PID 1's namespaces", "nsenter -t 1 -m -u -i -n -p true"),
    ("mknod_mem", "mknod(2) and open a /dev/mem node", "mknod /tmp/.pmem c 1 1 && head -c1 /tmp/.pmem >/dev/null; r=$?; rm -f /tmp/.pmem; exit $r"),
    ("read_dev_mem", "read /dev/mem", "head -c1 /dev/mem >/dev/null"),
    ("read_kmsg", "read the kernel log (syslog(2))", "dmesg | head -c1 | grep -q ."),
    ("raw_socket", "open a raw socket (ping 127.0.0.1)", "ping -c1 -W1 127.0.0.1"),
    ("chroot", "chroot(2)", "chroot / true"),
    # A non-module: "invalid module format" means the kernel's loader was reached (permitted).
    ("load_module", "init_module(2) reaches the module loader",
     "echo x > /tmp/.pk.ko; insmod /tmp/.pk.ko 2>&1 | grep -qi -e invalid -e 'exec format'; r=$?; rm -f /tmp/.pk.ko; exit $r"),
]
# Host-wide kernel settings an escape goes through (core_pattern and modprobe run a
# program as root on the host; uevent_helper likewise). Directories are cgroup
# hierarchies (v2 root, v1 memory): writable when mkdir makes a real cgroup (the
# release_agent escape, CVE-2022-0492, starts with that).
WRITABLE_PATHS = [
    "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/proc/sys/vm/overcommit_memory",
    "/proc/sys/net/ipv4/ip_forward", "/sys/kernel/uevent_helper", "/sys/fs/cgroup", "/sys/fs/cgroup/memory",
]
READABLE_PATHS = ["/proc/kcore", "/proc/kallsyms", "/sys/firmware", "/proc/keys"]

SCRIPT = r"""
M="$MARK1""$MARK2"
echo "kernel=$(uname -r)"
echo "pid1=$(tr '\0' '\n' < /proc/1/cmdline 2>/dev/null | head -n 2 | tr '\n' ' ')"
echo "nproc=$(nproc 2>/dev/null)"
echo "cpuinfo_cpus=$(grep -c ^processor /proc/cpuinfo 2>/dev/null)"
echo "memtotal_kb=$(awk '/^MemTotal:/{print $2}' /proc/meminfo 2>/dev/null)"
echo "capeff=$(awk '/^CapEff:/{print $2}' /proc/self/status)"
echo "seccomp=$(awk '/^Seccomp:/{print $2}' /proc/self/status)"
echo "nnp=$(awk '/^NoNewPrivs:/{print $2}' /proc/self/status)"
n=0; found=no
for p in /proc/[0-9]*; do
  n=$((n+1))
  c=$(tr '\0' ' ' < $p/cmdline 2>/dev/null)
  case "$c" in *"$M"*) found=yes;; esac
done
echo "procs_visible=$n"
echo "host_marker_visible=$found"
echo "netifs=$(ls /sys/class/net 2>/dev/null | tr '\n' ' ')"
echo "netmacs=$(cat /sys/class/net/*/address 2>/dev/null | tr '\n' ' ')"
b=""; for d in /dev/*; do [ -b "$d" ] && b="$b ${d#/dev/}"; done
echo "block_devices=$b"
echo "dev_entries=$(ls /dev | wc -l)"
"""


def _script(token: str) -> str:
    half = len(token) // 2
    lines = [f'MARK1="{token[:half]}"; MARK2="{token[half:]}"', SCRIPT]
    for key, _, cmd in DANGEROUS:
        lines.append(f"( {cmd} ) >/dev/null 2>&1 && echo 'op_{key}=ok' || echo 'op_{key}=denied'")
    # busybox's test -w is always true for root, so write for real: a file gets its own
    # current value back (a no-op where it is allowed), a cgroup directory a child cgroup
    # (a private tmpfs at /sys/fs/cgroup takes the mkdir but grows no cgroup.procs).
    for path in WRITABLE_PATHS:
        cmd = (f'if [ -d {path} ]; then d={path}/.berth-probe-$$; mkdir $d || exit 1; '
               f'[ -e $d/cgroup.procs ]; r=$?; rmdir $d; exit $r; '
               f'else v=$(cat {path}) && printf "%s\\n" "$v" > {path}; fi')
        lines.append(f"( {cmd} ) >/dev/null 2>&1 && echo 'writable_{path}=yes' || echo 'writable_{path}=no'")
    # Readable means there is content: masked paths are empty tmpfs or /dev/null.
    for path in READABLE_PATHS:
        cmd = f'[ -n "$(ls -A {path} 2>/dev/null)" ] && [ -d {path} ] || [ -n "$(head -c1 {path} 2>/dev/null)" ]'
        lines.append(f"( {cmd} ) >/dev/null 2>&1 && echo 'readable_{path}=yes' || echo 'readable_{path}=no'")
    return "\n".join(lines) + "\n"


@dataclass
class HostMarker:
    """A host process whose command line carries ``token``; stop() ends it."""

    token: str
    proc: subprocess.Popen

    @classmethod
    def start(cls) -> "HostMarker":
        token = "berth-compare-marker-" + secrets.token_hex(6)
        # sleep(1) would reject the extra argument; python ignores it.
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", token], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cls(token, proc)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def probe_argv(self) -> list[str]:
        return ["sh", "-c", _script(self.token)]


def parse(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def host_view() -> dict[str, object]:
    """The same facts seen from the host, to tell what inside is the host's."""
    macs = set()
    for name in os.listdir("/sys/class/net"):
        try:
            macs.add(open(f"/sys/class/net/{name}/address").read().strip())
        except OSError:
            pass
    return {"kernel": os.uname().release, "netifs": sorted(os.listdir("/sys/class/net")),
            "macs": sorted(m for m in macs if m and m != "00:00:00:00:00:00"),
            "nproc": os.cpu_count()}

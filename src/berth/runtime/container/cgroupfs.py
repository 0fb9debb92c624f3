"""The container's view of /sys/fs/cgroup (mounts[] entries of type "cgroup").

cgroup v1 cannot be mounted as one filesystem: like runc, a tmpfs goes at the
destination and each host hierarchy is mounted below it under the same name.
In a new cgroup namespace the hierarchy is mounted afresh (the kernel roots it
at the container's cgroup); otherwise the container's own cgroup directory is
bind-mounted, so the host tree never shows. Pure v2 is one cgroup2 mount (or
a bind of the container's cgroup without a cgroup namespace).
"""

import os

from berth._sys import mount as m

_hierarchies: list[tuple[str, str, str]] | None = None


def host_hierarchies() -> list[tuple[str, str, str]]:
    """(mount point, fstype, superblock options) of the host's cgroup mounts.

    Read once: the first call must come before pivot_root (mountinfo then
    shows the container's mounts)."""
    global _hierarchies
    if _hierarchies is not None:
        return _hierarchies
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _source, sopts = right.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                out.append((fields[4], fstype, sopts))
    _hierarchies = out
    return out


def _own_paths() -> dict[str, str]:
    """controller list (as in /proc/self/cgroup, "" for v2) -> our cgroup path."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            paths[ctrls] = path
    return paths


def mount(target_fd_path: str, dest: str, flags: int, cgroupns: bool, reopen) -> None:
    """Mount the container's cgroup view on the directory at ``target_fd_path``.

    ``reopen()`` returns a new O_PATH fd on the destination (to see the tmpfs
    just mounted there: the old fd still names the directory underneath).
    """
    hier = host_hierarchies()
    flags |= m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC
    ro = flags & m.MS_RDONLY
    if len(hier) == 1 and hier[0][1] == "cgroup2" and hier[0][0] == "/sys/fs/cgroup":
        _mount_one(target_fd_path, hier[0], flags, cgroupns, _own_paths())
        if not cgroupns:
            fd = reopen()
            try:
                m.mount(None, m.fd_path(fd), None, m.MS_BIND | m.MS_REMOUNT | flags, what=f"remount {dest}")
            finally:
                os.close(fd)
        return
    m.mount("tmpfs", target_fd_path, "tmpfs", flags & ~m.MS_RDONLY, "mode=755", what=f"tmpfs on {dest}")
    own = _own_paths()
    base_fd = reopen()
    try:
        for h in hier:
            if not h[0].startswith("/sys/fs/cgroup/"):
                continue
            name = h[0][len("/sys/fs/cgroup/"):]
            if "/" in name:
                continue
            os.mkdir(name, 0o555, dir_fd=base_fd)
            sub = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=base_fd)
            try:
                _mount_one(m.fd_path(sub), h, flags, cgroupns, own)
            finally:
                os.close(sub)
            if not cgroupns:  # a bind mount takes its flags only on remount
                sub = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=base_fd)
                try:
                    m.mount(None, m.fd_path(sub), None, m.MS_BIND | m.MS_REMOUNT | flags,
                            what=f"remount {dest}/{name}")
                finally:
                    os.close(sub)
        if ro:
            m.mount(None, m.fd_path(base_fd), None, m.MS_REMOUNT | flags | m.MS_RDONLY, "mode=755",
                    what=f"read-only {dest}")
    finally:
        os.close(base_fd)


def _mount_one(target: str, hier: tuple[str, str, str], flags: int, cgroupns: bool,
               own: dict[str, str]) -> None:
    point, fstype, sopts = hier
    ctrls = ",".join(o for o in sopts.split(",") if o not in ("rw", "ro")
                     and not o.startswith(("nsdelegate", "memory_recursiveprot", "clone_children",
                                           "release_agent", "xattr", "noprefix", "cpuset_v2_mode",
                                           "favordynmods")))
    if cgroupns:
        m.mount(fstype, target, fstype, flags, ctrls if fstype == "cgroup" else None,
                what=f"{fstype} {ctrls} on {target}")
        return
    key = "" if fstype == "cgroup2" else ctrls.replace("name=", "name=")
    path = own.get(key, "/")
    if key not in own:  # e.g. "cpu,cpuacct" listed once: find the entry that names us
        for k, v in own.items():
            if set(k.split(",")) == set(ctrls.split(",")):
                path = v
    src = point + (path if path != "/" else "")
    m.mount(src, target, None, m.MS_BIND | m.MS_REC, what=f"bind {src} on {target}")

"""Namespaces: unshare(2) and setns(2)."""

from berth._sys import check, libc

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# runtime-spec namespace type -> (clone flag, name of the /proc/PID/ns entry)
NAMESPACES: dict[str, tuple[int, str]] = {
    "user": (CLONE_NEWUSER, "user"),
    "pid": (CLONE_NEWPID, "pid"),
    "mount": (CLONE_NEWNS, "mnt"),
    "uts": (CLONE_NEWUTS, "uts"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "network": (CLONE_NEWNET, "net"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
}

# Joining order: the user namespace first (it owns the others, and joining it
# grants the capabilities needed to join them), the mount namespace late (it
# changes root and cwd, after which the other /proc paths may be unreachable),
# cgroup after the process was placed in its cgroup.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "time", "cgroup", "mount")


def unshare(flags: int) -> None:
    """unshare(2) the namespaces in ``flags``."""
    check(libc.unshare(flags), f"unshare {flags:#x}")


def setns(fd: int, nstype: int = 0, what: str = "namespace") -> None:
    """setns(2) into the namespace open on ``fd``."""
    check(libc.setns(fd, nstype), f"setns {what}")

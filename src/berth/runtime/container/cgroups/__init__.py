"""Container cgroups on cgroup v1, v2 or hybrid hosts, detected at run time.

Front of two backends (``v1.V1Cgroup``, ``v2.V2Cgroup``) behind one interface
(``Cgroup`` in ``_base``)::

    cg = open_cgroup(config["linux"].get("cgroupsPath"), container_id)
    cg.create(); cg.apply(config["linux"].get("resources") or {}); cg.add(pid)
    state["cgroup"] = cg.to_state()        # later: Cgroup.from_state(...)

Layouts (read from /proc/self/mountinfo once per process):
- "v2": /sys/fs/cgroup is cgroup2 (most current distributions).
- "v1": only v1 hierarchies.
- "hybrid": v1 hierarchies with the controllers plus a cgroup2 (usually at
  /sys/fs/cgroup/unified) with none of them: resources go to v1, and the
  process is also placed in the unified hierarchy, as runc does.

cgroupsPath (runtime-spec): absolute → that path in every hierarchy;
relative → under the runtime's own cgroup in each hierarchy (runc's rule);
absent → ``/berth/<id>`` (absolute, unlike runc's relative ``<id>``: where a
container lands should not depend on which cgroup the calling shell or
service happens to be in; docker and containerd pass absolute paths too). ``..`` components and systemd-style
``slice:prefix:name`` paths are refused with a ConfigError.
"""

from __future__ import annotations

import os

from berth.errors import ConfigError, RuntimeFailure

from ._base import Cgroup

__all__ = ["Cgroup", "Layout", "detect", "features", "open_cgroup", "resolve_path"]

CGROUP_ROOT = "/sys/fs/cgroup"
_FS_OPTS = frozenset({"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "xattr"})


class Layout:
    """The cgroup hierarchies mounted on this host."""

    def __init__(
        self,
        v1: dict[str, tuple[str, str]],
        unified: tuple[str, str] | None,
    ) -> None:
        self.v1 = v1  # hierarchy key ("memory", "cpu,cpuacct", "name=systemd") -> (mountpoint, mount root)
        self.unified = unified  # (mountpoint, mount root) of the cgroup2 mount, if any

    @property
    def mode(self) -> str:
        controllers = [k for k in self.v1 if not k.startswith("name=")]
        if controllers:
            return "hybrid" if self.unified else "v1"
        if self.unified:
            return "v2"
        raise RuntimeFailure(f"find cgroups: no cgroup hierarchy is mounted under {CGROUP_ROOT}")

    def __repr__(self) -> str:
        return f"<Layout {self.mode} v1={sorted(self.v1)} unified={self.unified}>"


def parse_mountinfo(text: str) -> Layout:
    """Build a Layout from /proc/self/mountinfo text (cgroup mounts under /sys/fs/cgroup)."""
    v1: dict[str, tuple[str, str]] = {}
    unified = None
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields = pre.split()
        fstype, _source, superopts = (post.split() + ["", "", ""])[:3]
        if fstype not in ("cgroup", "cgroup2") or len(fields) < 5:
            continue
        root, mnt = _unescape(fields[3]), _unescape(fields[4])
        if not (mnt == CGROUP_ROOT or mnt.startswith(CGROUP_ROOT + "/")):
            continue  # e.g. a container's own /sys/fs/cgroup inside its rootfs
        if fstype == "cgroup2":
            unified = unified or (mnt, root)
            continue
        opts = [o for o in superopts.split(",") if o not in _FS_OPTS]
        # the key matches the middle field of /proc/self/cgroup ("cpu,cpuacct")
        key = ",".join(o for o in opts if not o.startswith("name=") and "=" not in o)
        key = key or next((o for o in opts if o.startswith("name=")), "")
        if key and key not in v1:
            v1[key] = (mnt, root)
    return Layout(v1, unified)


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in s:
        return s
    return s.encode().decode("unicode_escape")


_layout: Layout | None = None


def detect() -> Layout:
    """The host's cgroup layout (cached for the life of the process)."""
    global _layout
    if _layout is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                _layout = parse_mountinfo(f.read())
        except OSError as e:
            raise RuntimeFailure(f"read /proc/self/mountinfo: {os.strerror(e.errno)}") from None
    return _layout


def own_cgroups() -> dict[str, str]:
    """This process's cgroup per hierarchy key ("" is the v2 unified one)."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                out[parts[1]] = parts[2]
    return out


def resolve_path(cgroups_path: str | None, container_id: str) -> tuple[str, bool]:
    """Validate cgroupsPath; returns (normalized path, is_absolute).

    >>> resolve_path(None, "abc")
    ('/berth/abc', True)
    """
    if cgroups_path is None or cgroups_path == "":
        if not container_id or "/" in container_id or container_id in (".", "..") or "\0" in container_id:
            raise ConfigError(f"cgroup for container {container_id!r}: not a valid container ID")
        return f"/berth/{container_id}", True
    if not isinstance(cgroups_path, str):
        raise ConfigError(f"linux.cgroupsPath: expected a string, got {cgroups_path!r}")
    if "\0" in cgroups_path:
        raise ConfigError("linux.cgroupsPath: contains a NUL byte")
    if ":" in cgroups_path:
        raise ConfigError(
            f"linux.cgroupsPath {cgroups_path!r}: systemd-style slice:prefix:name paths "
            "are not supported (berth-runtime manages cgroupfs directly); use a path"
        )
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"linux.cgroupsPath {cgroups_path!r}: '..' is not allowed")
    if not parts:
        raise ConfigError(f"linux.cgroupsPath {cgroups_path!r}: names the root cgroup")
    absolute = cgroups_path.startswith("/")
    return ("/" if absolute else "") + "/".join(parts), absolute


def _dir_for(mount: tuple[str, str], own: str | None, inner: str, absolute: bool) -> str:
    mountpoint, root = mount
    if absolute:
        return mountpoint + inner
    base = own or "/"
    # The mount may show only a subtree (root != "/", e.g. inside a cgroup
    # namespace): our own path is then relative to that root.
    if root != "/" and (base == root or base.startswith(root.rstrip("/") + "/")):
        base = base[len(root.rstrip("/")):] or "/"
    return os.path.join(mountpoint + base.rstrip("/"), inner)


def open_cgroup(cgroups_path: str | None, container_id: str) -> Cgroup:
    """The (not yet created) cgroup for a container; call ``create()`` next."""
    inner, absolute = resolve_path(cgroups_path, container_id)
    layout = detect()
    mode = layout.mode
    own = {} if absolute else own_cgroups()
    if mode == "v2":
        from .v2 import V2Cgroup

        mnt = layout.unified
        assert mnt is not None
        d = _dir_for(mnt, own.get(""), inner, absolute)
        return V2Cgroup(_inner_of(d, mnt[0]), d, mnt[0])
    from .v1 import V1Cgroup

    dirs = {k: _dir_for(m, own.get(k), inner, absolute) for k, m in layout.v1.items()}
    mounts = {k: m[0] for k, m in layout.v1.items()}
    unified = None
    if layout.unified:
        unified = _dir_for(layout.unified, own.get(""), inner, absolute)
    return V1Cgroup(inner if absolute else "/" + inner, dirs, mounts, unified)


def _inner_of(d: str, mountpoint: str) -> str:
    return d[len(mountpoint):] or "/"


def features() -> dict:
    """The ``linux.cgroup`` part of ``berth-runtime features`` (runc's keys)."""
    from .devices_v2 import DEVICE_FILTER

    return {
        "v1": True,
        "v2": True,
        "systemd": False,
        "systemdUser": False,
        "rdma": False,
        # not a runc key: how linux.resources.devices is enforced on pure v2
        "org.berth.v2Devices": "ebpf" if DEVICE_FILTER else "not-enforced",
    }

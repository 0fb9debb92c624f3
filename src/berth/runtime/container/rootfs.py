"""The container's root filesystem: mounts, devices, pivot_root, masked paths.

Every destination inside the rootfs is opened with openat2(RESOLVE_IN_ROOT), so
a symlink in the image resolves as if the rootfs were "/" and can never point a
mount at the host; the mount then targets /proc/self/fd/N, i.e. exactly the
inode that was checked (CVE-2019-16884, CVE-2021-30465). proc and sysfs refuse
a destination that is, or passes through, a symlink at all. Masked files get
a /dev/null opened without following links and verified to be the 1:3
character device, never whatever the image put there (CVE-2025-31133).
"""

import errno
import os
import stat

from berth._sys import mount as m
from berth.errors import ConfigError, RuntimeFailure

_FLAGS = {
    "ro": (m.MS_RDONLY, True), "rw": (m.MS_RDONLY, False),
    "nosuid": (m.MS_NOSUID, True), "suid": (m.MS_NOSUID, False),
    "nodev": (m.MS_NODEV, True), "dev": (m.MS_NODEV, False),
    "noexec": (m.MS_NOEXEC, True), "exec": (m.MS_NOEXEC, False),
    "sync": (m.MS_SYNCHRONOUS, True), "async": (m.MS_SYNCHRONOUS, False),
    "dirsync": (m.MS_DIRSYNC, True), "remount": (m.MS_REMOUNT, True),
    "mand": (m.MS_MANDLOCK, True), "nomand": (m.MS_MANDLOCK, False),
    "atime": (m.MS_NOATIME, False), "noatime": (m.MS_NOATIME, True),
    "diratime": (m.MS_NODIRATIME, False), "nodiratime": (m.MS_NODIRATIME, True),
    "relatime": (m.MS_RELATIME, True), "norelatime": (m.MS_RELATIME, False),
    "strictatime": (m.MS_STRICTATIME, True), "nostrictatime": (m.MS_STRICTATIME, False),
    "bind": (m.MS_BIND, True), "rbind": (m.MS_BIND | m.MS_REC, True),
    "nosymfollow": (m.MS_NOSYMFOLLOW, True), "symfollow": (m.MS_NOSYMFOLLOW, False),
    "lazytime": (m.MS_LAZYTIME, True), "nolazytime": (m.MS_LAZYTIME, False),
    "silent": (m.MS_SILENT, True), "loud": (m.MS_SILENT, False),
}
PROPAGATION = {
    "private": m.MS_PRIVATE, "rprivate": m.MS_PRIVATE | m.MS_REC,
    "slave": m.MS_SLAVE, "rslave": m.MS_SLAVE | m.MS_REC,
    "shared": m.MS_SHARED, "rshared": m.MS_SHARED | m.MS_REC,
    "unbindable": m.MS_UNBINDABLE, "runbindable": m.MS_UNBINDABLE | m.MS_REC,
}
# Flags a bind remount must keep: they may be locked by a less privileged owner.
_STATVFS_LOCKED = ((os.ST_NOSUID, m.MS_NOSUID), (os.ST_NODEV, m.MS_NODEV),
                   (os.ST_NOEXEC, m.MS_NOEXEC), (os.ST_RDONLY, m.MS_RDONLY))
_IN_ROOT = m.RESOLVE_IN_ROOT | m.RESOLVE_NO_MAGICLINKS
_DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                    ("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
# sysctls that are per-namespace (runc's list); anything else would write the host's.
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def parse_options(options: list[str]) -> tuple[int, int, list[str]]:
    """(mount flags, propagation flags, filesystem data options) of a mounts[].options list."""
    flags = prop = 0
    data = []
    for o in options:
        if o in _FLAGS:
            bit, on = _FLAGS[o]
            flags = flags | bit if on else flags & ~bit
        elif o in PROPAGATION:
            prop |= PROPAGATION[o]
        elif o in ("tmpcopyup", "idmap", "ridmap"):
            raise ConfigError(f"mount option {o!r} is not supported")
        else:
            data.append(o)
    return flags, prop, data


def resolve(rootfd: int, path: str, extra: int = 0) -> int:
    """An O_PATH fd on ``path`` resolved inside the root open on ``rootfd``."""
    return m.openat2(rootfd, path.lstrip("/") or ".", os.O_PATH, _IN_ROOT | extra)


def ensure(rootfd: int, path: str, is_dir: bool, extra: int = 0) -> int:
    """Like ``resolve`` but creates what is missing (a file as the last component
    if not ``is_dir``), following the image's symlinks the way the kernel would
    if the rootfs were "/": an absolute link restarts at the rootfs, ".." stops
    at it (like securejoin's MkdirAll in runc).
    """
    try:
        return resolve(rootfd, path, extra)
    except FileNotFoundError:
        pass
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        parent = resolve(rootfd, "/".join(done), extra)
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                last = not parts
                if last and not is_dir:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=parent))
                else:
                    os.mkdir(name, 0o755, dir_fd=parent)
                done.append(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                if extra & m.RESOLVE_NO_SYMLINKS:
                    raise OSError(errno.ELOOP, f"{path}: symlink in the way", path)
                hops += 1
                if hops > 40:
                    raise ConfigError(f"mount destination {path}: too many levels of symlinks")
                target = os.readlink(name, dir_fd=parent)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(name)
        finally:
            os.close(parent)
    return resolve(rootfd, "/".join(done), extra)


def _locked_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(flag for st_bit, flag in _STATVFS_LOCKED if f & st_bit and flag != m.MS_RDONLY)


def mount_one(rootfd: int, mnt: dict, bundle: str, cgroupns: bool = False) -> None:
    """Perform one entry of config.json's mounts inside the rootfs."""
    dest = mnt["destination"]
    fstype = mnt.get("type") or ""
    flags, prop, data = parse_options(mnt.get("options", []))
    source = mnt.get("source") or fstype or "none"
    is_bind = fstype == "bind" or flags & m.MS_BIND
    what = f"{source} on {dest}"
    if is_bind:
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
        try:
            src_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as e:
            raise ConfigError(f"mount {what}: source: {e.strerror}") from None
        fd = ensure(rootfd, dest, src_dir)
    elif fstype in ("proc", "sysfs"):
        # CVE-2019-16884: /proc must be a real directory in the image, not a link.
        try:
            fd = ensure(rootfd, dest, True, m.RESOLVE_NO_SYMLINKS)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ConfigError(f"mount {fstype} on {dest}: destination is a symlink in the rootfs") from None
            raise
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(f"mount {fstype} on {dest}: destination is not a directory")
    else:
        fd = ensure(rootfd, dest, True)
    try:
        target = m.fd_path(fd)
        if fstype == "cgroup":
            from berth.runtime.container import cgroupfs

            cgroupfs.mount(target, dest, flags, cgroupns, lambda: resolve(rootfd, dest))
        elif is_bind:
            m.mount(source, target, None, m.MS_BIND | (flags & m.MS_REC), what=what)
            rest = flags & ~(m.MS_BIND | m.MS_REC)
            if rest:
                # A bind mount ignores other flags until remounted; keep locked ones.
                nfd = resolve(rootfd, dest)
                try:
                    t = m.fd_path(nfd)
                    m.mount(None, t, None, m.MS_BIND | m.MS_REMOUNT | rest | _locked_flags(t), what=what)
                finally:
                    os.close(nfd)
        else:
            m.mount(source, target, fstype, flags, ",".join(data) or None, what=what)
        if prop:
            nfd = resolve(rootfd, dest)
            try:
                m.mount(None, m.fd_path(nfd), None, prop, what=f"propagation of {dest}")
            finally:
                os.close(nfd)
    finally:
        os.close(fd)


def _mknod(rootfd: int, path: str, kind: str, major: int, minor: int, mode: int,
           uid: int, gid: int, userns: bool) -> None:
    parent, name = os.path.split(path)
    pfd = ensure(rootfd, parent, True)
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise ConfigError(f"create device {path}: a directory is in the way")
            # Whatever the image put here (a link to /proc/sys/...?) is replaced.
            os.unlink(name, dir_fd=pfd)
        except FileNotFoundError:
            pass
        if userns:
            # mknod is not allowed in a user namespace: bind the host's node.
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=pfd))
            nfd = resolve(rootfd, path)
            try:
                m.mount(path, m.fd_path(nfd), None, m.MS_BIND, what=f"device {path}")
            finally:
                os.close(nfd)
            return
        kind_bits = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
        os.mknod(name, kind_bits | (mode & 0o7777), os.makedev(major, minor), dir_fd=pfd)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(pfd)


def setup_dev(rootfd: int, cfg: dict, userns: bool) -> None:
    """Default devices, linux.devices, and the /dev links (like runc)."""
    made = set()
    for d in cfg["linux"].get("devices", ()):
        _mknod(rootfd, d["path"], d["type"], d.get("major", 0), d.get("minor", 0),
               d.get("fileMode", 0o666), d.get("uid", 0), d.get("gid", 0), userns)
        made.add(d["path"])
    for name, major, minor in _DEFAULT_DEVICES:
        if f"/dev/{name}" not in made:
            _mknod(rootfd, f"/dev/{name}", "c", major, minor, 0o666, 0, 0, userns)
    dfd = resolve(rootfd, "/dev")
    try:
        for name, target in _DEV_LINKS:
            try:
                os.symlink(target, name, dir_fd=dfd)
            except FileExistsError:
                pass
        if any(x["destination"].rstrip("/") == "/dev/pts" for x in cfg.get("mounts", ())):
            try:
                os.unlink("ptmx", dir_fd=dfd)
            except FileNotFoundError:
                pass
            os.symlink("pts/ptmx", "ptmx", dir_fd=dfd)
    finally:
        os.close(dfd)


def cgroup_mounts_deferrable(cfg: dict) -> bool:
    """Whether the cgroup mounts may be done last, after pivot_root: only in a
    new cgroup namespace (a fresh mount, no host path to bind), and only when
    no later mount, masked or read-only path lies below one of them."""
    mounts = cfg.get("mounts", [])
    linux = cfg["linux"]
    if not any(n["type"] == "cgroup" and not n.get("path") for n in linux.get("namespaces", ())):
        return False
    for i, mnt in enumerate(mounts):
        if mnt.get("type") != "cgroup":
            continue
        top = mnt["destination"].rstrip("/") + "/"
        later = [x["destination"] for x in mounts[i + 1:]]
        paths = later + linux.get("maskedPaths", []) + linux.get("readonlyPaths", [])
        if any((p.rstrip("/") + "/").startswith(top) for p in paths):
            return False
    return True


def mount_deferred(mounts: list[dict], bundle: str) -> None:
    """Do the cgroup mounts left out by ``prepare(defer_cgroup=True)``, inside
    the root we now have (after pivot_root)."""
    rootfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for mnt in mounts:
            mount_one(rootfd, mnt, bundle, True)
    finally:
        os.close(rootfd)


def prepare(rootfs: str, cfg: dict, bundle: str, userns: bool, before_cgroup=None,
            defer_cgroup: bool = False) -> list[dict]:
    """Make the new mount namespace's tree: propagation, root bind, mounts, /dev.

    ``before_cgroup()`` is called before a cgroup filesystem is mounted (the
    view depends on the cgroup we are in). With ``defer_cgroup`` those mounts
    are skipped and returned, for ``mount_deferred`` after pivot_root."""
    prop = cfg["linux"].get("rootfsPropagation") or "rslave"
    # Mount events must not leak back to the host: make everything slave (or
    # private) first, recursively; "shared" is applied to the rootfs afterwards.
    base = PROPAGATION["rprivate"] if prop in ("private", "rprivate") else PROPAGATION["rslave"]
    m.mount(None, "/", None, base, what="propagation of /")
    m.mount(rootfs, rootfs, None, m.MS_BIND | m.MS_REC, what=f"rootfs {rootfs}")
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    deferred = []
    try:
        mounts = cfg.get("mounts", [])
        cgroupns = any(n["type"] == "cgroup" for n in cfg["linux"].get("namespaces", ()))
        for mnt in mounts:
            if mnt.get("type") == "cgroup":
                if defer_cgroup:
                    from berth.runtime.container import cgroupfs

                    cgroupfs.host_hierarchies()  # read the host's mountinfo while we can
                    deferred.append(mnt)
                    continue
                if before_cgroup is not None:
                    before_cgroup()
            mount_one(rootfd, mnt, bundle, cgroupns)
        dev_bound = any(x["destination"].rstrip("/") == "/dev" and
                        (x.get("type") == "bind" or "bind" in x.get("options", ()) or "rbind" in x.get("options", ()))
                        for x in mounts)
        if not dev_bound:
            setup_dev(rootfd, cfg, userns)
    finally:
        os.close(rootfd)
    if prop in ("shared", "rshared", "slave", "unbindable", "runbindable", "private"):
        m.mount(None, rootfs, None, PROPAGATION[prop], what=f"propagation of {rootfs}")
    return deferred


def verified_null() -> int:
    """The container's /dev/null (after pivot_root), resolved inside the root and
    verified to be the 1:3 character device: masking with whatever the image
    put there could bind another file over a masked path (CVE-2025-31133).
    """
    rootfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = m.openat2(rootfd, "dev/null", os.O_PATH, _IN_ROOT)
    except OSError as e:
        raise RuntimeFailure(f"mask paths: open /dev/null: {os.strerror(e.errno)}") from None
    finally:
        os.close(rootfd)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise RuntimeFailure("mask paths: /dev/null in the container is not the null device")
    return fd


def pivot(rootfs: str) -> None:
    """pivot_root into ``rootfs`` and detach the old root (runc's pivot_root(".", ".") trick)."""
    oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    newroot = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(newroot)
        m.pivot_root(".", ".")
        os.fchdir(oldroot)
        # The old root must not propagate the unmount back to the host.
        m.mount(None, ".", None, m.MS_SLAVE | m.MS_REC, what="propagation of old root")
        m.umount2(".", m.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(oldroot)
        os.close(newroot)


def chroot(rootfs: str) -> None:
    """--no-pivot: move the rootfs over / and chroot (escapable by a privileged process)."""
    os.chdir(rootfs)
    m.mount(rootfs, "/", None, m.MS_MOVE, what=f"move {rootfs} to /")
    os.chroot(".")
    os.chdir("/")


def write_sysctls(sysctl: dict[str, str], ns_types: list[str]) -> None:
    """linux.sysctl, only for keys that belong to a namespace the container owns."""
    for key, value in sysctl.items():
        ok = ((key in _IPC_SYSCTLS or key.startswith("fs.mqueue.")) and "ipc" in ns_types) or \
             (key.startswith("net.") and "network" in ns_types) or \
             (key in ("kernel.hostname", "kernel.domainname") and "uts" in ns_types)
        if not ok or ".." in key or "/" in key:
            raise ConfigError(f"sysctl {key}: not namespaced or not in a namespace of the container")
        rel = key.replace(".", "/")
        dfd = os.open("/proc/sys", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = m.openat2(dfd, rel, os.O_WRONLY, m.RESOLVE_BENEATH | m.RESOLVE_NO_SYMLINKS
                           | m.RESOLVE_NO_MAGICLINKS)
        except OSError as e:
            raise ConfigError(f"sysctl {key}: {e.strerror}") from None
        finally:
            os.close(dfd)
        try:
            os.write(fd, value.encode())
        except OSError as e:
            raise ConfigError(f"sysctl {key}={value}: {e.strerror}") from None
        finally:
            os.close(fd)


def _each_in_root(paths: list[str]):
    """(path, O_PATH fd) for each of ``paths`` that exists, resolved inside "/"
    (after pivot_root); the fd is closed when the caller moves on."""
    rootfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for p in paths:
            try:
                fd = resolve(rootfd, p)
            except FileNotFoundError:
                continue
            try:
                yield p, fd
            finally:
                os.close(fd)
    finally:
        os.close(rootfd)


def readonly_paths(paths: list[str]) -> None:
    for p, fd in _each_in_root(paths):
        m.mount(m.fd_path(fd), m.fd_path(fd), None, m.MS_BIND | m.MS_REC, what=f"read-only {p}")
        # the fd names the directory under the new bind mount: open it again
        for _, top in _each_in_root([p]):
            t = m.fd_path(top)
            m.mount(None, t, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | m.MS_REC | _locked_flags(t),
                    what=f"read-only {p}")


def masked_paths(paths: list[str], null_fd: int) -> None:
    for p, fd in _each_in_root(paths):
        t = m.fd_path(fd)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            m.mount("tmpfs", t, "tmpfs", m.MS_RDONLY, what=f"mask {p}")
        else:
            m.mount(m.fd_path(null_fd), t, None, m.MS_BIND, what=f"mask {p}")


def readonly_root() -> None:
    m.mount(None, "/", None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | _locked_flags("/"),
            what="read-only /")

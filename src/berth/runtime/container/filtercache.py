"""Compiled seccomp programs cached under the runtime root.

libseccomp needs about 10 ms to compile docker's profile, on every container
start. The compiled classic-BPF program depends only on the profile and the
kernel, so it is kept in ROOT/.seccomp/<sha256>.bpf and loaded with
prctl(PR_SET_SECCOMP) next time. The directory and files must be ours and not
writable by anyone else, or the cache is ignored (a planted program would be a
filter of an attacker's choosing). Files are written atomically.
"""

import os
import stat

from berth.runtime import jsonio

CACHE_DIR = ".seccomp"


def _trusted(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def program(sc: dict, root: str) -> bytes | None:
    """The compiled program for linux.seccomp ``sc``; None if the cache is unusable."""
    from _sha256 import sha256

    u = os.uname()
    key = sha256(f"{jsonio.dumps_canonical(sc)}|{u.release}|{u.machine}".encode()).hexdigest()
    d = os.path.join(root, CACHE_DIR)
    path = os.path.join(d, key + ".bpf")
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        dst = os.lstat(d)
        if not stat.S_ISDIR(dst.st_mode) or not _trusted(dst):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return _compile(sc, path)
    except OSError:
        return None
    try:
        if not _trusted(os.fstat(fd)):
            return None
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        return data or None
    finally:
        os.close(fd)


def _compile(sc: dict, path: str) -> bytes | None:
    from berth.runtime.container import seccomp

    filt = seccomp.build(sc)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        filt.release()
        return None
    try:
        filt.export_bpf(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        os.fsync(fd)
        os.rename(tmp, path)
        return data
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return None
    finally:
        os.close(fd)
        filt.release()

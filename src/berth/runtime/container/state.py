"""Per-container state under the runtime root: IDs, state.json, derived status.

Layout: ROOT/ID/state.json (written atomically: temp file, fdatasync, rename) and
ROOT/ID/exec.fifo while the container is created but not started. The status
is never stored: it is derived from the init process (pid + start time, so a
reused pid is not mistaken for the container), the FIFO and the freezer.
"""

import os

from berth.errors import Conflict, NotFound, UsageError
from berth.runtime import jsonio

STATE = "state.json"
FIFO = "exec.fifo"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if gone or a zombie.

    Together with the pid it names one process across pid reuse. (A /proc
    read, no libc: state queries stay free of ctypes.)
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def check_id(cid: str) -> str:
    """Validate a container ID like runc (``^[\\w+-\\.]+$``, not ``.`` or ``..``).

    Raises:
        UsageError: empty, too long, or containing other characters (``/``, NUL…).
    """
    if not cid:
        raise UsageError("invalid container ID: empty")
    if len(cid.encode("utf-8", "surrogateescape")) > 1024:
        raise UsageError("invalid container ID: longer than 1024 bytes")
    if cid in (".", "..") or not _ID_CHARS.issuperset(cid):
        shown = cid.replace("\0", "\\0")
        raise UsageError(f"invalid container ID {shown!r}: use letters, digits, '_', '+', '-', '.'")
    return cid


def container_dir(root: str, cid: str) -> str:
    return os.path.join(root, check_id(cid))


def reserve(root: str, cid: str) -> str:
    """Create ROOT/ID atomically; the ID is taken if the directory exists."""
    os.makedirs(root, mode=0o711, exist_ok=True)
    d = container_dir(root, cid)
    try:
        os.mkdir(d, 0o711)
    except FileExistsError:
        raise Conflict(f"create container {cid}: ID already exists") from None
    return d


def write(d: str, state: dict, durable: bool = True) -> None:
    """Replace D/state.json atomically: temp file, fdatasync, rename.

    The directory is not fsynced (a journal commit: ~20 ms on this disk, per
    container): a rename lost to a power cut leaves the previous state, which
    reads as stopped and is cleaned by ``delete --force``, exactly like a crash
    just before the write. ``durable=False`` skips the fdatasync for the
    provisional record written before the container exists.
    """
    tmp = os.path.join(d, f".{STATE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, jsonio.dumps(state).encode())
        if durable:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(d, STATE))


def read(root: str, cid: str) -> dict:
    """The stored state of container ``cid``.

    Raises:
        NotFound: no such container.
    """
    d = container_dir(root, cid)
    try:
        with open(os.path.join(d, STATE), "rb") as f:
            return jsonio.loads(f.read().decode())
    except FileNotFoundError:
        if os.path.isdir(d):  # killed before the first state write: an empty, stopped shell
            return {"id": cid, "pid": 0, "incomplete": True}
        raise NotFound(f"container {cid} does not exist") from None
    except ValueError:
        return {"id": cid, "pid": 0, "incomplete": True}


def init_alive(st: dict) -> bool:
    pid = st.get("pid") or 0
    return pid > 0 and start_time(pid) == st.get("startTime")


def status(root: str, st: dict) -> str:
    """created, running, paused, stopped (or creating while a create is in flight)."""
    if not init_alive(st):
        creator = st.get("creator")
        if creator and start_time(creator[0]) == creator[1]:
            return "creating"
        return "stopped"
    if os.path.exists(os.path.join(root, st["id"], FIFO)):
        return "created"
    cg = st.get("cgroup")
    if cg:
        from berth.runtime.container import cgroups

        try:
            if cgroups.Cgroup.from_state(cg).is_frozen():
                return "paused"
        except OSError:
            pass
    return "running"


def list_ids(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(root, n))]

"""The interface both cgroup backends implement, and their file helpers.

Every cgroup operation is a read or write of one small file, so the helpers
here are the whole error idiom: a failed write becomes a ``RuntimeFailure``
naming the value, the file and the errno text, e.g.
``write 10 to /sys/fs/cgroup/pids/berth/x/pids.max: Invalid argument``.
"""

from __future__ import annotations

import errno
import os
import time

from berth.errors import ConfigError, RuntimeFailure

# rmdir of a cgroup whose last task has just exited can fail with EBUSY for a
# short while (the kernel releases the css asynchronously): retry this long.
RMDIR_RETRY_SECONDS = 1.0
# signal.SIGKILL without importing signal (and with it enum: ~3 ms at start-up)
SIGKILL = 9

# How long freeze() waits for every task to reach the frozen state.
FREEZE_TIMEOUT_SECONDS = 2.0


def write_raw(path: str, value: str) -> None:
    """Write ``value`` to the cgroup file ``path`` in one write(2); OSError on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def write(path: str, value: str) -> None:
    """``write_raw`` with the failure as a one-line ``RuntimeFailure``."""
    try:
        write_raw(path, value)
    except OSError as e:
        raise RuntimeFailure(f"write {value} to {path}: {os.strerror(e.errno)}") from None


def read(path: str) -> str:
    """The stripped content of a cgroup file; ``RuntimeFailure`` if unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError as e:
        raise RuntimeFailure(f"read {path}: {os.strerror(e.errno)}") from None


def read_opt(path: str) -> str | None:
    """Like ``read`` but ``None`` when the file does not exist."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise RuntimeFailure(f"read {path}: {os.strerror(e.errno)}") from None


def read_int(path: str) -> int | None:
    """An integer file (``max`` reads as -1); ``None`` if absent."""
    text = read_opt(path)
    if text is None:
        return None
    if text == "max":
        return -1
    return int(text)


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file (``key value`` lines, e.g. memory.events); {} if absent."""
    text = read_opt(path)
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, val = line.partition(" ")
        if val.strip().lstrip("-").isdigit():
            out[key] = int(val)
    return out


def mkdirs(path: str) -> list[str]:
    """``mkdir -p``; returns the directories it created, top-down (none on failure)."""
    made: list[str] = []
    todo: list[str] = []
    p = path
    while not os.path.isdir(p):
        todo.append(p)
        p = os.path.dirname(p)
    for d in reversed(todo):
        try:
            os.mkdir(d, 0o755)
            made.append(d)
        except FileExistsError:
            pass
        except OSError as e:
            rmdirs(made)
            raise RuntimeFailure(f"create cgroup {d}: {os.strerror(e.errno)}") from None
    return made


def rmdirs(made: list[str]) -> None:
    """Undo ``mkdirs``: remove the directories it made, deepest first."""
    for d in reversed(made):
        try:
            os.rmdir(d)
        except OSError:
            pass


def procs_recursive(top: str) -> list[int]:
    """Every PID in ``top`` and its descendant cgroups (cgroup.procs)."""
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(top):
        text = read_opt(os.path.join(dirpath, "cgroup.procs"))
        if text:
            pids.extend(int(x) for x in text.split())
    return pids


def rmtree_cgroup(top: str) -> None:
    """Remove the cgroup ``top`` and its sub-cgroups, deepest first.

    Cgroup directories hold only kernel files, so rmdir (never unlink) is the
    way to remove them; a cgroup with tasks gives EBUSY, retried briefly
    because a just-killed task is released asynchronously.
    """
    if not os.path.isdir(top):
        return
    dirs = [dirpath for dirpath, _d, _f in os.walk(top)]
    for d in reversed(dirs):  # os.walk is top-down: reversed is children first
        deadline = time.monotonic() + RMDIR_RETRY_SECONDS
        delay = 0.001
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise RuntimeFailure(
                        f"remove cgroup {d}: {os.strerror(e.errno)}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)


def signal_pids(pids: list[int], sig: int) -> None:
    """Send ``sig`` to each PID; ones that already exited are skipped."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def int_field(res: dict, key: str, where: str, *, minimum: int | None = None) -> int | None:
    """``res[key]`` as an int (absent or null → None); ConfigError on a bad type."""
    val = res.get(key)
    if val is None:
        return None
    if isinstance(val, bool) or not isinstance(val, int):
        raise ConfigError(f"{where}.{key}: expected an integer, got {val!r}")
    if minimum is not None and val < minimum:
        raise ConfigError(f"{where}.{key}: {val} is below the minimum {minimum}")
    return val


def str_field(res: dict, key: str, where: str) -> str | None:
    val = res.get(key)
    if val is None:
        return None
    if not isinstance(val, str):
        raise ConfigError(f"{where}.{key}: expected a string, got {val!r}")
    return val


def section(res: dict, key: str, where: str = "linux.resources") -> dict:
    """A sub-object of linux.resources ({} when absent)."""
    val = res.get(key)
    if val is None:
        return {}
    if not isinstance(val, dict):
        raise ConfigError(f"{where}.{key}: expected an object, got {type(val).__name__}")
    return val


# Below this a container dies before its first exec; the engine may apply
# docker's stricter 6 MB, the runtime refuses only what cannot work.
MIN_MEMORY_LIMIT = 1 << 20


def check_memory(
    limit: int | None, swap: int | None, reservation: int | None, usage: int | None, cgroup: str
) -> None:
    """The checks both backends make before writing memory limits."""
    w = "linux.resources.memory"
    if limit == 0:
        raise ConfigError(f"{w}.limit: 0 is not a limit (use -1 for unlimited)")
    if limit is not None and 0 < limit < MIN_MEMORY_LIMIT:
        raise ConfigError(f"{w}.limit: {limit} is below the minimum {MIN_MEMORY_LIMIT} (1 MiB)")
    if limit is not None and limit > 0 and usage and limit < usage:
        raise ConfigError(f"{w}.limit: {limit} is below the current usage {usage} of {cgroup}")
    if swap not in (None, 0, -1):
        if limit is None or limit == -1:
            raise ConfigError(f"{w}.swap: cannot limit swap without a memory limit")
        if swap < limit:
            raise ConfigError(f"{w}.swap: {swap} is below the memory limit {limit}")
    if reservation and reservation > 0 and limit and limit > 0 and reservation > limit:
        raise ConfigError(f"{w}.reservation: {reservation} is above the memory limit {limit}")


def device_rule(rule: object, i: int) -> tuple[bool, str]:
    """One linux.resources.devices entry as (allow, "type major:minor access")."""
    where = f"linux.resources.devices[{i}]"
    if not isinstance(rule, dict):
        raise ConfigError(f"{where}: expected an object")
    allow = rule.get("allow")
    if not isinstance(allow, bool):
        raise ConfigError(f"{where}.allow: expected true or false, got {allow!r}")
    typ = rule.get("type") or "a"
    if typ not in ("a", "b", "c"):
        raise ConfigError(f"{where}.type: {typ!r} is not one of a, b, c")
    nums = []
    for key in ("major", "minor"):
        n = rule.get(key)
        if n is None or n == -1:
            nums.append("*")
        elif isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{where}.{key}: expected a device number, got {n!r}")
        else:
            nums.append(str(n))
    access = rule.get("access") or "rwm"
    if not isinstance(access, str) or not access or set(access) - set("rwm"):
        raise ConfigError(f"{where}.access: {access!r} is not a combination of r, w, m")
    return allow, f"{typ} {nums[0]}:{nums[1]} {access}"


class Cgroup:
    """One container's cgroup, on whichever hierarchy layout the host has.

    Obtain one with ``berth.runtime.container.cgroups.open_cgroup`` (new
    container) or ``Cgroup.from_state`` (a container created earlier by
    another invocation of the runtime).
    """

    version = ""  # "v1" (also hybrid) or "v2"

    def __init__(self, path: str) -> None:
        self.path = path  # the cgroup path inside each hierarchy, e.g. "/berth/ID"

    # -- lifecycle ---------------------------------------------------------
    def create(self) -> None:
        """Make the cgroup directories (and parents); removes them again on failure."""
        raise NotImplementedError

    def apply(self, resources: dict) -> None:
        """Write runtime-spec linux.resources. Bad values raise ConfigError,
        kernel refusals RuntimeFailure; earlier sections may already be
        written then, so a failed create is followed by ``destroy()``."""
        raise NotImplementedError

    def add(self, pid: int) -> None:
        """Move the process ``pid`` (all its threads) into the cgroup."""
        raise NotImplementedError

    def destroy(self) -> None:
        """Remove the cgroup and its sub-cgroups, bottom-up; kills nothing and
        waits for nothing (kill_all first). EBUSY is retried for a moment."""
        raise NotImplementedError

    # -- processes ---------------------------------------------------------
    def pids(self) -> list[int]:
        """Every process in the cgroup and its sub-cgroups."""
        raise NotImplementedError

    def kill_all(self, sig: int) -> None:
        """Send ``sig`` to every process, frozen in place while listing."""
        raise NotImplementedError

    # -- freezer -----------------------------------------------------------
    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def is_frozen(self) -> bool:
        raise NotImplementedError

    # -- accounting --------------------------------------------------------
    def stats(self) -> dict:
        """{"memory": {usage, limit, max_usage, failcnt, oom_kill},
        "cpu": {usage_ns}, "pids": {current, limit}}; -1 is unlimited,
        None a value this host does not report."""
        raise NotImplementedError

    def oom_killed(self) -> bool:
        return bool(self.stats()["memory"].get("oom_kill"))

    # -- persistence -------------------------------------------------------
    def to_state(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_state(cls, d: dict) -> Cgroup:
        """Rebuild the object ``to_state`` described (in another process)."""
        if not isinstance(d, dict):
            raise ConfigError("cgroup state: expected an object")
        version = d.get("version")
        if version == "v1":
            from .v1 import V1Cgroup

            return V1Cgroup._from_state(d)
        if version == "v2":
            from .v2 import V2Cgroup

            return V2Cgroup._from_state(d)
        raise ConfigError(f"cgroup state: unknown version {version!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"

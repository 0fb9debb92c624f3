"""cgroup v2 backend: one directory in the unified hierarchy.

Rules from the kernel's cgroup-v2.rst this module follows:
- A controller's files appear in a cgroup only when its parent lists it in
  ``cgroup.subtree_control``, so ``create()`` enables the wanted controllers
  in every ancestor, top-down (as runc does), skipping any the kernel refuses.
- "No internal processes": a non-root cgroup with tasks cannot enable
  controllers for children, so the container cgroup is always a leaf.
- Freezing is ``cgroup.freeze``; it is complete when ``cgroup.events`` says
  ``frozen 1``. ``cgroup.kill`` (Linux 5.14) kills every task atomically.

Conversions from the runtime spec's v1-shaped values (same formulas as runc):
cpu.weight = 1 + (shares - 2) * 9999 / 262142; memory.swap.max = swap - limit;
io.weight = 1 + (blkio weight - 10) * 9999 / 990; -1 → "max".

Devices: v2 has no devices controller; linux.resources.devices becomes an
eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup
(``devices_v2``), with the v1 controller's semantics.
"""

from __future__ import annotations

import os
import time

from berth.errors import ConfigError, RuntimeFailure

from ._base import (
    FREEZE_TIMEOUT_SECONDS,
    SIGKILL,
    Cgroup,
    check_memory,
    device_rule,
    int_field,
    mkdirs,
    procs_recursive,
    read,
    read_int,
    read_keyed,
    read_opt,
    rmtree_cgroup,
    section,
    signal_pids,
    str_field,
    write,
)
from .v1 import KNOWN_RESOURCES

# Controllers create() enables down the path (those the parent offers).
DEFAULT_CONTROLLERS = frozenset({"cpu", "cpuset", "io", "memory", "pids", "hugetlb", "misc"})


# -- conversions (pure functions, unit-tested) ------------------------------
def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] → cpu.weight [1, 10000] (runc's formula)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] → io.weight [1, 10000] (runc's formula)."""
    if weight == 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap: int | None, limit: int | None) -> int | None:
    """The spec's memory+swap total → memory.swap.max (swap only); -1 = max.

    None means "do not write". Mirrors runc's ConvertMemorySwapToCgroupV2Value.
    """
    if limit == -1 and not swap:
        return -1  # unlimited memory, swap unset: both unlimited
    if swap is None or swap == 0:
        return None
    if swap == -1:
        return -1
    if not limit or limit == -1:
        raise ConfigError("linux.resources.memory.swap: cannot limit swap without a memory limit")
    if swap < limit:
        raise ConfigError(
            f"linux.resources.memory.swap: {swap} is below the memory limit {limit}"
        )
    return swap - limit


def cpu_max(quota: int | None, period: int | None) -> str | None:
    """cfs quota/period → the ``cpu.max`` line ("max 100000", "50000 100000")."""
    if not quota and not period:
        return None
    q = str(quota) if quota and quota > 0 else "max"
    return f"{q} {period or 100000}"


def _max(value: int) -> str:
    return "max" if value == -1 else str(value)


class V2Cgroup(Cgroup):
    """A container cgroup in the cgroup v2 unified hierarchy."""

    version = "v2"

    def __init__(
        self,
        path: str,
        dir: str,
        mountpoint: str,
        controllers: frozenset[str] | set[str] = DEFAULT_CONTROLLERS,
    ) -> None:
        super().__init__(path)
        self.dir = dir
        self.mountpoint = mountpoint
        self.controllers = frozenset(controllers)

    def _f(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # -- lifecycle ---------------------------------------------------------
    def create(self) -> None:
        mkdirs(self.dir)  # the only step that can fail; controllers are best effort
        if not self.controllers:
            return
        chain = []
        d = os.path.dirname(self.dir)
        while d.startswith(self.mountpoint):
            chain.append(d)
            if d == self.mountpoint:
                break
            d = os.path.dirname(d)
        for d in reversed(chain):  # top-down: a child can only offer what its parent enabled
            offered = set((read_opt(os.path.join(d, "cgroup.controllers")) or "").split())
            enabled = set((read_opt(os.path.join(d, "cgroup.subtree_control")) or "").split())
            for c in sorted((offered & self.controllers) - enabled):
                try:
                    write(os.path.join(d, "cgroup.subtree_control"), "+" + c)
                except RuntimeFailure:
                    # e.g. EBUSY (the ancestor has tasks) or cpu with RT tasks:
                    # apply() names the missing file if the controller is needed.
                    pass

    def add(self, pid: int) -> None:
        write(self._f("cgroup.procs"), str(pid))

    def destroy(self) -> None:
        # The kernel frees the device filter together with the cgroup.
        rmtree_cgroup(self.dir)

    # -- resources ---------------------------------------------------------
    def _write(self, name: str, value: str, controller: str) -> None:
        path = self._f(name)
        if not os.path.exists(path):
            raise RuntimeFailure(
                f"write {value} to {path}: the {controller} controller is not enabled "
                f"for {self.dir}"
            )
        write(path, value)

    def apply(self, resources: dict) -> None:
        if not isinstance(resources, dict):
            raise ConfigError("linux.resources: expected an object")
        unknown = set(resources) - KNOWN_RESOURCES
        if unknown:
            raise ConfigError(f"linux.resources: unknown field {sorted(unknown)[0]!r}")
        if resources.get("rdma"):
            raise ConfigError("linux.resources.rdma: not supported by berth-runtime")
        net = section(resources, "network")
        if net.get("classID") or net.get("priorities"):
            raise ConfigError("linux.resources.network: net_cls/net_prio do not exist on cgroup v2")
        self._apply_memory(section(resources, "memory"))
        self._apply_cpu(section(resources, "cpu"))
        self._apply_pids(section(resources, "pids"))
        self._apply_devices(resources.get("devices"))
        self._apply_io(section(resources, "blockIO"))
        self._apply_hugetlb(resources.get("hugepageLimits"))
        self._apply_unified(resources.get("unified"))

    def _apply_memory(self, mem: dict) -> None:
        w = "linux.resources.memory"
        limit = int_field(mem, "limit", w, minimum=-1)
        swap = int_field(mem, "swap", w, minimum=-1)
        reservation = int_field(mem, "reservation", w, minimum=-1)
        # swappiness, kernel, kernelTCP and disableOOMKiller have no v2 file: ignored (runc).
        usage = read_int(self._f("memory.current")) if limit and limit > 0 else None
        # memory.max below usage would not fail: the kernel would OOM-kill the container.
        check_memory(limit, swap, reservation, usage, self.dir)
        swap_max = swap_to_v2(swap, limit)
        if swap_max is not None and os.path.exists(self._f("memory.swap.max")):
            self._write("memory.swap.max", _max(swap_max), "memory")
        elif swap_max not in (None, -1):
            raise ConfigError(f"{w}.swap: swap accounting is off on this host")
        if limit is not None:
            self._write("memory.max", _max(limit), "memory")
        if reservation is not None:
            self._write("memory.low", _max(reservation), "memory")

    def _apply_cpu(self, cpu: dict) -> None:
        w = "linux.resources.cpu"
        shares = int_field(cpu, "shares", w, minimum=0)
        quota = int_field(cpu, "quota", w, minimum=-1)
        period = int_field(cpu, "period", w, minimum=0)
        burst = int_field(cpu, "burst", w, minimum=0)
        idle = int_field(cpu, "idle", w)
        if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
            raise ConfigError(f"{w}.realtimeRuntime: realtime scheduling is not supported on cgroup v2")
        cpus = str_field(cpu, "cpus", w)
        mems = str_field(cpu, "mems", w)
        if shares:
            if not 2 <= shares <= 262144:
                raise ConfigError(f"{w}.shares: {shares} is not between 2 and 262144")
            self._write("cpu.weight", str(shares_to_weight(shares)), "cpu")
        line = cpu_max(quota, period)
        if line:
            self._write("cpu.max", line, "cpu")
        if burst:
            self._write("cpu.max.burst", str(burst), "cpu")
        if idle:
            self._write("cpu.idle", str(idle), "cpu")
        if cpus:
            self._write("cpuset.cpus", cpus, "cpuset")
        if mems:
            self._write("cpuset.mems", mems, "cpuset")

    def _apply_pids(self, pids: dict) -> None:
        limit = int_field(pids, "limit", "linux.resources.pids")
        if limit:
            self._write("pids.max", str(limit) if limit > 0 else "max", "pids")

    def _apply_devices(self, rules: object) -> None:
        if not rules:
            return
        if not isinstance(rules, list):
            raise ConfigError("linux.resources.devices: expected a list")
        parsed = [device_rule(r, i) for i, r in enumerate(rules)]
        from . import devices_v2

        devices_v2.attach(self.dir, parsed)

    def _apply_io(self, bio: dict) -> None:
        w = "linux.resources.blockIO"
        weight = int_field(bio, "weight", w, minimum=0)
        if weight:
            if not 10 <= weight <= 1000:
                raise ConfigError(f"{w}.weight: {weight} is not between 10 and 1000")
            if os.path.exists(self._f("io.bfq.weight")):
                self._write("io.bfq.weight", str(weight), "io")
            else:
                self._write("io.weight", str(blkio_weight_to_io_weight(weight)), "io")
        keys = {
            "throttleReadBpsDevice": "rbps",
            "throttleWriteBpsDevice": "wbps",
            "throttleReadIOPSDevice": "riops",
            "throttleWriteIOPSDevice": "wiops",
        }
        for key, io_key in keys.items():
            entries = bio.get(key) or []
            if not isinstance(entries, list):
                raise ConfigError(f"{w}.{key}: expected a list")
            for i, e in enumerate(entries):
                where = f"{w}.{key}[{i}]"
                if not isinstance(e, dict):
                    raise ConfigError(f"{where}: expected an object")
                major = int_field(e, "major", where, minimum=0)
                minor = int_field(e, "minor", where, minimum=0)
                rate = int_field(e, "rate", where, minimum=0)
                if major is None or minor is None or rate is None:
                    raise ConfigError(f"{where}: needs major, minor and rate")
                self._write("io.max", f"{major}:{minor} {io_key}={rate or 'max'}", "io")

    def _apply_hugetlb(self, limits: object) -> None:
        if not limits:
            return
        if not isinstance(limits, list):
            raise ConfigError("linux.resources.hugepageLimits: expected a list")
        for i, h in enumerate(limits):
            where = f"linux.resources.hugepageLimits[{i}]"
            if not isinstance(h, dict):
                raise ConfigError(f"{where}: expected an object")
            size = str_field(h, "pageSize", where)
            limit = int_field(h, "limit", where, minimum=0)
            if not size or limit is None or "/" in size:
                raise ConfigError(f"{where}: needs pageSize and limit")
            self._write(f"hugetlb.{size}.max", str(limit), "hugetlb")

    def _apply_unified(self, unified: object) -> None:
        """linux.resources.unified: raw ``file: value`` writes, after the rest."""
        if not unified:
            return
        if not isinstance(unified, dict):
            raise ConfigError("linux.resources.unified: expected an object")
        for key, value in unified.items():
            where = f"linux.resources.unified[{key!r}]"
            if not isinstance(value, str):
                raise ConfigError(f"{where}: expected a string value")
            # Only "<controller>.<file>" names of this cgroup: no paths, no
            # cgroup.* core files (cgroup.procs would move tasks).
            ctrl, dot, rest = key.partition(".")
            if not dot or not ctrl or not rest or "/" in key or "\0" in key or key.startswith("."):
                raise ConfigError(f"{where}: not a cgroup interface file name")
            if ctrl == "cgroup":
                raise ConfigError(f"{where}: core cgroup.* files cannot be set")
            self._write(key, value, ctrl)

    # -- processes ---------------------------------------------------------
    def pids(self) -> list[int]:
        return procs_recursive(self.dir)

    def kill_all(self, sig: int) -> None:
        if sig == SIGKILL and os.path.exists(self._f("cgroup.kill")):
            write(self._f("cgroup.kill"), "1")
            return
        frozen = False
        if os.path.exists(self._f("cgroup.freeze")) and not self.is_frozen():
            try:
                self.freeze()
                frozen = True
            except RuntimeFailure:
                pass
        try:
            signal_pids(self.pids(), sig)
        finally:
            if frozen:
                self.thaw()

    # -- freezer -----------------------------------------------------------
    def _freeze_file(self) -> str:
        f = self._f("cgroup.freeze")
        if not os.path.exists(f):
            raise RuntimeFailure(f"freeze {self.dir}: the kernel has no cgroup v2 freezer (Linux 5.2+)")
        return f

    def freeze(self) -> None:
        write(self._freeze_file(), "1")
        deadline = time.monotonic() + FREEZE_TIMEOUT_SECONDS
        delay = 0.0005
        while read_keyed(self._f("cgroup.events")).get("frozen") != 1:
            if time.monotonic() > deadline:
                write(self._f("cgroup.freeze"), "0")
                raise RuntimeFailure(f"freeze {self.dir}: tasks did not stop in time")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def thaw(self) -> None:
        write(self._freeze_file(), "0")

    def is_frozen(self) -> bool:
        return read(self._freeze_file()) == "1"

    # -- accounting --------------------------------------------------------
    def stats(self) -> dict:
        cpu_stat = read_keyed(self._f("cpu.stat"))
        usec = cpu_stat.get("usage_usec")
        events = read_keyed(self._f("memory.events"))
        return {
            "memory": {
                "usage": read_int(self._f("memory.current")),
                "limit": read_int(self._f("memory.max")),
                "max_usage": read_int(self._f("memory.peak")),
                "failcnt": events.get("max"),
                "oom_kill": events.get("oom_kill", 0),
            },
            "cpu": {"usage_ns": usec * 1000 if usec is not None else None},
            "pids": {
                "current": read_int(self._f("pids.current")),
                "limit": read_int(self._f("pids.max")),
            },
        }

    # -- persistence -------------------------------------------------------
    def to_state(self) -> dict:
        return {
            "version": "v2",
            "path": self.path,
            "dir": self.dir,
            "mountpoint": self.mountpoint,
            "controllers": sorted(self.controllers),
        }

    @classmethod
    def _from_state(cls, d: dict) -> V2Cgroup:
        try:
            return cls(d["path"], d["dir"], d["mountpoint"], frozenset(d.get("controllers", ())))
        except (KeyError, TypeError) as e:
            raise ConfigError(f"cgroup state: missing field {e}") from None

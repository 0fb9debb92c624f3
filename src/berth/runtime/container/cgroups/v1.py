"""cgroup v1 backend: one directory per mounted hierarchy.

Used on pure-v1 hosts and on hybrid ones (controllers on v1, a bare cgroup2 at
/sys/fs/cgroup/unified). On hybrid hosts the process is also placed in the v2
unified hierarchy, as runc does, so that v2-aware tools (and systemd) see it;
no v2 controller is used there.

Order rules this module follows (each from the kernel's v1 documentation):
- cpuset: a new cgroup starts with empty ``cpuset.cpus``/``cpuset.mems`` and
  refuses tasks (ENOSPC) until both are set, so every level we create gets
  its parent's values before anything joins.
- memory: ``memory.memsw.limit_in_bytes`` must stay >= ``memory.limit_in_bytes``
  at every moment, so when both change the one that keeps that true goes first.
- devices: ``a`` is written to devices.deny first, then every rule in config
  order (allow → devices.allow, deny → devices.deny), like runc.
- cpu: cfs_period before cfs_quota; rt_period before rt_runtime.
"""

from __future__ import annotations

import errno
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
    rmdirs,
    rmtree_cgroup,
    section,
    signal_pids,
    str_field,
    write,
    write_raw,
)

# memory.limit_in_bytes reads back as PAGE_COUNTER_MAX * PAGE_SIZE when
# unlimited (9223372036854771712 on x86_64): report anything this big as -1.
_UNLIMITED_V1 = 1 << 62

KNOWN_RESOURCES = frozenset(
    {"memory", "cpu", "pids", "devices", "blockIO", "hugepageLimits", "network", "rdma", "unified"}
)


class V1Cgroup(Cgroup):
    """A container cgroup on cgroup v1 (plus the unified hierarchy if hybrid)."""

    version = "v1"

    def __init__(
        self,
        path: str,
        dirs: dict[str, str],
        mounts: dict[str, str],
        unified: str | None = None,
    ) -> None:
        super().__init__(path)
        self.dirs = dict(dirs)  # hierarchy ("cpu", "name=systemd", "cpu,cpuacct") -> dir
        self.mounts = dict(mounts)  # hierarchy -> its mountpoint
        self.unified = unified  # dir in the v2 unified hierarchy (hybrid hosts)

    # -- lookup ------------------------------------------------------------
    def controller_dir(self, controller: str) -> str | None:
        """The directory of ``controller`` (e.g. "memory"), None if not mounted."""
        for key, d in self.dirs.items():
            if controller in key.split(","):
                return d
        return None

    def _need(self, controller: str, what: str) -> str:
        d = self.controller_dir(controller)
        if d is None:
            raise ConfigError(
                f"{what}: the {controller} cgroup controller is not mounted on this host"
            )
        return d

    def _primary(self) -> str:
        """The directory used to list the cgroup's processes."""
        for c in ("freezer", "pids", "memory", "devices", "cpu"):
            d = self.controller_dir(c)
            if d:
                return d
        return next(iter(self.dirs.values()))

    # -- lifecycle ---------------------------------------------------------
    def create(self) -> None:
        made: list[str] = []
        try:
            for key, d in self.dirs.items():
                made += mkdirs(d)
                if "cpuset" in key.split(","):
                    self._fill_cpuset(key, d)
            if self.unified:
                made += mkdirs(self.unified)
        except RuntimeFailure:
            rmdirs(made)  # nothing half-made: not even in the hierarchies that worked
            raise

    def _fill_cpuset(self, key: str, leaf: str) -> None:
        """Copy cpus/mems down from the first ancestor that has them."""
        top = self.mounts[key]
        chain = []
        d = leaf
        while d != top and d.startswith(top + "/"):
            chain.append(d)
            d = os.path.dirname(d)
        parent = top
        for d in reversed(chain):
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not read(os.path.join(d, f)):
                    write(os.path.join(d, f), read(os.path.join(parent, f)))
            parent = d

    def add(self, pid: int) -> None:
        for d in self.dirs.values():
            write(os.path.join(d, "cgroup.procs"), str(pid))
        if self.unified:
            write(os.path.join(self.unified, "cgroup.procs"), str(pid))

    def destroy(self) -> None:
        errors = []
        for d in [*self.dirs.values(), *([self.unified] if self.unified else [])]:
            try:
                rmtree_cgroup(d)
            except RuntimeFailure as e:
                errors.append(str(e))
        if errors:
            raise RuntimeFailure("; ".join(errors))

    # -- resources ---------------------------------------------------------
    def apply(self, resources: dict) -> None:
        if not isinstance(resources, dict):
            raise ConfigError("linux.resources: expected an object")
        unknown = set(resources) - KNOWN_RESOURCES
        if unknown:
            raise ConfigError(f"linux.resources: unknown field {sorted(unknown)[0]!r}")
        if resources.get("unified"):
            raise ConfigError(
                "linux.resources.unified: needs cgroup v2, but this host's controllers are on cgroup v1"
            )
        if resources.get("rdma"):
            raise ConfigError("linux.resources.rdma: not supported by berth-runtime")
        self._apply_memory(section(resources, "memory"))
        self._apply_cpu(section(resources, "cpu"))
        self._apply_pids(section(resources, "pids"))
        self._apply_devices(resources.get("devices"))
        self._apply_blkio(section(resources, "blockIO"))
        self._apply_hugetlb(resources.get("hugepageLimits"))
        self._apply_network(section(resources, "network"))

    def _apply_memory(self, mem: dict) -> None:
        w = "linux.resources.memory"
        limit = int_field(mem, "limit", w, minimum=-1)
        swap = int_field(mem, "swap", w, minimum=-1)
        reservation = int_field(mem, "reservation", w, minimum=-1)
        swappiness = int_field(mem, "swappiness", w)
        oom_off = mem.get("disableOOMKiller")
        # "kernel" and "kernelTCP" are deprecated (kmem accounting is always
        # on since Linux 5.4 and the limits were removed in 6.x): ignored.
        if (
            limit is None
            and swap is None
            and reservation is None
            and swappiness is None
            and not oom_off
        ):
            return
        d = self._need("memory", w)
        if swap == 0:
            swap = None  # 0 means unset (runc)
        usage = read_int(os.path.join(d, "memory.usage_in_bytes")) if limit and limit > 0 else None
        check_memory(limit, swap, reservation, usage, d)
        if limit == -1 and swap is None:
            swap = -1  # unlimited memory with unset swap means both unlimited (runc)
        memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
        have_memsw = os.path.exists(memsw)
        if swap is not None and not have_memsw and swap not in (-1, limit):
            raise ConfigError(f"{w}.swap: swap accounting is off on this host (swapaccount=0)")
        lim_file = os.path.join(d, "memory.limit_in_bytes")
        if limit is not None and swap is not None and have_memsw:
            cur_sw = read_int(memsw) or 0
            if swap == -1 or (0 < cur_sw < swap):
                self._write_mem(memsw, swap)
                self._write_mem(lim_file, limit)
            else:
                self._write_mem(lim_file, limit)
                self._write_mem(memsw, swap)
        elif limit is not None:
            self._write_mem(lim_file, limit)
        elif swap is not None and have_memsw:
            self._write_mem(memsw, swap)
        if reservation is not None:
            write(os.path.join(d, "memory.soft_limit_in_bytes"), str(reservation))
        if swappiness is not None and swappiness != -1:
            if not 0 <= swappiness <= 100:
                raise ConfigError(f"{w}.swappiness: {swappiness} is not between 0 and 100")
            write(os.path.join(d, "memory.swappiness"), str(swappiness))
        if oom_off:
            write(os.path.join(d, "memory.oom_control"), "1")

    def _write_mem(self, path: str, value: int) -> None:
        try:
            write_raw(path, str(value))
        except OSError as e:
            if e.errno == errno.EBUSY:
                # The kernel could not reclaim enough to get under the new limit.
                d = os.path.dirname(path)
                usage = read_opt(os.path.join(d, "memory.usage_in_bytes"))
                raise ConfigError(
                    f"memory limit {value} is below the current usage {usage} of {d} "
                    f"(write {path}: {os.strerror(e.errno)})"
                ) from None
            raise RuntimeFailure(f"write {value} to {path}: {os.strerror(e.errno)}") from None

    def _apply_cpu(self, cpu: dict) -> None:
        w = "linux.resources.cpu"
        shares = int_field(cpu, "shares", w, minimum=0)
        quota = int_field(cpu, "quota", w, minimum=-1)
        period = int_field(cpu, "period", w, minimum=0)
        burst = int_field(cpu, "burst", w, minimum=0)
        rt_runtime = int_field(cpu, "realtimeRuntime", w, minimum=-1)
        rt_period = int_field(cpu, "realtimePeriod", w, minimum=0)
        idle = int_field(cpu, "idle", w)
        cpus = str_field(cpu, "cpus", w)
        mems = str_field(cpu, "mems", w)
        if any(v for v in (shares, quota, period, burst, rt_runtime, rt_period, idle)):
            d = self._need("cpu", w)
            if shares:
                f = os.path.join(d, "cpu.shares")
                write(f, str(shares))
                got = read_int(f)
                if got != shares:  # the kernel clamps to [2, 262144] silently
                    raise ConfigError(f"{w}.shares: {shares} is out of range (the kernel set {got})")
            if period:
                write(os.path.join(d, "cpu.cfs_period_us"), str(period))
            if quota:
                write(os.path.join(d, "cpu.cfs_quota_us"), str(quota))
            if burst:
                write(os.path.join(d, "cpu.cfs_burst_us"), str(burst))
            if rt_period or rt_runtime:
                if not os.path.exists(os.path.join(d, "cpu.rt_runtime_us")):
                    raise ConfigError(f"{w}.realtimeRuntime: the kernel has no RT group scheduling")
                if rt_period:
                    write(os.path.join(d, "cpu.rt_period_us"), str(rt_period))
                if rt_runtime:
                    write(os.path.join(d, "cpu.rt_runtime_us"), str(rt_runtime))
            if idle:
                write(os.path.join(d, "cpu.idle"), str(idle))
        if cpus or mems:
            d = self._need("cpuset", w)
            if cpus:
                write(os.path.join(d, "cpuset.cpus"), cpus)
            if mems:
                write(os.path.join(d, "cpuset.mems"), mems)

    def _apply_pids(self, pids: dict) -> None:
        limit = int_field(pids, "limit", "linux.resources.pids")
        if not limit:  # absent or 0: leave as is (runc)
            return
        d = self._need("pids", "linux.resources.pids")
        write(os.path.join(d, "pids.max"), str(limit) if limit > 0 else "max")

    def _apply_devices(self, rules: object) -> None:
        if not rules:
            return
        if not isinstance(rules, list):
            raise ConfigError("linux.resources.devices: expected a list")
        parsed = [device_rule(r, i) for i, r in enumerate(rules)]
        d = self._need("devices", "linux.resources.devices")
        write(os.path.join(d, "devices.deny"), "a")
        for allow, text in parsed:
            write(os.path.join(d, "devices.allow" if allow else "devices.deny"), text)

    def _apply_blkio(self, bio: dict) -> None:
        w = "linux.resources.blockIO"
        weight = int_field(bio, "weight", w, minimum=0)
        lists = {
            "weightDevice": "weight_device",
            "throttleReadBpsDevice": "throttle.read_bps_device",
            "throttleWriteBpsDevice": "throttle.write_bps_device",
            "throttleReadIOPSDevice": "throttle.read_iops_device",
            "throttleWriteIOPSDevice": "throttle.write_iops_device",
        }
        if not weight and not any(bio.get(k) for k in lists):
            return
        d = self._need("blkio", w)
        # blkio.weight is CFQ's; with BFQ (every kernel since 5.0) it is blkio.bfq.weight.
        prefix = "blkio." if os.path.exists(os.path.join(d, "blkio.weight")) else "blkio.bfq."
        if weight:
            write(os.path.join(d, prefix + "weight"), str(weight))
        for key, fname in lists.items():
            entries = bio.get(key) or []
            if not isinstance(entries, list):
                raise ConfigError(f"{w}.{key}: expected a list")
            for i, e in enumerate(entries):
                where = f"{w}.{key}[{i}]"
                if not isinstance(e, dict):
                    raise ConfigError(f"{where}: expected an object")
                major = int_field(e, "major", where, minimum=0)
                minor = int_field(e, "minor", where, minimum=0)
                val = int_field(e, "weight" if key == "weightDevice" else "rate", where, minimum=0)
                if major is None or minor is None or val is None:
                    raise ConfigError(f"{where}: needs major, minor and a value")
                target = prefix + fname if key == "weightDevice" else "blkio." + fname
                write(os.path.join(d, target), f"{major}:{minor} {val}")

    def _apply_hugetlb(self, limits: object) -> None:
        if not limits:
            return
        if not isinstance(limits, list):
            raise ConfigError("linux.resources.hugepageLimits: expected a list")
        d = self._need("hugetlb", "linux.resources.hugepageLimits")
        for i, h in enumerate(limits):
            where = f"linux.resources.hugepageLimits[{i}]"
            if not isinstance(h, dict):
                raise ConfigError(f"{where}: expected an object")
            size = str_field(h, "pageSize", where)
            limit = int_field(h, "limit", where, minimum=0)
            if not size or limit is None or "/" in size:
                raise ConfigError(f"{where}: needs pageSize and limit")
            write(os.path.join(d, f"hugetlb.{size}.limit_in_bytes"), str(limit))

    def _apply_network(self, net: dict) -> None:
        w = "linux.resources.network"
        classid = int_field(net, "classID", w, minimum=0)
        prios = net.get("priorities") or []
        if classid:
            d = self._need("net_cls", w)
            write(os.path.join(d, "net_cls.classid"), str(classid))
        if prios:
            d = self._need("net_prio", w)
            for i, p in enumerate(prios):
                where = f"{w}.priorities[{i}]"
                if not isinstance(p, dict):
                    raise ConfigError(f"{where}: expected an object")
                name = str_field(p, "name", where)
                prio = int_field(p, "priority", where, minimum=0)
                if not name or prio is None:
                    raise ConfigError(f"{where}: needs name and priority")
                write(os.path.join(d, "net_prio.ifpriomap"), f"{name} {prio}")

    # -- processes ---------------------------------------------------------
    def pids(self) -> list[int]:
        return procs_recursive(self._primary())

    def kill_all(self, sig: int) -> None:
        # Freeze first so that nothing forks between listing and signalling.
        has_freezer = self.controller_dir("freezer") is not None
        was_frozen = has_freezer and self.is_frozen()
        frozen = False
        if has_freezer and not was_frozen:
            try:
                self.freeze()
                frozen = True
            except RuntimeFailure:
                pass  # signal anyway; a task stuck in freezing still gets it
        try:
            signal_pids(self.pids(), sig)
        finally:
            # A v1-frozen task only acts on SIGKILL once thawed, so a kill of a
            # paused container thaws it too (as runc does); other signals leave
            # a paused container paused.
            if frozen or (was_frozen and sig == SIGKILL):
                self.thaw()

    # -- freezer -----------------------------------------------------------
    def _state_file(self) -> str:
        return os.path.join(self._need("freezer", "freeze"), "freezer.state")

    def freeze(self) -> None:
        f = self._state_file()
        write(f, "FROZEN")
        deadline = time.monotonic() + FREEZE_TIMEOUT_SECONDS
        delay = 0.0005
        while read(f) != "FROZEN":
            if time.monotonic() > deadline:
                write(f, "THAWED")
                raise RuntimeFailure(f"freeze {os.path.dirname(f)}: tasks did not stop in time")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
            # A task that was forking when we froze can leave the cgroup in
            # FREEZING; writing FROZEN again retries it (as runc does).
            write(f, "FROZEN")

    def thaw(self) -> None:
        write(self._state_file(), "THAWED")

    def is_frozen(self) -> bool:
        return read(self._state_file()) == "FROZEN"

    # -- accounting --------------------------------------------------------
    def stats(self) -> dict:
        mem: dict = {}
        d = self.controller_dir("memory")
        if d:
            limit = read_int(os.path.join(d, "memory.limit_in_bytes"))
            mem = {
                "usage": read_int(os.path.join(d, "memory.usage_in_bytes")),
                "limit": -1 if limit is not None and limit >= _UNLIMITED_V1 else limit,
                "max_usage": read_int(os.path.join(d, "memory.max_usage_in_bytes")),
                "failcnt": read_int(os.path.join(d, "memory.failcnt")),
                "oom_kill": read_keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0),
            }
        cpu: dict = {}
        d = self.controller_dir("cpuacct")
        if d:
            cpu["usage_ns"] = read_int(os.path.join(d, "cpuacct.usage"))
        pids: dict = {}
        d = self.controller_dir("pids")
        if d:
            pids = {
                "current": read_int(os.path.join(d, "pids.current")),
                "limit": read_int(os.path.join(d, "pids.max")),
            }
        return {"memory": mem, "cpu": cpu, "pids": pids}

    # -- persistence -------------------------------------------------------
    def to_state(self) -> dict:
        return {
            "version": "v1",
            "path": self.path,
            "dirs": self.dirs,
            "mounts": self.mounts,
            "unified": self.unified,
        }

    @classmethod
    def _from_state(cls, d: dict) -> V1Cgroup:
        try:
            return cls(d["path"], d["dirs"], d["mounts"], d.get("unified"))
        except (KeyError, TypeError) as e:
            raise ConfigError(f"cgroup state: missing field {e}") from None

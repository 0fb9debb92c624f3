"""``system info``, ``system df``, ``system prune`` and ``version``."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from berth import __version__
from berth.engine.volumes import Volumes, dir_size


def version(engine) -> dict[str, Any]:
    rt = ""
    try:
        rt = subprocess.run([engine.runtime, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"Version": __version__, "ApiVersion": "1.43", "Os": "linux", "Arch": platform.machine(),
            "KernelVersion": platform.release(), "Runtime": engine.runtime,
            "RuntimeVersion": (rt.splitlines() or [""])[0]}


def info(engine) -> dict[str, Any]:
    items = engine.list(all=True)
    count = lambda s: sum(1 for _, rs in items if rs.status == s)  # noqa: E731
    unified = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    hybrid = os.path.exists("/sys/fs/cgroup/unified")
    from berth.engine.backends import vm_available

    accel = None
    if vm_available():
        try:
            from berth.runtime.vm.accel import probe  # cached after the first run

            name, reason = probe()
            accel = {"Name": name, "Reason": reason}
        except ImportError:
            pass
        except Exception as e:  # noqa: BLE001 - info reports, never fails
            accel = {"Name": None, "Reason": str(e)}
    return {
        "Containers": len(items), "ContainersRunning": count("running"), "ContainersPaused": count("paused"),
        "ContainersStopped": count("exited") + count("created"),
        "ServerVersion": __version__, "Driver": "overlay",
        "LoggingDriver": "json-file", "CgroupVersion": "2" if unified else "1",
        "CgroupDriver": "cgroupfs", "CgroupLayout": "unified" if unified else ("hybrid" if hybrid else "legacy"),
        "KernelVersion": platform.release(), "OperatingSystem": _os_name(), "Architecture": platform.machine(),
        "NCPU": os.cpu_count(), "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "DockerRootDir": str(engine.root), "DefaultRuntime": engine.runtime,
        "Isolation": ["container", "vm"] if vm_available() else ["container"],
        "VMAccelerator": accel,
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def df(engine) -> list[dict[str, Any]]:
    """Disk use by type: Images, Containers, Local Volumes."""
    items = engine.list(all=True)
    csize = sum(dir_size(engine.cdir(r["Id"]) / "upper") + _logs_size(engine.cdir(r["Id"])) for r, _ in items)
    vols = Volumes(engine.root, engine.state).list()
    vsize = sum(dir_size(Path(v["Mountpoint"])) for v in vols)
    isize, icount = 0, 0
    try:
        from berth.image.store import ImageStore

        st = ImageStore(engine.root)
        imgs = st.list()
        icount, isize = len(imgs), sum(getattr(i, "size", 0) for i in imgs)
    except ImportError:
        pass
    return [
        {"Type": "Images", "Total": icount, "Active": len({r["ImageID"] for r, _ in items}), "Size": isize},
        {"Type": "Containers", "Total": len(items),
         "Active": sum(1 for _, rs in items if rs.status in ("running", "paused")), "Size": csize},
        {"Type": "Local Volumes", "Total": len(vols), "Active": sum(1 for v in vols if Volumes(engine.root, engine.state).users(v["Name"])),
         "Size": vsize},
    ]


def _logs_size(cdir: Path) -> int:
    return sum(p.stat().st_size for p in cdir.glob("container.log*") if p.is_file())


def _locked(engine) -> set[str]:
    """IDs whose container lock someone holds right now (a start in progress)."""
    import fcntl

    held = set()
    base = engine.root / "locks"
    for p in base.iterdir() if base.is_dir() else ():
        try:
            fd = os.open(p, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.add(p.name)
        finally:
            os.close(fd)
    return held


def prune(engine, volumes: bool = False, all_images: bool = False) -> dict[str, Any]:
    """Remove stopped containers, what crashed runs left behind, and unused volumes with ``volumes``.

    Leftovers: container directories with no database row (a crash between
    mkdir and insert), runtime state of containers that no longer exist, and
    cgroups under berth/ for unknown IDs.
    """
    removed = []
    for rec, rs in engine.list(all=True):
        if rs.status in ("exited", "created"):
            engine.remove(rec["Id"], force=True)
            removed.append(rec["Id"])
    known = {r["Id"] for r in engine.state.containers()}
    # a run being started holds its container's lock, and stores its row
    # only while its container is created: not a leftover
    known |= _locked(engine)
    leftovers = []
    cbase = engine.root / "containers"
    if cbase.is_dir():
        for d in cbase.iterdir():
            if d.name not in known:
                engine._rt("delete", "--force", d.name)
                engine._teardown_dir(d)
                leftovers.append(d.name)
    rroot = Path(engine.runtime_root)
    if rroot.is_dir():
        for d in rroot.iterdir():
            if d.is_dir() and d.name not in known:
                engine._rt("delete", "--force", d.name)
                shutil.rmtree(d, ignore_errors=True)
                leftovers.append(d.name)
    for cg in [Path("/sys/fs/cgroup/berth"), *Path("/sys/fs/cgroup").glob("*/berth")]:
        if cg.is_dir():
            for d in cg.iterdir():
                # only IDs this root created (containers/<id> existed): 64 hex, not known, under our leftovers
                if d.is_dir() and d.name in leftovers:
                    try:
                        d.rmdir()
                    except OSError:
                        pass
    from berth.engine.netsetup import _network_lib

    lib = _network_lib()
    if lib is not None:
        gone = lib.NetworkManager(str(engine.root)).cleanup_orphans(known)
        for items in gone.values():
            leftovers.extend(items)
        nsdir = engine.root / "netns"
        if nsdir.is_dir():
            for ns in nsdir.iterdir():
                if ns.name not in known:
                    lib.remove_netns(str(ns))
                    leftovers.append(ns.name)
    vols: list[str] = []
    if volumes:
        vols, _ = Volumes(engine.root, engine.state).prune()
    # dangling images (every unused one with all_images), never one a container uses
    from berth.image.store import ImageStore

    store = ImageStore(engine.root)
    store.set_in_use_hook(engine.images_in_use)
    images, freed = store.prune(all_images=all_images) if store.base.exists() else ([], 0)
    return {"ContainersDeleted": removed, "Leftovers": sorted(set(leftovers)), "VolumesDeleted": vols,
            "ImagesDeleted": images, "SpaceReclaimed": freed}


def reset(engine) -> dict[str, Any]:
    """Remove everything this root holds (podman's ``system reset``).

    Every container (forced), every volume (named ones too), every image, every
    network *including the default bridge*, and with the last network berth's
    nft table for this root. ``prune`` keeps the default network because
    containers expect it, as docker keeps docker0; a root that is about to be
    deleted (a test's, a benchmark's) must not leave its bridge and rules on
    the host, so this is the call to make before deleting one.
    """
    removed = []
    for rec, _ in engine.list(all=True):
        engine.remove(rec["Id"], force=True, volumes=True)
        removed.append(rec["Id"])
    result = prune(engine, volumes=True, all_images=True)
    vols, _ = Volumes(engine.root, engine.state).prune(all_volumes=True)
    from berth.engine.netsetup import _network_lib

    networks: list[str] = []
    lib = _network_lib()
    if lib is not None and (engine.root / "networks").is_dir():
        nm = lib.NetworkManager(str(engine.root))
        networks = nm.prune()
        nm.remove_default()
        networks.append("bridge")
    result["ContainersDeleted"] = removed + result["ContainersDeleted"]
    result["VolumesDeleted"] = sorted(set(result["VolumesDeleted"]) | set(vols))
    result["NetworksDeleted"] = networks
    return result

"""Fixtures for the microVM tests: a shared cache (initramfs, ext4 base, accel probe)
and a helper that runs one VM to its end and always removes it."""

import io
import os
import shutil
from pathlib import Path

import pytest

from berth.runtime.vm.instance import VMInstance
from berth.runtime.vm.state import sock_dir_for

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pytest_collection_modifyitems(config, items):
    if shutil.which("qemu-system-x86_64") is None or not list(Path("/boot").glob("vmlinuz-*-cloud-amd64")):
        skip = pytest.mark.skip(reason="needs qemu-system-x86 and linux-image-cloud-amd64 (scripts/setup.sh)")
        for item in items:
            if "vm" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def vm_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vm-cache")


def oci_config(args, env=None, cwd="/", uid=0, gid=0, gids=(), hostname="guest", mounts=(), process=None, linux=None):
    cfg = {
        "ociVersion": "1.0.2",
        "process": {"args": list(args), "env": [PATH_ENV, *(env or [])], "cwd": cwd,
                    "user": {"uid": uid, "gid": gid, "additionalGids": list(gids)}},
        "root": {"path": "rootfs"},
        "hostname": hostname,
        "mounts": list(mounts),
    }
    cfg["process"].update(process or {})
    if linux:
        cfg["linux"] = linux
    return cfg


class Runner:
    """Creates VMs under tmp_path and removes each one even when a test fails."""

    def __init__(self, tmp_path: Path, cache: Path, rootfs: Path):
        self.tmp = tmp_path
        self.cache = cache
        self.rootfs = rootfs
        self.vms: list[VMInstance] = []
        self.n = 0

    def create(self, args, rootfs=None, **kw) -> VMInstance:
        self.n += 1
        cfg_kw = {k: kw.pop(k) for k in ("env", "cwd", "uid", "gid", "gids", "hostname", "mounts", "process", "linux") if k in kw}
        vm = VMInstance.create(f"t{os.getpid()}-{self.n}", oci_config(args, **cfg_kw), rootfs or self.rootfs,
                               self.tmp / f"vm{self.n}", cache_dir=self.cache, **kw)
        self.vms.append(vm)
        return vm

    def run(self, args, stdin=None, **kw) -> tuple[int, str, str]:
        vm = self.create(args, **kw)
        out, err = io.BytesIO(), io.BytesIO()
        vm.start(stdin=stdin, stdout=out, stderr=err)
        code = vm.wait()
        return code, out.getvalue().decode(), err.getvalue().decode()

    def cleanup(self) -> None:
        for vm in self.vms:
            try:
                vm.delete(force=True)
            except Exception:  # noqa: BLE001 - best effort in a finalizer
                pass
            shutil.rmtree(sock_dir_for(vm.state_dir), ignore_errors=True)


@pytest.fixture
def vms(tmp_path, vm_cache, busybox_rootfs_template):
    r = Runner(tmp_path, vm_cache, busybox_rootfs_template)
    yield r
    r.cleanup()

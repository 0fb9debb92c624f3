"""The microVM backend booting real QEMU guests (TCG here: 2-3 s a boot)."""

import io
import json
import os
import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from berth.errors import NotFound
from berth.runtime.container.seccomp_profile import default_profile
from berth.runtime.vm import confine
from berth.runtime.vm.instance import BootTimeout, VMFailure, VMInstance
from berth.runtime.vm.state import sock_dir_for

pytestmark = pytest.mark.vm


def _cgroup_dirs(state: dict) -> list[str]:
    found = []

    def walk(v):
        if isinstance(v, str) and v.startswith("/sys/fs/cgroup/"):
            found.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk({k: v for k, v in state.items() if k != "mounts"})
    return found


def test_output_streams_and_exit_code_are_the_workloads(vms):
    code, out, err = vms.run(["sh", "-c", "echo hello; echo oops >&2; exit 7"])
    assert (code, out, err) == (7, "hello\n", "oops\n")


def test_env_cwd_user_groups_and_hostname_apply(vms):
    code, out, _ = vms.run(
        ["sh", "-c", 'echo "$FOO"; pwd; id -u; id -g; id -G; hostname'],
        env=["FOO=bar baz"], cwd="/tmp", uid=65534, gid=65534, gids=[10, 20], hostname="vmhost",
    )
    assert code == 0
    assert out.splitlines() == ["bar baz", "/tmp", "65534", "65534", "65534 10 20", "vmhost"]


DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def test_oci_capabilities_rlimits_and_no_new_privs_apply_inside_the_guest(vms):
    caps = {k: DOCKER_CAPS for k in ("bounding", "effective", "permitted")}
    code, out, err = vms.run(
        ["sh", "-c", "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; ulimit -n; "
                     "mount -t tmpfs x /mnt 2>/dev/null && echo MOUNTED"],
        process={"capabilities": caps, "noNewPrivileges": True,
                 "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 1000}]},
        linux={"seccomp": default_profile()},  # docker's profile: an ordinary shell still works
    )
    assert code != 0 and "MOUNTED" not in out, err  # mount needs CAP_SYS_ADMIN, not in docker's set
    fields = dict(line.split(":\t") for line in out.splitlines()[:3])
    assert fields["CapBnd"] == fields["CapEff"] == "00000000a80425fb"  # docker's default set
    assert fields["NoNewPrivs"] == "1"
    assert out.splitlines()[3] == "1000"


def test_oci_seccomp_profile_is_enforced_inside_the_guest(vms):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    cfg_linux = {"seccomp": profile}
    vm = vms.create(["sh", "-c", "grep -E '^Seccomp:' /proc/self/status; mkdir /tmp/blocked || echo REFUSED"])
    init = json.loads((vm.state_dir / "config.init.json").read_text())
    assert "seccomp" not in init["process"]  # no profile in the config: none in the guest
    vm.delete()
    # (through the fixture: `from conftest import` finds tests/engine's conftest when both run)
    vm = vms.create(["sh", "-c", "grep -E '^Seccomp:' /proc/self/status; mkdir /tmp/blocked || echo REFUSED"],
                    linux=cfg_linux)
    out = io.BytesIO()
    vm.start(stdout=out, stderr=io.BytesIO())
    assert vm.wait() == 0
    assert out.getvalue().decode().split() == ["Seccomp:", "2", "REFUSED"]


def test_stdin_is_forwarded_and_closed(vms):
    data = b"line one\n" + b"x" * 40000 + b"\nend\n"
    code, out, _ = vms.run(["sh", "-c", "wc -c; echo done"], stdin=data)
    assert code == 0
    assert out.split() == [str(len(data)), "done"]


def test_missing_command_exits_127_with_one_line(vms):
    code, out, err = vms.run(["no-such-binary"])
    assert code == 127
    assert "no-such-binary" in err and err.count("\n") == 1


def test_guest_runs_its_own_kernel_and_sees_no_host_processes(vms):
    # User processes only (kernel threads have an empty cmdline).
    code, out, _ = vms.run(["sh", "-c", "uname -r; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] != platform.release()
    cmds = {line.split()[0] for line in lines[1:] if line.strip()}
    assert cmds <= {"/init", "sh", "tr"}, cmds  # the agent, the workload, its child
    assert os.getpid() > 0 and not any("python" in c or "pytest" in c or "qemu" in c for c in cmds)


def test_qemu_runs_unprivileged_in_seccomp_in_its_own_cgroup(vms):
    vm = vms.create(["sh", "-c", "echo up; exec sleep 300"])
    out = io.BytesIO()
    vm.start(stdout=out)
    for _ in range(200):
        if out.getvalue():
            break
        time.sleep(0.05)
    status = dict(line.split(":", 1) for line in open(f"/proc/{vm.pid}/status"))
    uids = status["Uid"].split()
    assert "0" not in uids and uids[0] == status["Gid"].split()[0]
    assert status["Seccomp"].strip() == "2"
    assert os.readlink(f"/proc/{vm.pid}/root") == str(vm.state_dir / "jail")
    assert vm.pid in confine.from_state(vm.state.cgroup).pids()
    vm.kill()
    with pytest.raises(VMFailure):
        vm.wait()


def test_workload_dev_has_no_host_channels_or_disks(vms):
    code, out, _ = vms.run(["ls", "/dev"])
    assert code == 0
    names = set(out.split())
    assert names >= {"null", "zero", "urandom", "pts", "shm"}
    assert not any(n.startswith(("vport", "vd", "ttyS", "console", "kmsg", "mem")) for n in names), names


def test_exec_and_stop_from_another_handle(vms):
    vm = vms.create(["sh", "-c", "echo up; exec sleep 300"])
    out = io.BytesIO()
    vm.start(stdout=out)
    other = VMInstance.load(vm.state_dir)  # what a second process would do
    for _ in range(200):
        if out.getvalue():
            break
        time.sleep(0.05)
    eout, eerr = io.BytesIO(), io.BytesIO()
    code = other.exec(["sh", "-c", "echo in-vm $(id -u) $(pwd); cat; exit 3"], cwd="/etc", user="65534:65534",
                      stdin=b"piped\n", stdout=eout, stderr=eerr)
    assert code == 3
    assert eout.getvalue().decode().splitlines() == ["in-vm 65534 /etc", "piped"]
    assert other.exec(["true"]) == 0
    outs = [io.BytesIO() for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:  # three exec ports at once
        codes = list(pool.map(lambda i: other.exec(["sh", "-c", f"sleep 1; echo s{i}; exit {i}"], stdout=outs[i]),
                              range(3)))
    assert codes == [0, 1, 2] and [o.getvalue() for o in outs] == [b"s0\n", b"s1\n", b"s2\n"]
    assert other.stats()["memory"]["usage"] > 0
    other.pause()
    assert other.paused()
    other.resume()
    assert not other.paused()
    tout = io.BytesIO()
    assert other.exec(["sh", "-c", "tty; stty size"], tty=True, stdout=tout) == 0
    assert tout.getvalue().decode().split()[0].startswith("/dev/pts/")
    other.stop(timeout=10)
    assert vm.wait() == 143  # sleep ended by the SIGTERM that stop sent
    assert not vm.state.qemu_alive()


def test_virtiofs_volume_is_shared_and_read_only_volume_is_enforced(vms, tmp_path):
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "given").write_text("from host\n")
    code, out, err = vms.run(
        ["sh", "-c", "echo from guest > /data/out; cat /in/given; touch /in/x 2>/dev/null && echo WROTE"],
        volumes=[(rw, "/data", False), (ro, "/in", True)],
    )
    assert code == 1, err  # the last command (touch on the read-only volume) failed
    assert (rw / "out").read_text() == "from guest\n"
    assert out == "from host\n"
    assert not (ro / "x").exists()


def test_read_only_root_refuses_writes_but_tmp_works_and_resources_apply(vms):
    code, out, _ = vms.run(
        ["sh", "-c", "touch /etc/x 2>/dev/null && echo WROTE; echo ok > /tmp/y && cat /tmp/y; "
                     "cat /sys/devices/system/cpu/present; "
                     "grep MemTotal /proc/meminfo"],
        read_only=True, cpus=2, memory_mb=192)
    lines = out.splitlines()
    # `present`, not online CPUs: under a loaded TCG host a secondary vCPU can miss the
    # kernel's bring-up deadline, which says nothing about what QEMU was given.
    assert code == 0 and lines[:2] == ["ok", "0-1"], out
    assert 150 * 1024 < int(lines[2].split()[1]) <= 192 * 1024  # guest RAM minus the kernel's share


def test_nothing_is_left_after_delete(vms):
    vm = vms.create(["true"])
    vm.start()
    pid, overlay = vm.pid, Path(vm.state.overlay)
    cg = confine.from_state(vm.state.cgroup)
    assert overlay.exists() and cg is not None and pid in cg.pids()
    cg_dirs = [Path(d) for d in _cgroup_dirs(vm.state.cgroup)]
    assert cg_dirs and all(d.is_dir() for d in cg_dirs)
    assert vm.wait() == 0
    vm.delete()
    assert not confine.is_alive(pid) or open(f"/proc/{pid}/comm").read().strip() != "qemu-system-x86"
    assert not overlay.exists() and not vm.state_dir.exists()
    assert not sock_dir_for(vm.state_dir).exists()
    assert not any(d.exists() for d in cg_dirs)


def test_boot_timeout_reports_and_leaves_nothing(vms):
    vm = vms.create(["true"], boot_timeout=0.3)
    sd = vm.state_dir
    with pytest.raises(BootTimeout) as exc:
        vm.start()
    assert "within 0.3 s" in str(exc.value)
    assert not sd.exists() and not sock_dir_for(sd).exists()
    assert not vm.state.qemu_alive()


def test_bogus_kernel_fails_with_qemus_reason_and_leaves_nothing(vms, tmp_path):
    bogus = tmp_path / "vmlinuz-bogus"
    bogus.write_bytes(b"\0" * 4096)
    vm = vms.create(["true"], kernel=bogus)
    sd = vm.state_dir
    with pytest.raises(VMFailure) as exc:
        vm.start()
    assert "boot VM" in str(exc.value)
    assert not sd.exists() and not vm.state.qemu_alive()


def test_missing_kernel_names_the_setup_command(vms, tmp_path):
    with pytest.raises(NotFound) as exc:
        vms.create(["true"], kernel=tmp_path / "nope")
    assert "scripts/setup.sh" in str(exc.value)


def test_guest_kernel_panic_is_a_failure_with_console_tail(vms):
    vm = vms.create(["sh", "-c", "echo c > /proc/sysrq-trigger; sleep 60"])
    vm.start()
    with pytest.raises(VMFailure) as exc:
        vm.wait()
    assert exc.value.console_tail and exc.value.console_tail in str(exc.value)
    assert "Kernel panic" in (vm.state_dir / "console.log").read_text(errors="replace")
    assert not vm.state.qemu_alive()


def test_console_flood_is_bounded(vms):
    # Guest root can always reach its serial port; the host must stay bounded.
    vm = vms.create(["sh", "-c", "mknod /tmp/s c 4 64 && yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 600000 > /tmp/s; echo sent"])
    out = io.BytesIO()
    vm.start(stdout=out)
    assert vm.wait() == 0 and out.getvalue() == b"sent\n"
    log = vm.state_dir / "console.log"
    assert vm._console.total >= 600000
    assert log.stat().st_size <= 256 * 1024 + 4096
    assert "dropped" in log.read_text(errors="replace")


def test_twenty_boots_in_a_row_all_finish(vms):
    lock = threading.Lock()

    def one(i):
        with lock:
            vm = vms.create(["sh", "-c", f"exit {i % 3}"])
        vm.start()
        code = vm.wait()
        vm.delete()
        return code

    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(one, range(20)))
    assert codes == [i % 3 for i in range(20)]


def test_info_shows_isolation_accelerator_kernel_and_memory(vms):
    vm = vms.create(["true"], memory_mb=192)
    info = vm.info()
    assert info["isolation"] == "vm" and info["memory_mb"] == 192
    assert info["accelerator"] in ("kvm", "tcg") and info["accelerator_reason"]
    assert "cloud-amd64" in info["kernel"]
    if not any(f in open("/proc/cpuinfo").read() for f in (" vmx", " svm")):
        assert info["accelerator"] == "tcg"
    assert os.path.exists(info["overlay"])


@pytest.mark.net
def test_tap_attach_configures_guest_eth0(vms):
    # The tap stays down on the host side and has no address there: nothing leaves it.
    import subprocess

    tap = f"bvt{os.getpid() % 100000}"
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    try:
        code, out, err = vms.run(
            ["sh", "-c", "ip -4 addr show eth0; ip route; cat /etc/resolv.conf; cat /sys/class/net/eth0/address"],
            tap=tap, mac="52:54:00:12:34:56",
            net={"address": "10.213.7.5", "prefixlen": 24, "gateway": "10.213.7.1", "dns": ["10.213.7.1"]},
        )
    finally:
        subprocess.run(["ip", "link", "del", tap], check=False)
    assert code == 0, err
    assert "inet 10.213.7.5/24" in out
    assert "default via 10.213.7.1 dev eth0" in out
    assert "nameserver 10.213.7.1" in out
    assert "52:54:00:12:34:56" in out


def test_vm_ends_when_its_owner_process_dies(vms, tmp_path):
    import signal
    import subprocess
    import sys

    sd = tmp_path / "orphan"
    code = f"""
import sys, time
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import oci_config
from berth.runtime.vm.instance import VMInstance
vm = VMInstance.create("orphan{os.getpid()}", oci_config(["sleep", "300"]), Path({str(vms.rootfs)!r}), Path({str(sd)!r}),
                       cache_dir=Path({str(vms.cache)!r}))
vm.start()
print(vm.pid, flush=True)
time.sleep(300)
"""
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        qemu_pid = int(owner.stdout.readline())
        vm = VMInstance.load(sd)
        vms.vms.append(vm)
        assert vm.state.qemu_alive()
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        for _ in range(300):
            if not vm.state.qemu_alive():
                break
            time.sleep(0.1)
        assert not vm.state.qemu_alive(), f"QEMU {qemu_pid} outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_file_bind_mounts_arrive_by_value_and_read_only_ones_stay_so(vms, tmp_path):
    (tmp_path / "hn").write_text("from-engine\n")
    (tmp_path / "secret").write_bytes(b"s3cr3t\x00\xff")
    mounts = [{"destination": "/etc/hostname", "type": "bind", "source": str(tmp_path / "hn"), "options": ["rbind", "ro"]},
              {"destination": "/run/secrets/key", "type": "bind", "source": str(tmp_path / "secret"), "options": ["bind"]}]
    code, out, err = vms.run(
        ["sh", "-c", "cat /etc/hostname; od -An -tx1 /run/secrets/key; echo x > /etc/hostname || echo RO"],
        mounts=mounts)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "from-engine" and lines[1].split() == ["73", "33", "63", "72", "33", "74", "00", "ff"]
    assert lines[-1] == "RO"


def test_oversized_file_bind_is_refused_in_one_line(vms, tmp_path):
    from berth.errors import ConfigError

    (tmp_path / "big").write_bytes(b"x" * 100_000)
    with pytest.raises(ConfigError) as exc:
        vms.create(["true"], mounts=[{"destination": "/big", "type": "bind", "source": str(tmp_path / "big")}])
    assert "share its directory instead" in str(exc.value) and "\n" not in str(exc.value)

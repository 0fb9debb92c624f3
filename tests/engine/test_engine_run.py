"""berth run end to end: output, exit codes, --rm cleanliness, stdin, options."""

import os
import re
import subprocess
from pathlib import Path


def test_run_prints_output_and_propagates_exit_code(berth):
    r = berth("run", "--rm", "busybox", "sh", "-c", "echo hi; echo oops >&2; exit 42")
    assert r.returncode == 42
    assert r.stdout == "hi\n"
    assert r.stderr == "oops\n"


def test_missing_executable_is_127_and_one_line(berth):
    r = berth("run", "--rm", "busybox", "/no/such")
    assert r.returncode == 127
    assert r.stderr.count("\n") == 1 and "/no/such" in r.stderr and "Traceback" not in r.stderr


def test_non_executable_file_is_126(berth):
    r = berth("run", "--rm", "busybox", "/etc/passwd")
    assert r.returncode == 126, r.stderr
    assert r.stderr.count("\n") == 1


def _leftovers(root: Path, cid: str) -> list[str]:
    found = []
    if (root / "containers" / cid).exists():
        found.append("container dir")
    if cid in open("/proc/mounts").read():
        found.append("mount")
    for cg in Path("/sys/fs/cgroup").glob(f"*/berth/{cid}"):
        found.append(str(cg))
    if (Path("/sys/fs/cgroup/berth") / cid).exists():
        found.append("cgroup v2")
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    if cid in out:
        found.append("process")
    return found


def test_run_rm_leaves_no_process_mount_cgroup_or_file(berth, engine_root):
    r = berth("run", "--rm", "--name", f"rmtest{os.getpid()}", "busybox", "cat", "/proc/self/mountinfo")
    assert r.returncode == 0
    # /etc/hostname is bind-mounted from the container's directory, named by its ID
    cid = re.search(r"/containers/([0-9a-f]{64})/hostname", r.stdout).group(1)
    assert _leftovers(engine_root, cid) == []
    assert cid not in berth.ids()


def test_detached_rm_cleans_up_after_exit(berth, engine_root):
    cid = berth.out("run", "-d", "--rm", "busybox", "true").strip()
    r = berth("wait", cid)
    # the monitor's exit command removes it; wait for that to finish
    for _ in range(100):
        if cid not in berth.ids() and not (engine_root / "containers" / cid).exists():
            break
        subprocess.run(["sleep", "0.1"])
    assert cid not in berth.ids(), r.stdout
    assert _leftovers(engine_root, cid) == []


def test_stdin_with_interactive(berth):
    r = berth("run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z"
              , input="hello\n")
    assert r.returncode == 0
    assert r.stdout == "HELLO\n"


def test_env_workdir_user_hostname(berth):
    r = berth("run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "nobody", "--hostname", "box1",
              "busybox", "sh", "-c", 'echo "$FOO $(pwd) $(id -u) $(hostname)"')
    assert r.stdout.strip() == "bar /tmp 65534 box1", r.stderr


def test_read_only_root_and_cap_drop(berth):
    r = berth("run", "--rm", "--read-only", "busybox", "sh", "-c", "touch /x")
    assert r.returncode != 0 and "Read-only" in r.stderr
    r = berth("run", "--rm", "--cap-drop", "CHOWN", "busybox", "chown", "nobody", "/tmp")
    assert r.returncode != 0


def test_memory_and_pids_limits_reach_the_cgroup(berth):
    r = berth("run", "--rm", "-m", "64m", "--pids-limit", "100", "busybox", "sh", "-c",
              "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["100", str(64 << 20)]


def test_init_reaps_and_passes_exit_code(berth):
    r = berth("run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; exit 7")
    assert r.returncode == 7
    assert r.stdout.startswith("/dev/init -- sh")


def test_bind_mount_creates_missing_host_path_and_ro(berth, tmp_path):
    src = tmp_path / "made" / "here"
    r = berth("run", "--rm", "-v", f"{src}:/data", "busybox", "sh", "-c", "echo x > /data/f")
    assert r.returncode == 0, r.stderr
    assert (src / "f").read_text() == "x\n"
    r = berth("run", "--rm", "-v", f"{src}:/data:ro", "busybox", "sh", "-c", "echo y > /data/f")
    assert r.returncode != 0
    assert (src / "f").read_text() == "x\n"


def test_tmpfs_mount(berth):
    r = berth("run", "--rm", "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c", "grep /scratch /proc/mounts")
    assert "tmpfs" in r.stdout


def test_entrypoint_and_labels_in_inspect(berth):
    cid = berth.out("create", "--entrypoint", "echo", "-l", "a=b", "busybox", "one", "two").strip()
    d = __import__("json").loads(berth.out("inspect", cid))[0]
    assert d["Path"] == "echo" and d["Args"] == ["one", "two"]
    assert d["Config"]["Labels"]["a"] == "b"
    assert d["State"]["Status"] == "created"
    assert d["Isolation"] == "container"
    r = berth("start", "-a", cid)
    assert r.stdout == "one two\n"


def test_tty_run_and_exec_get_a_terminal(berth):
    import shutil

    if not shutil.which("script"):
        import pytest

        pytest.skip("script(1) is needed to give the CLI a terminal")
    cmd = f"stty rows 33 cols 101; {berth_cmd(berth)} run -t --rm busybox sh -c 'tty; stty size; exit 4'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 4
    assert "/dev/pts/" in r.stdout
    assert "33 101" in r.stdout  # the caller's window size reached the container's pty


def berth_cmd(berth) -> str:
    from engine_helpers import BERTH

    return f"{BERTH} --root {berth.root}"


def test_container_starts_with_no_ignored_or_blocked_signals(berth):
    # the monitor ignores SIGTERM/SIGHUP/SIGPIPE itself; dispositions survive exec,
    # so it must reset them, or `trap ... TERM` in a container shell would not work
    r = berth("run", "--rm", "busybox", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status")
    assert r.returncode == 0
    for line in r.stdout.splitlines():
        assert int(line.split()[1], 16) == 0, line


def test_image_resolution_cache_follows_the_store(berth):
    tag = f"cachetest{os.getpid()}:1"
    berth.out("image", "tag", "busybox", tag)
    assert berth("run", "--rm", "--network", "none", tag, "true").returncode == 0
    berth.out("image", "rm", tag)
    r = berth("run", "--rm", "--network", "none", tag, "true")
    assert r.returncode == 125 and "unable to find image" in r.stderr


def test_tty_resize_reaches_the_container(berth):
    import shutil

    if not shutil.which("script"):
        import pytest

        pytest.skip("script(1) is needed to give the CLI a terminal")
    # the container waits (bounded) for its size to change; the host resizes its
    # terminal and keeps signalling the CLI until the run ends
    inner = 'i=0; while [ "$(stty size)" = "33 101" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; stty size'
    cmd = (f"stty rows 33 cols 101; {berth_cmd(berth)} run -t --rm busybox sh -c '{inner}' </dev/tty & "
           "sleep 0.3; stty rows 40 cols 120 </dev/tty; "
           "while kill -WINCH $! 2>/dev/null; do sleep 0.2; done; wait")
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["40", "120"]

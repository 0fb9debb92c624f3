"""Bad input: one line on stderr, docker's exit code, nothing half-created."""

import os

import pytest

BAD = [
    (["run", "--rm", "nosuchimage:1"], "unable to find image"),
    (["run", "--bogus-flag", "busybox"], "unrecognized arguments"),
    (["run", "--rm", "-m", "1m", "busybox", "true"], "minimum allowed is 6 MiB"),
    (["run", "--rm", "--restart", "sometimes", "busybox", "true"], "invalid restart policy"),
    (["run", "--rm", "--restart", "always:3", "busybox", "true"], "invalid restart policy"),
    (["run", "--rm", "-p", "99999:80", "busybox", "true"], "invalid port spec"),
    (["run", "--rm", "-p", "abc", "busybox", "true"], "invalid port spec"),
    (["run", "--rm", "-v", "relative/path:/data", "busybox", "true"], "relative host paths are refused"),
    (["run", "--rm", "-v", "/tmp:data", "busybox", "true"], "must be absolute"),
    (["run", "--rm", "-v", "/:/host", "busybox", "true"], "allow-sensitive-mounts"),
    (["run", "--rm", "-v", "/etc:/host-etc", "busybox", "true"], "allow-sensitive-mounts"),
    (["run", "--rm", "--cpus", "lots", "busybox", "true"], "invalid --cpus"),
    (["run", "--rm", "--cap-add", "NOT_A_CAP", "busybox", "true"], "invalid capability"),
    (["run", "--rm", "--security-opt", "seccomp=/no/such.json", "busybox", "true"], "seccomp profile"),
    (["run", "--rm", "--isolation", "hyperv", "busybox", "true"], "invalid isolation"),
    (["run", "--rm", "--entrypoint", "", "busybox"], "no command specified"),
    (["run", "--rm", "-u", "nosuchuser", "busybox", "true"], "unable to find user"),
    (["run", "--rm", "--name", "bad name!", "busybox", "true"], "invalid container name"),
    (["exec", "nosuchcontainer", "true"], "no such container"),
    (["logs", "--tail", "x", "nosuchcontainer"], "no such container"),
    (["kill", "-s", "NOPE", "nosuchcontainer"], "no such container"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a[:4]) for a, _ in BAD])
def test_bad_input_is_one_line_125_and_leaves_nothing(berth, engine_root, args, message):
    before = set(os.listdir(engine_root / "containers")) if (engine_root / "containers").exists() else set()
    r = berth(*args)
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    after = set(os.listdir(engine_root / "containers")) if (engine_root / "containers").exists() else set()
    assert after == before


def test_name_conflict(berth):
    name = f"dup{os.getpid()}"
    berth.out("create", "--name", name, "busybox", "true")
    r = berth("create", "--name", name, "busybox", "true")
    assert r.returncode == 125 and "already in use" in r.stderr and r.stderr.count("\n") == 1


def test_ambiguous_id_prefix(berth):
    ids = [berth.out("create", "busybox", "true").strip() for _ in range(20)]
    first = {}
    for i in ids:
        first.setdefault(i[0], []).append(i)
    dup = next(v for v in first.values() if len(v) > 1)
    r = berth("inspect", dup[0][0])
    assert r.returncode == 125 and "ambiguous" in r.stderr


def test_rm_running_without_force_is_refused(berth):
    cid = berth.out("run", "-d", "busybox", "sleep", "60").strip()
    r = berth("rm", cid)
    assert r.returncode == 125 and "--force" in r.stderr
    assert berth("rm", "-f", cid).returncode == 0


def test_sensitive_mount_with_explicit_flag_warns(berth):
    r = berth("run", "--rm", "--allow-sensitive-mounts", "-v", "/etc:/host-etc:ro", "busybox", "test", "-f", "/host-etc/hostname")
    assert r.returncode == 0
    assert "WARNING" in r.stderr


def test_privileged_warns(berth):
    r = berth("run", "--rm", "--privileged", "busybox", "true")
    assert r.returncode == 0 and "WARNING: --privileged" in r.stderr


def test_isolation_vm_needs_the_vm_backend_and_berth_runtime(berth):
    from berth.engine.backends import vm_available

    r = berth("create", "--isolation", "vm", "busybox", "true")
    runtime = os.environ.get("BERTH_RUNTIME", "")
    if vm_available() and os.path.basename(runtime).startswith("berth-runtime"):
        assert r.returncode == 0, r.stderr
        cid = r.stdout.strip()
        cfg = __import__("json").loads((berth.root / "containers" / cid / "config.json").read_text())
        assert cfg["annotations"]["org.berth.isolation"] == "vm"
        assert berth.status(cid)["Status"] == "created"
    else:
        assert r.returncode == 125 and r.stderr.count("\n") == 1 and "isolation vm" in r.stderr


def test_vm_annotations_carry_memory_in_mib_and_whole_cpus():
    from berth.engine.options import CreateOptions
    from berth.engine.spec import build_spec

    opts = CreateOptions(image="busybox", command=["true"], isolation="vm", memory=512 << 20, cpus=1.5)
    spec, _ = build_spec(opts, {}, __import__("pathlib").Path("/nonexistent"), "c" * 64, "h", [], None, "/berth/x")
    ann = spec["annotations"]
    assert (ann["org.berth.isolation"], ann["org.berth.vm.memory"], ann["org.berth.vm.cpus"]) == ("vm", "512", "2")


def test_missing_runtime_is_an_engine_error_not_127(berth):
    import subprocess

    from engine_helpers import BERTH

    env = dict(os.environ, BERTH_RUNTIME="/no/such/runtime")
    r = subprocess.run([BERTH, "--root", str(berth.root), "run", "--rm", "busybox", "true"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 125 and "OCI runtime /no/such/runtime not found" in r.stderr

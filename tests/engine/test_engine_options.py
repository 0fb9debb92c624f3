"""More run options: --mount, seccomp profiles, --stop-signal, --since, --add-host/--dns."""

import json
import time


def test_mount_flag_bind_and_tmpfs(berth, tmp_path):
    (tmp_path / "in").write_text("bound\n")
    r = berth("run", "--rm", "--mount", f"type=bind,source={tmp_path},target=/b,readonly",
              "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "busybox", "sh", "-c",
              "cat /b/in; touch /b/x 2>/dev/null || echo ro; grep ' /t ' /proc/mounts | cut -d' ' -f3")
    assert r.stdout.split() == ["bound", "ro", "tmpfs"], r.stderr


def test_seccomp_profile_denies_a_syscall(berth, tmp_path):
    # a docker-format profile: allow everything but mkdir/mkdirat (EPERM)
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    p = tmp_path / "deny-mkdir.json"
    p.write_text(json.dumps(prof))
    r = berth("run", "--rm", "--security-opt", f"seccomp={p}", "busybox", "sh", "-c", "mkdir /tmp/d && echo made")
    assert r.returncode != 0 and "made" not in r.stdout
    assert "not permitted" in r.stderr
    r = berth("run", "--rm", "busybox", "sh", "-c", "mkdir /tmp/d && echo made")
    assert r.stdout == "made\n"


def test_no_new_privileges_is_on_by_default(berth):
    r = berth("run", "--rm", "busybox", "grep", "NoNewPrivs", "/proc/self/status")
    assert r.stdout.split() == ["NoNewPrivs:", "1"]


def test_stop_signal_is_used_by_stop(berth):
    cid = berth.out("run", "-d", "--stop-signal", "USR1", "busybox", "sh", "-c",
                    "trap 'exit 11' USR1; echo up; while :; do sleep 0.1; done").strip()
    for _ in range(50):
        if "up" in berth.out("logs", cid):
            break
        time.sleep(0.1)
    berth.out("stop", cid)
    assert berth.status(cid)["ExitCode"] == 11


def test_logs_since_filters_old_lines(berth):
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "echo old; sleep 2; echo new").strip()
    berth("wait", cid)
    logs = berth.out("logs", "-t", cid).splitlines()
    new_ts = logs[1].split(" ", 1)[0]
    assert berth.out("logs", "--since", new_ts, cid) == "new\n"
    assert berth.out("logs", "--since", "1h", cid) == "old\nnew\n"


def test_add_host_and_dns(berth):
    r = berth("run", "--rm", "--add-host", "db.local:10.1.2.3", "--dns", "10.9.9.9", "busybox", "sh", "-c",
              "grep db.local /etc/hosts; cat /etc/resolv.conf")
    assert "10.1.2.3" in r.stdout and "nameserver 10.9.9.9" in r.stdout, r.stdout + r.stderr

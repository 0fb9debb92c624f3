"""Where an audit against docker's CLI found berth diverging: each test pins docker's behaviour."""

import json
import os
import socket

import pytest
from engine_helpers import wait_for

from berth.errors import NotFound


def test_tty_without_interactive_works_when_stdin_is_not_a_terminal(berth):
    # docker refuses only -it on a non-terminal stdin; -t alone gives an output-only pty
    r = berth("run", "--rm", "-t", "busybox", "tty")
    assert r.returncode == 0 and r.stdout.strip() == "/dev/pts/0", r.stderr
    r = berth("run", "--rm", "-it", "busybox", "true")
    assert r.returncode == 125 and "not a TTY" in r.stderr
    cid = berth.out("run", "-d", "busybox", "sleep", "60").strip()
    r = berth("exec", "-t", cid, "tty")
    assert r.returncode == 0 and r.stdout.strip().startswith("/dev/pts/"), r.stderr
    assert berth("exec", "-it", cid, "true").returncode == 125


def test_unknown_stop_signal_is_refused_at_create(berth):
    before = berth.ids()
    r = berth("run", "-d", "--stop-signal", "SIGNOPE", "busybox", "true")
    assert r.returncode == 125 and "--stop-signal" in r.stderr and r.stderr.count("\n") == 1
    assert berth.ids() == before


def test_init_is_not_shown_as_the_command(berth):
    # docker records the user's command; the init is HostConfig.Init
    cid = berth.out("run", "-d", "--init", "busybox", "sleep", "60").strip()
    info = json.loads(berth.out("inspect", cid))[0]
    assert (info["Path"], info["Args"], info["HostConfig"]["Init"]) == ("sleep", ["60"], True)
    assert '"sleep 60"' in berth.out("ps", "-f", f"id={cid}")
    assert "/dev/init -- sleep 60" in berth.out("top", cid)  # but PID 1 is the init


def test_ps_command_quotes_arguments_with_spaces(berth):
    cid = berth.out("create", "busybox", "sh", "-c", "echo a").strip()
    assert berth.out("ps", "-a", "-f", f"id={cid}", "--format", "{{.Command}}").strip() == "\"sh -c 'echo a'\""
    long = berth.out("create", "busybox", "sh", "-c", "echo a long command line").strip()
    # like Go's encoder, json output keeps the ellipsis as UTF-8 rather than \u2026
    assert "…" in berth.out("ps", "-a", "-f", f"id={long}", "--format", "json")


def test_ps_filters_health_network_volume_before_since(berth):
    tag = f"pf{os.getpid()}"
    first = berth.out("run", "-d", "--name", f"{tag}-1", "-v", f"{tag}vol:/data", "busybox", "sleep", "60").strip()
    hc = berth.out("run", "-d", "--name", f"{tag}-2", "--health-cmd", "true", "--health-interval", "1s",
                   "--network", "none", "busybox", "sleep", "60").strip()
    q = lambda *f: berth.out("ps", "-aq", "--no-trunc", *[x for v in f for x in ("-f", v)]).split()  # noqa: E731
    assert wait_for(lambda: q("health=healthy", f"name={tag}") == [hc])
    assert q("health=none", f"name={tag}") == [first]
    assert q("network=none", f"name={tag}") == [hc]
    assert q(f"volume={tag}vol") == [first]
    assert q(f"before={hc}", f"name={tag}") == [first]
    assert q(f"since={first}", f"name={tag}") == [hc]
    assert "(healthy)" in berth.out("ps", "-f", f"id={hc}", "--format", "{{.Status}}")
    r = berth("ps", "-f", "health=sick")
    assert r.returncode == 125 and r.stderr.count("\n") == 1
    berth("rm", "-f", first, hc)
    berth("volume", "rm", f"{tag}vol")


def test_stats_has_docker_columns_and_a_host_memory_limit(berth):
    cid = berth.out("run", "-d", "busybox", "sleep", "60").strip()
    table = berth.out("stats", "--no-stream", cid).splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%",
                                "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    row = json.loads(berth.out("stats", "--no-stream", "--format", "json", cid))
    assert "unlimited" not in row["MemUsage"] and row["MemPerc"].endswith("%") and " / " in row["BlockIO"]


def test_api_port_tuple_with_none_picks_a_random_host_port_and_networks_prune(client):
    # docker-py: {'80/tcp': ('127.0.0.1', None)} binds a random port on that address
    c = client.containers.run("busybox", "sleep 60", detach=True, ports={"80/tcp": ("127.0.0.1", None)})
    try:
        c.reload()
        (binding,) = c.ports["80/tcp"]
        assert binding["HostIp"] == "127.0.0.1" and int(binding["HostPort"]) > 0
    finally:
        c.remove(force=True)
    net = f"apin{os.getpid()}"
    client.networks.create(net)
    assert net in client.networks.prune()["NetworksDeleted"]


def test_api_networks_are_docker_py_shaped(client):
    name = f"apinet{os.getpid()}"
    net = client.networks.create(name, ipam={"Config": [{"Subnet": "10.123.45.0/24"}]})
    try:
        assert net.name == name and net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.123.45.0/24"
        assert client.networks.get(name).id == net.id
        assert name in [n.name for n in client.networks.list()]
    finally:
        net.remove()
    with pytest.raises(NotFound):
        client.networks.get(name)


def test_a_stopped_container_frees_its_published_port(berth):
    # docker releases published ports at stop: a new container may take the port,
    # and the old one gets it back only if it is free again when it starts
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    old = berth.out("run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60").strip()
    berth.out("stop", "-t", "0", old)
    assert berth.out("ps", "-a", "-f", f"id={old}", "--format", "{{.Ports}}").strip() == ""
    assert berth.out("port", old) == "" and berth("port", old, "80").returncode == 125
    new = berth.out("run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60").strip()
    assert berth.out("port", new, "80").strip() == f"127.0.0.1:{port}"
    r = berth("start", old)
    assert r.returncode == 125 and "already allocated" in r.stderr
    berth.out("rm", "-f", new)
    berth.out("start", old)
    assert berth.out("port", old, "80").strip() == f"127.0.0.1:{port}"


def test_volume_prune_keeps_named_volumes_unless_all(berth):
    # docker >= 23: prune removes anonymous volumes; named ones need -a (data survives by default)
    named = f"keep{os.getpid()}"
    berth.out("volume", "create", named)
    cid = berth.out("run", "-d", "-v", "/anon", "busybox", "true").strip()
    berth("wait", cid)
    anon = [m["Name"] for m in json.loads(berth.out("inspect", cid))[0]["Mounts"]][0]
    berth.out("rm", cid)
    out = berth.out("volume", "prune", "-f").split()
    assert anon in out and named not in out
    assert named in berth.out("volume", "ls")
    assert named in berth.out("volume", "prune", "-a", "-f").split()


def test_logs_until_stops_at_a_timestamp(berth):
    cid = berth.out("run", "-d", "busybox", "sh", "-c", "echo a; sleep 0.2; echo b; sleep 0.2; echo c").strip()
    berth("wait", cid)
    stamps = [line.split(" ", 1)[0] for line in berth.out("logs", "-t", cid).splitlines()]
    assert berth.out("logs", "--until", stamps[1], cid) == "a\nb\n"
    assert berth.out("logs", "--until", "1h", cid) == ""
    assert berth("logs", "--until", "soon", cid).returncode == 125


def test_healthcheck_none_and_no_healthcheck_disable_checks(client, berth):
    # docker-py's {"test": ["NONE"]} turns checks off; it is not a command named NONE
    c = client.containers.create("busybox", "true", healthcheck={"test": ["NONE"]})
    assert c.attrs["Config"]["Healthcheck"] is None
    c.remove()
    cid = berth.out("create", "--no-healthcheck", "busybox", "true").strip()
    assert json.loads(berth.out("inspect", cid))[0]["Config"]["Healthcheck"] is None
    r = berth("create", "--no-healthcheck", "--health-cmd", "true", "busybox", "true")
    assert r.returncode == 125 and "conflicts" in r.stderr


def test_wait_reports_every_container_and_rename_to_itself_is_refused(berth):
    cid = berth.out("run", "-d", "--name", f"wt{os.getpid()}", "busybox", "sh", "-c", "exit 3").strip()
    r = berth("wait", "no-such-container", cid)
    assert r.returncode == 125 and r.stdout == "3\n" and "no-such-container" in r.stderr
    r = berth("rename", cid, f"wt{os.getpid()}")
    assert r.returncode == 125 and r.stderr.count("\n") == 1


def test_missing_workdir_is_created_inside_the_container_even_through_a_symlink(berth, tmp_path):
    # docker creates a missing -w directory; an image symlink to / must not turn that into a host mkdir
    r = berth("run", "--rm", "-w", "/new/sub", "busybox", "sh", "-c", "pwd; stat -c '%U %a' .")
    assert (r.returncode, r.stdout) == (0, "/new/sub\nroot 755\n"), r.stderr
    tag = f"wdlink{os.getpid()}"
    (tmp_path / "Containerfile").write_text("FROM busybox\nRUN ln -s / /escape\n")
    berth.out("build", "-q", "-t", tag, str(tmp_path))
    host_dir = tmp_path / "made-by-workdir"
    try:
        r = berth("run", "--rm", "-w", f"/escape{host_dir}", tag, "pwd")
        assert r.returncode == 0 and r.stdout.strip() == str(host_dir), r.stderr  # getcwd: the link resolved
        assert not host_dir.exists()
    finally:
        berth("rmi", tag)


def test_run_attach_selects_streams(berth):
    cmd = ["busybox", "sh", "-c", "echo out; echo err >&2; exit 4"]
    r = berth("run", "--rm", "-a", "stderr", *cmd)
    assert (r.returncode, r.stdout, r.stderr) == (4, "", "err\n")
    r = berth("run", "--rm", "-a", "STDOUT", *cmd)
    assert (r.returncode, r.stdout, r.stderr) == (4, "out\n", "")
    assert berth("run", "--rm", "-a", "stdall", *cmd).returncode == 125
    assert berth("run", "-d", "-a", "stdout", *cmd).returncode == 125


def test_run_without_image_names_only_the_image_as_missing(berth):
    r = berth("run")
    assert r.returncode == 125 and "required: image (" in r.stderr and "command" not in r.stderr.split("(")[0]


def test_paths_below_sensitive_host_paths_need_the_explicit_flag(berth, tmp_path):
    # /proc/sys is the host's sysctls, /sys/kernel its kernel, /etc/* its configuration;
    # a symlink to them counts as them
    (tmp_path / "link").symlink_to("/proc/sys")
    before = berth.ids()
    for src in ("/proc/sys", "/sys/kernel", "/etc/ssh", "/dev/net", str(tmp_path / "link")):
        r = berth("run", "--rm", "-v", f"{src}:/x", "busybox", "true")
        assert r.returncode == 125 and "--allow-sensitive-mounts" in r.stderr, (src, r.stderr)
    assert berth.ids() == before
    r = berth("run", "--rm", "--allow-sensitive-mounts", "-v", "/proc/sys:/x:ro", "busybox", "test", "-d", "/x/kernel")
    assert r.returncode == 0 and "WARNING" in r.stderr


def test_bad_dns_and_add_host_are_refused_before_anything_is_created(berth):
    before = berth.ids()
    for args in (["--dns", "bogus"], ["--add-host", "nohost"], ["--add-host", "h:notanip"],
                 ["--network", "none", "--add-host", "h:host-gateway"]):
        r = berth("run", *args, "busybox", "true")  # no --rm: a half-made container would stay
        assert r.returncode == 125 and r.stderr.count("\n") == 1, (args, r.stderr)
    assert berth.ids() == before


def test_add_host_gateway_is_the_bridge_gateway(berth):
    r = berth("run", "--rm", "--add-host", "hg:host-gateway", "busybox", "sh", "-c",
              "grep -w hg /etc/hosts | cut -f1; ip route | awk '/^default/ {print $3}'")
    hosts_ip, gw = r.stdout.split()
    assert r.returncode == 0 and hosts_ip == gw


def _pids_max(berth, *args):
    r = berth("run", "--rm", *args, "busybox", "sh", "-c",
              "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_pids_limit_default_and_unlimited(berth):
    # 2048 by default (issue 4); -1 and 0 mean unlimited as in docker's daemon
    assert _pids_max(berth) == "2048"
    assert _pids_max(berth, "--pids-limit", "-1") == "max"
    assert _pids_max(berth, "--pids-limit", "0") == "max"


def test_cpus_outside_the_hosts_range_is_refused_at_create(berth):
    before = berth.ids()
    for v in ("0.001", str(os.cpu_count() + 1)):
        r = berth("run", "--cpus", v, "busybox", "true")
        assert r.returncode == 125 and "--cpus" in r.stderr and r.stderr.count("\n") == 1
    assert berth.ids() == before


def test_top_passes_ps_options_and_keeps_only_the_containers_rows(berth):
    cid = berth.out("run", "-d", "busybox", "sleep", "60").strip()
    out = berth.out("top", cid, "-o", "pid,comm").splitlines()
    assert out[0].split() == ["PID", "COMMAND"] and [r.split()[1] for r in out[1:]] == ["sleep"]
    r = berth("top", cid, "-o", "comm")
    assert r.returncode == 125 and "PID column" in r.stderr


def test_unknown_tmpfs_option_is_refused_at_create(berth):
    before = berth.ids()
    for spec in ("/t:bogusopt", "/t:size="):
        r = berth("run", "--network", "none", "--tmpfs", spec, "busybox", "true")
        assert r.returncode == 125 and "--tmpfs" in r.stderr and r.stderr.count("\n") == 1
    assert berth.ids() == before
    r = berth("run", "--rm", "--network", "none", "--tmpfs", "/t:size=1m,mode=1777,noexec", "busybox",
              "sh", "-c", "grep ' /t ' /proc/mounts")
    assert r.returncode == 0 and "size=1024k" in r.stdout


def test_ps_format_label_function_and_mounts_field(berth):
    cid = berth.out("create", "-l", "com.example.tier=web", "-v", "/data", "busybox", "true").strip()
    out = berth.out("ps", "-a", "-f", f"id={cid}", "--format", '{{.Label "com.example.tier"}}|{{.Label "nope"}}|{{.Mounts}}')
    tier, missing, mounts = out.strip().split("|")
    assert (tier, missing) == ("web", "") and len(mounts) == 64

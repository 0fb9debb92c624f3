"""docker-inspect-shaped JSON of a container."""

from __future__ import annotations

import json
from typing import Any

from berth.engine.status import UNKNOWN_EXIT


def inspect_container(engine, rec: dict[str, Any]) -> dict[str, Any]:
    rs = engine.run_state(rec)
    cdir = engine.cdir(rec["Id"])
    health = None
    if rec["Config"].get("Healthcheck"):
        try:
            health = json.loads((cdir / "health.json").read_text())
        except (OSError, ValueError):
            health = {"Status": "starting", "FailingStreak": 0, "Log": []}
    state = {
        "Status": rs.status,
        "Running": rs.status in ("running", "paused", "restarting"),
        "Paused": rs.status == "paused",
        "Restarting": rs.status == "restarting",
        "OOMKilled": rs.oom_killed,
        "Dead": False,
        "Pid": rs.pid if rs.status in ("running", "paused") else 0,
        "ExitCode": rs.exit_code,
        "Error": rs.error or ("monitor died; exit code unknown" if rs.exit_code == UNKNOWN_EXIT else ""),
        "StartedAt": rs.started_at or "0001-01-01T00:00:00Z",
        "FinishedAt": rs.finished_at or "0001-01-01T00:00:00Z",
    }
    if health is not None:
        state["Health"] = health
    net = rec.get("Network") or {}
    ports: dict[str, Any] = {}
    for p in net.get("Ports", []):
        key = f"{p['container_port']}/{p['proto']}"
        ports.setdefault(key, []).append({"HostIp": p.get("host_ip") or "0.0.0.0",
                                          "HostPort": str(p.get("host_port") or "")})
    ep = net.get("Endpoint") or {}
    networks = {}
    if net.get("Mode") not in (None, "none", "host") and ep:
        networks[ep.get("Network", net["Mode"])] = {
            "IPAddress": ep.get("IPAddress", ""), "Gateway": ep.get("Gateway", ""),
            "IPPrefixLen": ep.get("IPPrefixLen", 0), "MacAddress": ep.get("MacAddress", ""),
            "Aliases": net.get("Aliases") or [], "NetworkID": ep.get("NetworkID", ""),
        }
    elif net.get("Mode") in ("none", "host"):
        networks[net["Mode"]] = {"IPAddress": "", "Gateway": "", "Aliases": None}
    settings = None
    if net.get("Mode") not in (None, "none", "host") and not str(net.get("Mode")).startswith("container:"):
        from berth.engine.netsetup import network_for

        try:
            settings = network_for(engine, rec).settings()
        except Exception:  # a network removed under us: report what the record has
            settings = None
    out = {
        "Id": rec["Id"],
        "Created": rec["Created"],
        "Path": rec["Path"],
        "Args": rec["Args"],
        "State": state,
        "Image": rec["ImageID"],
        "ResolvConfPath": str(cdir / "resolv.conf"),
        "HostnamePath": str(cdir / "hostname"),
        "HostsPath": str(cdir / "hosts"),
        "LogPath": str(cdir / "container.log"),
        "Name": "/" + rec["Name"],
        "RestartCount": rs.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "Isolation": rec.get("Isolation", "container"),
        "Runtime": rec.get("Runtime", ""),
        "HostConfig": rec["HostConfig"],
        "Mounts": rec.get("Mounts", []),
        "Config": rec["Config"],
        "NetworkSettings": {
            "Ports": ports,
            "IPAddress": ep.get("IPAddress", ""),
            "Gateway": ep.get("Gateway", ""),
            "SandboxKey": ep.get("SandboxKey", ""),
            "Networks": networks,
        },
        "GraphDriver": {"Name": "overlay", "Data": {"MergedDir": str(cdir / "rootfs"),
                                                   "UpperDir": str(cdir / "upper")}},
    }
    if settings:
        out["NetworkSettings"] = settings
    if out["Isolation"] == "vm":  # accelerator and why, guest kernel, RAM, vCPUs
        from berth.engine.vminfo import details

        out["VM"] = details(engine, rec)
    return out

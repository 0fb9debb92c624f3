"""Connect and disconnect an existing container, and select networks.

Shared by ``berth network connect|disconnect|ls|prune`` and the Python API's
``Network.connect``/``disconnect`` and ``client.networks.list``/``prune``, so
the CLI stays a thin layer over the same code.
"""

from __future__ import annotations

from berth.errors import Conflict, NotFound, UsageError


def network_lib():
    """``berth.engine.network``; UsageError when this build has no bridge networks."""
    from berth.engine.netsetup import _network_lib

    lib = _network_lib()
    if lib is None:
        raise UsageError("networks: bridge and user networks are not available in this build yet")
    return lib


def manager(root):
    """The NetworkManager of one engine root."""
    return network_lib().NetworkManager(str(root))


def connect(engine, network: str, container: str, aliases: list[str] | tuple = (),
            ipv4_address: str | None = None) -> None:
    """``docker network connect``.

    A container whose namespace exists (started once, until ``rm``) is
    connected now; one that has not started yet is connected at its start.
    Either way the network is recorded with the container (``Network.Extra``),
    so a start that has to remake its network (its ports were taken over
    while it was stopped) connects it again. A container in the host's or
    another container's namespace, with ``none``, or a VM (no hot-plugged
    NIC) is refused with one line.
    """
    import os

    nm = manager(engine.root)
    network = nm.get(network).name  # an ID works too; messages name the network
    cid = engine.get(container)["Id"]
    with engine._lock(cid):  # not while it starts or is removed
        rec = engine.get(cid)
        net = rec.get("Network") or {}
        mode = net.get("Mode", "none")
        what = f"connect container {rec['Name']} to network {network}"
        if mode in ("none", "host") or mode.startswith("container:"):
            # docker: a container in the host's or another one's namespace, or
            # with none, cannot join further networks
            raise Conflict(f"{what}: container uses --network {mode.split(':')[0]}, "
                           "which cannot be connected to other networks")
        if net.get("VM"):
            raise Conflict(f"{what}: a VM's network cards cannot be added while it exists")
        extra = net.setdefault("Extra", [])
        if network == net.get("Network") or any(x["Network"] == network for x in extra):
            raise Conflict(f"{what}: already connected")
        path = net.get("NetnsPath") or ""
        if path and os.path.exists(path):
            nm.connect(network, cid, path, name=rec["Name"], aliases=list(aliases), ip=ipv4_address)
        extra.append({"Network": network, "Aliases": list(aliases), "IPv4Address": ipv4_address})
        engine.state.update_container(rec)


def disconnect(engine, network: str, container: str, force: bool = False) -> None:
    """``docker network disconnect``; with ``force``, also an endpoint whose
    container the engine no longer knows (named by ID prefix or name)."""
    nm = manager(engine.root)
    network = nm.get(network).name
    try:
        rec = engine.get(container)
    except NotFound:
        if not force:
            raise
        eps = nm.inspect(network)["Containers"]
        hits = [c for c, e in eps.items() if c.startswith(container) or e["Name"] == container]
        if len(hits) != 1:
            raise NotFound(f"disconnect {container} from network {network}: "
                           "no such container on the network") from None
        nm.disconnect(network, hits[0])
        return
    with engine._lock(rec["Id"]):
        rec = engine.get(rec["Id"])
        extra = (rec.get("Network") or {}).get("Extra") or []
        keep = [x for x in extra if x["Network"] != network]
        live = rec["Id"] in nm.inspect(network)["Containers"]
        if live or len(keep) == len(extra):
            nm.disconnect(network, rec["Id"])  # NotFound when on neither
        if len(keep) != len(extra):
            rec["Network"]["Extra"] = keep
            engine.state.update_container(rec)


def _label_match(labels: dict[str, str], wants: list[str]) -> bool:
    for w in wants:
        k, sep, v = w.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    return True


def _as_lists(filters: dict | None) -> dict[str, list[str]]:
    return {k: (v if isinstance(v, list) else [v]) for k, v in (filters or {}).items()}


def select(networks: list[dict], names: list[str] | None = None, ids: list[str] | None = None,
           filters: dict | None = None) -> list[dict]:
    """``network ls --filter``: the inspect dicts matching docker's filters
    (``name`` and ``id`` match a part, ``label`` KEY or KEY=VALUE, ``driver``,
    ``type`` custom|builtin, ``dangling`` true|false: no containers)."""
    f = _as_lists(filters)
    bad = set(f) - {"name", "id", "label", "driver", "type", "dangling"}
    if bad:
        raise UsageError(f"list networks: invalid filter {sorted(bad)[0]!r}")
    out = []
    for n in networks:
        builtin = n["Name"] == "bridge"
        if names and n["Name"] not in names or ids and not any(n["Id"].startswith(i) for i in ids):
            continue
        if "name" in f and not any(x in n["Name"] for x in f["name"]):
            continue
        if "id" in f and not any(x in n["Id"] for x in f["id"]):
            continue
        if "driver" in f and n["Driver"] not in f["driver"]:
            continue
        if "type" in f and ("builtin" if builtin else "custom") not in f["type"]:
            continue
        if "label" in f and not _label_match(n.get("Labels") or {}, f["label"]):
            continue
        if "dangling" in f and (str(not n["Containers"]).lower() not in
                                [str(x).lower() for x in f["dangling"]]):
            continue
        out.append(n)
    return out


def prune(nm, filters: dict | None = None) -> list[str]:
    """``docker network prune``: user networks without containers (matching
    ``filters``, label only as docker's); the default network stays."""
    f = _as_lists(filters)
    bad = set(f) - {"label"}
    if bad:
        raise UsageError(f"prune networks: invalid filter {sorted(bad)[0]!r}")
    if not f:
        return nm.prune()  # all at once, under the networks' lock
    gone = []
    for n in select([nm.inspect(x.name) for x in nm.list()], filters=f):
        if n["Name"] == "bridge" or n["Containers"]:
            continue
        try:
            nm.remove(n["Name"])
            gone.append(n["Name"])
        except (Conflict, NotFound):
            pass  # a container joined, or another prune removed it, meanwhile
    return gone

"""``--network`` modes: what the engine must do for each.

===================  =================================================  ==========
mode                 config.json ``linux.namespaces`` network entry     endpoints
===================  =================================================  ==========
none                 ``{"type": "network", "path": NETNS}``, lo only    none
host                 no entry (the host's namespace)                    none
bridge (default)     ``{"type": "network", "path": NETNS}``             ``bridge``
NAME                 ``{"type": "network", "path": NETNS}``             ``NAME``
container:ID         ``{"type": "network", "path": <ID's netns>}``      none (ID's)
===================  =================================================  ==========

NETNS is a namespace the engine pins with ``create_netns`` before the
runtime starts the workload, so the network is ready when the process runs
(podman's order); it is removed with ``remove_netns`` on ``rm``.
"""

from __future__ import annotations

from berth.engine._record import record
from berth.errors import UsageError


@record(frozen=True)
class NetworkMode:
    """A parsed ``--network`` value.

    ``kind`` is "none", "host", "bridge" (the default network or a user one,
    named in ``network``) or "container" (``container`` names the peer).
    """

    kind: str
    network: str = ""
    container: str = ""

    @property
    def needs_netns(self) -> bool:
        """True when the engine must create (and later remove) a namespace."""
        return self.kind in ("none", "bridge")

    @property
    def user_defined(self) -> bool:
        return self.kind == "bridge" and self.network != "bridge"

    def namespace_entry(self, netns_path: str) -> dict | None:
        """The ``linux.namespaces`` entry for config.json, or None for host.

        ``netns_path`` is this container's pinned namespace (none/bridge) or
        the peer's (container:ID: its pinned path or ``/proc/PID/ns/net``).
        """
        if self.kind == "host":
            return None
        return {"type": "network", "path": netns_path}


def parse_network_mode(text: str | None) -> NetworkMode:
    """Parse ``--network``; empty or None means the default ``bridge``."""
    text = (text or "bridge").strip()
    if text in ("none", "host"):
        return NetworkMode(text)
    if text in ("bridge", "default"):
        return NetworkMode("bridge", "bridge")
    if text.startswith("container:"):
        ref = text.split(":", 1)[1]
        if not ref:
            raise UsageError("invalid --network container: (name or ID missing)")
        return NetworkMode("container", container=ref)
    if ":" in text or "/" in text or not text:
        raise UsageError(f"invalid --network {text!r}: expected none, host, bridge, "
                         "container:ID or a network name")
    return NetworkMode("bridge", text)

"""Registry credentials and ``WWW-Authenticate`` challenges.

Credentials live in a docker-style ``config.json`` (``{"auths": {HOST: {"auth":
base64(user:password)}}}``) at ``$BERTH_AUTH_CONFIG`` or ``<root>/auth.json``,
created mode 0600 and replaced atomically. Insecure registries (plain HTTP or
unverified TLS) are listed in ``<root>/registries.json`` under
``"insecure-registries"`` (docker's daemon.json key) or ``$BERTH_INSECURE_REGISTRIES``
(comma-separated); loopback registries are always allowed over HTTP, as docker does.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

from berth.errors import ConfigError, UsageError
from berth.image.blobs import atomic_write
from berth.image.reference import DEFAULT_DOMAIN, DOMAIN_RE

HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")


def config_path(root: str | os.PathLike) -> Path:
    env = os.environ.get("BERTH_AUTH_CONFIG")
    return Path(env) if env else Path(root) / "auth.json"


def normalize_server(server: str) -> str:
    """``https://host:5000/v2/`` -> ``host:5000``; Docker Hub's names -> ``docker.io``."""
    s = server.strip()
    if s in HUB_ALIASES:
        return DEFAULT_DOMAIN
    s = re.sub(r"^https?://", "", s).split("/", 1)[0]
    if not s or not DOMAIN_RE.match(s):
        raise UsageError(f"login: invalid registry address {server!r}")
    return DEFAULT_DOMAIN if s in HUB_ALIASES else s


def _read(root) -> dict:
    p = config_path(root)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        return {"auths": {}}
    except ValueError as e:
        raise ConfigError(f"read credentials {p}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"read credentials {p}: not a JSON object")
    data.setdefault("auths", {})
    return data


def _write(root, data: dict) -> None:
    atomic_write(config_path(root), json.dumps(data, indent="\t").encode() + b"\n", mode=0o600)


def store_credentials(root, server: str, username: str, password: str) -> None:
    if ":" in username:
        raise UsageError("login: a username cannot contain ':'")
    data = _read(root)
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    data["auths"][normalize_server(server)] = {"auth": token}
    _write(root, data)


def remove_credentials(root, server: str) -> bool:
    data = _read(root)
    key = normalize_server(server)
    if key not in data["auths"]:
        return False
    del data["auths"][key]
    _write(root, data)
    return True


def credentials(root, host: str) -> tuple[str, str] | None:
    """(username, password) saved for ``host`` or None."""
    data = _read(root)
    keys = HUB_ALIASES if host in HUB_ALIASES else (host, f"https://{host}", f"http://{host}")
    for k in keys:
        entry = data["auths"].get(k)
        if not entry:
            continue
        if "auth" in entry:
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError as e:
                raise ConfigError(f"read credentials {config_path(root)}: bad auth for {k}") from e
            return user, pw
        if "username" in entry:
            return entry["username"], entry.get("password", "")
    return None


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    # docker's default insecure CIDRs: 127.0.0.0/8 and ::1 (ipaddress costs ~10 ms to import)
    if name in ("localhost", "::1", "0:0:0:0:0:0:0:1"):
        return True
    parts = name.split(".")
    return (len(parts) == 4 and parts[0] == "127"
            and all(p.isdigit() and int(p) < 256 for p in parts))


def insecure_registries(root) -> set[str]:
    out = {h.strip() for h in os.environ.get("BERTH_INSECURE_REGISTRIES", "").split(",") if h.strip()}
    p = Path(root) / "registries.json"
    try:
        data = json.loads(p.read_text())
        out.update(data.get("insecure-registries", []))
    except FileNotFoundError:
        pass
    except (ValueError, AttributeError) as e:
        raise ConfigError(f"read {p}: {e}") from e
    return out


_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…",scope="…"`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _PARAM.finditer(rest):
        params[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
    return scheme.lower(), params

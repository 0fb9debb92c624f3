"""``user[:group]`` to numeric ids, from a root filesystem's /etc/passwd and /etc/group.

Used by ``COPY --chown`` and RUN under ``USER``. The files are read through
``openat2(RESOLVE_IN_ROOT)``: an image whose /etc/passwd is a symlink to
``/etc/shadow`` reads its own, not the host's.
"""

from __future__ import annotations

import os

from berth.errors import BerthError, UsageError
from berth.image.extract import open_dir_in_root


def _read_in_root(root_fd: int, rel: str) -> list[list[str]]:
    try:
        pfd = open_dir_in_root(root_fd, os.path.dirname(rel))
    except (OSError, BerthError):  # no /etc, or /etc is not a directory
        return []
    try:
        fd = os.open(os.path.basename(rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    except OSError:
        return []
    finally:
        os.close(pfd)
    with open(fd, "rb") as f:
        data = f.read(4 << 20).decode("utf-8", "replace")
    return [line.split(":") for line in data.splitlines() if line and not line.startswith("#")]


def resolve_user(root_fd: int, spec: str) -> tuple[int, int, list[int]]:
    """(uid, gid, supplementary gids) for ``user[:group]`` inside the root filesystem.

    A numeric user not in /etc/passwd gets gid 0 (docker's rule for USER);
    supplementary groups are those listing the user by name in /etc/group.

    Raises:
        UsageError: a user or group name not in the image's files.
    """
    user, _, group = spec.partition(":")
    passwd = _read_in_root(root_fd, "etc/passwd")
    groups = _read_in_root(root_fd, "etc/group")
    name = None
    if user.isdigit():
        uid, gid = int(user), 0
        for p in passwd:
            if len(p) > 3 and p[2] == user and p[3].isdigit():
                name, gid = p[0], int(p[3])
                break
    else:
        for p in passwd:
            if len(p) > 3 and p[0] == user and p[2].isdigit() and p[3].isdigit():
                name, uid, gid = user, int(p[2]), int(p[3])
                break
        else:
            raise UsageError(f"unable to find user {user}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for g in groups:
                if len(g) > 2 and g[0] == group and g[2].isdigit():
                    gid = int(g[2])
                    break
            else:
                raise UsageError(f"unable to find group {group}: no matching entries in group file")
    extra = []
    if name and not group:
        for g in groups:
            if len(g) > 3 and g[2].isdigit() and name in g[3].split(","):
                extra.append(int(g[2]))
    return uid, gid, extra

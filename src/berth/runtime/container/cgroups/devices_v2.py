"""Device access control on cgroup v2.

cgroup v2 has no devices controller: the kernel asks an eBPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup instead. This build does
not yet generate that program, so ``DEVICE_FILTER`` is False and
``linux.resources.devices`` is NOT enforced on pure-v2 hosts (runc and crun do
enforce it there). ``features`` reports this; hybrid and v1 hosts (this
project's test machines) use the v1 devices controller and are enforced.
"""

from __future__ import annotations

DEVICE_FILTER = False


def attach(cgroup_dir: str, rules: list[tuple[bool, str]]) -> None:
    """Enforce ``rules`` ((allow, "type major:minor access"), in order) on the cgroup.

    Without an eBPF device filter this accepts the (already validated) rules
    and enforces nothing; see the module docstring.
    """
    del cgroup_dir, rules


def detach(cgroup_dir: str) -> None:
    """Drop what ``attach`` installed (the kernel frees it with the cgroup anyway)."""
    del cgroup_dir

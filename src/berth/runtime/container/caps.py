"""Capability names <-> numbers, and applying process.capabilities.

Order matters (capabilities(7), runc's finalizeNamespace): drop from the
bounding set while CAP_SETPCAP is still held; set PR_SET_KEEPCAPS so that
setuid() to a non-root user keeps the permitted set; change user; then capset()
the effective/permitted/inheritable sets; last raise ambient capabilities, which
must already be in permitted and inheritable.
"""

from berth._sys import caps as _caps
from berth._sys import proc as _proc
from berth.errors import ConfigError

NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
NUMBERS = {f"CAP_{n}": i for i, n in enumerate(NAMES)}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def number(name: str) -> int:
    """The number of capability ``name`` (``CAP_CHOWN`` or ``chown``)."""
    key = name.upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    try:
        return NUMBERS[key]
    except KeyError:
        raise ConfigError(f"unknown capability {name!r}") from None


def mask(names: list[str]) -> int:
    m = 0
    for n in names:
        m |= 1 << number(n)
    return m


def masks(capabilities: dict | None) -> dict[str, int]:
    """Per-set bit masks of process.capabilities (a missing set is empty)."""
    capabilities = capabilities or {}
    return {s: mask(capabilities.get(s, ())) for s in SETS}


def names(m: int) -> list[str]:
    return [f"CAP_{n}" for i, n in enumerate(NAMES) if m >> i & 1]


def drop_bounding(keep: int) -> None:
    """Drop every capability not in ``keep`` from the bounding set (needs CAP_SETPCAP)."""
    for cap in range(_caps.last_cap() + 1):
        if not keep >> cap & 1:
            _caps.drop_bounding(cap)  # dropping an absent capability succeeds


def apply_sets(m: dict[str, int]) -> None:
    """capset() the three thread sets, then raise the ambient ones."""
    known = (1 << (_caps.last_cap() + 1)) - 1
    _caps.capset(m["effective"] & known, m["permitted"] & known, m["inheritable"] & known)
    _caps.ambient_clear()
    # The kernel refuses ambient capabilities that are not both permitted and
    # inheritable; runc warns and goes on, and configs (runc spec's) rely on it.
    allowed = m["ambient"] & m["permitted"] & m["inheritable"] & known
    for cap in range(_caps.last_cap() + 1):
        if allowed >> cap & 1:
            _caps.ambient_raise(cap)


def keep_across_setuid(on: bool) -> None:
    _proc.set_keepcaps(on)

"""Isolation findings from the probe, and the score they condense into.

The score rates what the workload can reach from inside, measured: it starts at
10 and each rule below that matches takes its penalty off (never below 0).
Operations and writable settings count only when the kernel the workload talks
to is the host's: root inside a VM or gVisor may mount or load modules, but into
its own kernel. The rules are data so docs/compare.md and the report show the
same text.
"""

from dataclasses import dataclass

from .probe import DANGEROUS, READABLE_PATHS, WRITABLE_PATHS

# Operations whose success on the host kernel is an attack surface (chroot is only informative).
OP_WEIGHT = {key: 1 for key, _, _ in DANGEROUS} | {"chroot": 0}
SECRET_PATHS = ["/proc/kcore", "/proc/keys", "/sys/firmware"]  # kallsyms is readable under docker too


@dataclass(frozen=True)
class Rule:
    id: str
    text: str
    penalty: int  # per match
    cap: int  # most this rule can take off


RULES = [
    Rule("host-kernel", "the workload's syscalls reach the host kernel (its kernel release is the host's)", 3, 3),
    Rule("host-pids", "a host process (the marker compare started) is visible", 2, 2),
    Rule("host-netifs", "a host network interface (same MAC) is visible", 1, 1),
    Rule("host-ops", "a dangerous operation succeeded on the host kernel (each)", 1, 3),
    Rule("host-writable", "a host-wide kernel setting is writable (each)", 1, 2),
    Rule("host-secrets", "kernel memory, keys or firmware of the host are readable", 1, 1),
    Rule("no-seccomp", "no seccomp filter while on the host kernel", 1, 1),
    Rule("host-devices", "host block devices are visible", 1, 1),
]
MAX_SCORE = 10


def findings(p: dict[str, str], host: dict) -> dict:
    """Turn the probe's key=value lines into findings, comparing with the host's view."""
    macs = set(p.get("netmacs", "").split()) - {"00:00:00:00:00:00"}
    capeff = int(p.get("capeff") or "0", 16)
    return {
        "kernel_release": p.get("kernel", ""),
        "host_kernel": p.get("kernel", "") == host["kernel"],
        "capeff": p.get("capeff", ""),
        "capabilities": bin(capeff).count("1"),
        "seccomp_mode": int(p["seccomp"]) if p.get("seccomp", "").isdigit() else None,
        "no_new_privs": p.get("nnp") == "1",
        "host_pids_visible": p.get("host_marker_visible") == "yes",
        "processes_visible": int(p.get("procs_visible") or 0),
        "netifs": p.get("netifs", "").split(),
        "host_netifs_visible": bool(macs & set(host["macs"])),
        "ops": {key: p.get(f"op_{key}") == "ok" for key, _, _ in DANGEROUS},
        "writable": {path: p.get(f"writable_{path}") == "yes" for path in WRITABLE_PATHS},
        "readable": {path: p.get(f"readable_{path}") == "yes" for path in READABLE_PATHS},
        "block_devices": p.get("block_devices", "").split(),
        "dev_entries": int(p.get("dev_entries") or 0),
    }


def score(f: dict) -> tuple[int, list[dict]]:
    """(score 0-10, the rules that matched with what they took off)."""
    shared = f["host_kernel"]
    counts = {
        "host-kernel": int(shared),
        "host-pids": int(f["host_pids_visible"]),
        "host-netifs": int(f["host_netifs_visible"]),
        "host-ops": sum(OP_WEIGHT[k] for k, ok in f["ops"].items() if ok) if shared else 0,
        "host-writable": sum(f["writable"].values()) if shared else 0,
        "host-secrets": int(any(f["readable"][p] for p in SECRET_PATHS)) if shared else 0,
        "no-seccomp": int(shared and f["seccomp_mode"] != 2),
        "host-devices": int(shared and bool(f["block_devices"])),
    }
    matched, total = [], 0
    for rule in RULES:
        off = min(rule.cap, rule.penalty * counts[rule.id])
        if off:
            detail = ""
            if rule.id == "host-ops":
                detail = ", ".join(k for k, ok in f["ops"].items() if ok and OP_WEIGHT[k])
            elif rule.id == "host-writable":
                detail = ", ".join(p for p, w in f["writable"].items() if w)
            matched.append({"rule": rule.id, "text": rule.text, "penalty": off, "detail": detail})
            total += off
    return max(0, MAX_SCORE - total), matched

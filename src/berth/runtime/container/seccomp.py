"""linux.seccomp (runtime-spec) → a libseccomp filter in the calling process.

``validate(cfg)`` checks a linux.seccomp object and raises ``ConfigError``
with one line naming the field; ``load(cfg)`` validates, builds the filter
with libseccomp and installs it in the calling thread (the container's init,
just before exec).

Semantics follow runc:
- unknown syscall names are skipped (a profile lists syscalls of many
  kernels and arches); unknown actions, operators, arches or flags are errors;
- ERRNO and TRACE return ``errnoRet`` (EPERM when absent); ``errnoRet`` on
  any other action is an error; a rule with the default action is dropped;
- conditions on distinct arguments are ANDed in one rule; several conditions
  on the *same* argument become one rule each (ORed), since libseccomp
  refuses two comparisons of one argument in a rule.
- SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath): not supported, and
  refused clearly rather than silently allowing.

Order in the runtime: libseccomp is told not to set no_new_privs itself
(SCMP_FLTATR_CTL_NNP off), so the caller decides: with noNewPrivileges set
prctl(PR_SET_NO_NEW_PRIVS) first and load last; without it, load while the
process still has CAP_SYS_ADMIN (before dropping capabilities), as runc does.
"""

from __future__ import annotations

import errno as _errno
import os
import stat

from berth.errors import ConfigError, RuntimeFailure

ACTIONS = (
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
)
OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
ARCHES = (
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
)
# flag → (libseccomp attribute, value); None: accepted, nothing to do.
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": None,  # one thread at this point; runc ignores it too
    "SECCOMP_FILTER_FLAG_LOG": (6, 1),  # SCMP_FLTATR_CTL_LOG
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (7, 1),  # SCMP_FLTATR_CTL_SSB
}
_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath", "listenerMetadata", "syscalls"}
_RULE_KEYS = {"names", "action", "errnoRet", "args"}
_ARG_KEYS = {"index", "value", "valueTwo", "op"}
_U64 = (1 << 64) - 1

# A normalized rule: (action, errno or None, names, [(index, op, value, valueTwo)])
Rule = tuple[str, "int | None", list[str], list[tuple[int, int, int, int]]]


def _where(i: int | None, j: int | None = None) -> str:
    w = "linux.seccomp"
    if i is not None:
        w += f".syscalls[{i}]"
    if j is not None:
        w += f".args[{j}]"
    return w


def _int(v: object, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}: expected an integer in [{lo}, {hi}], got {v!r}")
    return v


def _action(name: object, errno_ret: object, where: str) -> tuple[str, int | None]:
    if name not in ACTIONS:
        raise ConfigError(f"{where}.action: unknown seccomp action {name!r}")
    if name == "SCMP_ACT_NOTIFY":
        raise ConfigError(
            f"{where}.action: SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), "
            "which berth-runtime does not support"
        )
    assert isinstance(name, str)
    if errno_ret is None:
        return name, (_errno.EPERM if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE") else None)
    if name not in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        raise ConfigError(f"{where}.errnoRet: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {name}")
    return name, _int(errno_ret, f"{where}.errnoRet", 0, 0xFFFF)


def _normalize(cfg: object) -> tuple[tuple[str, int | None], list[str], list[str], list[Rule]]:
    if not isinstance(cfg, dict):
        raise ConfigError("linux.seccomp: expected an object")
    for k in cfg:
        if k not in _KEYS:
            raise ConfigError(f"linux.seccomp: unknown field {k!r}")
    if "defaultAction" not in cfg:
        raise ConfigError("linux.seccomp.defaultAction: missing")
    default = _action(cfg["defaultAction"], cfg.get("defaultErrnoRet"), "linux.seccomp.default")
    arches = cfg.get("architectures") or []
    if not isinstance(arches, list):
        raise ConfigError("linux.seccomp.architectures: expected a list")
    for a in arches:
        if a not in ARCHES:
            raise ConfigError(f"linux.seccomp.architectures: unknown architecture {a!r}")
    flags = cfg.get("flags") or []
    if not isinstance(flags, list):
        raise ConfigError("linux.seccomp.flags: expected a list")
    for f in flags:
        if f not in FLAGS:
            raise ConfigError(f"linux.seccomp.flags: unsupported flag {f!r}")
    if cfg.get("listenerPath"):
        raise ConfigError("linux.seccomp.listenerPath: seccomp agents are not supported by berth-runtime")
    syscalls = cfg.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise ConfigError("linux.seccomp.syscalls: expected a list")
    rules: list[Rule] = []
    for i, sc in enumerate(syscalls):
        w = _where(i)
        if not isinstance(sc, dict):
            raise ConfigError(f"{w}: expected an object")
        for k in sc:
            if k not in _RULE_KEYS:
                raise ConfigError(f"{w}: unknown field {k!r}")
        names = sc.get("names")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{w}.names: expected a non-empty list of syscall names")
        for n in names:
            if not isinstance(n, str) or not n or not n.isascii() or "\0" in n:
                raise ConfigError(f"{w}.names: {n!r} is not a syscall name")
        if "action" not in sc:
            raise ConfigError(f"{w}.action: missing")
        action, eret = _action(sc["action"], sc.get("errnoRet"), w)
        args = sc.get("args") or []
        if not isinstance(args, list):
            raise ConfigError(f"{w}.args: expected a list")
        conds = []
        for j, a in enumerate(args):
            wa = _where(i, j)
            if not isinstance(a, dict):
                raise ConfigError(f"{wa}: expected an object")
            for k in a:
                if k not in _ARG_KEYS:
                    raise ConfigError(f"{wa}: unknown field {k!r}")
            if "index" not in a or "value" not in a or "op" not in a:
                raise ConfigError(f"{wa}: needs index, value and op")
            if a["op"] not in OPERATORS:
                raise ConfigError(f"{wa}.op: unknown operator {a['op']!r}")
            conds.append(
                (
                    _int(a["index"], f"{wa}.index", 0, 5),
                    OPERATORS[a["op"]],
                    _int(a["value"], f"{wa}.value", 0, _U64),
                    _int(a.get("valueTwo", 0), f"{wa}.valueTwo", 0, _U64),
                )
            )
        rules.append((action, eret, names, conds))
    return default, arches, flags, rules


def validate(cfg: dict) -> None:
    """Raise ``ConfigError`` (one line, naming the field) if ``cfg`` is not a
    linux.seccomp object berth-runtime can load."""
    _normalize(cfg)


def _action_value(sc, name: str, eret: int | None) -> int:
    """The libseccomp action word for an action name (and its errnoRet)."""
    if name == "SCMP_ACT_ERRNO":
        return sc.act_errno(eret or 0)
    if name == "SCMP_ACT_TRACE":
        return sc.act_trace(eret or 0)
    return {
        "SCMP_ACT_KILL": sc.ACT_KILL,
        "SCMP_ACT_KILL_THREAD": sc.ACT_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": sc.ACT_KILL_PROCESS,
        "SCMP_ACT_TRAP": sc.ACT_TRAP,
        "SCMP_ACT_ALLOW": sc.ACT_ALLOW,
        "SCMP_ACT_LOG": sc.ACT_LOG,
    }[name]


def build(cfg: dict):
    """Validate and build the libseccomp filter (not loaded); caller releases it."""
    from berth._sys import seccomp as sc

    default, arches, flags, rules = _normalize(cfg)
    default_act = _action_value(sc, *default)
    try:
        filt = sc.Filter(default_act)
    except OSError as e:
        raise RuntimeFailure(f"seccomp: {e.strerror}") from None
    try:
        # The runtime sets no_new_privs itself (process.noNewPrivileges).
        filt.attr_set(sc.ATTR_CTL_NNP, 0)
        for a in arches:
            token = sc.arch_resolve(a[len("SCMP_ARCH_"):].lower())
            if not token:
                raise ConfigError(f"linux.seccomp.architectures: libseccomp does not know {a}")
            filt.arch_add(token, a)
        for f in flags:
            attr = FLAGS[f]
            if attr:
                filt.attr_set(*attr)
        for action, eret, names, conds in rules:
            act = _action_value(sc, action, eret)
            if act == default_act:
                continue  # libseccomp rejects a rule that repeats the default action
            indexes = [c[0] for c in conds]
            groups = [conds] if len(set(indexes)) == len(indexes) else [[c] for c in conds]
            for name in names:
                nr = sc.syscall_resolve(name)
                if nr == sc.NR_SCMP_ERROR:
                    continue  # unknown to this libseccomp: skipped, as runc does
                for g in groups:
                    filt.rule_add(act, nr, g, name)
    except OSError as e:
        filt.release()
        raise RuntimeFailure(f"seccomp: {e.strerror}") from None
    except BaseException:
        filt.release()
        raise
    return filt


def load(cfg: dict, cache_dir: str | None = None) -> None:
    """Install the linux.seccomp filter ``cfg`` in the calling thread.

    With ``cache_dir``, the compiled program comes from ``program()`` (a file
    read instead of libseccomp's compilation when cached).
    """
    from berth._sys import seccomp as sc

    if cache_dir is not None:
        _normalize(cfg)
        prog = program(cfg, cache_dir)
        if prog is not None:
            try:
                sc.load_bpf(prog)
            except OSError as e:
                raise RuntimeFailure(f"seccomp: {e.strerror}") from None
            return
    filt = build(cfg)
    try:
        filt.load()
    except OSError as e:
        raise RuntimeFailure(f"seccomp: {e.strerror}") from None
    finally:
        filt.release()


def _trusted(st) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def program(cfg: dict, cache_dir: str) -> bytes | None:
    """The compiled classic-BPF program for linux.seccomp ``cfg``, cached in ``cache_dir``.

    Compiling docker's profile with libseccomp takes about 10 ms on every
    container start (bench/seccomp_cgroups.py); the program depends only on
    the profile and the kernel, so it is kept in CACHE_DIR/<sha256>.bpf and
    later loaded with prctl(PR_SET_SECCOMP). A miss compiles (which validates:
    ConfigError for a bad profile) and stores the program atomically.

    None when the cache cannot be used; the caller then builds the filter in
    memory. That is the case when the directory or the file is not ours or is
    writable by group/others (a planted program would be a filter of an
    attacker's choosing), and when ``flags`` are set: they are arguments of
    seccomp(2) that prctl cannot pass, not part of the program.
    """
    if not isinstance(cfg, dict) or cfg.get("flags"):
        return None
    from _sha256 import sha256  # builtin: no OpenSSL import on the hot path

    from berth.runtime import jsonio  # the C encoder: no `import json` (re, enum)

    # The key leaves out libseccomp's version so that a cache hit needs no
    # dlopen (~2 ms): a program from an older libseccomp is still a correct
    # filter for the same profile, and the cache (under /run) ends at reboot.
    uname = os.uname()
    key = f"{jsonio.dumps_canonical(cfg)}|{uname.release}|{uname.machine}"
    path = os.path.join(cache_dir, sha256(key.encode()).hexdigest() + ".bpf")
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        dst = os.lstat(cache_dir)
        if not stat.S_ISDIR(dst.st_mode) or not _trusted(dst):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return _compile_to(cfg, path)
    except OSError:
        return None
    try:
        if not _trusted(os.fstat(fd)):
            return None
        return _read_all(fd) or None
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data


def _compile_to(cfg: dict, path: str) -> bytes | None:
    filt = build(cfg)  # ConfigError/RuntimeFailure propagate: the profile is bad
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        filt.release()
        return None
    try:
        filt.export_bpf(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        prog = _read_all(fd)
        os.fsync(fd)
        os.rename(tmp, path)  # atomic: readers see a whole program or none
        return prog
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return None
    finally:
        os.close(fd)
        filt.release()


def features() -> dict:
    """The ``linux.seccomp`` part of ``berth-runtime features`` (runc's keys)."""
    return {
        "enabled": True,
        "actions": [a for a in ACTIONS if a != "SCMP_ACT_NOTIFY"],
        "operators": list(OPERATORS),
        "archs": list(ARCHES),
        "knownFlags": [*FLAGS, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "supportedFlags": list(FLAGS),
    }

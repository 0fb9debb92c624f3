"""``berth build``: a Containerfile to an image, with docker's semantics.

Each stage starts from an image, ``scratch`` or an earlier stage. Instructions
that change files (RUN, COPY, ADD) run on an overlayfs of the stage's layers
plus a fresh upper directory; the upper directory, with overlayfs' whiteouts
turned into OCI ones, becomes the step's layer (``layerdiff``). The other
instructions only change the image config, as docker does:

- ENV sets Env (and overrides an ARG of the same name in substitutions);
  ARG values reach RUN's environment but not the image.
- ENTRYPOINT resets a CMD inherited from the base image, not one set in the
  same stage (buildkit's ``cmdSet`` rule).
- WORKDIR is relative to the previous one; it is created by the next RUN or
  COPY that needs it.
- Shell forms of RUN, CMD and ENTRYPOINT run under SHELL (``/bin/sh -c``).
- A stage from ``scratch`` gets docker's default PATH in its Env.

Cache: every instruction extends a chain key, sha256 of the previous key and
the instruction after substitution, starting from the base image's ID; COPY
and ADD add a digest of the content they read (names, types, modes and
bytes). A file-changing step whose key is in ``<root>/build-cache`` and whose
layer blob is still in the store is reused. ``--no-cache`` skips lookups.

Nothing is visible until the final ``write_image``: a failed build leaves its
work directory removed and no tag moved.
"""

from __future__ import annotations

import copy as _copy
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import BerthError, UsageError
from berth.image import buildcopy, buildrun
from berth.image.containerfile import (
    Containerfile,
    ContainerfileError,
    Instruction,
    Stage,
    key_values,
    substitute,
)
from berth.image.extract import Limits, extract_layer, make_dirs_in_root
from berth.image.ignore import IgnoreRules
from berth.image.layerdiff import MEDIA_TYPE_GZIP, diff_to_blob
from berth.image.passwd import resolve_user
from berth.image.rootfs import COPY_MARKER, mount_rootfs, unmount_rootfs

DEFAULT_SHELL = ["/bin/sh", "-c"]
PATH_ENV = buildrun.DEFAULT_PATH
# build args docker predefines: usable without an ARG line, never in history
PREDEFINED_ARGS = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}  # fmt: skip
# our own layers come back exactly as made (setuid bits, caps, devices)
OWN_LAYER_LIMITS = Limits(allow_devices=True, keep_setuid=True, keep_file_caps=True)


class BuildError(BerthError):
    """A build that cannot go on; the message names the Containerfile line."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _hash(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class StageState:
    """A stage's image as the build goes: config, layers (with their directories), cache key."""

    image: dict  # the image config document, without rootfs
    layers: list[dict]  # descriptors with "diff_id", lowest first
    dirs: list[Path | None]  # unpacked directory of each layer, None until needed
    key: str
    args: dict[str, str] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_set: bool = False
    base_image: object = None  # the store's Image this stage started from, if any
    # when the stage's content last changed: a step run now, or a cached step's
    # own time; config steps and the image use it, so a fully cached rebuild
    # gives the same image ID, as with docker
    time: str = "1970-01-01T00:00:00Z"

    @property
    def cfg(self) -> dict:
        return self.image.setdefault("config", {})

    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.cfg.get("Env") or [] if "=" in e)

    def scope(self) -> dict[str, str]:
        """Variables for substitution: ARGs, overridden by ENV."""
        return {**self.args, **self.env()}


@dataclass
class BuildOptions:
    context: Path
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    quiet: bool = False
    runtime: str = field(default_factory=buildrun.default_runtime)


class Builder:
    """Builds one Containerfile against an ``ImageStore``.

    ``store`` needs: ``get(ref)``, ``layer_dirs(img)``, ``blob_path(digest)``,
    ``has_blob(digest)``, ``put_blob(path, media_type, expected_digest)`` and
    ``write_image(config, layers, tags)``.
    """

    def __init__(
        self,
        store,
        engine_root: Path,
        cf: Containerfile,
        opts: BuildOptions,
        log: Callable[[str], None] = print,
    ):
        self.store = store
        self.cf = cf
        self.opts = opts
        self.log = (lambda s: None) if opts.quiet else log
        self.cache_dir = Path(engine_root) / "build-cache"
        self.work = Path(engine_root) / "build-tmp" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.escape = cf.directives.get("escape", "\\")
        self.rules = IgnoreRules.load(opts.context)
        self.done: dict[int, StageState] = {}
        self._steps = 0
        self._mounted: list[Path] = []

    # ---------------------------------------------------------------- driver

    def build(self, tags: list[str]) -> object:
        """Build the target (or last) stage, tag it; return the store's Image."""
        target = self.cf.stages[-1]
        if self.opts.target:
            target = self.cf.stage(self.opts.target)
            if target is None:
                raise UsageError(f"build: target stage {self.opts.target!r} not found")
        self.work.mkdir(parents=True)
        try:
            self.global_args = self._global_args()
            for s in self._needed(target):
                self.log(
                    f"STEP stage {s.index}{' (' + s.name + ')' if s.name else ''}: FROM {s.base}"
                )
                self.done[s.index] = self._stage(s)
            st = self.done[target.index]
            image = dict(st.image)
            image["created"] = st.time
            return self.store.write_image(image, st.layers, tags)
        finally:
            for m in reversed(self._mounted):
                unmount_rootfs(m)
            shutil.rmtree(self.work, ignore_errors=True)

    def _global_args(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.cf.global_args:
            for name, default in self._arg_decls(ins, out):
                value = self.opts.build_args.get(name, default)
                if value is not None:
                    out[name] = value
        return out

    def _arg_decls(self, ins: Instruction, scope: dict[str, str]) -> list[tuple[str, str | None]]:
        decls = []
        for word in substitute(ins.rest, scope, split=True, escape=self.escape):
            name, eq, default = word.partition("=")
            if not name:
                raise ins.error("want ARG NAME[=DEFAULT]")
            decls.append((name, default if eq else None))
        return decls

    def _needed(self, target: Stage) -> list[Stage]:
        """The stages ``target`` depends on (FROM a stage, COPY --from), in file order."""
        need: set[int] = set()

        def visit(s: Stage) -> None:
            if s.index in need:
                return
            need.add(s.index)
            refs = [s.base] + [i.flags["from"] for i in s.instructions if "from" in i.flags]
            for ref in refs:
                dep = self.cf.stage(ref)
                if dep is not None and dep.index < s.index:
                    visit(dep)

        visit(target)
        return [s for s in self.cf.stages if s.index in need]

    # ---------------------------------------------------------------- stages

    def _stage(self, stage: Stage) -> StageState:
        base = "".join(substitute(stage.base, self.global_args, escape=self.escape))
        dep = self.cf.stage(base)
        if dep is not None and dep.index < stage.index:
            prev = self.done[dep.index]
            st = StageState(
                _copy.deepcopy(prev.image), list(prev.layers), list(prev.dirs), prev.key
            )
            st.base_image, st.time = prev.base_image, prev.time
        elif base == "scratch":
            image = {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": [PATH_ENV]},
                "history": [],
            }
            st = StageState(image, [], [], _hash("scratch"))
        else:
            img = self.store.get(base)
            image = {
                k: _copy.deepcopy(v)
                for k, v in img.config.items()
                if k not in ("rootfs", "created")
            }
            image.setdefault("history", [])
            st = StageState(
                image, list(img.layers), [None] * len(img.layers), _hash("image", img.id)
            )
            for i, d in enumerate(zip(img.layers, img.diff_ids, strict=True)):
                st.layers[i] = {**d[0], "diff_id": d[1]}
            st.base_image = img
            st.time = img.config.get("created") or st.time
        for ins in stage.instructions:
            try:
                self._dispatch(st, ins)
            except ContainerfileError:
                raise
            except (BuildError, buildrun.RunFailed):
                raise
            except BerthError as e:
                raise BuildError(f"line {ins.line}: {ins.cmd}: {e}") from None
        return st

    def _dispatch(self, st: StageState, ins: Instruction) -> None:
        handler = getattr(self, f"_do_{ins.cmd.lower()}")
        self.log(f"STEP {ins.original}")
        handler(st, ins)

    def _words(self, st: StageState, ins: Instruction) -> list[str]:
        if ins.json is not None:
            return ins.json
        return [
            w for w in substitute(ins.rest, st.scope(), split=True, escape=self.escape) if w != ""
        ]

    def _history(self, st: StageState, created_by: str, empty: bool) -> None:
        h = {"created": st.time, "created_by": created_by, "comment": "berth build"}
        if empty:
            h["empty_layer"] = True
        st.image.setdefault("history", []).append(h)

    def _config_step(self, st: StageState, ins: Instruction, created_by: str) -> None:
        st.key = _hash(st.key, created_by)
        self._history(st, created_by, empty=True)

    # ---------------------------------------------------------------- config-only instructions

    def _do_env(self, st: StageState, ins: Instruction) -> None:
        env = st.cfg.get("Env") or []
        pairs = key_values(ins, st.scope(), self.escape)
        for k, v in pairs:
            env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
        st.cfg["Env"] = env
        self._config_step(st, ins, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    def _do_arg(self, st: StageState, ins: Instruction) -> None:
        for name, default in self._arg_decls(ins, st.scope()):
            if name in self.opts.build_args:
                value: str | None = self.opts.build_args[name]
            elif default is not None:
                value = default
            else:
                value = self.global_args.get(name)
            if value is not None:
                st.args[name] = value
            st.key = _hash(st.key, "ARG", name, value)

    def _do_label(self, st: StageState, ins: Instruction) -> None:
        pairs = key_values(ins, st.scope(), self.escape)
        labels = st.cfg.get("Labels") or {}
        labels.update(pairs)
        st.cfg["Labels"] = labels
        self._config_step(st, ins, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

    def _do_maintainer(self, st: StageState, ins: Instruction) -> None:
        st.image["author"] = ins.rest
        self._config_step(st, ins, f"MAINTAINER {ins.rest}")

    def _do_workdir(self, st: StageState, ins: Instruction) -> None:
        path = "".join(substitute(ins.rest, st.scope(), escape=self.escape))
        if not path:
            raise ins.error("needs a path")
        if not path.startswith("/"):
            path = os.path.join(st.cfg.get("WorkingDir") or "/", path)
        st.cfg["WorkingDir"] = os.path.normpath(path)
        self._config_step(st, ins, f"WORKDIR {st.cfg['WorkingDir']}")

    def _do_user(self, st: StageState, ins: Instruction) -> None:
        user = "".join(substitute(ins.rest, st.scope(), escape=self.escape))
        if not user:
            raise ins.error("needs a user")
        st.cfg["User"] = user
        self._config_step(st, ins, f"USER {user}")

    def _command(self, st: StageState, ins: Instruction) -> list[str]:
        if ins.json is not None:
            return list(ins.json)
        return [*st.shell, ins.rest]

    def _do_cmd(self, st: StageState, ins: Instruction) -> None:
        st.cfg["Cmd"] = self._command(st, ins)
        st.cmd_set = True
        self._config_step(st, ins, f"CMD {json.dumps(st.cfg['Cmd'])}")

    def _do_entrypoint(self, st: StageState, ins: Instruction) -> None:
        st.cfg["Entrypoint"] = self._command(st, ins) if ins.rest else None
        if not st.cmd_set:
            st.cfg["Cmd"] = None  # an inherited CMD does not survive a new ENTRYPOINT
        self._config_step(st, ins, f"ENTRYPOINT {json.dumps(st.cfg['Entrypoint'])}")

    def _do_shell(self, st: StageState, ins: Instruction) -> None:
        if not ins.json:
            raise ins.error('SHELL requires the JSON form, e.g. SHELL ["/bin/bash", "-c"]')
        st.shell = list(ins.json)
        self._config_step(st, ins, f"SHELL {json.dumps(st.shell)}")

    def _do_expose(self, st: StageState, ins: Instruction) -> None:
        ports = st.cfg.get("ExposedPorts") or {}
        for word in self._words(st, ins):
            port, _, proto = word.partition("/")
            proto = (proto or "tcp").lower()
            lo, _, hi = port.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("tcp", "udp", "sctp"):
                raise ins.error(f"invalid port {word!r}")
            for p in range(int(lo), int(hi or lo) + 1):
                ports[f"{p}/{proto}"] = {}
        st.cfg["ExposedPorts"] = ports
        self._config_step(st, ins, f"EXPOSE {' '.join(sorted(ports))}")

    def _do_volume(self, st: StageState, ins: Instruction) -> None:
        vols = st.cfg.get("Volumes") or {}
        words = self._words(st, ins)
        if not words:
            raise ins.error("needs at least one path")
        for v in words:
            vols[v] = {}
        st.cfg["Volumes"] = vols
        self._config_step(st, ins, f"VOLUME {json.dumps(words)}")

    def _do_stopsignal(self, st: StageState, ins: Instruction) -> None:
        st.cfg["StopSignal"] = "".join(substitute(ins.rest, st.scope(), escape=self.escape))
        self._config_step(st, ins, f"STOPSIGNAL {st.cfg['StopSignal']}")

    # ---------------------------------------------------------------- file-changing instructions

    def _layer_dirs(self, st: StageState) -> list[Path]:
        base = st.base_image
        if base is not None and any(d is None for d in st.dirs[: len(base.layers)]):
            st.dirs[: len(base.layers)] = self.store.layer_dirs(base)
        for i, d in enumerate(st.dirs):
            if d is None:  # a cached layer of an earlier build: unpack it here
                dest = self.work / "layers" / st.layers[i]["diff_id"].split(":")[1]
                if not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    extract_layer(
                        self.store.blob_path(st.layers[i]["digest"]), dest, limits=OWN_LAYER_LIMITS
                    )
                st.dirs[i] = dest
        return [d for d in st.dirs if d is not None]

    def _mount(self, dirs: list[Path], name: str) -> tuple[Path, Path]:
        ctr = self.work / name
        ctr.mkdir()
        self._mounted.append(ctr)
        rootfs = mount_rootfs(dirs, ctr)
        if (ctr / COPY_MARKER).exists():
            raise BuildError(f"build needs overlayfs ({(ctr / COPY_MARKER).read_text().strip()})")
        return ctr, rootfs

    def _unmount(self, ctr: Path) -> None:
        unmount_rootfs(ctr, keep_upper=True)
        self._mounted.remove(ctr)

    def _fs_step(
        self,
        st: StageState,
        ins: Instruction,
        key: str,
        created_by: str,
        action: Callable[[Path, int], None],
    ) -> None:
        st.key = key
        entry = self.cache_dir / (key.split(":")[1] + ".json")
        if not self.opts.no_cache and entry.is_file():
            rec = json.loads(entry.read_text())
            desc = rec.get("layer")
            if desc is None or self.store.has_blob(desc["digest"]):
                self.log("  ---> using cache")
                if desc is not None:
                    st.layers.append(desc)
                    st.dirs.append(None)
                st.time = rec.get("created", st.time)
                self._history(st, created_by, empty=desc is None)
                return
        self._steps += 1
        ctr, rootfs = self._mount(self._layer_dirs(st), f"step{self._steps}")
        root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            action(ctr, root_fd)
        finally:
            os.close(root_fd)
            self._unmount(ctr)
        upper = self.work / "layers" / f"step{self._steps}"
        upper.parent.mkdir(parents=True, exist_ok=True)
        os.rename(ctr / "upper", upper)
        desc = None
        st.time = _now()
        if any(os.scandir(upper)):
            blob = self.work / f"blob{self._steps}"
            diff_id, digest, _, _ = diff_to_blob(upper, blob)
            desc = dict(self.store.put_blob(blob, MEDIA_TYPE_GZIP, expected_digest=digest))
            desc["diff_id"] = diff_id
            blob.unlink(missing_ok=True)
            st.layers.append(desc)
            st.dirs.append(upper)
        self._history(st, created_by, empty=desc is None)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"layer": desc, "created_by": created_by, "created": st.time}))
        os.replace(tmp, entry)

    def _do_run(self, st: StageState, ins: Instruction) -> None:
        if set(ins.flags) - {"network"}:
            raise ins.error(f"unsupported flag --{sorted(set(ins.flags) - {'network'})[0]}")
        if ins.flags.get("network", "none") not in ("none", "default"):
            raise ins.error("only --network=none or default (berth builds offline)")
        args = self._command(st, ins)
        created_by = "RUN " + " ".join(args)
        env = [f"{k}={v}" for k, v in st.args.items() if k not in st.env()] + list(
            st.cfg.get("Env") or []
        )
        workdir = st.cfg.get("WorkingDir") or "/"
        user = st.cfg.get("User") or "0"
        key = _hash(st.key, "RUN", args, sorted(st.args.items()))

        def action(ctr: Path, root_fd: int) -> None:
            uid, gid, extra = resolve_user(root_fd, user)
            os.close(make_dirs_in_root(root_fd, workdir.strip("/")))
            config = buildrun.bundle_config(args, env, workdir, uid, gid, extra)
            buildrun.run_step(
                self.opts.runtime, ctr, config, f"line {ins.line}: RUN {ins.rest}", self.opts.quiet
            )
            for leftover in ("config.json", "state"):
                p = ctr / leftover
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)

        self._fs_step(st, ins, key, created_by, action)

    def _do_copy(self, st: StageState, ins: Instruction, unpack: bool = False) -> None:
        allowed = {"from", "chown", "chmod"} if not unpack else {"chown", "chmod"}
        extra = set(ins.flags) - allowed
        if extra:
            raise ins.error(f"unsupported flag --{sorted(extra)[0]}")
        words = self._words(st, ins)
        if len(words) < 2:
            raise ins.error("needs at least one source and a destination")
        *srcs, dest = words
        if unpack and any("://" in s for s in srcs):
            raise ins.error("sources from URLs are not supported (berth builds offline)")
        chmod = None
        if "chmod" in ins.flags:
            try:
                chmod = int(ins.flags["chmod"], 8)
            except ValueError:
                raise ins.error(f"invalid --chmod {ins.flags['chmod']!r}") from None
        chown = "".join(substitute(ins.flags.get("chown", ""), st.scope(), escape=self.escape))
        src_root, rules, src_key, keep_owner = self._copy_source(st, ins)
        sources = buildcopy.find_sources(src_root, srcs, rules, f"line {ins.line}: {ins.cmd}")
        content = buildcopy.content_digest(sources, rules)
        flags = "".join(f"--{k}={v} " for k, v in sorted(ins.flags.items()))
        created_by = f"{ins.cmd} {flags}{' '.join(srcs)} {dest}"
        key = _hash(
            st.key, ins.cmd, srcs, dest, chown, chmod, src_key, content, st.cfg.get("WorkingDir")
        )
        workdir = st.cfg.get("WorkingDir") or "/"

        def action(ctr: Path, root_fd: int) -> None:
            owner = buildcopy.Owner()
            if chown:
                uid, gid, _ = resolve_user(root_fd, chown)
                owner = buildcopy.Owner(uid, gid)
            buildcopy.copy(
                sources,
                rules,
                dest,
                workdir,
                root_fd,
                owner=owner,
                keep_owner=keep_owner,
                chmod=chmod,
                unpack=unpack,
            )

        self._fs_step(st, ins, key, created_by, action)

    def _do_add(self, st: StageState, ins: Instruction) -> None:
        self._do_copy(st, ins, unpack=True)

    def _copy_source(
        self, st: StageState, ins: Instruction
    ) -> tuple[Path, IgnoreRules | None, str, bool]:
        """(root to copy from, ignore rules, its cache identity, keep owners?)."""
        ref = ins.flags.get("from")
        if ref is None:
            return self.opts.context, self.rules, "context", False
        ref = "".join(substitute(ref, st.scope(), escape=self.escape))
        dep = self.cf.stage(ref)
        if dep is not None:
            if dep.index not in self.done:
                raise ins.error(f"--from={ref}: stage is not built before this one")
            src = self.done[dep.index]
            dirs, key = self._layer_dirs(src), src.key
        else:
            img = self.store.get(ref)
            dirs, key = self.store.layer_dirs(img), img.id
        self._steps += 1
        _, rootfs = self._mount(dirs, f"from{self._steps}")
        return rootfs, None, key, True

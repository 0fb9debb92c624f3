"""``berth build``: build an image from a Containerfile (like ``docker build``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from berth.cli.common import Parser
from berth.errors import BerthError, NotFound, UsageError

DEFAULT_FILES = ("Containerfile", "Dockerfile")


def _parser(name: str) -> Parser:
    p = Parser(
        prog=f"berth {name}", description="Build an image from a Containerfile (or Dockerfile)"
    )
    p.add_argument("context", metavar="CONTEXT", help="the build context directory")
    p.add_argument(
        "-t", "--tag", action="append", default=[], help="name and tag, NAME[:TAG] (repeatable)"
    )
    p.add_argument(
        "-f",
        "--file",
        help="the Containerfile (default CONTEXT/Containerfile or CONTEXT/Dockerfile; - for stdin)",
    )
    p.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="K=V",
        help="set a build argument (K alone: from the environment)",
    )
    p.add_argument("--target", help="build this stage (and what it needs) only")
    p.add_argument("--no-cache", action="store_true", help="do not reuse cached steps")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    p.add_argument(
        "--runtime",
        help="OCI runtime for RUN steps (default berth-runtime; env BERTH_BUILD_RUNTIME)",
    )
    return p


def _containerfile(context: Path, flag: str | None) -> str:
    if flag == "-":
        return sys.stdin.read()
    if flag:
        path = Path(flag)
    else:
        path = next(
            (context / n for n in DEFAULT_FILES if (context / n).is_file()),
            context / DEFAULT_FILES[0],
        )
    try:
        return path.read_text()
    except FileNotFoundError:
        raise NotFound(
            f"build: {path}: no such file (want a Containerfile or Dockerfile)"
        ) from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise UsageError(f"build: {path}: not a readable text file ({e})") from None


def _build_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"build: invalid --build-arg {item!r} (want KEY=VALUE)")
        if eq:
            out[key] = value
        elif key in os.environ:
            out[key] = os.environ[key]
    return out


def main(name: str, argv: list[str], opts) -> int:
    args = _parser(name).parse_args(argv)
    context = Path(args.context)
    if not context.is_dir():
        raise NotFound(f"build: context {context}: not a directory")
    from berth.image import containerfile
    from berth.image.build import Builder, BuildOptions
    from berth.image.buildrun import default_runtime
    try:
        from berth.image.store import ImageStore
    except ImportError:  # a partial install (the store lands separately)
        raise BerthError("build: berth's image store is not installed") from None

    try:  # invalid tags fail before any work
        from berth.image.reference import parse_tag_target

        for t in args.tag:
            parse_tag_target(t)
    except ImportError:
        pass
    cf = containerfile.parse(_containerfile(context, args.file))
    bopts = BuildOptions(
        context=context.resolve(),
        build_args=_build_args(args.build_arg),
        target=args.target,
        no_cache=args.no_cache,
        quiet=args.quiet,
        runtime=args.runtime or default_runtime(),
    )
    image = Builder(ImageStore(opts.root), Path(opts.root), cf, bopts).build(args.tag)
    if args.quiet:
        print(image.id)
    else:
        print(f"Successfully built {image.short_id}")
        for t in args.tag:
            print(f"Successfully tagged {t}")
    return 0

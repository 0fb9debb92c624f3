"""``berth image …`` and docker's short forms (``pull``, ``push``, ``images``, ``tag``,
``rmi``, ``save``, ``load``, ``import``, ``login``, ``logout``)."""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time

from berth.cli.common import Parser
from berth.cli.format import human_size, print_table
from berth.errors import UsageError

SUBCOMMANDS = {
    "pull": "Download an image from a registry",
    "push": "Upload an image to a registry",
    "ls": "List images",
    "tag": "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
    "rm": "Remove one or more images",
    "save": "Save one or more images to a tar archive (docker-archive or OCI)",
    "load": "Load an image from a tar archive or OCI layout",
    "import": "Import the contents from a tarball to create a filesystem image",
    "export": "Export an image's flattened filesystem as a tar archive",
    "inspect": "Display detailed information on one or more images",
    "history": "Show the history of an image",
    "prune": "Remove unused images",
    "fsck": "Verify every blob in the image store",
    "bootstrap": "Make a base image without internet (busybox, debian:bookworm)",
}
# docker's short forms -> subcommand
SHORT = {
    "pull": "pull", "push": "push", "images": "ls", "tag": "tag", "rmi": "rm",
    "save": "save", "load": "load", "import": "import", "login": "login", "logout": "logout",
}
ALIASES = {"list": "ls", "remove": "rm", "rmi": "rm"}


def _store(opts):
    from berth.image.store import ImageStore

    store = ImageStore(opts.root)
    # images that containers use (running or not) are never removed from under them
    store.set_in_use_hook(lambda: _engine_images_in_use(opts.root))
    return store


def _engine_images_in_use(root: str) -> list[str]:
    from berth.engine.containers import Engine

    return Engine(root).images_in_use()


def human_ago(created: str) -> str:
    try:
        t = _dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return "N/A"
    secs = max(0, time.time() - t)
    for unit, length in (("years", 365 * 86400), ("months", 30 * 86400), ("weeks", 7 * 86400),
                         ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= 2 * length:
            return f"{int(secs // length)} {unit} ago"
    if secs >= 3600:
        return "About an hour ago"
    if secs >= 60:
        return "About a minute ago"
    return "Less than a second ago" if secs < 1 else f"{int(secs)} seconds ago"


def _progress(args):
    from berth.image.progress import make_progress

    return make_progress(quiet=getattr(args, "quiet", False))


# ---- subcommands ---------------------------------------------------------------


def cmd_pull(opts, argv):
    p = Parser(prog="berth pull", description=SUBCOMMANDS["pull"])
    p.add_argument("name")
    p.add_argument("--platform", help="os/arch[/variant] (default linux/amd64)")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    from berth.image import reference, registry

    reference.parse(a.name)
    img = registry.pull(_store(opts), a.name, platform=a.platform, insecure=a.insecure,
                        progress=_progress(a))
    ref = reference.parse(a.name)
    if not a.quiet:
        print(f"Digest: {img.digest}")
        if img.extra.get("up_to_date"):
            print(f"Status: Image is up to date for {ref.familiar()}")
        else:
            print(f"Status: Downloaded newer image for {ref.familiar()}")
    print(str(ref))
    return 0


def cmd_push(opts, argv):
    p = Parser(prog="berth push", description=SUBCOMMANDS["push"])
    p.add_argument("name")
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    from berth.image import reference, registry

    reference.parse(a.name)
    digest, size = registry.push(_store(opts), a.name, insecure=a.insecure, progress=_progress(a))
    ref = reference.parse(a.name)
    if not a.quiet:
        print(f"{ref.tag or 'latest'}: digest: {digest} size: {size}")
    else:
        print(digest)
    return 0


def _image_rows(store, show_all: bool, filt: str | None):
    from berth.image import reference

    for img in store.list():
        names = img.repo_tags or ["<none>:<none>"]
        for name in names:
            if name == "<none>:<none>":
                repo, tag = "<none>", "<none>"
            else:
                r = reference.parse(name)
                repo, tag = r.familiar_repository, r.tag or "<none>"
            if filt:
                if filt == "dangling=true" and img.repo_tags:
                    continue
                if filt.startswith("reference="):
                    import fnmatch

                    if not fnmatch.fnmatch(f"{repo}:{tag}", filt[10:]) and not fnmatch.fnmatch(repo, filt[10:]):
                        continue
            yield img, repo, tag


def cmd_ls(opts, argv):
    p = Parser(prog="berth images", description=SUBCOMMANDS["ls"])
    p.add_argument("repository", nargs="?")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("-f", "--filter", help="dangling=true or reference=PATTERN")
    p.add_argument("--format", help="'table' (default) or 'json'")
    a = p.parse_args(argv)
    if a.format not in (None, "table", "json"):
        raise UsageError(f"images: unsupported --format {a.format!r} (table, json)")
    store = _store(opts)
    filt = a.filter or (f"reference={a.repository}" if a.repository else None)
    rows = list(_image_rows(store, a.all, filt))
    if a.quiet:
        seen = []
        for img, _, _ in rows:
            iid = img.id if a.no_trunc else img.short_id
            if iid not in seen:
                seen.append(iid)
                print(iid)
        return 0
    if a.format == "json":
        for img, repo, tag in rows:
            print(json.dumps({
                "Containers": "N/A", "CreatedAt": img.created, "CreatedSince": human_ago(img.created),
                "Digest": img.digest, "ID": img.short_id, "Repository": repo, "Tag": tag,
                "Size": human_size(img.size), "VirtualSize": human_size(img.size),
            }))
        return 0
    table = [("REPOSITORY", "TAG", *(["DIGEST"] if a.digests else []), "IMAGE ID", "CREATED", "SIZE")]
    for img, repo, tag in rows:
        iid = img.id if a.no_trunc else img.short_id
        table.append((repo, tag, *([img.digest] if a.digests else []), iid,
                      human_ago(img.created), human_size(img.size)))
    _print_table(table)
    return 0


def _print_table(rows):
    print_table([[str(c) for c in r] for r in rows])


def cmd_tag(opts, argv):
    p = Parser(prog="berth tag", description=SUBCOMMANDS["tag"])
    p.add_argument("source")
    p.add_argument("target")
    a = p.parse_args(argv)
    _store(opts).tag(a.source, a.target)
    return 0


def cmd_rm(opts, argv):
    p = Parser(prog="berth rmi", description=SUBCOMMANDS["rm"])
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true", help="accepted for docker compatibility")
    a = p.parse_args(argv)
    store = _store(opts)
    rc = 0
    from berth.errors import BerthError

    for name in a.images:
        try:
            for line in store.remove(name, force=a.force):
                print(line)
        except BerthError as e:
            sys.stderr.write(f"berth rmi: {e}\n")
            rc = e.exit_code
    return rc


def cmd_inspect(opts, argv):
    p = Parser(prog="berth image inspect", description=SUBCOMMANDS["inspect"])
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--format", help="'json' (default)")
    a = p.parse_args(argv)
    store = _store(opts)
    out = []
    for name in a.images:
        img = store.get(name)
        c = img.config
        out.append({
            "Id": img.id, "RepoTags": img.repo_tags, "RepoDigests": img.repo_digests,
            "Created": img.created, "Architecture": c.get("architecture"), "Os": c.get("os"),
            "Variant": c.get("variant"), "Author": c.get("author", ""),
            "Config": c.get("config", {}), "Size": img.size,
            "RootFS": {"Type": "layers", "Layers": img.diff_ids},
            "Manifest": {"Digest": img.digest, "MediaType": img.manifest.get("mediaType")},
        })
    print(json.dumps(out, indent=4))
    return 0


def cmd_history(opts, argv):
    p = Parser(prog="berth image history", description=SUBCOMMANDS["history"])
    p.add_argument("image")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    a = p.parse_args(argv)
    img = _store(opts).get(a.image)
    hist = img.config.get("history") or [{"created": img.created, "created_by": ""}]
    layers = list(img.layers)
    rows = [("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")]
    for i, h in enumerate(reversed(hist)):
        size = 0
        if not h.get("empty_layer"):
            idx = len([x for x in hist[: len(hist) - i] if not x.get("empty_layer")]) - 1
            size = int(layers[idx].get("size", 0)) if 0 <= idx < len(layers) else 0
        by = h.get("created_by", "")
        if not a.no_trunc and len(by) > 45:
            by = by[:44] + "…"
        rows.append((img.short_id if i == 0 else "<missing>", human_ago(h.get("created", "")),
                     by, human_size(size), h.get("comment", "")))
    if a.quiet:
        for r in rows[1:]:
            print(r[0])
        return 0
    _print_table(rows)
    return 0


def cmd_prune(opts, argv):
    p = Parser(prog="berth image prune", description=SUBCOMMANDS["prune"])
    p.add_argument("-a", "--all", action="store_true", help="remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt (berth never prompts)")
    a = p.parse_args(argv)
    gone, freed = _store(opts).prune(all_images=a.all)
    if gone:
        print("Deleted Images:")
        for i in gone:
            print(f"deleted: {i}")
        print()
    print(f"Total reclaimed space: {human_size(freed)}")
    return 0


def cmd_fsck(opts, argv):
    p = Parser(prog="berth image fsck", description=SUBCOMMANDS["fsck"])
    p.add_argument("--repair", action="store_true", help="remove corrupt blobs and the images that need them")
    a = p.parse_args(argv)
    problems = _store(opts).fsck(repair=a.repair)
    for line in problems:
        print(line)
    if problems:
        if a.repair:
            print(f"repaired: removed what was corrupt ({len(problems)} problem(s)); pull or load again")
            return 0
        return 1
    print("image store OK")
    return 0


def cmd_bootstrap(opts, argv):
    p = Parser(prog="berth image bootstrap", description=SUBCOMMANDS["bootstrap"])
    p.add_argument("base", help="busybox or debian:SUITE (e.g. debian:bookworm)")
    a = p.parse_args(argv)
    from berth.image.bootstrap import bootstrap

    img = bootstrap(_store(opts), a.base)
    print(f"{img.repo_tags[0] if img.repo_tags else a.base} {img.id}")
    return 0


def cmd_import(opts, argv):
    p = Parser(prog="berth import", description=SUBCOMMANDS["import"])
    p.add_argument("file", help="a rootfs tar (plain, gzip or zstd), or - for stdin")
    p.add_argument("reference", nargs="?")
    p.add_argument("-c", "--change", action="append", default=[], help="CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL")
    p.add_argument("-m", "--message", default="")
    a = p.parse_args(argv)
    from berth.image import archive

    img = archive.import_rootfs(_store(opts), a.file, a.reference, changes=a.change, message=a.message)
    print(img.id)
    return 0


def cmd_save(opts, argv):
    p = Parser(prog="berth save", description=SUBCOMMANDS["save"])
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output", help="file (or directory with --format oci-dir); default stdout")
    p.add_argument("--format", default="docker-archive", choices=["docker-archive", "oci-archive", "oci-dir"])
    a = p.parse_args(argv)
    from berth.image import archive

    if a.output is None and sys.stdout.isatty():
        raise UsageError("save: refusing to write a tar archive to a terminal (use -o FILE)")
    archive.save(_store(opts), a.images, a.output or "-", fmt=a.format)
    return 0


def cmd_load(opts, argv):
    p = Parser(prog="berth load", description=SUBCOMMANDS["load"])
    p.add_argument("-i", "--input", default="-", help="tar archive or OCI layout directory (default stdin)")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    from berth.image import archive

    for line in archive.load(_store(opts), a.input):
        if not a.quiet:
            print(line)
    return 0


def cmd_export(opts, argv):
    p = Parser(prog="berth image export", description=SUBCOMMANDS["export"])
    p.add_argument("image")
    p.add_argument("-o", "--output", help="file; default stdout")
    a = p.parse_args(argv)
    from berth.image import archive

    if a.output is None and sys.stdout.isatty():
        raise UsageError("export: refusing to write a tar archive to a terminal (use -o FILE)")
    archive.export_image(_store(opts), a.image, a.output or "-")
    return 0


def cmd_login(opts, argv):
    p = Parser(prog="berth login", description="Log in to a registry")
    p.add_argument("server", nargs="?", default="docker.io")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("--insecure", action="store_true")
    a = p.parse_args(argv)
    from berth.image import auth, registry

    user = a.username
    password = a.password
    if a.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if user is None:
        if not sys.stdin.isatty():
            raise UsageError("login: give --username (no terminal to ask on)")
        user = input("Username: ")
    if password is None:
        import getpass

        password = getpass.getpass("Password: ")
    server = auth.normalize_server(a.server)
    registry.check_login(opts.root, server, user, password, insecure=a.insecure)
    auth.store_credentials(opts.root, server, user, password)
    print("Login Succeeded")
    return 0


def cmd_logout(opts, argv):
    p = Parser(prog="berth logout", description="Log out from a registry")
    p.add_argument("server", nargs="?", default="docker.io")
    a = p.parse_args(argv)
    from berth.image import auth

    server = auth.normalize_server(a.server)
    if auth.remove_credentials(opts.root, server):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
    return 0


HANDLERS = {
    "pull": cmd_pull, "push": cmd_push, "ls": cmd_ls, "tag": cmd_tag, "rm": cmd_rm,
    "inspect": cmd_inspect, "history": cmd_history, "prune": cmd_prune, "fsck": cmd_fsck,
    "bootstrap": cmd_bootstrap, "import": cmd_import, "save": cmd_save, "load": cmd_load,
    "export": cmd_export, "login": cmd_login, "logout": cmd_logout,
}

IMAGE_HELP = "Usage: berth image COMMAND\n\nManage images\n\nCommands:\n" + "\n".join(
    f"  {k:<10} {v}" for k, v in SUBCOMMANDS.items()
) + "\n\nRun 'berth image COMMAND --help' for more information on a command.\n"


def main(name: str, argv: list[str], opts) -> int:
    if name == "image":
        if not argv or argv[0] in ("-h", "--help"):
            sys.stdout.write(IMAGE_HELP)
            return 0
        sub = ALIASES.get(argv[0], argv[0])
        if sub not in SUBCOMMANDS:
            raise UsageError(f"image: '{argv[0]}' is not a berth image command (see 'berth image --help')")
        return HANDLERS[sub](opts, argv[1:])
    return HANDLERS[SHORT[name]](opts, argv)


def disk_usage(store) -> dict:
    """``berth system df`` figures for images (the engine adds containers and volumes)."""
    return store.disk_usage()


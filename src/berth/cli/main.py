"""``berth``: the engine's command line.

Commands are looked up in a static table and their modules imported only when
used, so ``berth run`` does not pay for ``berth build``'s imports. Each command
module exposes ``main(name, argv, opts) -> int``.
"""

import os
import sys

from berth import __version__
from berth.cli.common import run_guarded
from berth.paths import DEFAULT_ENGINE_ROOT

# name -> (module, one-line summary); docker's verbs and wording where docker has them.
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("berth.cli.build", "Build an image from a Containerfile"),
    "image": ("berth.cli.image", "Manage images"),
    "images": ("berth.cli.image", "List images"),
    "pull": ("berth.cli.image", "Download an image from a registry"),
    "push": ("berth.cli.image", "Upload an image to a registry"),
    "tag": ("berth.cli.image", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "rmi": ("berth.cli.image", "Remove one or more images"),
    "save": ("berth.cli.image", "Save one or more images to a tar archive"),
    "load": ("berth.cli.image", "Load an image from a tar archive or OCI layout"),
    "import": ("berth.cli.image", "Import the contents from a tarball to create an image"),
    "login": ("berth.cli.image", "Log in to a registry"),
    "logout": ("berth.cli.image", "Log out from a registry"),
}

# the engine's commands (docker's verbs)
_C = "berth.cli.container"
COMMANDS.update({
    "run": (_C, "Create and run a new container from an image"),
    "create": (_C, "Create a new container"),
    "start": (_C, "Start one or more stopped containers"),
    "stop": (_C, "Stop one or more running containers"),
    "restart": (_C, "Restart one or more containers"),
    "kill": (_C, "Kill one or more running containers"),
    "rm": (_C, "Remove one or more containers"),
    "ps": (_C, "List containers"),
    "logs": (_C, "Fetch the logs of a container"),
    "exec": (_C, "Execute a command in a running container"),
    "inspect": (_C, "Return low-level information on containers"),
    "wait": (_C, "Block until containers stop, then print their exit codes"),
    "top": (_C, "Display the running processes of a container"),
    "stats": (_C, "Display resource usage of containers"),
    "cp": (_C, "Copy files between a container and the host"),
    "port": (_C, "List port mappings of a container"),
    "rename": (_C, "Rename a container"),
    "pause": (_C, "Pause all processes within containers"),
    "unpause": (_C, "Unpause all processes within containers"),
    "attach": (_C, "Attach to a running container"),
    "export": (_C, "Export a container's filesystem as a tar archive"),
    "container": (_C, "Manage containers"),
    "volume": ("berth.cli.volume", "Manage volumes"),
    "network": ("berth.cli.network", "Manage networks"),
    "system": ("berth.cli.system", "Manage berth (info, df, prune)"),
    "info": ("berth.cli.system", "Display system-wide information"),
    "version": ("berth.cli.system", "Show the berth version information"),
})

GLOBAL_HELP = """\
Usage: berth [OPTIONS] COMMAND [ARG...]

Run any OCI image as a container or as a microVM, and measure the difference.

Options:
  --root DIR     engine state directory (default {root}, env BERTH_ROOT)
  --debug        show tracebacks instead of one-line errors
  -v, --version  print version information and quit
  -h, --help     print this help

Commands:
{commands}

Run 'berth COMMAND --help' for more information on a command.
"""


# the article's table, measured (issue 6)
COMMANDS["compare"] = ("berth.cli.compare", "Measure an image as container, VM and gVisor sandbox, side by side")


class Options:
    """Global options every command receives."""

    def __init__(self, root: str, debug: bool):
        self.root = root
        self.debug = debug


def _help() -> str:
    width = max((len(n) for n in COMMANDS), default=8)
    lines = "\n".join(f"  {n:<{width}}  {s}" for n, (_, s) in COMMANDS.items())
    return GLOBAL_HELP.format(root=DEFAULT_ENGINE_ROOT, commands=lines)


def main(argv: list[str] | None = None) -> int:
    from berth.runtime import trace

    trace.mark("cli main")
    argv = list(sys.argv[1:] if argv is None else argv)
    root = os.environ.get("BERTH_ROOT", DEFAULT_ENGINE_ROOT)
    debug = False
    while argv and argv[0].startswith("-"):
        a = argv.pop(0)
        if a in ("-h", "--help"):
            sys.stdout.write(_help())
            return 0
        if a in ("-v", "--version"):
            print(f"berth version {__version__}")
            return 0
        if a == "--debug":
            debug = True
        elif a == "--root" and argv:
            root = argv.pop(0)
        elif a.startswith("--root="):
            root = a.split("=", 1)[1]
        else:
            sys.stderr.write(f"berth: unknown flag: {a} (see 'berth --help')\n")
            return 125
    if not argv:
        sys.stdout.write(_help())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"berth: '{name}' is not a berth command (see 'berth --help')\n")
        return 125
    import importlib

    module = importlib.import_module(COMMANDS[name][0])
    opts = Options(os.path.abspath(root), debug)
    return run_guarded("berth", lambda: module.main(name, rest, opts), debug)


def entry() -> None:
    """The launcher's entry (see berth.cli.launcher)."""
    from berth.cli import launcher

    launcher.run(main)


if __name__ == "__main__":
    sys.exit(main())

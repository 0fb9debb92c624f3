"""Pieces shared by the ``berth`` and ``berth-runtime`` command lines."""

import argparse
import sys
from collections.abc import Callable

from berth.errors import BerthError

# argparse passes its messages through gettext, which searches the disk for
# message catalogs on every call (and imports locale for it): ~2 ms of each
# berth start. berth's command line is English only.
argparse._ = lambda message: message
argparse.ngettext = lambda singular, plural, n: singular if n == 1 else plural


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and a chosen exit code (docker uses 125)."""

    def __init__(self, *args, exit_code: int = 125, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._exit_code = exit_code

    def add_argument(self, *args, **kwargs):
        # argparse makes a help formatter per argument only to check its
        # metavar (a terminal-size query and two regex look-ups each, ~1.5 ms
        # for run's ~60 options): one per parser does for that check
        self._checking = True
        try:
            return super().add_argument(*args, **kwargs)
        finally:
            self._checking = False

    def _get_formatter(self):
        if not getattr(self, "_checking", False):
            return super()._get_formatter()  # help and usage: a fresh one
        if getattr(self, "_check_formatter", None) is None:
            # a width: else the formatter imports shutil for the terminal's
            self._check_formatter = self.formatter_class(prog=self.prog, width=80)
        return self._check_formatter

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: {message} (see '{self.prog} --help')\n")
        sys.exit(self._exit_code)


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """docker's repeated ``--filter KEY=VALUE`` -> ``{KEY: [VALUE, ...]}``."""
    from berth.errors import UsageError

    out: dict[str, list[str]] = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq or not k:
            raise UsageError(f"invalid filter {it!r}: expected KEY=VALUE")
        out.setdefault(k, []).append(v)
    return out


def run_guarded(prog: str, fn: Callable[[], int], debug: bool = False) -> int:
    """Run ``fn``; turn a ``BerthError`` or ``OSError`` into one line on stderr."""
    try:
        return fn()
    except BerthError as e:
        if debug:
            raise
        sys.stderr.write(f"{prog}: {e}\n")
        return e.exit_code
    except OSError as e:
        if debug:
            raise
        sys.stderr.write(f"{prog}: {e.strerror or e}{': ' + str(e.filename) if e.filename else ''}\n")
        return 125
    except KeyboardInterrupt:
        return 130

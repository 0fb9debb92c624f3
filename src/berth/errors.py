"""One exception root for all of berth.

Every error a user can cause is a ``BerthError``; the CLIs print its message as
one line on stderr and exit with its ``exit_code`` (docker's: 125 engine error,
126 cannot invoke, 127 not found). Messages name the operation and its object,
e.g. ``mount proc on /x/proc: Permission denied``.
"""


class BerthError(Exception):
    """Base class for every error berth reports to a user."""

    exit_code = 125


class UsageError(BerthError):
    """Bad flags, arguments or input files."""

    exit_code = 125


class NotFound(BerthError):
    """A container, image, network, volume or file that does not exist."""

    exit_code = 125


class Conflict(BerthError):
    """A name or ID already in use, or an object in the wrong state."""

    exit_code = 125


class CannotInvoke(BerthError):
    """The command exists but cannot be run (docker's 126)."""

    exit_code = 126


class CommandNotFound(BerthError):
    """The command to run does not exist (docker's and runc's 127)."""

    exit_code = 127


class ConfigError(UsageError):
    """A config.json, image config or profile that does not validate."""


class RuntimeFailure(BerthError):
    """A kernel operation needed to set up a container or VM failed."""

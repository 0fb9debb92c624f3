"""Rename the calling process as ``ps`` shows it (its comm and its cmdline).

For a short-lived helper forked from the CLI: without this it would show the
CLI's command line (``berth rm -f ID``) for a moment after the CLI exited,
and look like a leftover of the container it names.
"""

import ctypes

from berth._sys.proc import PR_SET_NAME, prctl


def set_title(title: str) -> None:
    """Make ``/proc/self/comm`` the first 15 bytes of ``title`` and
    ``/proc/self/cmdline`` ``title`` (cut to the space the original argv had).

    The kernel reads cmdline from the process's own memory between
    ``arg_start`` and ``arg_end`` (fields 48 and 49 of ``/proc/self/stat``,
    proc(5)); CPython copied argv at start-up and never reads that area
    again, so it is overwritten in place (zero-filled, then the title).
    """
    raw = title.encode()
    comm = ctypes.create_string_buffer(raw[:15])  # kept alive across the call
    prctl(PR_SET_NAME, ctypes.addressof(comm))
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    # fields after the comm, which is in parentheses and may hold spaces
    fields = stat[stat.rindex(b")") + 2:].split()
    start, end = int(fields[48 - 3]), int(fields[49 - 3])  # fields[0] is field 3
    if end <= start:
        return
    ctypes.memset(start, 0, end - start)
    ctypes.memmove(start, raw, min(len(raw), end - start - 1))

"""``.containerignore`` / ``.dockerignore``: which context files a build may read.

docker's rules (moby/patternmatcher): one pattern a line, ``#`` comments,
blanks skipped, each pattern cleaned and made relative (a leading ``/`` is
dropped); ``*`` and ``?`` match within one path component, ``**`` any number
of components, ``[...]`` a class, ``\\`` escapes; a leading ``!`` makes an
exception. The last pattern that matches a path, or one of its parent
directories, decides.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

IGNORE_FILES = (".containerignore", ".dockerignore")


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A Go ``filepath.Match`` pattern, with ``**``, as an anchored regex."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):  # "**/" : zero or more directories
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("^"):
                    body = "!" + body[1:]
                body = body.replace("\\", "\\\\")
                out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.S)


class IgnoreRules:
    """Parsed ignore patterns; ``excluded(rel)`` says if a context path is left out."""

    def __init__(self, lines: list[str]):
        self.rules: list[tuple[bool, re.Pattern[str], str]] = []  # (exception, regex, text)
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            line = posixpath.normpath(line).lstrip("/")
            if line in ("", "."):
                continue
            self.rules.append((exception, pattern_regex(line), line))

    @classmethod
    def load(cls, context: Path) -> IgnoreRules:
        """The first of ``.containerignore`` and ``.dockerignore`` found in ``context``."""
        for name in IGNORE_FILES:
            p = context / name
            if p.is_file():
                return cls(p.read_text(errors="replace").splitlines())
        return cls([])

    def excluded(self, rel: str) -> bool:
        """Whether the context-relative path ``rel`` is excluded."""
        if not self.rules:
            return False
        rel = rel.strip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        result = False
        for exception, rx, _ in self.rules:
            if any(rx.match(p) for p in prefixes):
                result = not exception
        return result

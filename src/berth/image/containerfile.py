"""Containerfile (Dockerfile) parsing and docker's variable substitution.

Follows the Dockerfile reference: parser directives (``# syntax=``,
``# escape=``) only before anything else; ``#`` comment lines (also inside a
continued instruction); a line ending in the escape character continues on
the next; instruction keywords are case-insensitive; RUN, CMD, ENTRYPOINT,
SHELL, COPY, ADD and VOLUME take a JSON array (exec form) or a shell string;
``--flag=value`` options lead COPY, ADD, FROM and RUN. Heredocs are not
supported.

Substitution (``substitute``) is done at build time, when ARG and ENV values
are known: ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR-word}``,
``${VAR:+word}``, ``${VAR+word}``; the escape character protects a ``$``;
single quotes protect everything; double quotes group words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from berth.errors import UsageError

SUPPORTED = {
    "FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "CMD", "ENTRYPOINT",
    "EXPOSE", "LABEL", "VOLUME", "SHELL", "STOPSIGNAL", "MAINTAINER",
}  # fmt: skip
JSON_FORMS = {"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"}
FLAGGED = {"COPY", "ADD", "FROM", "RUN"}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(.*))?$")


class ContainerfileError(UsageError):
    """A Containerfile that does not parse or uses what berth does not support."""


@dataclass(frozen=True)
class Instruction:
    """One instruction, before substitution."""

    cmd: str  # upper case
    rest: str  # the arguments after the flags, as written (continuations joined)
    line: int  # first line, 1-based
    original: str  # the whole instruction as written, for history's created_by
    flags: dict[str, str] = field(default_factory=dict)
    json: list[str] | None = None  # exec form

    def error(self, msg: str) -> ContainerfileError:
        return ContainerfileError(f"line {self.line}: {self.cmd}: {msg}")


@dataclass
class Stage:
    """``FROM base [AS name]`` and the instructions up to the next FROM."""

    index: int
    base: str  # not yet substituted
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Containerfile:
    directives: dict[str, str]
    global_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]

    def stage(self, ref: str) -> Stage | None:
        """A stage by name (case-insensitive) or index, as COPY --from and --target name it."""
        for s in self.stages:
            if s.name is not None and s.name == ref.lower():
                return s
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None


def _logical_lines(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    lines = text.splitlines()
    directives: dict[str, str] = {}
    i = 0
    while i < len(lines):  # directives: only at the very top, before any other line
        m = _DIRECTIVE.match(lines[i].strip())
        if not m or m.group(1).lower() in directives:
            break
        directives[m.group(1).lower()] = m.group(2)
        i += 1
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise ContainerfileError(f"line {i}: invalid escape directive {escape!r} (want \\ or `)")
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(lines[i:], start=i + 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # a comment, also between continued lines
        if not buf:
            if not stripped:
                continue
            start = n
        elif not stripped:
            continue  # an empty continuation line (docker warns, keeps going)
        body = raw.rstrip()
        if body.endswith(escape):
            buf.append(body[:-1])
            continue
        buf.append(body)
        out.append((start, "".join(buf).strip()))
        buf = []
    if buf:
        out.append((start, "".join(buf).strip()))
    return directives, out


def _split_flags(cmd: str, rest: str, line: int) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while cmd in FLAGGED and rest.startswith("--"):
        word, _, tail = rest.partition(" ")
        m = _FLAG.match(word)
        if not m:
            raise ContainerfileError(f"line {line}: {cmd}: bad flag {word!r}")
        flags[m.group(1)] = m.group(2) if m.group(2) is not None else "true"
        rest = tail.lstrip()
    return flags, rest


def _json_form(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None  # docker: not valid JSON means shell form
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse(text: str) -> Containerfile:
    """Parse a Containerfile's text.

    Raises:
        ContainerfileError: an unknown or unsupported instruction (naming its
        line), no FROM, or an instruction before the first FROM other than ARG.
    """
    directives, lines = _logical_lines(text)
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for line, logical in lines:
        word, _, rest = logical.partition(" ")
        if "\t" in word:
            word, _, more = word.partition("\t")
            rest = more + " " + rest
        cmd = word.upper()
        rest = rest.strip()
        if cmd not in SUPPORTED:
            known = cmd in ("HEALTHCHECK", "ONBUILD")
            why = (
                "is not supported by berth build" if known else "is not a Containerfile instruction"
            )
            raise ContainerfileError(f"line {line}: {word} {why}")
        flags, rest = _split_flags(cmd, rest, line)
        ins = Instruction(
            cmd, rest, line, logical, flags, _json_form(rest) if cmd in JSON_FORMS else None
        )
        if cmd == "FROM":
            words = rest.split()
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
                if not re.fullmatch(r"[a-z][a-z0-9._-]*", name):
                    raise ins.error(f"invalid stage name {words[2]!r}")
            elif len(words) == 1:
                name = None
            else:
                raise ins.error("want FROM IMAGE [AS NAME]")
            stages.append(Stage(len(stages), words[0], name, line))
        elif not stages:
            if cmd != "ARG":
                raise ContainerfileError(f"line {line}: {cmd} before the first FROM")
            global_args.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise ContainerfileError("no FROM instruction")
    return Containerfile(directives, global_args, stages)


# ---------------------------------------------------------------- substitution


def substitute(
    text: str, env: dict[str, str], *, split: bool = False, escape: str = "\\"
) -> list[str]:
    """Expand variables and remove quotes as docker's shell lexer does.

    Returns the words (``split=True``: split on unquoted whitespace) or a
    one-element list holding the whole text.

    Raises:
        ContainerfileError: an unterminated quote or ``${``.
    """
    words: list[str] = []
    cur: list[str] = []
    have = False  # cur is a word even if empty ("")
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == escape and i + 1 < n:
            cur.append(text[i + 1])
            have = True
            i += 2
        elif c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                raise ContainerfileError(f"unterminated single quote in {text!r}")
            cur.append(text[i + 1 : j])
            have = True
            i = j + 1
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == escape and i + 1 < n and text[i + 1] in ('"', "$", escape):
                    cur.append(text[i + 1])
                    i += 2
                elif text[i] == "$":
                    val, i = _variable(text, i, env, escape)
                    cur.append(val)
                else:
                    cur.append(text[i])
                    i += 1
            if i >= n:
                raise ContainerfileError(f"unterminated double quote in {text!r}")
            have = True
            i += 1
        elif c == "$":
            val, i = _variable(text, i, env, escape)
            cur.append(val)
            have = have or bool(val)
        elif split and c.isspace():
            if cur or have:
                words.append("".join(cur))
            cur, have = [], False
            i += 1
        else:
            cur.append(c)
            have = True
            i += 1
    if cur or have or not split:
        words.append("".join(cur))
    return words


def _variable(text: str, i: int, env: dict[str, str], escape: str) -> tuple[str, int]:
    """Expand the ``$...`` at ``text[i]``; return (value, index after it)."""
    n = len(text)
    if i + 1 < n and text[i + 1] == "{":
        j = text.find("}", i + 2)
        if j < 0:
            raise ContainerfileError(f"missing '}}' in {text!r}")
        body = text[i + 2 : j]
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])(.*))?", body, re.S)
        if not m:
            raise ContainerfileError(f"bad substitution ${{{body}}}")
        name, op, word = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        if op is None:
            return value or "", j + 1
        word = "".join(substitute(word, env, escape=escape))
        unset_or_empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return (word if unset_or_empty else value) or "", j + 1
        return ("" if unset_or_empty else word), j + 1
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :])
    if not m:
        return "$", i + 1  # a lone $ stays
    return env.get(m.group(0), ""), i + 1 + m.end()


def key_values(ins: Instruction, env: dict[str, str], escape: str = "\\") -> list[tuple[str, str]]:
    """ENV and LABEL arguments: ``k=v k2="v 2"``, or the legacy ``ENV key value words``."""
    words = substitute(ins.rest, env, split=True, escape=escape)
    if not words or words == [""]:
        raise ins.error("needs at least one argument")
    if "=" not in words[0]:
        if ins.cmd != "ENV" or len(words) < 2:
            raise ins.error(f"want KEY=VALUE, got {words[0]!r}")
        # legacy form: the rest of the line, whitespace kept, is the value
        key, _, value = ins.rest.partition(" ")
        return [(key, "".join(substitute(value.strip(), env, escape=escape)))]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise ins.error(f"want KEY=VALUE, got {w!r}")
        out.append((key, value))
    return out

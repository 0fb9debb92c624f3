"""Image references: the distribution reference grammar, normalised as docker does.

The grammar is docker/distribution's ``reference/regexp.go`` rewritten as Python
regular expressions::

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [domain "/"] path-component ["/" path-component]*
    domain    := host [":" port]         (host: DNS name or [IPv6])
    tag       := [\\w][\\w.-]{0,127}
    digest    := algorithm ":" hex{32,}

Normalisation follows ``splitDockerDomain``: the first component is a registry
host only if it contains ``.`` or ``:`` or is ``localhost`` (or has an upper-case
letter, which a repository path may not); otherwise the host is ``docker.io`` and
one-component names get ``library/``. A reference without tag or digest means
``:latest``. Every invalid reference raises ``UsageError`` before any disk or
network is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from berth.errors import UsageError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REMOTE = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

# the name is matched loosely here (upper case, separators) and checked piecewise
# below, so each mistake gets its own message
_ANY_CASE_REFERENCE_RE = re.compile(
    rf"^((?:{_DOMAIN}/)?[A-Za-z0-9._/-]+?)(?::({_TAG}))?(?:@({_DIGEST}))?$", re.ASCII
)
DOMAIN_RE = re.compile(rf"^{_DOMAIN}$", re.ASCII)
REMOTE_RE = re.compile(rf"^{_REMOTE}$", re.ASCII)
ID_RE = re.compile(r"^[a-f0-9]{64}$")
SHA256_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A fully normalised reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """``domain/path``, the name a registry and the tag index know."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def familiar_repository(self) -> str:
        """The repository as docker shows it: ``busybox``, ``me/app``, ``host:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        path = self.path
        if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX):]:
            path = path[len(OFFICIAL_PREFIX):]
        return path

    def familiar(self) -> str:
        s = self.familiar_repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def tagged_or_latest(self) -> Reference:
        """The reference with ``:latest`` added when it has neither tag nor digest."""
        if self.tag or self.digest:
            return self
        return Reference(self.domain, self.path, DEFAULT_TAG, None)


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i < 0 or (
        "." not in first and ":" not in first and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise ``text`` (``busybox``, ``host:5000/a/b:1``, ``x@sha256:…``).

    With ``default_tag`` a bare name gets ``:latest``.

    Raises:
        UsageError: ``text`` is not a valid reference; the message says why.
    """
    if not isinstance(text, str) or not text:
        raise UsageError("invalid reference format: empty reference")
    if len(text) > 2 * NAME_TOTAL_LENGTH_MAX or any(c.isspace() for c in text):
        raise UsageError(f"invalid reference format: {text[:80]!r}")
    if ID_RE.match(text):
        raise UsageError(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    m = _ANY_CASE_REFERENCE_RE.match(text)
    if not m:
        raise UsageError(f"invalid reference format: {text!r}")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    domain, path = _split_domain(name)
    if not REMOTE_RE.match(path):
        if path.lower() != path and REMOTE_RE.match(path.lower()):
            raise UsageError(f"invalid reference format: repository name ({path}) must be lowercase")
        raise UsageError(f"invalid reference format: {text!r}")
    if not DOMAIN_RE.match(domain):
        raise UsageError(f"invalid reference format: bad registry host {domain!r} in {text!r}")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise UsageError(
            f"invalid reference format: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest is not None:
        check_digest(digest)
    ref = Reference(domain, path, tag, digest)
    return ref.tagged_or_latest() if default_tag else ref


def check_digest(digest: str) -> str:
    """Accept only digests berth can verify (``sha256:`` + 64 lower-case hex)."""
    if not SHA256_DIGEST_RE.match(digest):
        algo = digest.split(":", 1)[0]
        if algo != "sha256":
            raise UsageError(f"invalid digest {digest!r}: unsupported algorithm {algo!r}")
        raise UsageError(f"invalid digest {digest!r}: want sha256: and 64 lower-case hex digits")
    return digest


def normalize(text: str) -> str:
    """The canonical string of a reference: ``docker.io/library/busybox:latest``."""
    return str(parse(text))


def familiar(text: str) -> str:
    """The short form docker prints: ``busybox:latest``."""
    return parse(text, default_tag=False).familiar()


def parse_tag_target(text: str) -> Reference:
    """A reference usable as a tag target: a name with optional tag, no digest."""
    ref = parse(text)
    if ref.digest:
        raise UsageError(f"invalid tag {text!r}: a tag target cannot contain a digest")
    return ref

"""The distribution reference grammar and docker's normalisation."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.errors import UsageError
from berth.image import reference
from berth.image.reference import familiar, normalize, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,want", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("me/app", "docker.io/me/app:latest"),
    ("index.docker.io/me/app:v1", "docker.io/me/app:v1"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"),
    ("127.0.0.1:5000/chk/busybox:1", "127.0.0.1:5000/chk/busybox:1"),
    ("quay.io/org/img", "quay.io/org/img:latest"),
    ("[::1]:5000/x", "[::1]:5000/x:latest"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}"),
    ("a__b/c.d-e", "docker.io/a__b/c.d-e:latest"),
    ("Host.example/lower", "Host.example/lower:latest"),
    ("host:5000", "docker.io/library/host:5000"),
])
def test_normalizes_like_docker(text, want):
    assert normalize(text) == want


@pytest.mark.parametrize("text,want", [
    ("docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/a/b:1", "library/a/b:1"),
    ("docker.io/me/app", "me/app"),
    ("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"),
])
def test_familiar_name_strips_defaults(text, want):
    assert familiar(text) == want


@pytest.mark.parametrize("text", [
    "", " ", "UPPER", "me/App", "a b", "busybox:", ":tag", "busybox@", "busybox@sha256:abc",
    "busybox@md5:" + "a" * 32, "a//b", "-a", "a-", "a..b", "host:port/x", "busybox:-bad",
    "busybox:" + "t" * 129, "a" * 64, "x/" + "a" * 300, "../etc", "a/../b", "a:b:c",
    "busybox\n",
])
def test_invalid_references_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse(text)


def test_uppercase_path_message_says_lowercase():
    with pytest.raises(UsageError, match="lowercase"):
        parse("me/App")


_comp = st.from_regex(r"\A[a-z0-9]{1,6}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,6}){0,2}\Z")
_tag = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
_host = st.sampled_from(["", "localhost/", "127.0.0.1:5000/", "reg.example.com/", "r-1.io:443/"])


@st.composite
def valid_refs(draw):
    host = draw(_host)
    comps = draw(st.lists(_comp, min_size=1, max_size=3))
    # a first component with a dot is a registry host (splitDockerDomain), so keep it dot-free
    if not host and len(comps) > 1:
        comps[0] = comps[0].replace(".", "_")
    path = "/".join(comps)
    s = host + path
    if draw(st.booleans()):
        s += ":" + draw(_tag)
    if draw(st.booleans()):
        s += "@sha256:" + draw(st.from_regex(r"\A[0-9a-f]{64}\Z"))
    return s


@settings(max_examples=300, deadline=None)
@given(valid_refs())
def test_generated_references_parse_and_normalize_idempotently(s):
    n = normalize(s)
    assert normalize(n) == n
    assert normalize(familiar(s)) == n
    r = parse(s)
    assert r.tag or r.digest


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_is_valid_or_a_usage_error(s):
    try:
        r = parse(s)
    except UsageError:
        return
    # anything accepted round-trips and names a sane repository
    assert normalize(str(r)) == str(r)
    assert ".." not in r.path and not r.path.startswith("/")


def test_tag_target_cannot_carry_a_digest():
    with pytest.raises(UsageError):
        reference.parse_tag_target(f"x@{D}")

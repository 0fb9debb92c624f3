"""Containerfile parsing and docker's substitution rules."""

import pytest

from berth.image.containerfile import ContainerfileError, key_values, parse, substitute


def test_parse_continuations_comments_forms_and_stages():
    cf = parse(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=busybox\n"
        "FROM $BASE AS build\n"
        "# a comment\n"
        "RUN echo a \\\n"
        "  # comment inside\n"
        "  && echo b\n"
        'CMD ["sh", "-c", "echo hi"]\n'
        "copy --from=build --chown=1:2 /a /b\n"
        "FROM scratch\n"
        "ENTRYPOINT [not json\n"
    )
    assert cf.directives == {"syntax": "docker/dockerfile:1"}
    assert [a.rest for a in cf.global_args] == ["BASE=busybox"]
    s0, s1 = cf.stages
    assert (s0.base, s0.name, s1.base, s1.name) == ("$BASE", "build", "scratch", None)
    run, cmd, copy = s0.instructions
    assert run.rest == "echo a   && echo b" and run.json is None and run.line == 5
    assert cmd.json == ["sh", "-c", "echo hi"]
    assert (
        copy.cmd == "COPY"
        and copy.flags == {"from": "build", "chown": "1:2"}
        and copy.rest == "/a /b"
    )
    assert s1.instructions[0].json is None  # invalid JSON is the shell form
    assert cf.stage("build") is s0 and cf.stage("1") is s1 and cf.stage("nope") is None


def test_parse_escape_directive_backtick():
    cf = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n")
    assert cf.stages[0].instructions[0].rest == "dir c:\\   && echo"


def test_unsupported_instruction_names_the_line():
    with pytest.raises(ContainerfileError, match="line 3: HEALTHCHECK is not supported"):
        parse("FROM x\n\nHEALTHCHECK CMD true\n")
    with pytest.raises(
        ContainerfileError, match="line 2: BOGUS is not a Containerfile instruction"
    ):
        parse("FROM x\nBOGUS y\n")
    with pytest.raises(ContainerfileError, match="line 1: RUN before the first FROM"):
        parse("RUN x\n")
    with pytest.raises(ContainerfileError, match="no FROM"):
        parse("# just a comment\n")


@pytest.mark.parametrize(
    "text,expect",
    [
        ("$A", ["a"]),
        ("${A}b", ["ab"]),
        ("${UNSET:-dflt}", ["dflt"]),
        ("${EMPTY:-dflt}", ["dflt"]),
        ("${EMPTY-dflt}", [""]),
        ("${A:+alt}", ["alt"]),
        ("${UNSET:+alt}", [""]),
        ("\\$A", ["$A"]),
        ("'$A'", ["$A"]),
        ('"$A b"', ["a b"]),
        ("$", ["$"]),
        ("${UNSET:-$A}", ["a"]),
    ],
)
def test_substitution_rules(text, expect):
    assert substitute(text, {"A": "a", "EMPTY": ""}) == expect


def test_substitution_word_splitting_and_quotes():
    assert substitute("one \"two three\" four\\ five ''", {}, split=True) == [
        "one",
        "two three",
        "four five",
        "",
    ]
    with pytest.raises(ContainerfileError, match="unterminated"):
        substitute('"open', {})


def test_env_and_label_key_values():
    cf = parse('FROM x\nENV A=1 B="two words" C=${A}x\nENV LEGACY some value here\nLABEL "k"=v\n')
    env_i, legacy, label = cf.stages[0].instructions
    assert key_values(env_i, {"A": "1"}) == [("A", "1"), ("B", "two words"), ("C", "1x")]
    assert key_values(legacy, {}) == [("LEGACY", "some value here")]
    assert key_values(label, {}) == [("k", "v")]

"""Ignore-file patterns, as docker's patternmatcher reads them."""

import pytest

from berth.image.ignore import IgnoreRules, pattern_regex


@pytest.mark.parametrize(
    "pattern,path,hit",
    [
        ("*.log", "a.log", True),
        ("*.log", "d/a.log", False),
        ("**/*.log", "d/e/a.log", True),
        ("**/*.log", "a.log", True),
        ("d/**", "d/e/f", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[a-c]x", "bx", True),
        ("[!a-c]x", "dx", True),
        ("[^a-c]x", "ax", False),
        ("\\*x", "*x", True),
        ("\\*x", "ax", False),
    ],
)
def test_pattern_regex(pattern, path, hit):
    assert bool(pattern_regex(pattern).match(path)) is hit


def test_last_rule_wins_and_exceptions_reinclude():
    rules = IgnoreRules(
        ["# comment", "", "*.md", "!README.md", "/secret", "node_modules", "!node_modules/keep"]
    )
    assert rules.excluded("notes.md")
    assert not rules.excluded("README.md")
    assert rules.excluded("secret") and rules.excluded("secret/key")  # a parent matches
    assert rules.excluded("node_modules/x/y.js")
    assert not rules.excluded("node_modules/keep")
    assert not rules.excluded("src/main.c")


def test_containerignore_preferred_over_dockerignore(tmp_path):
    (tmp_path / ".dockerignore").write_text("a\n")
    assert IgnoreRules.load(tmp_path).excluded("a")
    (tmp_path / ".containerignore").write_text("b\n")
    rules = IgnoreRules.load(tmp_path)
    assert rules.excluded("b") and not rules.excluded("a")

"""pcre/regexp table lines (P15): the pattern Postfix reads is the one given, or refused."""

from __future__ import annotations

import pydantic
import pytest

from mailctl.errors import RenderError
from mailctl.render import quoting as q
from mailctl.render import render
from mailctl.settings.maps import Access
from tests.unit.factory import postfix_literal, secrets_for, settings


def postfix_pattern(line: str) -> tuple[str, str]:
    """As dict_pcre/dict_regexp read it: delimiter, pattern to the first unescaped
    delimiter, then flags, blanks, and the value."""
    delim, rest = line[0], line[1:]
    i = 0
    while i < len(rest):
        if rest[i] == "\\":
            i += 2
            continue
        if rest[i] == delim:
            break
        i += 1
    return rest[:i], rest[i + 1 :].lstrip(" \t")


@pytest.mark.parametrize(
    "pattern",
    [
        r"^bad-[0-9]+\.example$",
        "@spam[.]example$",
        r"a\.b",
        "ümlaut",
        "x" * 500,
        "a#b",
        "a,b",
        "a=b",
        "$x",
        "'q'",
        '"q"',
    ],
)
def test_pattern_round_trips(pattern: str) -> None:
    line = q.pattern_line(pattern, "REJECT no", "access.patterns.0")
    assert postfix_pattern(line) == (pattern, "REJECT no")


@pytest.mark.parametrize(
    "pattern",
    ["a/b", "/", "ends\\", "", " lead", "trail ", "new\nline", "cr\rx", "nul\x00x", "tab\tx"],
)
def test_hostile_patterns_are_refused_by_settings_and_escaper(pattern: str) -> None:
    with pytest.raises(RenderError, match=r"access\.patterns\.0"):
        q.pattern_line(pattern, "REJECT no", "access.patterns.0")
    with pytest.raises(pydantic.ValidationError, match=r"patterns\.0\.pattern"):
        Access.model_validate(
            {"patterns": [{"stage": "helo", "pattern": pattern, "action": "REJECT no"}]}
        )


def pcre_result(value: str) -> str:
    """A pcre/regexp table result as Postfix's compile-time pre-scan reads it: `$$` is
    a literal `$`; `$n`, `${n}` and `$(n)` are matched groups, any other `$` makes
    Postfix skip the rule. The same reading as a main.cf literal: no group may appear."""
    return postfix_literal(value)


@pytest.mark.parametrize(
    "action",
    ["REJECT costs $5", "REJECT no $spam", "WARN ${x} $(y)", "REJECT $", "REJECT $$ twice"],
)
def test_a_dollar_in_a_pattern_action_is_read_literally(action: str) -> None:
    line = q.pattern_line("^x", action, "access.patterns.0")
    pattern, result = postfix_pattern(line)
    assert (pattern, pcre_result(result)) == ("^x", action)


def test_a_dollar_in_a_pattern_action_survives_the_settings() -> None:
    s = settings(
        access={"patterns": [{"stage": "helo", "pattern": "^x", "action": "REJECT no $spam"}]}
    )
    text = render(s, secrets_for(s)).files["postfix/helo_access.pcre"].content.decode()
    lines = [line for line in text.splitlines() if line.startswith("/")]
    assert [pcre_result(postfix_pattern(line)[1]) for line in lines] == ["REJECT no $spam"]


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("^(bad", "pcre"),
        ("a)", "pcre"),
        ("(a))", "pcre"),
        ("[abc", "pcre"),
        ("a[]", "pcre"),
        ("*spam", "pcre"),
        ("+spam", "regexp"),
        ("a**", "pcre"),
        ("a|*b", "pcre"),
        ("(?#never closed", "pcre"),
        ("^(bad", "regexp"),
        ("[abc", "regexp"),
    ],
)
def test_a_pattern_with_a_clear_syntax_error_is_refused(pattern: str, kind: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"patterns\.0\n.*pattern") as info:
        Access.model_validate(
            {"patterns": [{"stage": "helo", "type": kind, "pattern": pattern, "action": "OK"}]}
        )
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        # PCRE syntax Python's re does not know, or reads differently: left to Postfix.
        (r"(?<n>a)\k<n>", "pcre"),
        (r"\Q(\E", "pcre"),
        (r"(?#(comment)x", "pcre"),
        (r"(?x) a # ( comment", "pcre"),
        (r"[[:alpha:]]+\.example$", "pcre"),
        (r"\h+\R?", "pcre"),
        ("(*UTF)é", "pcre"),
        ("a++b", "pcre"),
        ("x{2}{3}", "pcre"),
        ("^*", "pcre"),
        (r"(?i)^spam\d+", "pcre"),
        ("(?|(a)|(b))", "pcre"),
        ("[]a]", "pcre"),
        ("[^]a]", "pcre"),
        (r"[\]]", "pcre"),
        # POSIX: a backslash in a class is itself; glibc reads a lone ')' as itself.
        (r"[\]x", "regexp"),
        ("a)", "regexp"),
        ("[[:digit:]]{1,3}", "regexp"),
    ],
)
def test_valid_patterns_are_not_refused(pattern: str, kind: str) -> None:
    Access.model_validate(
        {"patterns": [{"stage": "helo", "type": kind, "pattern": pattern, "action": "OK"}]}
    )

"""pcre/regexp table lines (P15): the pattern Postfix reads is the one given, or refused."""

from __future__ import annotations

import pydantic
import pytest

from mailctl.errors import RenderError
from mailctl.render import quoting as q
from mailctl.settings.maps import Access


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

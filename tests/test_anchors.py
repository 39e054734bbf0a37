"""Cross-language anchors: the number pattern against the plain form it replaced for speed."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.dedup.anchors import _NUMBER_RE, number_anchors

# The oracle: the lookbehind first, then the two alternatives (grouped thousands, plain).
_NUMBER_PER_CHAR_RE = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:([.,])\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?)"
    r"(?:\s?(%|prozent|percent|per cent)|\s?([a-zA-Zäöü]+)\b)?",
    re.IGNORECASE,
)


def matches(pattern: re.Pattern[str], text: str) -> list[tuple]:
    return [(m.span(), m.groups()) for m in pattern.finditer(text)]


# Numbers of one to five digits in groups split by "." or "," (digits of other scripts too),
# and what stands around them: marks, letters (a number within a word is none), scale words,
# spacing and an underscore (a word character).
_NUMBERS = st.from_regex(r"[0-9٣५]{1,5}(?:[.,][0-9]{1,4}){0,3}", fullmatch=True)
_AROUND = st.sampled_from(
    list(".,  \n%_aXä€") + ["Mrd", "Milliarden", "bn", "Prozent", "per cent", "m", "k"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_NUMBERS, _AROUND, st.text(max_size=3)), max_size=20))
def test_numbers_match_as_with_the_lookbehind_first(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert matches(_NUMBER_RE, text) == matches(_NUMBER_PER_CHAR_RE, text)


def test_number_anchors_read_values_with_their_scale() -> None:
    text = "1,8 Milliarden Euro, 58.000 Menschen, 41,7 Prozent, am 12. Mai 2024, A380 und 7"
    assert number_anchors(text, "de") == {"#1.8e+09", "#5.8e+04", "#41.7%"}
    assert number_anchors("€1.8bn and 58,000 jobs, 3.5%", "en") == {"#1.8e+09", "#5.8e+04", "#3.5%"}

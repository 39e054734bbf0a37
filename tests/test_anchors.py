"""Cross-language anchors: the number pattern and the name anchors against the plain forms they
replaced for speed."""

from __future__ import annotations

import re
import sys
from itertools import chain

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.dedup.anchors import (
    _NUMBER_RE,
    _WORD_RE,
    _word_anchors,
    name_anchors,
    number_anchors,
)

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


# digit runs of any length, the longest past what a float holds (309 digits and more)
_LONG_NUMBERS = st.builds(
    lambda digits, n, tail: digits * n + tail,
    st.sampled_from(["1", "9", "12", "0"]),
    st.integers(1, 700),
    st.sampled_from(["", ",5", ".25", ".000", ",000.5"]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(_LONG_NUMBERS, _NUMBERS, _AROUND), max_size=8),
    st.sampled_from(["de", "en", ""]),
)
def test_number_anchors_take_any_number_and_name_only_finite_ones(pieces, lang) -> None:
    """A feed's text may hold a digit run of any length: reading it must not raise (an item
    whose placement raised stopped the clustering of every later item)."""
    found = number_anchors("".join(pieces), lang)
    assert not any(a in found for a in ("#inf", "#inf%", "#nan"))


def test_what_reads_as_no_one_number_is_no_anchor() -> None:
    """An address or a version string in English, marks that fit neither language's
    grouping: each raised, and an item holding one stopped all later clustering."""
    assert number_anchors("Connect to 192.168.0.1, release 1.250.0, up 3.5%", "en") == {"#3.5%"}
    assert number_anchors("1,000.000 und 1.000,000 und 41,7 Prozent", "de") == {"#41.7%"}
    assert number_anchors("1,000.000 and 3,500,000.5", "en") == {"#3.5e+06"}


def test_a_number_too_long_for_a_float_is_no_anchor() -> None:
    assert number_anchors("1" * 400 + " Euro, 2" + "0" * 400 + " Mrd, 41,7 Prozent", "de") == {
        "#41.7%"
    }


def name_anchors_per_word(text: str) -> set[str]:
    """The oracle: the word pattern over the whole text, each distinct word's anchors."""
    return set(chain.from_iterable(map(_word_anchors, set(_WORD_RE.findall(text)))))


def test_no_whitespace_is_part_of_a_word() -> None:
    """What reading the words chunk by chunk needs: every character ``str.split`` splits at
    is one the word pattern never matches."""
    part = re.compile(r"[^\W_]|['’]")
    spaces = [chr(cp) for cp in range(sys.maxunicode + 1) if chr(cp).isspace()]
    assert spaces and [c for c in spaces if part.match(c)] == []


_WORDS = st.sampled_from(
    ["München", "Munich", "EU", "US", "us", "Lyssenkow", "Müller-Lüdenscheidt", "Straße",
     "der", "Die", "O’Neill", "rock'n'roll", "A380", "3D", "B2B", "Ärzte", "ΣΊΣΥΦΟΣ", "x_y"]
)  # fmt: skip
_GAPS = st.sampled_from(
    list(" \n\t\u00a0\u2003\u3000\x1f\u1680\u2028,.;:()-'’\"«»_/") + [", ", ". "]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_WORDS, _GAPS, st.text(max_size=4)), max_size=30))
def test_name_anchors_equal_the_per_word_anchors(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert name_anchors(text) == name_anchors_per_word(text)

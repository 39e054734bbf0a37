"""Language: the hint, else a clear lead of marker words; a stemmer's leaning otherwise."""

from __future__ import annotations

import pytest

from aggregator.dedup.text import content_terms, stem_language, tokens
from aggregator.language import detect_language, guess_language


@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [
        ("anything", "de-DE", "de"),
        ("anything", "en_US", "en"),
        ("anything", "pt-BR", "pt"),
        ("anything", " EN ", "en"),
        (
            "Die Bundesregierung hat sich auf einen neuen Haushalt geeinigt, der mit den Stimmen der Koalition beschlossen wurde.",
            None,
            "de",
        ),
        (
            "The government has agreed on a new budget that was passed with the votes of the coalition on Friday.",
            None,
            "en",
        ),
        ("Bebê de 4 meses morre após ser amamentado em São Carlos", None, None),
        ("Crude Oil Brent WTI", None, None),
        ("", None, None),
        ("the", "bogus-hint-123", None),
    ],
)
def test_detect_language(text, hint, expected):
    assert detect_language(text, hint) == expected


def test_an_unsure_text_still_leans_one_way_for_the_stemmer():
    words = ["der", "neue", "zug", "fährt", "the"]  # two German markers, one English: no
    assert guess_language(words) is None  # three times the other's
    assert guess_language(words, sure=False) == "de"
    assert guess_language(["crude", "oil"], sure=False) == "en"  # a tie: English


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        ("de", "the government said", "de"),  # the item's own language wins
        ("en", "die Regierung und der Bund", "en"),
        (None, "Die Regierung hat sich mit den Ländern auf die Haushalte geeinigt", "de"),
        ("pt", "The governments have agreed on the budgets with the states", "en"),
    ],
)
def test_the_stemmer_reads_an_item_in_its_language_or_its_texts_leaning(lang, text, expected):
    assert stem_language(lang, tokens(text)) == expected


def test_content_terms_of_a_german_text_without_language_are_german_stems():
    terms = content_terms(tokens("Die Regierungen haben die Haushalte beschlossen"), None)
    assert terms == ["regier", "haushalt", "beschloss"]

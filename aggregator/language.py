"""The language of a text, when the feed does not say.

Pure functions, used by the normaliser (an item's ``lang``) and the dedup stage (whether two
reports are in two languages).
"""

from __future__ import annotations

import re

__all__ = ["detect_language"]

_WORD_RE = re.compile(r"[^\W\d_]+")
# Words frequent in one language and rare in the other. Ambiguous ones ("in", "an",
# "was", "will", "so", "de") are left out on purpose.
_DE_WORDS = frozenset(
    [
        "der",
        "die",
        "das",
        "und",
        "ist",
        "nicht",
        "mit",
        "sich",
        "auf",
        "für",
        "den",
        "dem",
        "des",
        "ein",
        "eine",
        "einen",
        "einem",
        "einer",
        "zu",
        "von",
        "im",
        "auch",
        "wird",
        "werden",
        "wurde",
        "sind",
        "nach",
        "bei",
        "aus",
        "noch",
        "wie",
        "über",
        "oder",
        "aber",
        "hat",
        "haben",
        "vor",
        "zum",
        "zur",
        "sie",
        "er",
        "wir",
        "ich",
        "dass",
        "nur",
        "durch",
        "kann",
        "beim",
        "seit",
        "bis",
        "gegen",
        "unter",
        "ohne",
        "mehr",
        "schon",
        "jetzt",
        "soll",
        "sein",
        "seine",
        "ihre",
        "wenn",
        "neue",
        "neuen",
    ]
)
_EN_WORDS = frozenset(
    [
        "the",
        "and",
        "of",
        "to",
        "is",
        "that",
        "for",
        "with",
        "on",
        "are",
        "it",
        "this",
        "by",
        "from",
        "at",
        "be",
        "have",
        "has",
        "as",
        "not",
        "were",
        "which",
        "their",
        "its",
        "been",
        "after",
        "who",
        "would",
        "said",
        "they",
        "about",
        "more",
        "than",
        "into",
        "over",
        "new",
        "what",
        "when",
        "how",
        "you",
        "your",
        "we",
        "our",
        "he",
        "she",
        "his",
        "her",
        "can",
        "could",
        "should",
        "there",
        "these",
        "those",
    ]
)
_LANG_SAMPLE_CHARS = 4000


def detect_language(text: str | None, hint: str | None = None) -> str | None:
    """ISO 639-1 code: the feed/entry hint if any ("de-DE" -> "de"), else de/en by stop
    words, else None (unsure beats wrong: the dedup stage falls back to no stemming)."""
    if hint:
        primary = hint.strip().replace("_", "-").split("-", 1)[0].lower()
        if 2 <= len(primary) <= 3 and primary.isalpha():
            return primary
    if not text:
        return None
    words = _WORD_RE.findall(text[:_LANG_SAMPLE_CHARS].lower())
    if not words:
        return None
    de = sum(1 for w in words if w in _DE_WORDS)
    en = sum(1 for w in words if w in _EN_WORDS)
    best, lang, other = (de, "de", en) if de >= en else (en, "en", de)
    if best >= 2 and best >= 3 * other and best >= 0.1 * len(words):
        return lang
    return None

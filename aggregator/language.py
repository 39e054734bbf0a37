"""The language of a text: German, English, or not known.

Pure functions, used by the normaliser (an item's ``lang``) and the dedup stage (whether two
reports are in two languages; which stemmer reads an item of no known language). One guesser
for both: it counts the marker words of ``aggregator/data/markers-{de,en}.txt``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aggregator.data import word_list

__all__ = ["detect_language", "guess_language"]

_WORD_RE = re.compile(r"[^\W\d_]+")
_SAMPLE_CHARS = 4000
_DE = word_list("markers-de.txt")
_EN = word_list("markers-en.txt")


def detect_language(text: str | None, hint: str | None = None) -> str | None:
    """ISO 639-1 code: the feed/entry hint if any ("de-DE" -> "de"), else "de"/"en" when the
    text clearly is one, else None (unsure beats wrong: two reports count as in two languages
    only when both are known)."""
    if hint:
        primary = hint.strip().replace("_", "-").split("-", 1)[0].lower()
        if 2 <= len(primary) <= 3 and primary.isalpha():
            return primary
    if not text:
        return None
    return guess_language(_WORD_RE.findall(text[:_SAMPLE_CHARS].lower()))


def guess_language(words: Sequence[str], *, sure: bool = True) -> str | None:
    """ "de" or "en" by the marker words among lower-case ``words``.

    ``sure``: only a clear lead (at least two markers, three times the other language's, and
    one word in ten), else None. Otherwise the language with more markers, English on a tie:
    for a stemmer, which must be one or the other.
    """
    de = sum(1 for w in words if w in _DE)
    en = sum(1 for w in words if w in _EN)
    if not sure:
        return "de" if de > en else "en"
    best, lang, other = (de, "de", en) if de >= en else (en, "en", de)
    if best >= 2 and best >= 3 * other and best >= 0.1 * len(words):
        return lang
    return None

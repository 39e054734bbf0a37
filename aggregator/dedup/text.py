"""Text features for dedup: tokens, stop words, stems, shingles, stable hashes.

Pure functions. Hashes must be stable across processes (stored signatures are compared with
new ones), so nothing here uses Python's salted ``hash()``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import islice
from typing import TypeVar

import snowballstemmer

from ..data import word_list
from ..language import guess_language

K = TypeVar("K")
V = TypeVar("V")

_TOKEN_RE = re.compile(r"[^\W_]+(?:[’'][^\W_]+)?", re.UNICODE)

STOP_DE = word_list("stopwords-de.txt")
STOP_EN = word_list("stopwords-en.txt")
STOP = STOP_DE | STOP_EN


def fold(text: str) -> str:
    """NFKC and case folding: the form every comparison uses."""
    return unicodedata.normalize("NFKC", text).casefold()


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(fold(text))


def stable_hash64(data: str) -> int:
    """A signed 64-bit hash, stable across processes (fits a BIGINT column)."""
    return int.from_bytes(
        hashlib.blake2b(data.encode(), digest_size=8).digest(), "big", signed=True
    )


def shingles(toks: list[str], k: int = 3) -> set[str]:
    if len(toks) < k:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i : i + k]) for i in range(len(toks) - k + 1)}


@lru_cache(maxsize=4)
def _stemmer(lang: str) -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer({"de": "german", "en": "english"}.get(lang, "english"))


def stem_language(lang: str | None, toks: list[str]) -> str:
    """The stemmer's language: the item's when German or English, else its tokens' leaning."""
    return lang if lang in ("de", "en") else guess_language(toks[:300], sure=False)


def content_terms(toks: list[str], lang: str | None) -> list[str]:
    """Stemmed content words and numbers: stop words and one-letter tokens dropped."""
    lang = stem_language(lang, toks)
    return [stem(t, lang) for t in toks if t not in STOP and (len(t) > 2 or t.isdigit())]


@lru_cache(maxsize=50_000)
def stem(token: str, lang: str) -> str:
    """Cached: news vocabulary repeats, and stemming is most of the cost of features. The
    bound is memory (~230 bytes an entry, so ~11 MiB full): a daemon meets new names all
    year, and 50k words cover nearly every token of a day's news."""
    return token if token.isdigit() else _stemmer(lang).stemWord(_fold_umlauts(token))


def _fold_umlauts(token: str) -> str:
    return token.replace("ß", "ss")


# token -> its term (False: not a content word), per stemming language: a term count is
# then one C-level lookup per token. Bounded like ``stem``'s cache (the oldest half goes when
# full), so memory stays flat over a year of new names.
TERM_CACHE = 50_000
_terms_of: dict[str, dict[str, str | bool]] = {}


def through_cache(
    cache: dict[K, V], keys: Sequence[K], make: Callable[[K], V], limit: int
) -> list[V]:
    """Each key's value from ``cache``, made where missing. A full cache first drops its
    older half: a daemon meets new words for as long as it runs, so it must stay bounded."""
    found: list[V | None] = list(map(cache.get, keys))
    if None in found:
        for k, value in enumerate(found):
            if value is None:
                key = keys[k]
                value = cache.get(key)
                if value is None:
                    if len(cache) >= limit:
                        for old in list(islice(cache, limit // 2)):
                            del cache[old]
                    value = cache[key] = make(key)
                found[k] = value
    return found  # type: ignore[return-value]


def _term_list(toks: list[str], lang: str) -> list[str | bool]:
    """Each token's term, or False for a stop word or a one- or two-letter non-number."""
    cache = _terms_of.get(lang)
    if cache is None:
        cache = _terms_of[lang] = {}
    stemmer = _stemmer(lang)

    def term(tok: str) -> str | bool:
        return (
            tok not in STOP
            and (len(tok) > 2 or tok.isdigit())
            and (tok if tok.isdigit() else stemmer.stemWord(_fold_umlauts(tok)))
        )

    return through_cache(cache, toks, term, TERM_CACHE)


def term_counts(
    title: str,
    body: str,
    lang: str | None,
    *,
    title_weight: int = 3,
    body_tokens: int = 400,
    lead_tokens: int | None = None,
    toks: tuple[list[str], list[str]] | None = None,
) -> tuple[Counter[str], Counter[str]]:
    """Term frequencies for story matching (title counted ``title_weight`` times, body up to
    ``body_tokens``: the lead carries the event, the tail drifts) and, from the same pass,
    for the title and first ``lead_tokens`` only (what threads compare). ``toks``: the
    title's and body's tokens, when the caller has them already. Terms in the order first
    seen (title first): the order of new term ids and of the stored features."""
    title_toks, body_toks = toks if toks is not None else (tokens(title), tokens(body))
    body_toks = body_toks[:body_tokens]
    lang = stem_language(lang, title_toks + body_toks)
    full: Counter[str] = Counter()
    for term in filter(None, _term_list(title_toks, lang)):
        full[term] += title_weight  # type: ignore[index]
    lead = full.copy()
    body_terms = _term_list(body_toks, lang)
    cut = body_tokens if lead_tokens is None else lead_tokens
    full.update(filter(None, body_terms))  # type: ignore[arg-type]
    lead.update(filter(None, body_terms[:cut]))  # type: ignore[arg-type]
    return full, lead

"""The C Snowball stemmer (PyStemmer) gives the pure-Python stems on every word we have.

snowballstemmer hands out PyStemmer's stemmers when it is installed (30x faster); stored
story terms were made by either, so the two must agree term for term. Both are pinned to one
Snowball release in pyproject.toml; this checks it on every word of the labelled corpora and
the fixture feeds."""

from __future__ import annotations

import json
from pathlib import Path

import snowballstemmer
import Stemmer
from snowballstemmer.english_stemmer import EnglishStemmer
from snowballstemmer.german_stemmer import GermanStemmer

from aggregator.dedup.text import _stemmer, tokens
from aggregator.parser import parse_feed

DATA = Path(__file__).resolve().parent / "data"


def _words(feeds_dir: Path) -> list[str]:
    words: set[str] = set()
    for split in ("dev", "test"):
        for line in (DATA / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            words |= set(
                tokens(" ".join(str(row.get(k) or "") for k in ("title", "summary", "text")))
            )
    for path in sorted(feeds_dir.glob("*.xml")):
        feed = parse_feed(path.read_bytes(), url="https://example.org/feed/")
        for e in feed.entries:
            words |= set(tokens(" ".join(filter(None, [e.title, e.summary_html, e.content_html]))))
    return sorted(w.replace("ß", "ss") for w in words)


def test_the_c_stemmer_is_the_one_in_use() -> None:
    assert isinstance(snowballstemmer.stemmer("german"), Stemmer.Stemmer)
    assert isinstance(_stemmer("de"), Stemmer.Stemmer)


def test_c_and_pure_python_stems_agree_on_every_word(feeds_dir: Path) -> None:
    words = _words(feeds_dir)
    assert len(words) > 10_000
    for lang, python, c in (
        ("de", GermanStemmer(), Stemmer.Stemmer("german")),
        ("en", EnglishStemmer(), Stemmer.Stemmer("english")),
    ):
        differ = [w for w in words if python.stemWord(w) != c.stemWord(w)]
        assert not differ, (lang, differ[:20])

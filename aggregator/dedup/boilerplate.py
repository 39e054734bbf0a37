"""Per-source boilerplate: lines that recur across a source's *distinct* items are chrome.

A site's pages end in the same long footer (the title interpolated, job ads rotating), so
raw-text similarity between unrelated pages of one site is high. The model counts, per
source, in how many distinct items each normalised line occurs; a line seen in
``min_docs`` or more items is boilerplate. Lines are normalised with the item's own title
replaced by a placeholder, so "Sie lesen: <title>" is one line for every page. An item whose
lines are nearly all known already (a URL variant or a copy of an earlier item) is not
counted, or its whole text would look like chrome.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

from .text import fold, stable_hash64

_SPACE_RE = re.compile(r"\s+")
_LINE_SPACE_RE = re.compile(r"[^\S\n]+")  # spacing within lines joined by "\n"
_DIGITS_RE = re.compile(r"\d+")
TITLE_MARK = "\x00title\x00"


def split_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def line_keys(lines: Sequence[str], title: str) -> list[int]:
    """Hash of each line with the item's title and digits masked and spacing folded (stored:
    the hash is stable across processes). ``lines`` as :func:`split_lines` gives them, so none
    holds a line break: they are folded and masked as one text, then split at ``"\n"`` (no
    character folds to one, and folding never joins across it: ``tests/test_boilerplate.py``),
    as a call per line was most of the cost."""
    if not lines:
        return []
    t = _SPACE_RE.sub(" ", fold(title)).strip()
    norm = fold("\n".join(lines))
    # the spacing is nearly always single spaces already, and a scan is cheaper than a regex
    # (every whitespace character but " " is unprintable)
    if "  " in norm or not norm.replace("\n", " ").isprintable():
        norm = _LINE_SPACE_RE.sub(" ", norm)
    if len(t) >= 8:
        norm = norm.replace(t, TITLE_MARK)
    return list(map(stable_hash64, _DIGITS_RE.sub("0", norm).split("\n")))


@dataclass
class SourceModel:
    counts: Counter[int] = field(default_factory=Counter)
    docs: int = 0
    last_doc: dict[int, int] = field(default_factory=dict)  # when each line was last seen


@dataclass
class BoilerplateModel:
    min_docs: int = 2
    copy_ratio: float = (
        0.9  # an item with this share of known non-chrome lines is a copy: not counted
    )
    sources: dict[str, SourceModel] = field(default_factory=dict)
    dirty: dict[str, set[int]] = field(default_factory=dict)  # counts not yet persisted
    dropped: dict[str, set[int]] = field(default_factory=dict)  # forgotten, not yet deleted
    window_docs: int = 300  # a line seen once and not again within this many items is dropped
    # the lines and keys of the text last read: an item is observed, then cleaned
    _last: tuple[str, str, list[str], list[int]] | None = field(default=None, repr=False)

    def source(self, name: str) -> SourceModel:
        model = self.sources.get(name)  # not setdefault: it would build a model every call
        if model is None:
            model = self.sources[name] = SourceModel()
        return model

    def _lines(self, title: str, text: str) -> tuple[list[str], list[int]]:
        last = self._last
        if last is not None and last[0] is text and last[1] == title:
            return last[2], last[3]
        lines = split_lines(text)
        keys = line_keys(lines, title)
        self._last = (text, title, lines, keys)
        return lines, keys

    def observe(self, source: str, title: str, text: str) -> list[int]:
        """Count a new item's lines; returns the keys whose count crossed ``min_docs`` (the
        lines that have just become boilerplate)."""
        keys = set(self._lines(title, text)[1])
        if not keys:
            return []
        model = self.source(source)
        counts, least = model.counts, self.min_docs
        had = list(map(counts.get, keys, repeat(0)))  # each count read once, in keys' order
        fresh = [n for n in had if n < least]
        known = len(fresh) - fresh.count(0)
        if model.docs and (not fresh or known / len(fresh) >= self.copy_ratio):
            return []
        model.docs += 1
        self.dirty.setdefault(source, set()).update(keys)
        model.last_doc.update(dict.fromkeys(keys, model.docs))
        counts.update(keys)  # each key once: a set
        crossed = [k for k, n in zip(keys, had, strict=True) if n == least - 1]
        if model.docs % 100 == 0:
            self._forget_rare(source, model)
        return crossed

    def _forget_rare(self, source: str, model: SourceModel) -> None:
        """Bound the model: a body line seen in one item only, long ago, will not become
        chrome; keeping it would grow the model with every article ever read."""
        horizon = model.docs - self.window_docs
        stale = [
            k
            for k, n in model.counts.items()
            if n < self.min_docs and model.last_doc.get(k, model.docs) < horizon
        ]
        for k in stale:
            del model.counts[k]
            model.last_doc.pop(k, None)
        if stale:
            self.dropped.setdefault(source, set()).update(stale)
            self.dirty.get(source, set()).difference_update(stale)

    def load(self, source: str, rows: Iterable[tuple[int, int]], docs: int) -> None:
        model = self.source(source)
        model.counts.update(dict(rows))
        model.docs = max(model.docs, docs)
        for k in model.counts:
            model.last_doc.setdefault(k, model.docs)

    def is_boilerplate(self, source: str, key: int) -> bool:
        model = self.sources.get(source)
        return model is not None and model.counts.get(key, 0) >= self.min_docs

    def clean(self, source: str, title: str, text: str) -> str:
        """The text without the source's boilerplate lines."""
        model = self.sources.get(source)
        if model is None:
            return "\n".join(split_lines(text))
        lines, keys = self._lines(title, text)
        counts, least = model.counts, self.min_docs
        return "\n".join(ln for ln, k in zip(lines, keys, strict=True) if counts.get(k, 0) < least)

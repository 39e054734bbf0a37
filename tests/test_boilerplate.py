"""The boilerplate model's line keys (stored: they must not change) and its counting, against
the plain per-line forms they replaced for speed."""

from __future__ import annotations

import re
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.dedup import boilerplate
from aggregator.dedup.boilerplate import (
    TITLE_MARK,
    BoilerplateModel,
    line_keys,
    split_lines,
)
from aggregator.dedup.text import fold, stable_hash64

_SPACE_RE = re.compile(r"\s+")
_DIGITS_RE = re.compile(r"\d+")


def line_keys_per_line(lines: list[str], title: str) -> list[int]:
    """The oracle: each line folded, spaced, masked and hashed on its own."""
    t = _SPACE_RE.sub(" ", fold(title)).strip()
    keys = []
    for line in lines:
        norm = _SPACE_RE.sub(" ", fold(line))
        if len(t) >= 8:
            norm = norm.replace(t, TITLE_MARK)
        keys.append(stable_hash64(_DIGITS_RE.sub("0", norm)))
    return keys


def observe_per_key(model: BoilerplateModel, source: str, title: str, text: str) -> list[int]:
    """The oracle of :meth:`BoilerplateModel.observe`: each key's count looked up as needed."""
    keys = set(line_keys_per_line(split_lines(text), title))
    if not keys:
        return []
    m = model.sources.setdefault(source, boilerplate.SourceModel())
    fresh = [k for k in keys if m.counts.get(k, 0) < model.min_docs]
    known = sum(1 for k in fresh if m.counts.get(k, 0) > 0)
    if m.docs and (not fresh or known / len(fresh) >= model.copy_ratio):
        return []
    m.docs += 1
    model.dirty.setdefault(source, set()).update(keys)
    crossed = []
    for k in keys:
        m.last_doc[k] = m.docs
        m.counts[k] += 1
        if m.counts[k] == model.min_docs:
            crossed.append(k)
    if m.docs % 100 == 0:
        model._forget_rare(source, m)
    return crossed


def test_folding_never_makes_or_crosses_a_line_feed() -> None:
    """What folding the lines as one text needs, for every code point: none folds to a text
    holding "\\n", none joins with a "\\n" either side (NFKC composes nothing across it), and
    every whitespace character but " " is unprintable (the spacing check)."""
    bad = []
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        f = fold(c)
        if c != "\n" and "\n" in f:
            bad.append((cp, "folds to a line feed"))
        if fold(c + "\n") != f + "\n" or fold("\n" + c) != "\n" + f:
            bad.append((cp, "joins with a line feed"))
        if c.isspace() and c != " " and c.isprintable():
            bad.append((cp, "printable whitespace"))
    assert bad == []


# Characters where folding, spacing and masking differ: compatibility forms (fullwidth,
# ligatures, a spacing accent that folds to " " + a mark), combining marks, case-folding
# expansions, every kind of whitespace and line break, and digits of other scripts.
_TRICKY = list("aAzZ äÄßẞﬁﬀ①２９´¨\u0301\u0308Σσςİı \t\u00a0\u2003\u3000\x1f\x85\u2028\r\n\f0179٣")
_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from(_TRICKY), st.characters(blacklist_categories=("Cs",))),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(_TEXT, _TEXT, st.integers(0, 3))
def test_line_keys_equal_the_per_line_keys(text: str, extra: str, repeats: int) -> None:
    title = extra or text[:12]
    body = "\n".join([text, f"Sie lesen: {title} ", *[extra] * repeats, text.upper()])
    lines = split_lines(body)
    assert line_keys(lines, title) == line_keys_per_line(lines, title)


def test_line_keys_mask_the_title_digits_and_spacing() -> None:
    title = "Ein langer Titel"
    a = line_keys(["Sie lesen:  ein LANGER titel, Seite 12", "x"], title)
    b = line_keys(["Sie lesen: EIN\u00a0langer Titel, Seite 7", "x"], title)
    assert a == b
    assert a[0] != a[1]
    assert line_keys([], title) == []


_ITEM = st.tuples(
    st.sampled_from(["a", "b"]),
    st.sampled_from(["Titel eins der Woche", "Title two", "Dritter Titel hier"]),
    st.lists(
        st.sampled_from(["Footer 2024", "Impressum", "Ein Satz.", "Noch ein Satz 3.", "x", ""]),
        max_size=6,
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ITEM, max_size=40), st.integers(1, 3), st.sampled_from([0.5, 0.9, 1.0]))
def test_observe_counts_as_the_per_key_form(items, min_docs: int, copy_ratio: float) -> None:
    new = BoilerplateModel(min_docs=min_docs, copy_ratio=copy_ratio, window_docs=3)
    old = BoilerplateModel(min_docs=min_docs, copy_ratio=copy_ratio, window_docs=3)
    for model in (new, old):  # near a hundred items, where the rare lines are forgotten
        model.load("a", [], 90)
        model.load("b", [], 95)
    for n, (source, title, lines) in enumerate(items):
        text = "\n".join(lines + [f"Artikel {n % 7}"])
        assert new.observe(source, title, text) == observe_per_key(old, source, title, text)
        for name, model in new.sources.items():
            other = old.sources[name]
            assert list(model.counts.items()) == list(other.counts.items())
            assert list(model.last_doc.items()) == list(other.last_doc.items())
            assert model.docs == other.docs
        assert new.dirty == old.dirty and new.dropped == old.dropped

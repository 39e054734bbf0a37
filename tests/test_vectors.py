"""Term vectors: batch similarities equal the textbook formulas; the vocabulary holds only the
terms of the documents counted in (ids are recycled)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from aggregator.dedup.vectors import Vocabulary, similarities

WORDS = [f"w{i}" for i in range(60)]


def reference(vocab_docs: list[Counter[str]], a: Counter[str], b: Counter[str]):
    """Cosine, shared count, shared IDF mass and both IDF masses, one term at a time."""
    n = len(vocab_docs)
    df = Counter(t for doc in vocab_docs for t in doc)

    def idf(t: str) -> float:
        return math.log((n + 1) / (df[t] + 1)) + 1.0

    wa = {t: (1 + math.log(c)) * idf(t) for t, c in a.items()}
    wb = {t: (1 + math.log(c)) * idf(t) for t, c in b.items()}
    dot = sum(w * wb[t] for t, w in wa.items() if t in wb)
    na = math.sqrt(sum(w * w for w in wa.values()))
    nb = math.sqrt(sum(w * w for w in wb.values()))
    cos = dot / (na * nb) if na and nb else 0.0
    shared = set(a) & set(b)
    return (
        cos,
        len(shared),
        sum(idf(t) for t in shared),
        sum(idf(t) for t in b),
        sum(idf(t) for t in a),
    )


def random_doc(rng: random.Random, size: int) -> Counter[str]:
    return Counter(rng.choice(WORDS) for _ in range(size))


def test_batch_similarities_equal_the_pairwise_formulas() -> None:
    rng = random.Random(3)
    docs = [random_doc(rng, rng.randint(1, 40)) for _ in range(30)]
    vocab = Vocabulary()
    vecs = [vocab.vector(d) for d in docs]
    for v in vecs:
        vocab.count_in(v)
    query = random_doc(rng, 25)
    others = docs[:10] + [Counter()] + docs[10:]  # an empty vector in the middle
    sc = similarities(vocab, vocab.vector(query), [vocab.vector(d) for d in others])
    for k, other in enumerate(others):
        cos, shared, shared_idf, other_idf, query_idf = reference(docs, query, other)
        assert sc.cosine[k] == pytest.approx(cos, abs=1e-12)
        assert sc.shared[k] == shared
        assert sc.shared_idf[k] == pytest.approx(shared_idf, abs=1e-9)
        assert sc.other_idf[k] == pytest.approx(other_idf, abs=1e-9)
        assert sc.query_idf == pytest.approx(query_idf, abs=1e-9)
    assert any(sc.cosine > 0.3) and any(sc.cosine == 0)  # the data exercises both ends


def test_cosine_only_is_the_same_cosine() -> None:
    """Threads and two full texts ask for the cosine alone: the same numbers, bit for bit
    (decisions compare them with thresholds), and no overlap figures to misread."""
    rng = random.Random(4)
    docs = [random_doc(rng, rng.randint(0, 40)) for _ in range(30)]
    vocab = Vocabulary()
    vocab.count_in_many([vocab.vector(d) for d in docs])
    others = [vocab.vector(d) for d in docs]
    for query in (vocab.vector(random_doc(rng, 25)), vocab.vector(Counter())):
        full = similarities(vocab, query, others)
        lean = similarities(vocab, query, others, overlap=False)
        assert lean.cosine.tolist() == full.cosine.tolist()
        assert lean.query_idf == full.query_idf
        assert len(lean.shared) == len(lean.shared_idf) == len(lean.other_idf) == 0


def test_no_candidates_and_an_empty_query() -> None:
    vocab = Vocabulary()
    v = vocab.vector(Counter(a=2, b=1))
    vocab.count_in(v)
    assert len(similarities(vocab, v, []).cosine) == 0
    sc = similarities(vocab, vocab.vector(Counter()), [v])
    assert sc.cosine.tolist() == [0.0] and sc.shared.tolist() == [0]


def test_vocabulary_holds_only_counted_terms_and_recycles_ids() -> None:
    rng = random.Random(5)
    vocab = Vocabulary()
    held: list[tuple[Counter[str], object]] = []
    for step in range(2000):
        doc = Counter(f"t{step}-{k}" for k in range(5)) + random_doc(rng, 5)  # new words
        vec = vocab.vector(doc)
        vocab.count_in(vec)
        held.append((doc, vec))
        if len(held) > 50:  # a sliding window
            _, old = held.pop(0)
            vocab.count_out(old)  # type: ignore[arg-type]
    live = {t for doc, _ in held for t in doc}
    assert len(vocab) == len(live)
    assert vocab.n_docs == 50
    for t in list(live)[:20]:
        assert vocab.df(t) == sum(1 for doc, _ in held if t in doc)
    assert vocab.df("t0-0") == 0
    assert len(vocab._df) <= 2048  # ids were reused, the array did not follow the history


def test_counting_in_many_at_once_equals_one_by_one() -> None:
    rng = random.Random(8)
    docs = [random_doc(rng, rng.randint(0, 30)) for _ in range(40)]  # empty ones too
    one, many = Vocabulary(), Vocabulary()
    for doc in docs:
        one.count_in(one.vector(doc))
    many.count_in_many([many.vector(doc) for doc in docs])
    many.count_in_many([])
    assert many.n_docs == one.n_docs == len(docs)
    assert {t: many.df(t) for t in WORDS} == {t: one.df(t) for t in WORDS}
    query = one.vector(docs[0])
    assert one.idf(query.ids).tolist() == many.idf(many.vector(docs[0]).ids).tolist()


def test_a_vector_names_its_terms_known_and_new_alike() -> None:
    """New terms get ids in the middle of known ones (looked up together, then given ids)."""
    vocab = Vocabulary()
    vocab.count_in(vocab.vector(Counter(a=1, b=2, c=1)))
    doc = Counter(x=3, a=2, y=1, c=5, z=1)  # new, known, new, known, new
    vec = vocab.vector(doc)
    assert vec.ids.tolist() == sorted(vec.ids.tolist())
    got = dict(zip(vocab.terms_of(vec), vec.tfw.tolist(), strict=True))
    assert got == {t: 1 + math.log(n) for t, n in doc.items()}
    assert vocab.vector(doc).pairs.tolist() == vec.pairs.tolist()  # and keep them


def test_a_terms_idf_is_the_same_before_and_after_it_gets_an_id() -> None:
    """The engine gives an item's new terms their ids before it scores its top terms by IDF
    (one lookup for that and its vector): an id, fresh or recycled, must not change it."""
    rng = random.Random(11)
    vocab = Vocabulary()
    held: list[object] = []
    for step in range(600):
        doc = Counter(f"t{step}-{k}" for k in range(3)) + random_doc(rng, 8)
        query = [*doc, f"t{step + 1}-0", f"u{step}"]  # known, new, and a term never counted
        before = list(vocab.idf_of(query).values())
        ids = vocab.term_ids(query)
        assert vocab.idf(ids).tolist() == before
        vec = vocab.vector(doc, ids[: len(doc)])
        assert vec.pairs.tolist() == vocab.vector(doc).pairs.tolist()
        vocab.count_in(vec)
        held.append(vec)
        if len(held) > 40:  # a sliding window: ids are recycled
            vocab.count_out(held.pop(0))  # type: ignore[arg-type]
    assert len(vocab._df) <= 2048

"""Clustering quality on labelled data and the reference traps (seeds + shared site footer).

The seeds are read from ../shared at run time; the unrelated pages around them are our own
text wearing the seeds' footer, as a naive scrape of the same site would return them.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import SEEDS
from helpers import cli

from aggregator.dedup.clusterfile import cluster_rows, read_items
from aggregator.dedup.engine import DedupItem, Engine, top_k_first
from aggregator.dedup.evaluate import evaluate, format_table, read_jsonl

DATA = Path(__file__).resolve().parent / "data"
# issue 20's targets (the held-out corpus's; ours must show the same)
TARGETS = {
    "duplicate_pairwise_f1": 0.95,
    "story_bcubed_f1": 0.90,
    "thread_bcubed_f1": 0.88,
    "cross_language_pair_recall": 0.70,
}

# Our own unrelated IT BOLTWISE-style pages (bodies written for this test).
OWN_PAGES = [
    (
        "Neuer Quantenchip aus Jena erreicht Rekordwerte bei der Fehlerkorrektur",
        "JENA (IT BOLTWISE) – Forscher in Jena haben einen supraleitenden Quantenchip vorgestellt, "
        "der logische Qubits deutlich länger stabil hält als bisherige Entwürfe.\n"
        "Das Team setzt auf eine neue Anordnung der Koppler, die Übersprechen zwischen benachbarten "
        "Qubits unterdrückt. In Tests blieb die Fehlerrate über tausend Zyklen konstant.\n"
        "Industriepartner wollen die Technik bis 2028 in Rechenzentren erproben.",
    ),
    (
        "Roboterhund patrouilliert künftig im Hamburger Hafen",
        "HAMBURG (IT BOLTWISE) – Die Hafenbehörde testet einen vierbeinigen Roboter, der nachts "
        "Containerreihen abläuft und Wärmebilder an die Leitstelle schickt.\n"
        "Der Roboter erkennt offene Türen, Lecks und Personen in gesperrten Bereichen. Ein "
        "Sicherheitsdienst prüft jede Meldung, bevor jemand ausrückt.\n"
        "Nach sechs Monaten soll entschieden werden, ob weitere Geräte angeschafft werden.",
    ),
    (
        "Start-up aus Leipzig bringt KI-Übersetzer für Gebärdensprache",
        "LEIPZIG (IT BOLTWISE) – Ein junges Unternehmen aus Leipzig hat eine App veröffentlicht, "
        "die Deutsche Gebärdensprache per Kamera erkennt und in Text überträgt.\n"
        "Gehörlose Testerinnen und Tester halfen beim Training des Modells, das auf dem Smartphone "
        "läuft und keine Daten in die Cloud schickt.\n"
        "Die Gründer suchen nun Partner in Behörden und Krankenhäusern.",
    ),
    (
        "Chiphersteller meldet Lieferengpässe bei Speicher für KI-Server",
        "TAIPEH (IT BOLTWISE) – Ein großer Speicherhersteller warnt vor Engpässen bei "
        "Hochleistungsspeicher, der in KI-Servern verbaut wird.\n"
        "Die Nachfrage von Cloud-Anbietern übersteige die Produktion um ein Drittel, hieß es. "
        "Neue Fertigungslinien gehen frühestens im kommenden Jahr in Betrieb.\n"
        "Analysten rechnen mit weiter steigenden Preisen für Serverhardware.",
    ),
]


def seed_pages() -> list[tuple[str, str, str]]:
    """(title, body, footer) of each seed; the title is the one the footer interpolates."""
    pages = []
    for path in sorted(SEEDS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        title = re.search(r'zum Artikel "([^"]+)"', text).group(1)  # type: ignore[union-attr]
        cut = text.index("- Die besten Bücher")
        pages.append((title, text[:cut].strip(), text[cut:]))
    return pages


def site_item(n: int, title: str, at: datetime) -> DedupItem:
    return DedupItem(
        id=n,
        source="IT BOLTWISE",
        feed_kind="site",
        publisher="IT BOLTWISE",
        title=title,
        summary="",
        lang="de",
        canonical_url=f"https://www.it-boltwise.de/{n}.html",
        published_at=at,
    )


@pytest.fixture(scope="module", params=["footer-known", "seeds-first"])
def seeded_engine(request: pytest.FixtureRequest) -> tuple[Engine, list[int], list[int]]:
    """The site's pages in two orders: the footer already learned when the seeds arrive, or
    the seeds are the site's first pages (the footer is learned afterwards)."""
    seeds = seed_pages()
    assert len(seeds) == 2
    start = datetime(2026, 2, 10, 8, tzinfo=UTC)
    engine = Engine()
    items: list[tuple[DedupItem, str]] = []
    # unrelated pages of the same site, with the site's footer (their own title interpolated)
    for i, (title, body) in enumerate(OWN_PAGES):
        footer = seeds[i % 2][2].replace(seeds[i % 2][0], title)
        text = f"{body}\n\n{footer}"
        at = start + timedelta(hours=5 * i)
        if request.param == "seeds-first":
            at += timedelta(days=5)
        items.append((site_item(10 + i, title, at), text))
    for i, (title, body, footer) in enumerate(seeds):
        text = f"{body}\n\n{footer}"
        items.append((site_item(i, title, start + timedelta(days=1 + 2 * i)), text))
    items.sort(key=lambda t: t[0].published_at)
    for item, text in items:
        engine.add(item, text=text)
    return engine, [0, 1], [10 + i for i in range(len(OWN_PAGES))]


def test_seeds_share_a_thread_but_not_a_duplicate_cluster(seeded_engine) -> None:
    engine, (a, b), _ = seeded_engine
    ca, cb = engine.clusters_of(a), engine.clusters_of(b)
    assert ca["thread"] == cb["thread"]
    assert ca["duplicate"] != cb["duplicate"]


def test_footer_trap_unrelated_pages_stay_apart(seeded_engine) -> None:
    engine, seeds, others = seeded_engine
    for level in ("duplicate", "story", "thread"):
        groups = [engine.clusters_of(i)[level] for i in others]
        assert len(set(groups)) == len(others), level
        seed_groups = {engine.clusters_of(i)[level] for i in seeds}
        assert not seed_groups & set(groups), level


def test_footer_is_learned_as_boilerplate(seeded_engine) -> None:
    engine, seeds, _ = seeded_engine
    body = engine._clean_body(engine.records[seeds[1]].item)
    assert "Stellenangebote" not in body and "Kommentare moderiert" not in body
    assert "Rubio" in body or "Witkoff" in body


def run_split(name: str):
    rows = read_items(DATA / f"{name}.jsonl")
    pred, _ = cluster_rows(rows, DATA / f"{name}.jsonl")
    return evaluate(pred, read_jsonl(DATA / f"{name}.labels.jsonl")), pred, rows


@pytest.mark.parametrize("split", ["test", "dev"])
def test_labelled_corpus_meets_targets(split: str) -> None:

    sys.path.insert(0, str(DATA))
    from pairs import cross_language_scores, languages

    results, pred, rows = run_split(split)
    gold = {r["id"]: r["story"] for r in read_jsonl(DATA / f"{split}.labels.jsonl")}
    cross = cross_language_scores({p["id"]: p["story"] for p in pred}, gold, languages(rows))
    print(f"\n{split} split:\n{format_table(results)}")
    print(f"cross-language story pairs: recall {cross['recall']:.3f} of {cross['pairs']}")
    assert results["duplicate"].pairwise_f1 >= TARGETS["duplicate_pairwise_f1"]
    assert results["duplicate"].false_merges == 0
    assert results["story"].bcubed_f1 >= TARGETS["story_bcubed_f1"]
    assert results["thread"].bcubed_f1 >= TARGETS["thread_bcubed_f1"]
    assert cross["pairs"] >= 50  # the corpus holds bilingual stories: the check means something
    assert cross["recall"] >= TARGETS["cross_language_pair_recall"]
    assert not cross["false_merges"]


def test_readding_an_item_changes_nothing() -> None:
    rows = read_items(DATA / "dev.jsonl")
    _, engine = cluster_rows(rows, DATA / "dev.jsonl")
    before = {i: engine.clusters_of(i) for i in engine.records}
    for rec in list(engine.records.values())[:20]:
        out = engine.add(rec.item)
        assert out.evidence == {} and out.merges == []
    assert {i: engine.clusters_of(i) for i in engine.records} == before


def test_nesting_duplicate_in_story_in_thread() -> None:
    rows = read_items(DATA / "dev.jsonl")
    _, engine = cluster_rows(rows, DATA / "dev.jsonl")
    story_of_dup: dict[int, int] = {}
    thread_of_story: dict[int, int] = {}
    for i in engine.records:
        c = engine.clusters_of(i)
        assert story_of_dup.setdefault(c["duplicate"], c["story"]) == c["story"]
        assert thread_of_story.setdefault(c["story"], c["thread"]) == c["thread"]


def test_cluster_file_and_eval_cli(tmp_path: Path) -> None:
    out = tmp_path / "pred.jsonl"
    proc = cli(None, "cluster-file", str(DATA / "test.jsonl"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    pred = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [p["id"] for p in pred] == [r["id"] for r in read_items(DATA / "test.jsonl")]
    assert all(set(p) == {"id", "duplicate", "story", "thread"} for p in pred)
    ev = cli(None, "eval", str(out), str(DATA / "test.labels.jsonl"))
    assert ev.returncode == 0, ev.stderr
    assert "duplicate" in ev.stdout and "B3-F1" in ev.stdout


def test_cluster_file_rejects_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"id": "a", "title": "x"}\nnot json\n', encoding="utf-8")
    proc = cli(None, "cluster-file", str(bad), "-o", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 1
    assert f"{bad}:2: invalid JSON" in proc.stderr


SYLLABLES = "ka lo mi nu pe ra si to vu we xa ye zo bi ce da fu ge hi jo".split()  # noqa: SIM905


def test_engine_forgets_items_outside_every_window() -> None:
    """A long-running engine holds one retention window, not its whole history; what it
    forgets could not have matched anything new, so the clusters of recent items are intact."""
    from aggregator.dedup.engine import Settings

    settings = Settings(story_window_s=86400, thread_window_s=2 * 86400, duplicate_window_s=86400)
    engine = Engine(settings)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    n = 1500
    for i in range(n):
        at = start + timedelta(hours=2 * i)  # ~125 days
        words = " ".join(
            SYLLABLES[(i * 7 + k) % 20] + SYLLABLES[(i + k * 3) % 20] for k in range(60)
        )  # letters only: line keys mask digits
        text = f"{words[:40]}\n{words}\nImpressum und Datenschutz der Testseite"
        engine.add(site_item(1000 + i, f"Meldung Nummer {i} aus der Stadt", at), text=text)
    held = set(engine.records)
    # exactly the items within reach (1.1 x the widest window, 2 days) of the newest item
    # there was when the last one arrived (the engine forgets before it places)
    reach = timedelta(seconds=1.1 * 2 * 86400)
    newest = start + timedelta(hours=2 * (n - 2))
    assert held == {1000 + i for i in range(n) if start + timedelta(hours=2 * i) >= newest - reach}
    slots = {engine._slot_of[i] for i in held}
    assert len(slots) == len(held) == len(engine._slot_of)  # one slot each, the others free
    assert engine.dup_index.slots() <= slots  # the LSH indexes hold slots
    assert engine.story_index.slots() <= slots
    for level in ("duplicate", "story", "thread"):
        assert set(engine.cluster_of[level]) == held
        assert set().union(*engine.members[level].values()) == held
    # term statistics cover exactly the held items' terms (ids of forgotten terms recycled)
    assert engine.vocab.n_docs == len(held)
    assert len(engine.vocab) == len({t for r in engine.records.values() for t in r.terms})
    # the site's boilerplate model keeps its chrome but not every article's lines
    model = engine.boilerplate.sources["IT BOLTWISE"]
    assert engine.boilerplate.is_boilerplate(
        "IT BOLTWISE", next(k for k, c in model.counts.items() if c >= 2)
    )
    assert len(model.counts) < n


def test_the_slot_rows_that_verify_duplicates_follow_their_items() -> None:
    """Duplicate candidates are checked on per-slot rows (the banded signature, the shingle
    bitmap, the counts), not on the records: as slots are reused, items re-placed as their
    source's chrome is learned and edited, every row made must be what the item's own
    signature and shingles give, and the placing must decide as the records would."""
    from aggregator.dedup.engine import Settings

    settings = Settings(story_window_s=86400, thread_window_s=86400, duplicate_window_s=86400)
    engine = Engine(settings)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    texts = {}

    def check() -> int:
        """Every row made is the item's own; how many bitmaps are made."""
        bands, rows = engine.dup_bands
        made = 0
        for item_id, rec in engine.records.items():
            slot = engine._slot_of[item_id]
            assert int(engine._slot_id[slot]) == item_id
            if rec.dup_sig is None:
                continue
            assert (engine._slot_dup[slot] == rec.dup_sig[: bands * rows]).all()
            if engine._slot_shingles[slot] >= 0:
                made += 1
                engine._shingle_bits_cache.pop(item_id, None)
                bits, excess = engine._shingle_bits(item_id, engine.dup_shingles(item_id))
                assert (engine._slot_bits[slot] == bits).all()
                assert engine._slot_excess[slot] == excess
                assert engine._slot_shingles[slot] == len(engine.dup_shingles(item_id))
                engine._shingle_bits_cache.pop(item_id)
        return made

    for i in range(300):
        at = start + timedelta(hours=3 * i)  # ~37 days: slots are freed and reused
        words = " ".join(
            SYLLABLES[(i // 3 * 7 + k) % 20] + SYLLABLES[(i // 3 + k * 3) % 20] for k in range(60)
        )  # three items each: copies that are duplicates
        texts[i] = f"{words[:40]}\n{words}\nImpressum und Datenschutz der Testseite"
        out = engine.add(
            site_item(1000 + i, f"Meldung Nummer {i} aus der Stadt", at), text=texts[i]
        )
        if i % 3:
            ev = out.evidence[(1000 + i, "duplicate")]
            first = 1000 + i - i % 3  # the copies before it in its group
            assert ev.method == "minhash" and first <= ev.matched_item_id < 1000 + i
            other = engine.records[ev.matched_item_id].dup_sig
            assert ev.bands == tuple(
                engine.matched_bands(engine.records[1000 + i].dup_sig, other, "duplicate")
            )
        if i == 250:  # an edit: its features, and its rows, are made anew (a new text
            # that shares nothing, so no candidate's check makes its bitmap on the way)
            edited = site_item(1000 + i - 1, "Meldung Nummer 249 neu", at)
            new = " ".join(f"{a}{b}" for a in SYLLABLES for b in SYLLABLES[:4])
            engine.update(edited, text=f"{new}\nImpressum und Datenschutz der Testseite")
            assert engine.records[1000 + i - 1].dup_sig is not None
            check()
    assert check() >= len(engine.records) // 2
    free = [s for s in range(len(engine._slot_id)) if engine._slot_id[s] < 0]
    assert (engine._slot_shingles[free] == -1).all()  # a freed slot's bitmap is no one's


def test_replacing_an_item_whose_own_cluster_is_merged_on_the_way() -> None:
    """A re-placed item (its source's chrome was just learned) can match an older cluster
    best and a co-member of its own cluster too: the merge of its own cluster into the older
    one must leave it there (this raised KeyError on the synthetic workload)."""
    from aggregator.dedup.engine import Evidence, Outcome, Rec

    engine = Engine()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for n in (1, 2, 3):
        item = site_item(n, f"Meldung {n}", at)
        engine.records[n] = Rec(item=item, title_key="", publisher_key=None)
    older = engine._new_cluster("duplicate", 1)
    own = engine._new_cluster("duplicate", 2)
    engine._join("duplicate", 3, own)
    matches = [
        Evidence("duplicate", None, "minhash", 1, 0.9),  # best: the older cluster
        Evidence("duplicate", None, "minhash", 2, 0.7),  # its own cluster's other member
    ]
    out = Outcome(3)
    engine._settle("duplicate", engine.records[3], matches, out)
    assert {engine.cluster_of["duplicate"][n] for n in (1, 2, 3)} == {older}
    assert engine.members["duplicate"] == {older: {1, 2, 3}}
    assert [(m.from_id, m.into_id) for m in out.merges] == [(own, older)]


def test_candidates_are_capped_to_those_sharing_the_most_bands() -> None:
    """A busy window proposes thousands of candidates through one common term each; only the
    ``max_candidates`` sharing the most story bands are verified, in their first order."""
    import numpy as np

    from aggregator.dedup.engine import Rec, Settings

    engine = Engine(Settings(max_candidates=2))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    base = np.arange(1, 129, dtype=np.uint64)
    shared = {1: 5, 2: 100, 3: 1, 4: 60}  # bands each stored item shares with the query
    recs = {}
    for n, k in shared.items():
        sig = base + np.uint64(1000 * n)
        sig[:k] = base[:k]
        recs[n] = Rec(item=site_item(n, f"Meldung {n}", at), title_key="", publisher_key=None)
        recs[n].story_sig = sig
        engine.records[n] = recs[n]
        engine.hold(recs[n].item)
        engine._index(n, sig, "story")
    query = Rec(item=site_item(9, "Anfrage", at), title_key="", publisher_key=None)
    query.story_sig = base.copy()
    found = engine._story_candidates(query).ids.tolist()
    assert sorted(found) == [1, 2, 3, 4]
    kept = engine._near(query, window_s=3600.0)
    assert kept == [n for n in found if n in (2, 4)]
    # out of the window: not a candidate, however many bands it shares
    engine.hold(site_item(2, "Meldung 2", at + timedelta(hours=2)))  # published later
    engine._cands = None  # (cached for one placement)
    kept = engine._near(query, window_s=3600.0)
    assert kept == [n for n in found if n in (1, 4)]


def test_a_common_band_value_proposes_only_its_newest_holders() -> None:
    """A value thousands of items hold (a common term) proposes only its ``story_postings``
    newest holders, so what a placement gathers does not grow with what is held; a rarer
    value still proposes an older holder."""
    import numpy as np

    from aggregator.dedup.engine import Rec, Settings

    engine = Engine(Settings(story_postings=2))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    base = np.arange(1, 129, dtype=np.uint64)
    for n in range(1, 6):  # all share band 0's value; item 1 alone shares band 1's too
        sig = base + np.uint64(1000 * n)
        sig[0] = base[0]
        if n == 1:
            sig[1] = base[1]
        rec = Rec(item=site_item(n, f"Meldung {n}", at), title_key="", publisher_key=None)
        rec.story_sig = sig
        engine.records[n] = rec
        engine.hold(rec.item)
        engine._index(n, sig, "story")
    query = Rec(item=site_item(9, "Anfrage", at), title_key="", publisher_key=None)
    query.story_sig = base.copy()
    cands = engine._story_candidates(query)
    assert cands.ids.tolist() == [4, 5, 1]  # band 0's two newest, then band 1's holder
    assert cands.shared.tolist() == [1, 1, 1]


def test_a_duplicate_band_value_proposes_only_its_newest_holders() -> None:
    """The duplicate candidates are bounded too: a band's value proposes only its
    ``dup_postings`` newest holders, and the bands each shares are its own."""
    from aggregator.dedup.engine import Rec, Settings

    engine = Engine(Settings(dup_postings=2))
    bands, rows = engine.dup_bands
    at = datetime(2026, 1, 1, tzinfo=UTC)
    base = np.arange(1, 129, dtype=np.uint32)
    for n in range(1, 6):  # all share band 0's rows; item 1 alone shares band 1's too
        sig = base + np.uint32(1000 * n)
        sig[:rows] = base[:rows]
        if n == 1:
            sig[rows : 2 * rows] = base[rows : 2 * rows]
        rec = Rec(item=site_item(n, f"Meldung {n}", at), title_key="", publisher_key=None)
        rec.dup_sig = sig
        engine.records[n] = rec
        engine.hold(rec.item)
        engine._index(n, sig, "duplicate")
    query = Rec(item=site_item(9, "Anfrage", at), title_key="", publisher_key=None)
    query.dup_sig = base.copy()
    slots = engine._dup_proposed(query)
    same = engine._dup_same(query, slots)
    assert engine._slot_id[slots].tolist() == [4, 5, 1]  # band 0's two newest, band 1's
    assert [np.flatnonzero(b).tolist() for b in same] == [[0], [0], [0, 1]]
    engine.settings = Settings(dup_postings=5)
    slots = engine._dup_proposed(query)
    assert engine._slot_id[slots].tolist() == [1, 2, 3, 4, 5]


def test_a_collision_of_duplicate_band_mixes_proposes_nothing() -> None:
    """The duplicate index keys a band of three rows by a 32-bit mix of them; two different
    bands with the same mix must not make a candidate (its bands are compared exactly)."""
    import numpy as np

    from aggregator.dedup.engine import Rec, band_values

    engine = Engine()
    bands, rows = engine.dup_bands
    assert rows > 1  # else the band's value is its row and nothing can collide
    rng = np.random.default_rng(7)
    candidates = rng.integers(0, 2**32, size=(300_000, rows), dtype=np.uint64)
    mixes = band_values(candidates.reshape(-1, rows), 1, rows)
    _, first, counts = np.unique(mixes, return_index=True, return_counts=True)
    twin = int(first[np.flatnonzero(counts > 1)[0]])
    other = int(np.flatnonzero(mixes == mixes[twin])[1])
    a_band, b_band = candidates[twin], candidates[other]
    assert (a_band != b_band).any()  # a real collision: different rows, the same mix

    at = datetime(2026, 1, 1, tzinfo=UTC)
    sig_a = rng.integers(0, 2**32, size=engine.settings.num_perm, dtype=np.uint64)
    sig_b = (sig_a + np.uint64(1)) % np.uint64(2**32)  # shares no row with a ...
    sig_b[:rows], sig_a[:rows] = b_band, a_band  # ... but band 0 mixes to the same value
    sig_c = (sig_b + np.uint64(2)) % np.uint64(2**32)
    sig_c[2 * rows : 3 * rows] = sig_b[2 * rows : 3 * rows]  # shares band 2 with b, for real
    for n, sig in ((1, sig_a), (2, sig_c)):
        rec = Rec(item=site_item(n, f"Meldung {n}", at), title_key="", publisher_key=None)
        rec.dup_sig = sig.astype(np.uint32)
        engine.records[n] = rec
        engine.hold(rec.item)
        engine._index(n, rec.dup_sig, "duplicate")
    query = Rec(item=site_item(9, "Anfrage", at), title_key="", publisher_key=None)
    query.dup_sig = sig_b.astype(np.uint32)
    assert (band_values(query.dup_sig, bands, rows)[0]) == band_values(sig_a, bands, rows)[0]
    slots = engine._dup_proposed(query)
    assert sorted(engine._slot_id[slots].tolist()) == [1, 2]  # a is proposed by the mix ...
    same = engine._dup_same(query, slots)
    found = {
        int(engine._slot_id[s]): np.flatnonzero(b).tolist()
        for s, b in zip(slots, same, strict=True)
        if b.any()  # what placement keeps
    }
    assert found == {2: [2]}  # ... but c shares band 2 with b; a nothing


def test_a_google_title_shortened_with_an_ellipsis_joins_the_full_article() -> None:
    """Google News shortens long titles ("… squeeze ..."): the entry is the publisher's
    article whose full title starts with the words it kept, and only that one, among many
    other items of the same publisher."""
    engine = Engine()
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    for n in range(40):  # a busy site: its other items must not be mistaken for the article
        title = f"Stadtrat beschließt neue Regeln für den Hafen Teil {n} der Serie"
        engine.add(site_item(n + 1, title, at))
    full = "Stadtrat beschließt neue Regeln für Radwege in der Innenstadt ab dem Frühjahr"
    engine.add(site_item(100, full, at))

    def google(n: int, title: str) -> DedupItem:
        return DedupItem(
            id=n,
            source="Google News: Stadtrat",
            feed_kind="google_news",
            publisher="IT BOLTWISE",
            title=f"{title} - IT BOLTWISE",
            summary="",
            lang="de",
            canonical_url=None,
            published_at=at + timedelta(hours=1),
        )

    out = engine.add(google(200, "Stadtrat beschließt neue Regeln für Radwege in der ..."))
    ev = out.evidence[(200, "duplicate")]
    assert (ev.method, ev.matched_item_id) == ("title", 100)
    # the same opening, then other words: not that article, not any other
    out = engine.add(google(201, "Stadtrat beschließt neue Regeln für Parkplätze am ..."))
    assert out.evidence[(201, "duplicate")].method == "new"


def test_the_candidate_cut_keeps_what_a_stable_sort_keeps() -> None:
    """The k candidates sharing the most bands, in their first order, ties to the first
    found: as ``sorted`` would choose (the cut decides which items are compared at all)."""
    rng = np.random.default_rng(11)
    for n in (0, 1, 5, 299, 300, 301, 3500):
        for k in (1, 3, 300):
            counts = rng.integers(1, 12, n)  # few distinct values: ties at the cut
            want = np.sort(np.argsort(-counts, kind="stable")[:k])
            assert top_k_first(counts, k).tolist() == want.tolist()


def test_the_shingle_bitmap_bound_turns_down_no_duplicate() -> None:
    """``dup_alike`` bounds each candidate's shared shingles from two 4096-bucket bitmaps
    before comparing the shingles: it must give exactly the scores ``dup_similarity`` gives
    that reach the threshold, for any overlap, sizes and crowding of buckets (shingles whose
    hashes share their low bits, which the bound counts apart)."""
    from aggregator.dedup.engine import SHINGLE_BUCKETS

    engine = Engine()
    rng = np.random.default_rng(11)
    threshold = engine.settings.duplicate_threshold

    def hashes(n: int, crowded: float) -> np.ndarray:
        values = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
        k = int(n * crowded)  # these share a few buckets: high bits differ, low bits alike
        values[:k] = (values[:k] & ~np.int64(SHINGLE_BUCKETS - 1)) | rng.integers(0, 4, k)
        return np.unique(values)

    checked = reached = 0
    for round_ in range(40):
        query = hashes(int(rng.integers(10, 1500)), crowded=rng.choice([0.0, 0.3, 0.9]))
        engine._shingle_cache = {0: query}
        engine._shingle_bits_cache = {}
        others = []
        for n in range(1, 30):
            size = int(rng.integers(5, 1500))
            share = float(rng.choice([0.0, 0.2, 0.55, threshold, 0.65, 0.9, 1.0]))
            kept = rng.permutation(query)[: int(round(share * min(size, len(query))))]
            other = np.unique(np.concatenate([kept, hashes(size - len(kept), rng.random())]))
            engine._shingle_cache[n] = other
            others.append(n)
        got = engine.dup_alike(0, others)
        want = [engine.dup_similarity(0, n) for n in others]
        assert got == [s if s >= threshold else None for s in want], round_
        checked += len(others)
        reached += sum(s is not None for s in got)
    assert 0 < reached < checked  # both sides of the threshold were met


def test_a_start_up_past_the_first_block_of_slots_grows_every_slot_array() -> None:
    """A start-up holds a chunk of stored items at once (``_held_many``, ``take_in``): past
    the first block of slots every per-slot array (the duplicate rows included) must grow
    with them, into what holding them one by one gives."""
    from aggregator.dedup import storedform

    rng = np.random.default_rng(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    chunked, one_by_one = Engine(), Engine()
    n = len(chunked._slot_id) + 300
    items = [site_item(k + 1, f"Meldung {k}", start + timedelta(minutes=k)) for k in range(n)]
    dup_sigs = [rng.integers(0, 2**32, size=128, dtype=np.uint64) for _ in items]
    story_sigs = [rng.integers(0, 2**32, size=128, dtype=np.uint64) for _ in items]
    features = [
        {"terms": {f"wort{k % 50}": 2, f"name{k}": 1}, "lead": {f"name{k}": 1}, "short": False,
         "body_len": 400, "lang": "de", "anchors": []}
        for k in range(n)
    ]  # fmt: skip
    chunked.take_in(
        chunked.hold_stored_many(items, dup_sigs, story_sigs, list(map(storedform.pack, features)))
    )
    one_by_one.take_in(
        [
            one_by_one.hold_stored(item, dup_sig=d, story_sig=s, features=f)
            for item, d, s, f in zip(items, dup_sigs, story_sigs, features, strict=True)
        ]
    )
    bands, rows = chunked.dup_bands
    for name in ("_slot_id", "_slot_ts", "_slot_lang", "_slot_dup", "_slot_shingles"):
        assert (getattr(chunked, name) == getattr(one_by_one, name)).all(), name
    for item, sig in zip(items, dup_sigs, strict=True):
        assert (chunked._slot_dup[chunked._slot_of[item.id]] == sig[: bands * rows]).all()

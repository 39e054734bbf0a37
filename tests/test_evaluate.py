"""Clustering scores: expected numbers are worked out by hand from the definitions."""

from __future__ import annotations

import json
import random
from itertools import combinations
from math import isclose

import pytest

from aggregator.dedup.evaluate import (
    Scores,
    evaluate,
    format_table,
    read_jsonl,
    score,
)
from aggregator.domain import LEVELS
from aggregator.errors import InputError


def clusters(*groups: str) -> dict[str, str]:
    """``clusters("ab", "cde")`` -> {a: g0, b: g0, c: g1, d: g1, e: g1}."""
    return {item: f"g{i}" for i, group in enumerate(groups) for item in group}


def approx(s: Scores, **expected: float) -> None:
    for name, value in expected.items():
        got = getattr(s, name)
        assert isclose(got, value, abs_tol=1e-12), f"{name}: got {got}, expected {value}"


# ---------------------------------------------------------------- hand-computed


def test_crossed_clusters_by_hand():
    # gold A={a,b,c} B={d,e}; predicted X={a,b} Y={c,d,e}
    # BCubed precision per item: a 2/2, b 2/2, c 1/3, d 2/3, e 2/3 -> (11/3)/5 = 11/15
    # BCubed recall per item:    a 2/3, b 2/3, c 1/3, d 2/2, e 2/2 -> (11/3)/5 = 11/15
    # pairs: predicted {ab, cd, ce, de}, gold {ab, ac, bc, de}; true {ab, de}
    s = score(clusters("ab", "cde"), clusters("abc", "de"))
    approx(
        s,
        bcubed_precision=11 / 15,
        bcubed_recall=11 / 15,
        bcubed_f1=11 / 15,
        pairwise_precision=2 / 4,
        pairwise_recall=2 / 4,
        pairwise_f1=0.5,
    )
    assert (s.pred_clusters, s.gold_clusters, s.items, s.false_merges) == (2, 2, 5, 2)


def test_split_cluster_by_hand():
    # gold A={a,b,c,d}; predicted {a,b} {c} {d}
    # BCubed precision: every predicted cluster is pure -> 1
    # BCubed recall per item: a 2/4, b 2/4, c 1/4, d 1/4 -> (6/4)/4 = 3/8; F1 = 2*(3/8)/(11/8)
    # pairs: predicted {ab}; gold = all C(4,2) = 6; true {ab}
    s = score(clusters("ab", "c", "d"), clusters("abcd"))
    approx(
        s,
        bcubed_precision=1.0,
        bcubed_recall=3 / 8,
        bcubed_f1=6 / 11,
        pairwise_precision=1.0,
        pairwise_recall=1 / 6,
        pairwise_f1=2 / 7,
    )
    assert (s.pred_clusters, s.gold_clusters, s.false_merges) == (3, 1, 0)


def test_merged_clusters_by_hand():
    # gold {a,b} {c} {d,e,f}; predicted everything except f in one cluster, f alone
    # P: X={a..e} (5): a 2/5, b 2/5, c 1/5, d 2/5, e 2/5; f 1/1 -> (9/5 + 1)/6 = 14/30 = 7/15
    # R: a 2/2, b 2/2, c 1/1, d 2/3, e 2/3, f 1/3 -> (3 + 5/3)/6 = 14/18 = 7/9
    # pairs: predicted C(5,2)=10, gold 1+3=4, true {ab, de} = 2 -> P 1/5, R 1/2, 8 false merges
    s = score(clusters("abcde", "f"), clusters("ab", "c", "def"))
    approx(
        s,
        bcubed_precision=7 / 15,
        bcubed_recall=7 / 9,
        bcubed_f1=2 * (7 / 15) * (7 / 9) / (7 / 15 + 7 / 9),
        pairwise_precision=1 / 5,
        pairwise_recall=1 / 2,
        pairwise_f1=2 * 0.2 * 0.5 / 0.7,
    )
    assert s.false_merges == 8
    assert s.pred_clusters == 2 and s.gold_clusters == 3


def test_perfect_prediction_is_one():
    gold = clusters("abc", "de", "f", "ghij")
    pred = {k: "other-" + v for k, v in gold.items()}
    s = score(pred, gold)
    for name in (
        "bcubed_precision",
        "bcubed_recall",
        "bcubed_f1",
        "pairwise_precision",
        "pairwise_recall",
        "pairwise_f1",
    ):
        assert getattr(s, name) == 1.0, name
    assert s.false_merges == 0 and s.pred_clusters == s.gold_clusters == 4


def test_all_singletons():
    # gold {a,b,c} {d}; predicted 4 singletons
    # BCubed R: a 1/3, b 1/3, c 1/3, d 1 -> 2/4 = 0.5; no predicted pairs -> pairwise P = 1
    s = score(clusters("a", "b", "c", "d"), clusters("abc", "d"))
    approx(
        s,
        bcubed_precision=1.0,
        bcubed_recall=0.5,
        bcubed_f1=2 / 3,
        pairwise_precision=1.0,
        pairwise_recall=0.0,
        pairwise_f1=0.0,
    )
    assert s.false_merges == 0 and s.pred_clusters == 4


def test_all_in_one():
    # gold {a,b,c} {d}; predicted one cluster of 4
    # BCubed P: a 3/4, b 3/4, c 3/4, d 1/4 -> (10/4)/4 = 5/8; R = 1
    # pairs: predicted 6, gold 3, true 3 -> P 1/2, R 1, 3 false merges
    s = score(dict.fromkeys("abcd", "x"), clusters("abc", "d"))
    approx(
        s,
        bcubed_precision=5 / 8,
        bcubed_recall=1.0,
        bcubed_f1=10 / 13,
        pairwise_precision=0.5,
        pairwise_recall=1.0,
        pairwise_f1=2 / 3,
    )
    assert s.false_merges == 3 and s.pred_clusters == 1


def test_no_gold_pairs_means_full_pairwise_recall():
    s = score(clusters("ab", "c"), clusters("a", "b", "c"))
    approx(s, pairwise_precision=0.0, pairwise_recall=1.0, pairwise_f1=0.0)
    approx(s, bcubed_precision=2 / 3, bcubed_recall=1.0)
    assert s.false_merges == 1


def test_empty_input_is_vacuously_perfect():
    s = score({}, {})
    assert s.items == 0 and s.bcubed_f1 == 1.0 and s.pairwise_f1 == 1.0


# ---------------------------------------------------------------- properties


def test_renaming_cluster_ids_changes_nothing():
    rng = random.Random(7)
    items = [f"i{n}" for n in range(60)]
    gold = {i: f"g{rng.randrange(12)}" for i in items}
    pred = {i: f"p{rng.randrange(15)}" for i in items}
    base = score(pred, gold)
    perm = list(range(15))
    rng.shuffle(perm)
    renamed_pred = {i: f"Q{perm[int(c[1:])]}" for i, c in pred.items()}
    renamed_gold = {i: c.upper() + "-x" for i, c in gold.items()}
    assert score(renamed_pred, renamed_gold) == base
    assert score(pred, renamed_gold) == base


def _brute_force(pred: dict[str, str], gold: dict[str, str]) -> dict[str, float]:
    items = list(gold)
    n = len(items)
    bp = sum(
        sum(1 for o in items if pred[o] == pred[e] and gold[o] == gold[e])
        / sum(1 for o in items if pred[o] == pred[e])
        for e in items
    )
    br = sum(
        sum(1 for o in items if pred[o] == pred[e] and gold[o] == gold[e])
        / sum(1 for o in items if gold[o] == gold[e])
        for e in items
    )
    pp = gp = tp = 0
    for x, y in combinations(items, 2):
        same_p, same_g = pred[x] == pred[y], gold[x] == gold[y]
        pp += same_p
        gp += same_g
        tp += same_p and same_g
    return {
        "bcubed_precision": bp / n,
        "bcubed_recall": br / n,
        "pairwise_precision": tp / pp if pp else 1.0,
        "pairwise_recall": tp / gp if gp else 1.0,
        "false_merges": pp - tp,
    }


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_definitions(seed):
    rng = random.Random(seed)
    items = [str(n) for n in range(rng.randrange(1, 80))]
    gold = {i: rng.randrange(rng.randrange(1, 20)) for i in items}
    pred = {i: rng.randrange(rng.randrange(1, 20)) for i in items}
    s = score(pred, gold)
    expected = _brute_force(pred, gold)
    assert s.false_merges == expected.pop("false_merges")
    approx(s, **expected)


def test_score_requires_every_gold_item():
    with pytest.raises(InputError, match="1 labelled item.*'c'"):
        score({"a": "x", "b": "x"}, {"a": "1", "b": "1", "c": "2"})


def test_score_ignores_and_counts_unlabelled_predictions():
    s = score({"a": "x", "b": "x", "z": "x"}, {"a": "1", "b": "1"})
    assert s.ignored_predictions == 1 and s.items == 2 and s.false_merges == 0


# ---------------------------------------------------------------- evaluate()


def rows_pred(spec: dict[str, tuple]) -> list[dict]:
    return [{"id": k, "duplicate": d, "story": s, "thread": t} for k, (d, s, t) in spec.items()]


def rows_gold(spec: dict[str, tuple]) -> list[dict]:
    return [{"id": k, "dup_group": d, "story": s, "thread": t} for k, (d, s, t) in spec.items()]


def test_evaluate_scores_each_level_from_its_own_key():
    gold = rows_gold({"a": (1, 1, 1), "b": (2, 1, 1), "c": (3, 2, 1), "d": (4, 3, 2)})
    # duplicate level: a,b merged although gold keeps them apart; story: perfect;
    # thread: everything in one cluster
    pred = rows_pred(
        {"a": ("x", "s1", "t"), "b": ("x", "s1", "t"), "c": ("y", "s2", "t"), "d": ("z", "s3", "t")}
    )
    res = evaluate(pred, gold)
    assert list(res) == list(LEVELS)
    assert res["duplicate"].false_merges == 1
    assert res["duplicate"].pairwise_precision == 0.0
    assert res["duplicate"].pairwise_recall == 1.0  # no gold duplicate pairs
    assert res["story"].bcubed_f1 == 1.0 and res["story"].pairwise_f1 == 1.0
    # thread: gold {a,b,c} {d}, predicted all-in-one -> as in test_all_in_one
    approx(res["thread"], bcubed_precision=5 / 8, pairwise_precision=0.5, bcubed_recall=1.0)


def test_evaluate_compares_ids_as_strings():
    gold = rows_gold({"1": (10, 10, 10), "2": (10, 10, 10), "3": (11, 11, 10)})
    pred = [
        {"id": 1, "duplicate": "10", "story": 5, "thread": "t"},
        {"id": 2, "duplicate": 10, "story": "5", "thread": "t"},
        {"id": 3, "duplicate": "11", "story": 6, "thread": "t"},
    ]
    res = evaluate(pred, gold)
    for level in LEVELS:
        assert res[level].bcubed_f1 == 1.0, level
        assert res[level].ignored_predictions == 0


def test_evaluate_int_and_str_cluster_ids_are_equal():
    # if 7 and "7" were different clusters, a and b would be split
    gold = rows_gold({"a": (1, 1, 1), "b": (1, 1, 1)})
    pred = rows_pred({"a": (7, 7, 7), "b": ("7", "7", "7")})
    res = evaluate(pred, gold)
    assert res["duplicate"].pairwise_recall == 1.0
    assert res["duplicate"].pred_clusters == 1


def test_evaluate_missing_ids_error_lists_at_most_five():
    gold = rows_gold({f"id{n}": (n, n, n) for n in range(10)})
    pred = rows_pred({"id0": (0, 0, 0), "id1": (1, 1, 1), "id2": (2, 2, 2)})
    with pytest.raises(InputError) as err:
        evaluate(pred, gold, pred_name="out.jsonl")
    msg = str(err.value)
    assert "7 labelled item(s) missing from the out.jsonl" in msg
    assert "'id3'" in msg and "'id7'" in msg and "'id8'" not in msg
    assert "and 2 more" in msg


def test_evaluate_ignores_extra_predictions_and_reports_them():
    gold = rows_gold({"a": (1, 1, 1), "b": (1, 1, 1)})
    pred = rows_pred({"a": (1, 1, 1), "b": (1, 1, 1), "x": (1, 1, 1), "y": (2, 2, 2)})
    res = evaluate(pred, gold)
    assert all(s.ignored_predictions == 2 for s in res.values())
    assert res["duplicate"].items == 2 and res["duplicate"].false_merges == 0
    assert "2 predicted ids without a label ignored" in format_table(res)


@pytest.mark.parametrize(
    ("pred", "gold", "match"),
    [
        ([{"id": "a", "duplicate": 1, "story": 1}], [], "no labelled items"),
        ([{"id": "a", "duplicate": 1, "story": 1}], rows_gold({"a": (1, 1, 1)}), "no 'thread'"),
        (rows_pred({"a": (1, 1, 1)}), [{"id": "a", "story": 1, "thread": 1}], "no 'dup_group'"),
        (rows_pred({"a": (1, 1, 1)}), [{"dup_group": 1, "story": 1, "thread": 1}], "no 'id'"),
        (rows_pred({"a": (1, 1, 1)}), rows_gold({"a": (1, 1, 1)}) * 2, "duplicate id 'a'"),
        (rows_pred({"a": (None, 1, 1)}), rows_gold({"a": (1, 1, 1)}), "string or an integer"),
        (rows_pred({"a": (1.5, 1, 1)}), rows_gold({"a": (1, 1, 1)}), "string or an integer"),
    ],
)
def test_evaluate_rejects_malformed_rows(pred, gold, match):
    with pytest.raises(InputError, match=match):
        evaluate(pred, gold)


# ---------------------------------------------------------------- read_jsonl()


def test_read_jsonl_reads_objects_and_skips_blank_lines(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a"}\n\n  \n{"id": 2, "x": [1]}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"id": "a"}, {"id": 2, "x": [1]}]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"id": "a"}\n{"id": \n', r"in\.jsonl:2: invalid JSON"),
        ('{"id": "a"}\n\n[1, 2]\n', r"in\.jsonl:3: expected a JSON object, got an array"),
        ('"just a string"\n', r"in\.jsonl:1: expected a JSON object, got a string"),
    ],
)
def test_read_jsonl_names_file_and_line(tmp_path, text, match):
    path = tmp_path / "in.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        read_jsonl(path)


def test_read_jsonl_missing_file_and_bad_encoding(tmp_path):
    with pytest.raises(InputError, match="cannot read .*nope.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "\xff"}\n')
    with pytest.raises(InputError, match="bad.jsonl: not UTF-8"):
        read_jsonl(bad)


def test_read_jsonl_then_evaluate_round_trip(tmp_path):
    pred_path, gold_path = tmp_path / "out.jsonl", tmp_path / "labels.jsonl"
    gold = rows_gold({"a": (1, 1, 1), "b": (2, 1, 1), "c": (3, 2, 1)})
    pred_path.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in rows_pred({"a": ("p", "s", "t"), "b": ("q", "s", "t"), "c": ("r", "u", "t")})
        )
    )
    gold_path.write_text("".join(json.dumps(r) + "\n" for r in gold))
    res = evaluate(read_jsonl(pred_path), read_jsonl(gold_path))
    assert all(s.bcubed_f1 == 1.0 for s in res.values())


# ---------------------------------------------------------------- format_table()


def test_format_table_layout():
    res = {
        "duplicate": score(clusters("ab", "cde"), clusters("abc", "de")),
        # gold one cluster of 5, predicted {a,b} {c} {d,e}: B3 R = (2+2+1+2+2)/5/5 = 9/25,
        # B3 F1 = 2*0.36/1.36; pairs predicted 2, gold 10, true 2
        "story": score(clusters("ab", "c", "de"), clusters("abcde")),
    }
    lines = format_table(res).splitlines()
    assert lines[0].split() == [
        "level",
        "B3-P",
        "B3-R",
        "B3-F1",
        "pair-P",
        "pair-R",
        "pair-F1",
        "pred",
        "gold",
        "false-merges",
    ]
    assert lines[2].split() == [
        "duplicate",
        "0.733",
        "0.733",
        "0.733",
        "0.500",
        "0.500",
        "0.500",
        "2",
        "2",
        "2",
    ]
    assert lines[3].split() == [
        "story",
        "1.000",
        "0.360",
        "0.529",
        "1.000",
        "0.200",
        "0.333",
        "3",
        "1",
        "0",
    ]
    assert lines[4] == "5 labelled items"
    # columns line up: every row has the same width
    assert len({len(line) for line in lines[:4]}) == 1

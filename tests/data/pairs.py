"""Cross-language story scores for a `cluster-file` prediction against corpus labels.

Issue 20's targets: cross-language story pair recall >= 0.70 with no cross-language false
merges. A pair is cross-language when its two items' languages differ; an item without `lang`
takes its outlet's language (the majority `lang` of that `source` in the items file), and failing
that a stopword guess on title and summary.

Run:  python tests/data/pairs.py PRED.jsonl tests/data/dev.labels.jsonl [--items dev.jsonl] [-v]
      --strict exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

RECALL_TARGET = 0.70
DE_WORDS = {"der", "die", "das", "und", "nicht", "mit", "für", "auf", "ist", "ein", "eine", "im"}
EN_WORDS = {"the", "and", "of", "to", "in", "is", "for", "on", "with", "after", "as", "by"}


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def guess_lang(text: str) -> str | None:
    words = re.findall(r"\w+", text.lower())
    de = sum(w in DE_WORDS for w in words)
    en = sum(w in EN_WORDS for w in words)
    if de == en:
        return None
    return "de" if de > en else "en"


def languages(items: list[dict]) -> dict[str, str | None]:
    """Item id -> language: own `lang`, else the outlet's majority, else a stopword guess."""
    by_source: dict[str, Counter] = defaultdict(Counter)
    for it in items:
        if it.get("lang"):
            by_source[it["source"]][it["lang"]] += 1
    out: dict[str, str | None] = {}
    for it in items:
        lang = it.get("lang")
        if not lang and by_source.get(it["source"]):
            lang = by_source[it["source"]].most_common(1)[0][0]
        if not lang:
            lang = guess_lang(f"{it.get('title', '')} {it.get('summary', '')}")
        out[it["id"]] = lang
    return out


def cross_language_scores(
    pred: dict[str, str], gold: dict[str, str], lang: dict[str, str | None]
) -> dict:
    """Pairs over items whose two languages are known and differ."""
    ids = sorted(set(pred) & set(gold) & {i for i, v in lang.items() if v})
    found, missed, false = [], [], []
    for a, b in combinations(ids, 2):
        if lang[a] == lang[b]:
            continue
        same_gold, same_pred = gold[a] == gold[b], pred[a] == pred[b]
        if same_gold:
            (found if same_pred else missed).append((a, b))
        elif same_pred:
            false.append((a, b))
    total = len(found) + len(missed)
    return {
        "pairs": total,
        "found": found,
        "missed": missed,
        "false_merges": false,
        "recall": len(found) / total if total else 1.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pred", type=Path, help="cluster-file output (id, story, ...)")
    ap.add_argument("labels", type=Path, help="labels file (id, story, ...)")
    ap.add_argument("--items", type=Path, help="items file (default: labels name minus .labels)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list missed and false pairs")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    items_path = args.items or args.labels.with_name(args.labels.name.replace(".labels", ""))
    items = load_jsonl(items_path)
    pred = {x["id"]: x["story"] for x in load_jsonl(args.pred)}
    gold = {x["id"]: x["story"] for x in load_jsonl(args.labels)}
    lang = languages(items)
    res = cross_language_scores(pred, gold, lang)
    stories = {gold[a] for a, _ in res["found"] + res["missed"]}
    print(
        f"cross-language story pairs: {res['pairs']} in {len(stories)} labelled stories; "
        f"found {len(res['found'])}, recall {res['recall']:.3f} (target >= {RECALL_TARGET:.2f})"
    )
    per_story: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a, _ in res["found"]:
        per_story[gold[a]][0] += 1
    for a, _ in res["missed"]:
        per_story[gold[a]][1] += 1
    if per_story:
        macro = sum(f / (f + m) for f, m in per_story.values()) / len(per_story)
        print(f"story-averaged cross-language recall: {macro:.3f} (big stories weigh less)")
    print(f"cross-language false merges (pairs): {len(res['false_merges'])} (target 0)")
    if args.verbose:
        title = {it["id"]: it["title"][:70] for it in items}
        for story, (f, m) in sorted(per_story.items()):
            print(f"  {story}: {f}/{f + m}")
        for a, b in res["false_merges"]:
            print(f"  FALSE {gold[a]} | {gold[b]}: {title[a]!r} ~ {title[b]!r}")
    ok = res["recall"] >= RECALL_TARGET and not res["false_merges"]
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())

"""Scoring a clustering against gold labels (``aggregator eval PRED LABELS``).

Inputs:

* prediction rows ``{"id", "duplicate", "story", "thread"}`` as written by ``cluster-file``;
* label rows ``{"id", "dup_group", "story", "thread"}``.

Each level is scored independently; the prediction's ``duplicate`` is compared with the
label's ``dup_group``. Item ids and cluster ids may be JSON strings or integers and are compared
as strings (``7`` and ``"7"`` are the same id). Cluster ids only express equality: renaming
clusters never changes a score.

Metrics, for one level, over the N labelled items:

BCubed (Amigó, Gonzalo, Artiles & Verdejo 2009)
    For item *e* with predicted cluster C(e) and gold cluster L(e):
    precision(e) = |C(e) ∩ L(e)| / |C(e)|, recall(e) = |C(e) ∩ L(e)| / |L(e)|.
    BCubed precision/recall are the means over all items (each item counts once, its own
    pair with itself included), and F1 is their harmonic mean.

Pairwise
    Over all unordered pairs of distinct items: a pair is *predicted* when both items share a
    predicted cluster and *gold* when they share a gold cluster.
    precision = |predicted ∩ gold| / |predicted|, recall = |predicted ∩ gold| / |gold|,
    F1 = harmonic mean. ``false_merges`` = |predicted − gold|, the predicted same-cluster
    pairs that gold keeps apart.

Degenerate cases (documented conventions, not errors):

* no predicted pairs (every predicted cluster a singleton): pairwise precision = 1.0, since
  no claim made was wrong;
* no gold pairs (every gold cluster a singleton): pairwise recall = 1.0, since there was
  nothing to find;
* F1 = 0.0 when precision + recall == 0;
* zero items (``score({}, {})``): every metric 1.0. :func:`evaluate` refuses empty labels.

Everything is computed from the contingency counts n_ij = |pred_i ∩ gold_j| in O(N) time
and memory; no pair is ever enumerated:
BCubed P = Σ n_ij² / |pred_i| / N, R = Σ n_ij² / |gold_j| / N; true pairs = Σ C(n_ij, 2).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain import LEVELS
from ..errors import InputError

LABEL_KEYS: dict[str, str] = {"duplicate": "dup_group", "story": "story", "thread": "thread"}
"""Level -> key holding its gold cluster id in a label row."""

_MAX_LISTED = 5


@dataclass(frozen=True)
class Scores:
    """Scores of one clustering level. All ratios are in [0, 1]."""

    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    pred_clusters: int
    """Predicted clusters among the scored items."""
    gold_clusters: int
    items: int
    """Items scored (the labelled ones)."""
    false_merges: int
    """Predicted same-cluster pairs that are in different gold clusters."""
    ignored_predictions: int = 0
    """Predicted ids that have no label; they are not scored."""


# ---------------------------------------------------------------------------- reading


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON Lines file: one JSON object per line; blank lines are skipped.

    Raises :class:`InputError` naming the file (and line) when the file cannot be read, is not
    UTF-8, or a line is not valid JSON or not a JSON object.
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
                if not isinstance(obj, dict):
                    raise InputError(
                        f"{path}:{lineno}: expected a JSON object, got {_json_type(obj)}"
                    )
                rows.append(obj)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return rows


def _json_type(obj: object) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    if isinstance(obj, (int, float)):
        return "a number"
    if isinstance(obj, str):
        return "a string"
    if isinstance(obj, list):
        return "an array"
    return type(obj).__name__


# ---------------------------------------------------------------------------- scoring


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def score(pred: Mapping[str, str], gold: Mapping[str, str]) -> Scores:
    """Score one level: ``pred`` and ``gold`` map item id -> cluster id.

    The scored items are the keys of ``gold``; every one must be in ``pred`` (else
    :class:`InputError`). Keys of ``pred`` absent from ``gold`` are ignored and counted in
    ``ignored_predictions``. Ids are compared as given (use :func:`evaluate` for rows whose
    ids may mix ``int`` and ``str``).
    """
    missing = [item for item in gold if item not in pred]
    if missing:
        raise InputError(_missing_message(missing, "predictions"))
    ignored = sum(1 for item in pred if item not in gold)

    n = len(gold)
    pred_sizes: Counter[Any] = Counter()
    gold_sizes: Counter[Any] = Counter()
    joint: Counter[tuple[Any, Any]] = Counter()
    for item, g in gold.items():
        p = pred[item]
        pred_sizes[p] += 1
        gold_sizes[g] += 1
        joint[(p, g)] += 1

    if n == 0:
        return Scores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0, ignored)

    bc_p = sum(c * c / pred_sizes[p] for (p, _), c in joint.items()) / n
    bc_r = sum(c * c / gold_sizes[g] for (_, g), c in joint.items()) / n

    true_pairs = sum(_pairs(c) for c in joint.values())
    pred_pairs = sum(_pairs(c) for c in pred_sizes.values())
    gold_pairs = sum(_pairs(c) for c in gold_sizes.values())
    pw_p = true_pairs / pred_pairs if pred_pairs else 1.0
    pw_r = true_pairs / gold_pairs if gold_pairs else 1.0

    return Scores(
        bcubed_precision=bc_p,
        bcubed_recall=bc_r,
        bcubed_f1=_f1(bc_p, bc_r),
        pairwise_precision=pw_p,
        pairwise_recall=pw_r,
        pairwise_f1=_f1(pw_p, pw_r),
        pred_clusters=len(pred_sizes),
        gold_clusters=len(gold_sizes),
        items=n,
        false_merges=pred_pairs - true_pairs,
        ignored_predictions=ignored,
    )


def _missing_message(missing: list[str], where: str) -> str:
    shown = ", ".join(repr(m) for m in missing[:_MAX_LISTED])
    more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    return f"{len(missing)} labelled item(s) missing from the {where}: {shown}{more}"


def _key(value: object, what: str, source: str, row: int) -> str:
    """An item or cluster id as a string; only JSON strings and integers are ids."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InputError(
        f"{source} row {row}: {what} must be a string or an integer, got {_json_type(value)}"
    )


def _index(
    rows: Iterable[Mapping[str, Any]], keys: Mapping[str, str], source: str
) -> dict[str, dict[str, str]]:
    """Level -> {item id -> cluster id} from rows; ``keys`` maps level -> row key."""
    by_level: dict[str, dict[str, str]] = {level: {} for level in keys}
    seen: set[str] = set()
    for row_no, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InputError(f"{source} row {row_no}: expected an object")
        if "id" not in row:
            raise InputError(f"{source} row {row_no}: no 'id'")
        item = _key(row["id"], "'id'", source, row_no)
        if item in seen:
            raise InputError(f"{source} row {row_no}: duplicate id {item!r}")
        seen.add(item)
        for level, key in keys.items():
            if key not in row:
                raise InputError(f"{source} row {row_no} (id {item!r}): no {key!r}")
            by_level[level][item] = _key(row[key], repr(key), source, row_no)
    return by_level


def evaluate(
    pred_rows: Iterable[Mapping[str, Any]],
    label_rows: Iterable[Mapping[str, Any]],
    *,
    pred_name: str = "predictions",
    labels_name: str = "labels",
) -> dict[str, Scores]:
    """Score prediction rows against label rows at every level of :data:`LEVELS`.

    Every labelled id must have a prediction (else :class:`InputError` listing up to five
    missing ids); predicted ids without a label are ignored and counted in each level's
    ``ignored_predictions``. Rows must carry every level's key, ids must be unique per file, and
    ids are strings or integers compared as strings. ``pred_name``/``labels_name`` (e.g. the
    file paths) name the inputs in error messages. Returns level -> :class:`Scores`, in
    :data:`LEVELS` order.
    """
    gold = _index(label_rows, LABEL_KEYS, labels_name)
    if not gold[LEVELS[0]]:
        raise InputError(f"{labels_name}: no labelled items")
    pred = _index(pred_rows, {level: level for level in LEVELS}, pred_name)
    missing = [item for item in gold[LEVELS[0]] if item not in pred[LEVELS[0]]]
    if missing:
        raise InputError(_missing_message(missing, pred_name))
    return {level: score(pred[level], gold[level]) for level in LEVELS}


# ---------------------------------------------------------------------------- output


_HEADER = (
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
)


def format_table(results: Mapping[str, Scores]) -> str:
    """A plain-text table, one row per level, ratios to 3 decimals.

    Columns: level, BCubed P/R/F1, pairwise P/R/F1, predicted and gold cluster counts, false
    merges. A footer line gives the number of scored items and, if any, of ignored predictions.
    """
    body = [
        (
            level,
            f"{s.bcubed_precision:.3f}",
            f"{s.bcubed_recall:.3f}",
            f"{s.bcubed_f1:.3f}",
            f"{s.pairwise_precision:.3f}",
            f"{s.pairwise_recall:.3f}",
            f"{s.pairwise_f1:.3f}",
            str(s.pred_clusters),
            str(s.gold_clusters),
            str(s.false_merges),
        )
        for level, s in results.items()
    ]
    widths = [max(len(row[i]) for row in [_HEADER, *body]) for i in range(len(_HEADER))]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    lines = [line(_HEADER), "  ".join("-" * w for w in widths), *(line(r) for r in body)]
    if results:
        first = next(iter(results.values()))
        note = f"{first.items} labelled items"
        if first.ignored_predictions:
            note += f"; {first.ignored_predictions} predicted ids without a label ignored"
        lines.append(note)
    return "\n".join(lines)


__all__ = ["LABEL_KEYS", "Scores", "read_jsonl", "score", "evaluate", "format_table"]

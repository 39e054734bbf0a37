"""``aggregator why A B``: why two stored items are (or are not) together at each level.

Everything shown comes from stored data: the memberships with the evidence recorded when
each item was placed, and the similarities recomputed from stored signatures and terms.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import LEVELS
from ..errors import InputError
from ..store.models import ClusterMember, Correction, Item
from .engine import Engine, Rec
from .service import DedupService


def explain(service: DedupService, a: int, b: int) -> dict[str, Any]:
    if not service.loaded:
        service.load()
    service.load_items((a, b))  # older items have left memory; their evidence is stored
    eng = service.engine
    with service.store.sessions() as s:
        items = {i.id: i for i in s.scalars(select(Item).where(Item.id.in_([a, b])))}
        for n in (a, b):
            if n not in items:
                raise InputError(f"no item with id {n}")
            if items[n].kind != "article":
                raise InputError(f"item {n} is a comment; comments are not clustered")
            if n not in eng.records:
                raise InputError(
                    f"item {n} is not clustered yet (run `aggregator poll --once` or the daemon)"
                )
        members = {
            (m.item_id, m.level): m
            for m in s.scalars(select(ClusterMember).where(ClusterMember.item_id.in_([a, b])))
        }
        splits = _splits_between(s, members, a, b)
    ra, rb = eng.records[a], eng.records[b]
    dt = abs(ra.item.published_at - rb.item.published_at)
    story_score, story_threshold = eng.story_similarity(ra, rb)
    sa, sb = eng.cluster_of["story"][a], eng.cluster_of["story"][b]
    computed = {
        "duplicate": {
            "similarity": round(eng.dup_similarity(a, b), 4)
            if ra.dup_sig is not None and rb.dup_sig is not None
            else None,
            "threshold": eng.settings.duplicate_threshold,
            "minhash_estimate": eng.estimate(ra.dup_sig, rb.dup_sig),
            "matched_bands": eng.matched_bands(ra.dup_sig, rb.dup_sig, "duplicate"),
            "same_canonical_url": bool(ra.item.canonical_url)
            and ra.item.canonical_url == rb.item.canonical_url,
            "window_ok": dt <= timedelta(seconds=eng.settings.duplicate_window_s),
        },
        "story": {
            "similarity": round(story_score, 4),
            "threshold": story_threshold,
            "minhash_estimate": eng.estimate(ra.story_sig, rb.story_sig),
            "matched_bands": eng.matched_bands(ra.story_sig, rb.story_sig, "story"),
            # an item matching both stories merges them only if their centroids agree
            "story_centroids": round(eng.centroid_similarity(sa, sb), 4),
            "shared_terms": sorted(
                set(eng.vocab.terms_of(ra.vec)) & set(eng.vocab.terms_of(rb.vec)),
                key=lambda t: (-eng.idf(t), t),
            )[:12],
            "window_ok": dt <= timedelta(seconds=eng.settings.story_window_s),
        },
        "thread": {
            "similarity": round(eng.centroid_similarity(sa, sb), 4),
            # each story against the other's thread as a whole (both must pass to link)
            "story_to_thread": [
                round(eng.story_thread_similarity(sa, eng.cluster_of["thread"][b]), 4),
                round(eng.story_thread_similarity(sb, eng.cluster_of["thread"][a]), 4),
            ],
            "threshold": eng.settings.thread_threshold,
            "window_ok": dt <= timedelta(seconds=eng.settings.thread_window_s),
        },
    }
    levels = {}
    for level in LEVELS:
        ca, cb = eng.cluster_of[level][a], eng.cluster_of[level][b]
        check = None
        if ca != cb:
            check = (
                _check("manual split", None, None, "see manual_splits")
                if splits.get(level)
                else deciding_check(eng, ra, rb, level, dt.total_seconds())
            )
        levels[level] = {
            "together": ca == cb,
            "clusters": [ca, cb],
            "recorded": [_member(members.get((n, level))) for n in (a, b)],
            "now": computed[level],
            "manual_splits": splits.get(level, []),
            "deciding_check": check,
        }
    return {
        "items": [
            {
                "id": n,
                "title": items[n].title,
                "publisher": items[n].publisher,
                "published_at": items[n].published_at.isoformat(),
            }
            for n in (a, b)
        ],
        "hours_apart": round(dt.total_seconds() / 3600, 1),
        "levels": levels,
    }


# what the rules above do not see: when each was placed, and the candidate cuts of that moment
NEVER_COMPARED = (
    "similar, but never compared after both were placed (or cut from the candidates of the "
    "later one: story_postings, dup_postings, max_candidates)"
)


def deciding_check(eng: Engine, ra: Rec, rb: Rec, level: str, apart_s: float) -> dict[str, Any]:
    """The first rule that keeps two items in different clusters at ``level``, with its
    figure and threshold: what a reader needs to see why two reports of one event are
    apart (or that they should be)."""
    st = eng.settings
    window_s = {
        "duplicate": st.duplicate_window_s,
        "story": st.story_window_s,
        "thread": st.thread_window_s,
    }[level]
    if apart_s > window_s:
        return _check("window", round(apart_s / 3600, 1), round(window_s / 3600, 1), "hours")
    alike = (
        ra.dup_sig is not None
        and rb.dup_sig is not None
        and eng.dup_similarity(ra.item.id, rb.item.id) >= st.duplicate_threshold
    )
    if level == "duplicate":
        if ra.dup_sig is not None and rb.dup_sig is not None:
            if alike and eng.is_template_pair(ra, rb):
                return _check("template", None, None, "their numbers differ: two template pages")
            sim = eng.dup_similarity(ra.item.id, rb.item.id)
            return _check("similarity", round(sim, 4), st.duplicate_threshold, "shingles")
        if ra.title_key != rb.title_key:
            return _check("headline", None, None, "a headline-only entry and other words")
        if eng.is_stock(ra):
            return _check("stock headline", None, st.wire_title_terms, "content words at least")
        return _check(
            "window", round(apart_s / 3600, 1), round(st.wire_window_s / 3600, 1), "hours"
        )
    sa, sb = eng.cluster_of["story"][ra.item.id], eng.cluster_of["story"][rb.item.id]
    if level == "story":
        if alike and eng.is_template_pair(ra, rb):
            return _check("template", None, None, "their numbers differ: two template pages")
        if ra.title_key == rb.title_key and eng.is_stock(ra):
            return _check("stock headline", None, st.wire_title_terms, "content words at least")
        if ra.lang and rb.lang and ra.lang != rb.lang:
            shared = ra.anchors & rb.anchors
            names = "shared anchors: " + (", ".join(sorted(shared)[:10]) or "none")
            if not eng.anchors_agree(shared):
                weight = round(eng.anchor_weight(shared), 3)
                return _check(
                    "language",
                    len(shared),
                    st.cross_anchors,
                    f"{names}; two names or figures and a specificity of {st.cross_weight} "
                    f"needed (here {weight})",
                )
            return _check("order", None, None, f"{names}: they agree, but were never compared")
        score, threshold = eng.story_similarity(ra, rb)
        if score < threshold:
            return _check("similarity", round(score, 4), threshold, "terms")
        centroids = eng.centroid_similarity(sa, sb)
        if centroids < st.story_threshold:
            return _check(
                "bridge guard",
                round(centroids, 4),
                st.story_threshold,
                f"story centroids disagree, and fewer than {st.story_bridges} items match both",
            )
        return _check("order", None, None, NEVER_COMPARED)
    ta, tb = eng.cluster_of["thread"][ra.item.id], eng.cluster_of["thread"][rb.item.id]
    centroids = eng.centroid_similarity(sa, sb)
    if centroids < st.thread_threshold:
        return _check("centroid similarity", round(centroids, 4), st.thread_threshold, "stories")
    ca, cb = eng.centroid(sa), eng.centroid(sb)
    if max(len(ca), len(cb)) < st.short_terms:
        return _check("thin stories", max(len(ca), len(cb)), st.short_terms, "terms")
    cross = min(eng.story_thread_similarity(sa, tb), eng.story_thread_similarity(sb, ta))
    if cross < st.thread_threshold:
        return _check("anti-chaining", round(cross, 4), st.thread_threshold, "story to thread")
    return _check("order", None, None, NEVER_COMPARED)


def _check(rule: str, figure: float | None, threshold: float | None, detail: str) -> dict[str, Any]:
    return {"rule": rule, "figure": figure, "threshold": threshold, "detail": detail}


def _splits_between(
    s: Session, members: dict[tuple[int, str], ClusterMember], a: int, b: int
) -> dict[str, list[dict[str, Any]]]:
    """Active manual splits whose two items are in A's and B's clusters (by level): what
    keeps the two apart whatever their similarity."""
    splits = list(
        s.scalars(
            select(Correction)
            .where(Correction.kind == "split", Correction.active.is_(True))
            .order_by(Correction.id)
        )
    )
    if not splits:
        return {}
    ids = {c.item_id for c in splits} | {c.other_item_id for c in splits}
    where = {
        (item_id, level): cid
        for item_id, level, cid in s.execute(
            select(ClusterMember.item_id, ClusterMember.level, ClusterMember.cluster_id).where(
                ClusterMember.item_id.in_(sorted(ids))
            )
        )
    }
    found: dict[str, list[dict[str, Any]]] = {}
    for c in splits:
        ma, mb = members.get((a, c.level)), members.get((b, c.level))
        if ma is None or mb is None or ma.cluster_id == mb.cluster_id:
            continue
        pair = {where.get((c.item_id, c.level)), where.get((c.other_item_id, c.level))}
        if pair == {ma.cluster_id, mb.cluster_id}:
            found.setdefault(c.level, []).append(
                {
                    "correction": c.id,
                    "item": c.item_id,
                    "other_item": c.other_item_id,
                    "created_at": c.created_at.isoformat(),
                }
            )
    return found


def _member(m: ClusterMember | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "cluster": m.cluster_id,
        "method": m.method,
        "matched_item": m.matched_item_id,
        "score": m.score,
        "estimated_score": m.estimated_score,
        "bands": m.matched_bands,
        "manual": m.manual,
    }


def render_explanation(report: dict[str, Any]) -> str:
    a, b = report["items"]
    lines = [
        f"A #{a['id']}: {a['title']} ({a['publisher'] or '-'}, {a['published_at']})",
        f"B #{b['id']}: {b['title']} ({b['publisher'] or '-'}, {b['published_at']})",
        f"{report['hours_apart']} hours apart",
        "",
    ]
    for level, info in report["levels"].items():
        verdict = "TOGETHER" if info["together"] else "apart"
        lines.append(f"{level}: {verdict} (clusters {info['clusters'][0]}, {info['clusters'][1]})")
        for name, rec in zip("AB", info["recorded"], strict=True):
            if rec is None:
                continue
            how = rec["method"]
            if rec["matched_item"] is not None:
                how += f" with #{rec['matched_item']}"
            if rec["score"] is not None:
                how += f", verified {rec['score']:.3f}"
            if rec["estimated_score"] is not None:
                how += f", MinHash estimate {rec['estimated_score']:.3f}"
            if rec["bands"]:
                how += f", {len(rec['bands'])} LSH bands matched"
            lines.append(f"  {name} joined by {how}")
        for c in info.get("manual_splits", ()):
            lines.append(
                f"  kept apart by manual split #{c['correction']} (item {c['item']} split from "
                f"item {c['other_item']}, {c['created_at'][:16]}); merge the clusters to lift it"
            )
        now = info["now"]
        sim = now.get("similarity")
        parts = [
            f"similarity A~B {sim:.3f}" if sim is not None else "no comparable text",
            f"threshold {now['threshold']}",
        ]
        if now.get("minhash_estimate") is not None:
            parts.append(f"MinHash estimate {now['minhash_estimate']:.3f}")
        if now.get("matched_bands"):
            parts.append(f"bands {now['matched_bands'][:10]}")
        if now.get("shared_terms"):
            parts.append("shared terms " + ", ".join(now["shared_terms"]))
        if now.get("same_canonical_url"):
            parts.append("same canonical URL")
        if now.get("story_centroids") is not None:
            parts.append(f"story centroids {now['story_centroids']:.3f}")
        if now.get("story_to_thread"):
            x, y = now["story_to_thread"]
            parts.append(f"A's story~B's thread {x:.3f}, B's story~A's thread {y:.3f}")
        if not now["window_ok"]:
            parts.append("outside the time window")
        lines.append("  now: " + "; ".join(parts))
        check = info.get("deciding_check")
        if check and check["rule"] != "manual split":
            figure = "" if check["figure"] is None else f" {check['figure']}"
            limit = "" if check["threshold"] is None else f" (threshold {check['threshold']})"
            lines.append(f"  kept apart by: {check['rule']}{figure}{limit}: {check['detail']}")
    return "\n".join(lines)

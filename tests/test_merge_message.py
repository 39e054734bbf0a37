"""``merge A B`` says which cluster it kept, also when that is B."""

from __future__ import annotations

import io

import pytest
from corpus import load_corpus
from sqlalchemy import select

from aggregator.cli import main
from aggregator.dedup.service import DedupService
from aggregator.store import Store
from aggregator.store.models import Cluster, Correction


def test_merge_names_the_cluster_it_kept_when_that_is_b(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # noqa: ANN001
    load_corpus(store)
    assert DedupService(store).process_pending() > 10
    with store.sessions() as s:
        ids = list(
            s.scalars(
                select(Cluster.id)
                .where(Cluster.level == "story", Cluster.merged_into_id.is_(None))
                .order_by(Cluster.id)
            )
        )
    older, newer = ids[0], ids[-1]
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", db_url)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("{}\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["-q", "--config", str(cfg), "merge", str(newer), str(older)], out=out) == 0
    assert out.getvalue().startswith(
        f"kept story {older} (the older of the two) and merged story {newer} into it ("
    )
    with store.sessions() as s:
        assert s.get(Cluster, newer).merged_into_id == older
        c = s.scalars(select(Correction)).one()
        assert (c.kind, c.cluster_id, c.other_cluster_id) == ("merge", older, newer)


def test_split_is_recorded_against_the_item_named(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # noqa: ANN001
    from aggregator.store.models import ClusterMember

    load_corpus(store)
    DedupService(store).process_pending()
    with store.sessions() as s:
        rows = s.execute(
            select(ClusterMember.item_id, ClusterMember.level, ClusterMember.cluster_id)
        ).all()
    of = {(i, lv): c for i, lv, c in rows}
    stories: dict[int, set[int]] = {}
    for (i, lv), c in of.items():
        if lv == "story":
            stories.setdefault(c, set()).add(i)
    # a story of several duplicate clusters; name the newest-id copy of a duplicate cluster
    # that has copies, so neither the smallest nor the first member is the one named
    picks = []
    for sid, items in stories.items():
        dups: dict[int, list[int]] = {}
        for i in items:
            dups.setdefault(of[i, "duplicate"], []).append(i)
        if len(dups) > 1:
            for group in dups.values():
                if len(group) > 1:
                    picks.append((sid, max(group), sorted(group)))
    assert picks, "the corpus has stories with copies"
    sid, named, group = picks[0]
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", db_url)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("{}\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["-q", "--config", str(cfg), "split", str(sid), str(named)], out=out) == 0
    assert out.getvalue().startswith(f"split item {named} (with ")
    with store.sessions() as s:
        c = s.scalars(select(Correction)).one()
    assert (c.kind, c.item_id, c.cluster_id) == ("split", named, sid)
    assert c.other_item_id in stories[sid] - set(group)

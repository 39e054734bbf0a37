"""``aggregator sources list|disable|enable|remove`` and derived source names, end to end
through the command line on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import helpers
import pytest
from conftest import FEEDS
from sqlalchemy import func, select

from aggregator.opml import derive_name, read_opml
from aggregator.store import open_store
from aggregator.store.models import Cluster, ClusterMember, Feed, Item, Source

SLASHDOT = FEEDS / "rss10-rdf-en-slashdot.xml"
CONFIG = """\
sources:
  - name: blog
    type: rss
    url: https://blog.example.org/feed/
"""
OPML = b"""<?xml version="1.0"?>
<opml version="2.0"><head><title>t</title></head><body>
<outline text="San Juan Record |" title="San Juan Record |" type="rss"
 xmlUrl="https://reader:s3cret@sjrnews.example.com/feed/"/>
</body></opml>
"""


class Cli:
    """``aggregator -q`` with the test's config, in-process: (exit code, stdout, stderr)."""

    def __init__(self, cfg: Path) -> None:
        self.cfg = cfg

    def __call__(self, *args: str) -> tuple[int, str, str]:
        return helpers.cli(self.cfg, "-q", *args)


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", db_url)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG, encoding="utf-8")
    run = Cli(cfg)
    assert run("db", "upgrade")[0] == 0
    (tmp_path / "list.opml").write_bytes(OPML)
    assert run("opml", "import", str(tmp_path / "list.opml"))[0] == 0
    return run


def _count(db_url: str, stmt) -> int:  # noqa: ANN001
    store = open_store(db_url)
    try:
        with store.session() as s:
            return int(s.scalar(stmt) or 0)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("San Juan Record |", "San Juan Record"),
        ("  Heise online  – ", "Heise online"),
        ("» News «", "News"),
        ("C++ Weekly", "C++ Weekly"),
        ("a / b", "a / b"),
        ("|||", ""),
    ],
)
def test_derived_names_lose_trailing_separators(title: str, name: str) -> None:
    assert derive_name(title) == name


def test_opml_names_lose_trailing_separators() -> None:
    (feed,) = read_opml(OPML).feeds
    assert feed.name == "San Juan Record"


def test_list_shows_config_and_opml_sources_with_redacted_urls(cli: Cli) -> None:
    code, out, _ = cli("sources", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "type", "origin", "enabled", "items", "url"]
    assert "s3cret" not in out
    assert any(ln.startswith("San Juan Record ") and " opml " in ln for ln in lines)
    assert any(ln.startswith("blog ") and " config " in ln for ln in lines)
    code, out, _ = cli("sources", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["San Juan Record"]["enabled"] is True
    assert rows["San Juan Record"]["items"] == 0
    assert "s3cret" not in rows["San Juan Record"]["url"]
    assert rows["blog"]["type"] == "rss"


def test_disable_and_enable_last_across_config_syncs(cli: Cli, db_url: str) -> None:
    enabled_feeds = select(func.count()).select_from(Feed).where(Feed.enabled.is_(True))
    assert _count(db_url, enabled_feeds) == 2
    for name in ("blog", "San Juan Record"):
        code, out, _ = cli("sources", "disable", name)
        assert code == 0 and "disabled" in out
    assert _count(db_url, enabled_feeds) == 0
    # every command mirrors config.yaml first: a hand-disabled config source stays disabled
    rows = {r["name"]: r for r in json.loads(cli("sources", "list", "--json")[1])}
    assert rows["blog"]["enabled"] is False and rows["San Juan Record"]["enabled"] is False
    assert _count(db_url, enabled_feeds) == 0
    assert "already disabled" in cli("sources", "disable", "blog")[1]
    assert cli("sources", "enable", "blog")[0] == 0
    rows = {r["name"]: r for r in json.loads(cli("sources", "list", "--json")[1])}
    assert rows["blog"]["enabled"] is True and rows["San Juan Record"]["enabled"] is False


def test_enable_refuses_a_source_disabled_in_config(cli: Cli) -> None:
    cli.cfg.write_text(CONFIG + "    enabled: false\n", encoding="utf-8")
    code, _, err = cli("sources", "enable", "blog")
    assert code == 1
    assert "disabled in config.yaml" in err


def test_unknown_source_is_one_clear_error(cli: Cli) -> None:
    code, _, err = cli("sources", "disable", "nope")
    assert code == 1
    assert "no source named 'nope'" in err and "blog" in err


def test_a_config_source_cannot_be_removed_here(cli: Cli, db_url: str) -> None:
    code, _, err = cli("sources", "remove", "blog", "--yes")
    assert code == 1
    assert "remove it there (it would come back at the next start)" in err
    assert _count(db_url, select(func.count()).select_from(Source)) == 2


def test_remove_asks_for_yes_when_items_would_go_and_says_what_it_deletes(
    cli: Cli, db_url: str
) -> None:
    code, out, _ = cli("import", str(SLASHDOT))  # files the items under a derived source
    assert code == 0
    rows = {r["name"]: r for r in json.loads(cli("sources", "list", "--json")[1])}
    assert rows["Slashdot"]["items"] == 15
    assert _count(db_url, select(func.count()).select_from(ClusterMember)) > 0

    code, _, err = cli("sources", "remove", "Slashdot")
    assert code == 1
    assert "1 feed, 15 articles and 0 comments" in err and "--yes" in err
    assert _count(db_url, select(func.count()).select_from(Item)) == 15

    code, out, _ = cli("sources", "remove", "Slashdot", "--yes")
    assert code == 0
    assert "removed source 'Slashdot': deleted 1 feed, 15 articles and 0 comments" in out
    assert _count(db_url, select(func.count()).select_from(Item)) == 0
    assert _count(db_url, select(func.count()).select_from(ClusterMember)) == 0
    assert _count(db_url, select(func.count()).select_from(Cluster)) == 0
    assert "Slashdot" not in cli("sources", "list")[1]

    # a source without items goes without --yes
    code, out, _ = cli("sources", "remove", "San Juan Record")
    assert code == 0 and "deleted 1 feed, 0 articles and 0 comments" in out


def test_remove_recounts_clusters_shared_with_other_sources(cli: Cli, db_url: str) -> None:
    # the same articles under a config source and under a derived one: one cluster each
    assert cli("import", "--source", "blog", str(SLASHDOT))[0] == 0
    assert cli("import", str(SLASHDOT))[0] == 0
    store = open_store(db_url)
    try:
        with store.session() as s:
            blog = repo_source_id(s, "blog")
            sizes = dict(
                s.execute(
                    select(Cluster.id, Cluster.size).where(Cluster.merged_into_id.is_(None))
                ).all()
            )
            assert sizes and all(n == 2 for n in sizes.values())  # one copy from each
        code, out, _ = cli("sources", "remove", "Slashdot", "--yes")
        assert code == 0 and "15 articles" in out and "cluster" not in out
        with store.session() as s:
            live = dict(
                s.execute(
                    select(Cluster.id, Cluster.size).where(Cluster.merged_into_id.is_(None))
                ).all()
            )
            assert live == {cid: 1 for cid in sizes}
            members = s.execute(
                select(ClusterMember.cluster_id, func.count()).group_by(ClusterMember.cluster_id)
            ).all()
            assert dict(members) == live
            assert {i.source_id for i in s.scalars(select(Item))} == {blog}
    finally:
        store.close()


def repo_source_id(s, name: str) -> int:  # noqa: ANN001
    return s.scalar(select(Source.id).where(Source.name == name))

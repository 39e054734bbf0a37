"""digests[].sources may name OPML-imported sources; unknown names fail when the digest is
built, with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FEEDS
from helpers import cli

from aggregator.config import Config

OPML = b"""<?xml version="1.0"?>
<opml version="2.0"><head><title>t</title></head><body>
<outline text="Imported" type="rss" xmlUrl="https://imported.example.org/feed"/>
</body></opml>
"""


def _config(sources: str) -> str:
    return (
        "sources:\n  - name: blog\n    type: rss\n    url: https://blog.example.org/feed/\n"
        "digests:\n  - name: daily\n    schedule: '0 7 * * *'\n"
        f"    recipients: [me@example.org]\n    sources: {sources}\n"
    )


def test_config_accepts_a_digest_naming_a_source_only_the_database_knows() -> None:
    cfg = Config.model_validate(
        {
            "digests": [
                {
                    "name": "d",
                    "schedule": "0 7 * * *",
                    "recipients": ["a@example.org"],
                    "sources": ["Imported"],
                }
            ]
        }
    )
    assert cfg.digests[0].sources == ["Imported"]


@pytest.fixture
def cfg(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", db_url)
    path = tmp_path / "config.yaml"
    path.write_text(_config("[Slashdot, Imported]"), encoding="utf-8")
    assert cli(path, "-q", "db", "upgrade")[0] == 0
    (tmp_path / "l.opml").write_bytes(OPML)
    assert cli(path, "-q", "opml", "import", str(tmp_path / "l.opml"))[0] == 0
    return path


def test_a_digest_of_imported_sources_is_built(cfg: Path) -> None:
    # `import` files these under a source derived from the document, named "Slashdot"
    assert cli(cfg, "-q", "import", str(FEEDS / "rss10-rdf-en-slashdot.xml"))[0] == 0
    code, html, _ = cli(cfg, "-q", "digest", "preview", "daily")
    assert code == 0
    assert html.count("slashdot.org") > 5


def test_an_unknown_digest_source_is_one_clear_error_at_build_time(cfg: Path) -> None:
    cfg.write_text(_config("[Imported, Nowhere]"), encoding="utf-8")
    code, _, err = cli(cfg, "-q", "digest", "preview", "daily")
    assert code == 1
    assert err.strip().splitlines() == [
        "aggregator: error: digest 'daily' names unknown source 'Nowhere': not in config.yaml "
        "nor imported (`aggregator sources list` shows the sources)"
    ]


def test_the_daemon_warns_at_start_about_an_unknown_digest_source(
    store, caplog: pytest.LogCaptureFixture
) -> None:  # noqa: ANN001
    import logging

    from aggregator.daemon import Daemon

    cfg = Config.model_validate(
        {
            "digests": [
                {
                    "name": "d",
                    "schedule": "0 7 * * *",
                    "recipients": ["a@example.org"],
                    "sources": ["Nowhere"],
                }
            ]
        }
    )
    daemon = Daemon(store, cfg)
    try:
        with caplog.at_level(logging.WARNING):
            daemon._check_digest_sources()
    finally:
        daemon.fetcher.close()
    assert "digest 'd' names unknown source 'Nowhere'" in caplog.text

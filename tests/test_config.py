"""Config loading: the example validates, and every kind of mistake is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from helpers import cli

from aggregator.config import load_config, parse_duration_s, parse_smtp_url
from aggregator.errors import ConfigError

EXAMPLE = REPO / "config.yaml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_config_is_valid_and_complete() -> None:
    cfg = load_config(EXAMPLE, env={})
    types = {s.type for s in cfg.sources}
    assert {"wordpress", "google_news", "bing_news"} <= types
    assert types & {"rss", "atom"}
    wp = next(s for s in cfg.sources if s.type == "wordpress")
    assert wp.comments and "it-boltwise" in (wp.url or "")
    assert cfg.digests and not cfg.digests[0].sources and not cfg.digests[0].keywords
    # the default SQLite file lives next to the config file
    assert cfg.database.url == f"sqlite:///{REPO / 'newsdedup.sqlite'}"
    assert cfg.polling.min_interval == 300 and cfg.polling.max_interval == 86400


@pytest.mark.parametrize(
    ("text", "value"),
    [("15m", 900), ("24h", 86400), ("30s", 30), ("7d", 604800), ("1h30m", 5400), (45, 45)],
)
def test_durations(text: object, value: float) -> None:
    assert parse_duration_s(text) == value


@pytest.mark.parametrize("bad", ["15", "m", "15 minutes", "-5m", "", "1h-2m", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(bad)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("polling:\n  min_intervall: 5m\n", "polling.min_intervall: unknown key"),
        ("polling:\n  min_interval: soon\n", "polling.min_interval: 'soon' is not a duration"),
        ("polling:\n  workers: many\n", "polling.workers:"),
        ("polling:\n  min_interval: 2d\n  max_interval: 1d\n", "min_interval must not exceed"),
        (
            "polling:\n  connect_timeout: 0\n",
            "polling.connect_timeout: Input should be greater than 0",
        ),
        ("polling:\n  tick: 0s\n", "polling.tick: Input should be greater than 0"),
        ("smtp:\n  timeout: 0\n", "smtp.timeout: Input should be greater than 0"),
        (
            "sources:\n  - {name: x, type: rss, url: 'http://a/', min_interval: 0}\n",
            "sources[0](x).min_interval: Input should be greater than 0",
        ),
        (  # a source's own minimum above the polling section's maximum
            "sources:\n  - {name: x, type: rss, url: 'http://a/', min_interval: 2d}\n",
            "source 'x': min_interval (172800 s) must not exceed max_interval (86400 s)",
        ),
        (
            "sources:\n  - {name: x, type: rss, url: 'http://a/', min_interval: 1h, max_interval: 30m}\n",
            "source 'x': min_interval (3600 s) must not exceed max_interval (1800 s)",
        ),
        (
            "sources:\n  - name: x\n    type: gopher\n    url: http://a/\n",
            "sources[0](x).type: must be",
        ),
        ("sources:\n  - name: x\n    type: rss\n", "sources[0](x): a rss source needs 'url'"),
        ("sources:\n  - name: x\n    type: rss\n    url: ftp://a/f\n", "sources[0](x).url:"),
        (
            "sources:\n  - {name: a, type: rss, url: 'http://a/'}\n  - {name: a, type: rss, url: 'http://b/'}\n",
            "duplicate source name 'a'",
        ),
        (
            "digests:\n  - name: d\n    schedule: every day\n    recipients: [a@b.c]\n",
            "digests[0](d).schedule: 'every day' is not a 5-field cron",
        ),
        (
            "digests:\n  - name: d\n    schedule: '0 7 * * *'\n    timezone: Mars/Base\n    recipients: [a@b.c]\n",
            "unknown time zone 'Mars/Base'",
        ),
        (
            "digests:\n  - name: d\n    schedule: '0 7 * * *'\n    recipients: [nobody]\n",
            "'nobody' is not an email address",
        ),
        ("smtp:\n  port: 99999\n", "smtp.port:"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("polling: [\n", "config.yaml: line"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert expected in msg
    assert "\n" not in msg


# Every spelling the size parser took before pydantic's ByteSize, with the value it gave:
# kB/MB/GB are powers of ten, KiB/MiB/GiB powers of two, any case, spaces around.
SIZES_BEFORE = [
    (10_000_000, 10_000_000),
    ("2048", 2048),
    (" 010 ", 10),
    ("5b", 5),
    ("5 B", 5),
    ("100kB", 100_000),
    ("1kb", 1000),
    ("1KiB", 1024),
    ("10MB", 10_000_000),
    ("10 mb", 10_000_000),
    ("2MiB", 2 * 2**20),
    ("1gb", 10**9),
    ("1 GiB", 2**30),
    ("\t3mib\n", 3 * 2**20),
]
# ... and what ByteSize adds (README, "Configuration")
SIZES_NOW = [("1.5MB", 1_500_000), ("10k", 10_000), ("1TB", 10**12), (4096.0, 4096)]


@pytest.mark.parametrize(("size", "value"), SIZES_BEFORE + SIZES_NOW)
def test_sizes(tmp_path: Path, size: object, value: int) -> None:
    path = write(tmp_path, f"polling:\n  max_response_size: {json.dumps(size)}\n")
    assert load_config(path, env={}).polling.max_response_size == value


@pytest.mark.parametrize(
    "bad",
    # "10,000" and "1.5.3MB" would be read up to their first odd character by ByteSize alone
    ["10,000", "1.5.3MB", "5MB of text", "10 megabytes", "MB", "", True, 0, -5, "-5MB", 5.5],
)
def test_bad_sizes_name_the_key(tmp_path: Path, bad: object) -> None:
    path = write(tmp_path, f"polling:\n  max_response_size: {json.dumps(bad)}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    msg = str(info.value)
    assert msg.startswith(f"{path}: polling.max_response_size: "), msg
    assert "\n" not in msg


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*--config PATH"):
        load_config(tmp_path / "nope.yaml", env={})


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "sources: []\n")
    cfg = load_config(None, env={"AGGREGATOR_CONFIG": str(path)})
    assert cfg.path == path.resolve()


def test_environment_overrides_database_and_smtp(tmp_path: Path) -> None:
    path = write(
        tmp_path, "database:\n  url: sqlite:///a.db\nsmtp:\n  host: filehost\n  sender: me@x.y\n"
    )
    cfg = load_config(
        path,
        env={
            "AGGREGATOR_DATABASE_URL": "postgresql://u@db.example/news",
            "AGGREGATOR_SMTP_URL": "smtp://mailer:s3cr%2Ft@mail.example:2525?starttls=true",
        },
    )
    assert cfg.database.url == "postgresql+psycopg://u@db.example/news"
    assert (cfg.smtp.host, cfg.smtp.port, cfg.smtp.tls) == ("mail.example", 2525, "starttls")
    assert cfg.smtp.username == "mailer"
    assert cfg.smtp.password is not None and cfg.smtp.password.get_secret_value() == "s3cr/t"
    assert cfg.smtp.sender == "me@x.y"  # untouched keys keep the file's value
    assert "s3cr" not in repr(cfg) and "s3cr" not in str(cfg.model_dump())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtps://a:b@h",
            {"host": "h", "port": 465, "tls": "implicit", "username": "a", "password": "b"},
        ),
        ("smtp://h", {"host": "h", "port": 25, "tls": "none"}),
        ("smtp://h?starttls=true", {"host": "h", "port": 587, "tls": "starttls"}),
    ],
)
def test_smtp_url(url: str, expected: dict) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize("url", ["http://h", "smtp://", "smtp://h:notaport", "smtp://h?tls=1"])
def test_bad_smtp_url(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match="AGGREGATOR_SMTP_URL: "):
        load_config(path, env={"AGGREGATOR_SMTP_URL": url})


def test_bad_smtp_url_never_echoes_password(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"AGGREGATOR_SMTP_URL": "smtp://u:hunter2@h:bad"})
    assert "hunter2" not in str(info.value)


def test_cli_broken_config_is_one_line_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "polling:\n  workers: -3\n")
    proc = cli(path, "status")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and "polling.workers" in lines[0]
    assert "Traceback" not in proc.stderr

"""Secrets are never printed: database and feed URLs through every command's output, its
log lines (text and JSON), ``status`` and the error rows stored in the database."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import FEEDS, REPO
from helpers import cli, spawn
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from aggregator.redact import is_secret_key, redact_url
from aggregator.store.models import Base

SECRET = "Zq7hunter2Xv"  # nowhere else in any output

# unparseable by SQLAlchemy's make_url (ArgumentError, or ValueError for the port)
MALFORMED_DB_URLS = [
    f"postgresql://user:pa ss{SECRET}@host:notaport/db",
    f"postgresql:/user:{SECRET}@127.0.0.1/db",
    f"postgresql://us er:{SECRET}@host:port/db",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https://u:p@news.google.com/rss/search?q=x",
            "https://***@news.google.com/rss/search?q=x",
        ),
        ("http://example.org:8080/feed/#frag", "http://example.org:8080/feed/#frag"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("https://mastodon.social/@Gargron.rss", "https://mastodon.social/@Gargron.rss"),
        ("https://TOKEN@h/f", "https://***@h/f"),
        ("https://u:p@ss@h/f", "https://***@h/f"),
        (
            "https://h/f?q=ki&Access_Token=a1&hl=de&X-Amz-Signature=b2#apiKey=c3",
            "https://h/f?q=ki&Access_Token=***&hl=de&X-Amz-Signature=***#apiKey=***",
        ),
        (
            "postgresql+psycopg://h/db?password=s&sslmode=require",
            "postgresql+psycopg://h/db?password=***&sslmode=require",
        ),
        ("postgresql://user:pa ss@host:notaport/db", "postgresql://***@host:notaport/db"),
        ("postgresql://user:secret@[bad/db", "postgresql://***@[bad/db"),
        ("postgresql://user:pa/ss@host/db", "postgresql://***@host/db"),
        ("postgresql://user:123#4@host/db", "postgresql://***@host/db"),
        # as SQLAlchemy reads it, "mastodon.social:8443/" is a user and password: masked
        ("https://mastodon.social:8443/@Gargron.rss", "https://***@Gargron.rss"),
        ("'postgresql:/user:secret@host/db'", "'postgresql:/***@host/db'"),
        (
            "GET https://h/f?next=/login%3Ftoken%3Dabc: 500",
            "GET https://h/f?next=/login%3Ftoken%3D***: 500",
        ),
        ("u=https%3A%2F%2Fx%3Fa%3D1%26sig%3Dabc", "u=https%3A%2F%2Fx%3Fa%3D1%26sig%3D***"),
        ("host=db password='a b' user=x", "host=db password=*** user=x"),
        (
            "GET http://h/f: HTTP 500; via http://u:p@h2/",
            "GET http://h/f: HTTP 500; via http://***@h2/",
        ),
        ("author=bob&q=news", "author=bob&q=news"),
        ("no URL here: 12:30 at work", "no URL here: 12:30 at work"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("token", True),
        ("API_KEY", True),
        ("apiKey", True),
        ("access-token", True),
        ("client_secret", True),
        ("Signature", True),
        ("passwd", True),
        ("Authorization", True),
        ("q", False),
        ("hl", False),
        ("format", False),
    ],
)
def test_is_secret_key(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


_WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_SECRET_KEYS = ["token", "key", "apikey", "api_key", "access_token", "secret", "sig"]
_SECRET_KEYS += ["signature", "password", "passwd", "pwd", "auth", "client_secret"]


@st.composite
def _url_with_secret(draw: st.DrawFn) -> tuple[str, str]:
    secret = draw(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=6))
    where = draw(st.sampled_from(["password", "user", "query", "fragment"]))
    scheme = draw(st.sampled_from(["http", "https", "postgresql+psycopg", "smtp", "sqlite"]))
    host = draw(st.one_of(_WORD, st.just("[::1]"), st.just("127.0.0.1")))
    port = draw(st.one_of(st.just(""), st.integers(0, 99999).map(lambda p: f":{p}")))
    path = "".join(f"/{w}" for w in draw(st.lists(_WORD, max_size=3)))
    pairs = [f"{k}={v}" for k, v in draw(st.lists(st.tuples(_WORD, _WORD), max_size=3))]
    name = draw(st.sampled_from(_SECRET_KEYS))
    name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    encoded = quote(secret, safe="")
    user = draw(_WORD)
    userinfo = {"password": f"{user}:{encoded}@", "user": f"{encoded}@"}.get(where, "")
    if where == "query":
        pairs.insert(draw(st.integers(0, len(pairs))), f"{name}={encoded}")
    query = f"?{'&'.join(pairs)}" if pairs else ""
    fragment = f"#{name}={encoded}" if where == "fragment" else ""
    url = f"{scheme}://{userinfo}{host}{port}{path}{query}{fragment}"
    context = draw(st.sampled_from(["{}", "GET {}: HTTP 500", "database '{}' unavailable"]))
    return context.format(url), secret


@settings(max_examples=400, deadline=None)
@given(_url_with_secret())
def test_redacted_url_never_holds_the_secret(case: tuple[str, str]) -> None:
    text, secret = case
    encoded = quote(secret, safe="")
    assume(encoded not in text.replace(encoded, "", 1))  # it occurs once: where it was put
    assume(secret not in text.replace(encoded, ""))
    shown = redact_url(text)
    assert encoded not in shown and secret not in shown
    assert "***" in shown


_RAW = st.characters(
    codec="utf-8", exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"], exclude_characters="@"
)


@settings(max_examples=300, deadline=None)
@given(
    st.text(_RAW, min_size=6),
    st.sampled_from(["user:", ""]),
    st.sampled_from(["{}", "invalid database URL '{}'", "GET {}: HTTP 500"]),
)
def test_unencoded_userinfo_never_shows(secret: str, user: str, context: str) -> None:
    """A hand-typed database URL: the password as SQLAlchemy reads it (up to the first "@",
    "/", "?" or "#" included), or a user name as it does (no "/")."""
    assume(user or "/" not in secret)
    text = context.format(f"postgresql+psycopg://{user}{secret}@db.example:5432/news?x=1")
    assume(secret not in text.replace(secret, "", 1))
    assert secret not in redact_url(text)


# ---------------------------------------------------------------- through the command line


def test_run_never_prints_a_malformed_database_url(tmp_path: Path) -> None:
    """The daemon retries an unusable database: every retry line hides the password."""
    procs = []
    for url, log_format in zip(MALFORMED_DB_URLS, ["text", "json"], strict=False):
        path = tmp_path / f"run-{log_format}.log"
        with path.open("w") as log:
            proc = spawn(
                None,
                "--log-format",
                log_format,
                "run",
                env={"AGGREGATOR_DATABASE_URL": url},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        procs.append((proc, path, log_format))
    try:
        deadline = time.monotonic() + 60
        while any(path.read_text().count("retrying in") < 2 for _, path, _ in procs):
            logs = [path.read_text() for _, path, _ in procs]
            assert time.monotonic() < deadline, logs
            assert all(proc.poll() is None for proc, _, _ in procs), logs
            time.sleep(0.2)
    finally:
        for proc, _, _ in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    for _, path, log_format in procs:
        lines = path.read_text().splitlines()
        assert len(lines) >= 2
        for line in lines:
            assert "invalid database URL" in line and "***@" in line, line
            assert SECRET not in line
            if log_format == "json":
                assert json.loads(line)["level"] == "error"


@pytest.mark.parametrize("url", MALFORMED_DB_URLS)
def test_every_command_hides_a_malformed_database_url(
    tmp_path: Path,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        '<opml version="2.0"><body><outline type="rss" text="x" '
        'xmlUrl="https://example.org/feed"/></body></opml>',
        encoding="utf-8",
    )
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", url)
    commands = [
        ["db", "upgrade"],
        ["status"],
        ["status", "--json"],
        ["-v", "status"],
        ["--log-format", "json", "status", "--json"],
        ["poll", "--once"],
        ["import", str(FEEDS / "rss10-rdf-en-slashdot.xml")],
        ["items"],
        ["clusters"],
        ["why", "1", "2"],
        ["split", "1", "2"],
        ["merge", "1", "2"],
        ["digest", "send", "daily", "--now"],
        ["digest", "preview", "daily"],
        ["export", "--format", "atom"],
        ["opml", "import", str(opml)],
        ["opml", "export"],
    ]
    for args in commands:
        code, out, err = cli(None, *args)
        assert code == 1, (args, out, err)
        assert "invalid database URL" in err and "***@" in err, (args, err)
        assert SECRET not in out + err, (args, out, err)
        if "-v" not in args:
            assert len(err.strip().splitlines()) == 1, (args, err)


@pytest.mark.postgres
def test_password_in_a_database_url_query_is_hidden(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL takes ``?password=`` as well as userinfo (trust auth ignores both here)."""
    url = f"{pg_url}&password={SECRET}"
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", url)
    config = REPO / "config.yaml"
    for args in (["db", "upgrade"], ["db", "upgrade"], ["status"], ["-v", "status"]):
        code, out, err = cli(config, *args)
        assert code == 0, (args, err)
        assert "password=***" in out and SECRET not in out + err, (args, out, err)
    code, out, err = cli(config, "--log-format", "json", "status", "--json")
    assert code == 0, err
    assert json.loads(out)["database"].endswith("&password=***")
    assert SECRET not in out + err


def _feed_server(httpserver: HTTPServer) -> dict[str, str]:
    """Feeds whose URLs hold secrets: one served, one failing, one redirecting forever."""
    body = (FEEDS / "rss10-rdf-en-slashdot.xml").read_bytes()
    httpserver.expect_request("/ok").respond_with_data(body, content_type="application/rss+xml")
    httpserver.expect_request("/down").respond_with_data("down", status=500)
    httpserver.expect_request("/loop").respond_with_data(
        "", status=302, headers={"Location": f"/loop?access_token={SECRET}5"}
    )
    base = httpserver.url_for("/")[len("http://") :].rstrip("/")
    return {
        "served": f"http://reader:{SECRET}1@{base}/ok?token={SECRET}2&q=news",
        "failing": f"http://{SECRET}3@{base}/down?q=ki&API_KEY={SECRET}4",
        "looping": f"http://{base}/loop?Signature={SECRET}6#key={SECRET}7",
    }


def test_feed_urls_with_secrets_are_hidden_everywhere(
    tmp_path: Path,
    db_url: str,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feeds = _feed_server(httpserver)
    config = tmp_path / "config.yaml"
    config.write_text(
        "polling: {min_interval: 1s, total_timeout: 5s, max_redirects: 2,\n  allow_private_addresses: true}\nsources:\n"
        + "".join(f"  - {{name: {n}, type: rss, url: '{u}'}}\n" for n, u in feeds.items()),
        encoding="utf-8",
    )
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", db_url)
    assert cli(config, "db", "upgrade")[0] == 0
    shown = []
    for args, served in (
        (["-v", "poll", "--once", "--all"], "ok"),
        (["--log-format", "json", "-v", "poll", "--once", "--all"], "unchanged"),
        (["poll", "--once", "--all"], "unchanged"),
    ):
        code, out, err = cli(config, *args)
        assert code == 1, (args, out, err)  # two of the three feeds fail
        lines = out.splitlines()
        assert len(lines) == 3 and sum(f"\t{served}\t" in line for line in lines) == 1, out
        assert "token=***&q=news" in out and "q=ki&API_KEY=***" in out
        assert "http://***@localhost" in out
        assert "too many redirects" in out and "HTTP 500" in out
        shown.append(out + err)
    assert "served http://***@" in shown[0]  # the debug line after a fetch names the URL
    records = [json.loads(line) for line in shown[1].splitlines() if line.startswith("{")]
    assert any(r["logger"] == "aggregator.poller" and "API_KEY=***" in r["msg"] for r in records)
    for args in (["status"], ["status", "--json"], ["--log-format", "json", "-v", "status"]):
        code, out, err = cli(config, *args)
        assert code == 0, (args, err)
        shown.append(out + err)
    status = json.loads(shown[4])
    assert {s["source"]: s["url"] for s in status["sources"]}["failing"].endswith("API_KEY=***")
    assert len(status["recent_errors"]) == 6  # two feeds failed in each of three rounds
    for text in shown:
        assert SECRET not in text

    # stored rows: only the configured URLs themselves may hold it
    engine = create_engine(db_url)
    stored_errors = 0
    try:
        with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                for row in conn.execute(select(table)).mappings():
                    for column, value in row.items():
                        if table.name in ("sources", "feeds") and column == "url":
                            continue
                        if column in ("last_error", "error") and value:
                            stored_errors += 1
                        assert SECRET not in str(value), (table.name, column, value)
    finally:
        engine.dispose()
    assert stored_errors == 2 + 6  # feeds.last_error of two feeds, poll_log.error of each


@pytest.mark.filterwarnings("ignore:Query string argument")
def test_database_url_echo_is_redacted_in_the_verbose_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite'}")
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", f"{url}?password={SECRET}")
    code, out, err = cli(None, "-v", "status")
    assert code == 1
    assert "Traceback" in err and SECRET not in out + err

"""Every command line option and argument says what it is for, and ``status`` prints times
to the second."""

from __future__ import annotations

import argparse

from aggregator.cli import _when, build_parser


def _walk(parser: argparse.ArgumentParser, path: str):  # noqa: ANN202
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", "(the command itself)", helps.get(name)
                yield from _walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, "/".join(action.option_strings) or action.dest, action.help


def test_every_option_argument_and_command_has_help() -> None:
    entries = list(_walk(build_parser(), "aggregator"))
    assert len(entries) > 60
    missing = [f"{path}: {name}" for path, name, text in entries if not (text or "").strip()]
    assert missing == []


def test_status_times_are_to_the_second_in_utc() -> None:
    assert _when("2026-12-07T02:31:05.123456Z") == "2026-12-07 02:31:05Z"
    assert _when("2026-12-07T02:31:05+00:00") == "2026-12-07 02:31:05Z"
    assert _when(None) is None


def test_status_table_shows_times_to_the_second(
    sqlite_url: str,
    tmp_path,
    monkeypatch,  # noqa: ANN001
) -> None:
    import io
    import re

    from conftest import FEEDS

    from aggregator.cli import main

    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", sqlite_url)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "sources:\n  - name: sd\n    type: rss\n    url: https://rss.example.org/sd\n",
        encoding="utf-8",
    )
    run = ["-q", "--config", str(cfg)]
    assert main([*run, "db", "upgrade"], out=io.StringIO()) == 0
    feed = str(FEEDS / "rss10-rdf-en-slashdot.xml")
    assert main([*run, "import", "--source", "sd", feed], out=io.StringIO()) == 0
    out = io.StringIO()
    assert main([*run, "status"], out=out) == 0
    text = out.getvalue()
    row = next(line for line in text.splitlines() if line.startswith("sd "))
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", row), row  # next check
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", text) and "+00:00" not in text


def test_counts_are_plural_only_when_they_are_many() -> None:
    from aggregator.daemon import plural, stopping_message

    assert [plural(n, "round") for n in (0, 1, 2)] == ["0 rounds", "1 round", "2 rounds"]
    assert plural(1, "new item") == "1 new item"
    assert stopping_message(0) == "stopping"
    assert stopping_message(2) == "stopping: waiting for 2 fetches (Ctrl-C again to quit now)"

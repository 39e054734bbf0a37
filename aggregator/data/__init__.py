"""Word lists shipped with the package: one word a line, ``#`` starting a comment."""

from __future__ import annotations

from importlib.resources import files


def word_list(name: str) -> frozenset[str]:
    """The words of ``aggregator/data/<name>`` (read once, by a module-level constant)."""
    text = files(__name__).joinpath(name).read_text(encoding="utf-8")
    return frozenset(w for line in text.splitlines() if (w := line.split("#", 1)[0].strip()))

"""Data flows one way: no module imports from a later pipeline stage (issue 23).

Every module of ``aggregator`` has a stage below; an import (at module level or inside a
function) may only reach a module of the same or an earlier stage. A new module must be
given its stage here, which is the point: where it sits is a decision, not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aggregator"

FOUNDATION, FETCH, PARSE, NORMALISE, STORE, DEDUP, OUTPUTS, TOP = range(8)
STAGES = {
    # shared vocabulary, errors, settings and the text/URL utilities parse and normalise use
    "aggregator": FOUNDATION,
    "aggregator.domain": FOUNDATION,
    "aggregator.errors": FOUNDATION,
    "aggregator.redact": FOUNDATION,
    "aggregator.data": FOUNDATION,
    "aggregator.config": FOUNDATION,
    "aggregator.schedule": FOUNDATION,
    "aggregator.urls": FOUNDATION,
    "aggregator.htmltext": FOUNDATION,
    "aggregator.language": FOUNDATION,
    "aggregator.fetcher": FETCH,
    "aggregator.parser": PARSE,
    "aggregator.normaliser": NORMALISE,
    "aggregator.store": STORE,
    "aggregator.store.db": STORE,
    "aggregator.store.tables": STORE,
    "aggregator.store.models": STORE,
    "aggregator.store.items": STORE,
    "aggregator.store.clusters": STORE,
    "aggregator.store.repo": STORE,
    "aggregator.coordination": STORE,
    "aggregator.ingest": STORE,
    "aggregator.opml": STORE,
    "aggregator.importer": STORE,
    "aggregator.poller": STORE,  # fetch -> parse -> ingest for the due feeds
    "aggregator.dedup": DEDUP,
    "aggregator.dedup.text": DEDUP,
    "aggregator.dedup.anchors": DEDUP,
    "aggregator.dedup.bandindex": DEDUP,
    "aggregator.dedup.boilerplate": DEDUP,
    "aggregator.dedup.minhash": DEDUP,
    "aggregator.dedup.vectors": DEDUP,
    "aggregator.dedup.storedform": DEDUP,
    "aggregator.dedup.engine": DEDUP,
    "aggregator.dedup.service": DEDUP,
    "aggregator.dedup.corrections": DEDUP,
    "aggregator.dedup.explain": DEDUP,
    "aggregator.dedup.evaluate": DEDUP,
    "aggregator.dedup.clusterfile": DEDUP,
    "aggregator.digest_view": OUTPUTS,
    "aggregator.stories": OUTPUTS,
    "aggregator.render": OUTPUTS,
    "aggregator.mailer": OUTPUTS,
    "aggregator.digest": OUTPUTS,
    "aggregator.export": OUTPUTS,
    "aggregator.metrics": OUTPUTS,
    "aggregator.retention": OUTPUTS,
    "aggregator.web": OUTPUTS,
    "aggregator.daemon": TOP,
    "aggregator.cli": TOP,
    "aggregator.__main__": TOP,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, name: str, *, is_package: bool = False) -> set[str]:
    """The ``aggregator`` modules a module's source imports (anywhere in it, relative
    imports resolved; ``from . import x`` counts as module ``x`` when it is one)."""
    package = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in STAGES else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] == "aggregator"} - {name}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_has_a_stage() -> None:
    missing = [module_name(p) for p in modules() if module_name(p) not in STAGES]
    assert not missing, f"give these modules a stage in tests/test_layers.py: {missing}"


def test_no_module_imports_from_a_later_stage() -> None:
    backwards = []
    for path in modules():
        name = module_name(path)
        source = path.read_text(encoding="utf-8")
        for target in imports_of(source, name, is_package=path.name == "__init__.py"):
            stage = STAGES.get(target)
            assert stage is not None, f"{name} imports {target}, which has no stage"
            if stage > STAGES[name]:
                backwards.append(f"{name} -> {target}")
    assert not backwards, "imports from a later stage: " + ", ".join(sorted(backwards))


def test_the_check_sees_relative_and_function_level_imports() -> None:
    source = "from .dedup import engine\n\ndef late():\n    from ..store import models\n"
    assert imports_of(source, "aggregator.parser") == {"aggregator.dedup.engine"}
    assert imports_of(source, "aggregator.dedup.text") == {
        "aggregator.dedup.dedup",
        "aggregator.store.models",
    }

"""The naive baseline of issue #7, timed on saved feed documents.

    python benchmarks/naive.py DIR [DIR ...] [--db PATH] [--json]

What it does, on purpose the obvious way (the issue measured 857 items/s for this):

* for each document: ``feedparser.parse(path)``;
* for each entry: text = title + content (else summary) with tags removed by a simple regex,
  lowercased and split into words (``\\w+``); one ``datasketch.MinHash(num_perm=128)`` with
  ``update(token.encode())`` once per token; ``query`` then ``insert`` into one in-memory
  ``datasketch.MinHashLSH(threshold=0.5, num_perm=128)`` (an entry whose guid the LSH already
  holds, e.g. one repeated by the next snapshot of its feed, is not inserted or stored again);
* one SQLAlchemy ORM object per new entry in a simple ``items`` table of its own (a fresh
  SQLite file, default settings), ``session.add`` per row, ``commit`` per document.

Each DIR (its ``feed*.xml`` in name order, or ``*.xml`` if there are none) is one pass, in the
same process: the same LSH and database. So ``naive.py A A B`` times an import of A, a
re-import of A and an import of B. Per pass it prints entries, new rows and entries/s (time
from the first parse to the last commit; interpreter start and imports excluded); ``--json``
adds one JSON object per pass on stdout. Peak RSS of the process goes to the summary line.
"""

# no "from __future__ import annotations": SQLAlchemy resolves the Mapped[...] annotations
# at class creation, which fails under `python -m cProfile` when they are strings
import argparse
import json
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import feedparser
from datasketch import MinHash, MinHashLSH
from sqlalchemy import String, Text, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

TAG_RE = re.compile(r"<[^>]+>")
TOKEN_RE = re.compile(r"\w+")


class Base(DeclarativeBase):
    pass


class NaiveItem(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    feed: Mapped[str] = mapped_column(Text)
    guid: Mapped[str] = mapped_column(Text, unique=True)
    link: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    published: Mapped[str | None] = mapped_column(String(64))
    similar_to: Mapped[str | None] = mapped_column(Text)  # first LSH candidate, if any


def entry_text(entry) -> str:  # type: ignore[no-untyped-def]
    content = entry.get("content") or []
    body = content[0].get("value", "") if content else entry.get("summary", "")
    return TAG_RE.sub(" ", f"{entry.get('title', '')} {body}")


def run_pass(paths: list[Path], session: Session, lsh: MinHashLSH) -> dict[str, float]:
    entries = new = 0
    started = time.perf_counter()
    for path in paths:
        d = feedparser.parse(str(path))
        feed = d.feed.get("link", str(path))
        for e in d.entries:
            entries += 1
            text = entry_text(e)
            m = MinHash(num_perm=128)
            for token in TOKEN_RE.findall(text.lower()):
                m.update(token.encode())
            candidates = lsh.query(m)
            key = e.get("id") or e.get("link") or f"{path.name}#{entries}"
            if key in lsh:  # seen in an earlier document
                continue
            lsh.insert(key, m)
            session.add(
                NaiveItem(
                    feed=feed,
                    guid=key,
                    link=e.get("link"),
                    title=e.get("title", ""),
                    text=text,
                    published=e.get("published"),
                    similar_to=candidates[0] if candidates else None,
                )
            )
            new += 1
        session.commit()
    seconds = time.perf_counter() - started
    return {
        "documents": len(paths),
        "entries": entries,
        "new": new,
        "seconds": seconds,
        "items_per_s": entries / seconds if seconds else 0.0,
    }


def documents(directory: Path) -> list[Path]:
    return sorted(directory.glob("feed*-part*.xml")) or sorted(directory.glob("*.xml"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="one directory of documents per pass")
    ap.add_argument("--db", type=Path, help="SQLite file to create (default: a temp file)")
    ap.add_argument("--json", action="store_true", help="one JSON object per pass on stdout")
    args = ap.parse_args(argv)

    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="naive-")
        db = Path(tmp.name) / "naive.sqlite"
    if db.exists():
        db.unlink()
    engine = create_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine)
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    results = []
    with Session(engine) as session:
        for n, directory in enumerate(args.dirs, start=1):
            paths = documents(directory)
            if not paths:
                print(f"naive: no feed documents in {directory}", file=sys.stderr)
                return 1
            r = run_pass(paths, session, lsh)
            r["pass"] = n
            r["dir"] = str(directory)
            results.append(r)
            print(
                f"pass {n} {directory}: {r['entries']} entries, {r['new']} new, "
                f"{r['seconds']:.2f} s, {r['items_per_s']:.0f} items/s",
                file=sys.stderr,
            )
    engine.dispose()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"naive: peak RSS {peak_mib:.0f} MiB, database {db}", file=sys.stderr)
    if args.json:
        for r in results:
            r["peak_rss_mib"] = peak_mib
            print(json.dumps(r))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

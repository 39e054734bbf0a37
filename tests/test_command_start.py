"""Commands that do not cluster start without the clustering stack (datasketch pulls in
scipy: about half a second of imports on every command), nor the metrics exposition."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import io, sys
from aggregator.cli import main
try:
    main(sys.argv[1:], out=io.StringIO())
except SystemExit:
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'datasketch', 'scipy', 'prometheus_client'})
print(','.join(heavy) or 'none')
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["status"], ["status", "--json"], ["items", "--format", "jsonl"]]
)
def test_commands_that_do_not_cluster_do_not_import_it(tmp_path: Path, args: list[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"database: {{url: 'sqlite:///{tmp_path / 'db.sqlite'}'}}\n")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.stdout.strip().splitlines()[-1] == "none", proc.stderr

"""`make bench` end to end at a tiny size: the script runs every stage and writes its results.
No timing is asserted (speed targets are benchmarks, not tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ["ingest", "validate", "deidentify", "load", "k_anonymity", "indicators", "commit"]
ROWS = 500


def test_bench_runs_every_stage_and_writes_json_and_table(tmp_path: Path) -> None:
    results, docs = tmp_path / "results", tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--sizes", str(ROWS), "--skip-make-report",
         "--results", str(results), "--docs", str(docs), "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    (written,) = list(results.glob("*.json"))
    result = json.loads(written.read_text(encoding="utf-8"))
    (size,) = result["sizes"]
    assert size["responses"] == ROWS and "unfinished" not in size
    # Every row of the generated export is accounted for.
    assert sum(size["outcomes"].values()) == ROWS
    assert size["baseline_duckdb_read_csv"]["rows"] == ROWS
    assert list(size["stages"]) == STAGES
    for measured in [*size["stages"].values(), size["stages_total"], size["consult_run"]]:
        assert measured["wall_s"] > 0 and measured["cpu_s"] >= 0 and measured["peak_mb"] > 0
        # The ratio is the time over the same run's DuckDB baseline (times are rounded to the ms).
        baseline, wall = size["baseline_duckdb_read_csv"]["wall_s"], measured["wall_s"]
        low, high = (wall - 0.0005) / (baseline + 0.0005), (wall + 0.0005) / (baseline - 0.0005)
        assert low - 0.01 <= measured["ratio_to_baseline"] <= high + 0.01
    assert {"cpu", "cores", "ram_gb", "os", "python", "duckdb", "pandas"} <= set(result["machine"])
    statuses = {t["target"].split(" ")[0]: t["status"] for t in result["targets"]}
    assert len(result["targets"]) == 5 and set(statuses.values()) <= {"met", "not met", "not measured"}

    table = docs.read_text(encoding="utf-8")
    assert f"## {ROWS:,} responses" in table
    for words in ["ingest", "validate", "de-identify", "load", "k-anonymity", "indicators", "commit",
                  "DuckDB `read_csv`", "`consult run`"]:
        assert f"| {words}" in table or f"| **{words}" in table, words
    # No temporary export or project is left behind.
    assert not list(tmp_path.glob("consult-bench-*"))

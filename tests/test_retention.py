"""`consult purge-raw`: raw exports deleted only once their wave's release is published, and recorded."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from pipeline.cli import main
from pipeline.config import Paths
from pipeline.retention import RetentionError, purge_raw
from pipeline.run import run_load
from pipeline.status import project_status

DAY = dt.date(2026, 6, 2)


def exports(paths: Paths, wave: int) -> list[Path]:
    return sorted((paths.synthetic / str(wave)).glob("*.csv"))


def publish(paths: Paths, waves: list[int], inputs: list[dict] | None = None) -> None:
    """A release.json as `consult release` leaves it (the part purge-raw reads): the files it was
    made from, hashed here from the files themselves."""
    if inputs is None:
        inputs = [{"file": p.name, "wave": w, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                  for w in waves for p in exports(paths, w)]
    folder = paths.site / "data"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "release.json").write_text(json.dumps(
        {"version": "2026.1", "date": "2026-06-01", "waves": waves, "inputs_key": "", "inputs": inputs,
         "audit": "passed", "files": []}), encoding="utf-8")


def purge_records(paths: Paths) -> list[tuple]:
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute("SELECT file_name, wave, file_sha256, bytes, purged_on, release_version FROM purges "
                           "ORDER BY 1").fetchall()
    finally:
        con.close()


def test_nothing_is_deleted_before_a_release_holds_the_wave(loaded: Paths, capsys) -> None:
    root = ["--root", str(loaded.root)]
    assert main([*root, "purge-raw", "2025"]) == 2
    err = capsys.readouterr().err
    assert "no published release yet" in err and "`consult release`" in err and "nothing was deleted" in err
    publish(loaded, [2023, 2024])
    with pytest.raises(RetentionError, match="does not include wave 2025"):
        purge_raw(loaded, 2025)
    publish(loaded, [2023, 2024, 2025], [{"file": "qualtrics-2025.csv", "wave": 2025, "sha256": "0" * 64}])
    with pytest.raises(RetentionError, match="built before the last load of wave 2025"):
        purge_raw(loaded, 2025)
    assert len(exports(loaded, 2025)) == 1


def test_an_export_not_loaded_yet_stops_the_purge(loaded: Paths) -> None:
    publish(loaded, [2023, 2024, 2025])
    extra = loaded.synthetic / "2025" / "late.csv"
    shutil.copyfile(exports(loaded, 2024)[0], extra)
    with pytest.raises(RetentionError) as error:
        purge_raw(loaded, 2025)
    assert "data/synthetic/2025/late.csv: not loaded yet" in str(error.value) and "consult run" in str(error.value)
    assert extra.exists() and len(exports(loaded, 2025)) == 2


def test_a_dry_run_lists_and_deletes_nothing(loaded: Paths, capsys) -> None:
    publish(loaded, [2023, 2024, 2025])
    assert main(["--root", str(loaded.root), "purge-raw", "2025", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Would delete 1 raw export(s) of wave 2025" in out and "qualtrics-2025.csv" in out
    assert "Nothing was deleted" in out and len(exports(loaded, 2025)) == 1


def test_a_purge_deletes_only_that_wave_and_records_each_file(loaded: Paths) -> None:
    publish(loaded, [2023, 2024, 2025])
    target = exports(loaded, 2025)[0]
    content = target.read_bytes()
    others = {p: p.read_bytes() for w in (2023, 2024) for p in exports(loaded, w)}
    ledger_before = _ledger(loaded)
    purge_raw(loaded, 2025, today=DAY)
    assert not target.exists() and all(p.read_bytes() == b for p, b in others.items())
    assert purge_records(loaded) == [("qualtrics-2025.csv", 2025, hashlib.sha256(content).hexdigest(), len(content),
                                      DAY, "2026.1")]
    # the warehouse keeps what the file brought; a later run reads nothing again
    summary = run_load(loaded)
    assert [f.wave for f in summary.files] == [2023, 2024]
    assert all(f.status == "already loaded" for f in summary.files)
    assert _ledger(loaded) == ledger_before
    # status: purged on purpose, not missing; nothing left to purge
    wave = next(s for s in project_status(loaded, today=DAY)["waves"] if s["wave"] == 2025)
    assert wave["raw_exports"]["state"] == "purged" and wave["raw_exports"]["missing"] == []
    assert wave["raw_exports"]["purged"][0]["purged_on"] == "2026-06-02"
    assert purge_raw(loaded, 2025).files == []


def test_a_warehouse_made_before_purges_were_recorded_gets_the_table(loaded: Paths) -> None:
    con = duckdb.connect(str(loaded.warehouse))
    con.execute("DROP TABLE purges")
    con.close()
    assert project_status(loaded, today=DAY)["waves"][0]["raw_exports"]["purged"] == []
    publish(loaded, [2023, 2024, 2025])
    purge_raw(loaded, 2023, today=DAY)
    assert [r[0] for r in purge_records(loaded)] == ["qualtrics-2023.csv"]


def test_status_warns_when_raw_exports_are_kept_past_the_retention_period(loaded: Paths, capsys) -> None:
    privacy = loaded.surveys / "privacy.yaml"
    privacy.write_text(privacy.read_text(encoding="utf-8").replace("raw_retention_days: 365", "raw_retention_days: 30"),
                       encoding="utf-8")
    # the practice run's invented answers hold no identifier: no retention period for them
    practice = project_status(loaded, today=dt.date.today() + dt.timedelta(days=400))["waves"]
    assert not any(s["raw_exports"]["past_retention"] for s in practice)
    assert not any("retention period" in w for s in practice for w in s["warnings"])
    assert main(["--root", str(loaded.root), "status", "2024"]) == 0
    assert "Raw exports:  the synthetic consultation's (invented answers, data/synthetic/): no retention period" \
        in capsys.readouterr().out
    # the same exports as real ones
    for folder in loaded.synthetic.iterdir():
        shutil.copytree(folder, loaded.raw / folder.name)
    shutil.rmtree(loaded.synthetic)
    loaded.warehouse.unlink()
    run_load(loaded)
    con = duckdb.connect(str(loaded.warehouse), read_only=True)
    loaded_on = con.execute("SELECT min(loaded_at) FROM load_ledger WHERE wave = 2024").fetchall()[0][0].date()
    con.close()
    on_time = project_status(loaded, today=loaded_on + dt.timedelta(days=30))["waves"]
    late = project_status(loaded, today=loaded_on + dt.timedelta(days=31))["waves"]
    wave_2024 = next(s for s in late if s["wave"] == 2024)
    assert not any(s["raw_exports"]["past_retention"] for s in on_time)
    assert wave_2024["raw_exports"]["past_retention"] and wave_2024["raw_exports"]["days_since_loaded"] == 31
    assert any("longer than the retention period (30 days" in w and "consult purge-raw 2024" in w
               for w in wave_2024["warnings"])


def _ledger(paths: Paths) -> list[tuple]:
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute("SELECT * FROM load_ledger ORDER BY file_sha256").fetchall()
    finally:
        con.close()


def test_later_runs_never_reload_or_replace_purged_real_exports(empty_project: Paths, synthetic_exports: Path) -> None:
    """Real data: after the only wave's exports are purged, `consult run` neither falls back to the
    synthetic consultation nor finds anything to load."""
    export = empty_project.raw / "2023" / "export.csv"
    export.parent.mkdir(parents=True)
    shutil.copyfile(synthetic_exports / "2023" / "qualtrics-2023.csv", export)
    run_load(empty_project)
    publish_real = [{"file": "export.csv", "wave": 2023, "sha256": hashlib.sha256(export.read_bytes()).hexdigest()}]
    publish(empty_project, [2023], publish_real)
    purge_raw(empty_project, 2023, today=DAY)
    assert not export.exists()
    summary = run_load(empty_project)
    assert summary.source == "data/raw" and summary.files == []
    assert not empty_project.synthetic.exists()
    wave = next(s for s in project_status(empty_project, today=DAY)["waves"] if s["wave"] == 2023)
    assert wave["data"] == "real" and wave["raw_exports"]["state"] == "purged" and wave["exports"] == []

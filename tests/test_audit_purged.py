"""The identifier check searches for the identifiers of the warehouse's own data (a real warehouse's
exports in data/raw/, never the synthetic consultation's), and says plainly when a loaded wave has
no export left to take them from (deleted by `consult purge-raw` once published): `not checked`
for that wave, never `[ok]` with nothing searched, while the audit still passes so that a later
`consult audit` and a new release stay possible ("PASSED, except ...")."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys

import pipeline.audit as audit
from builders import response, write_export
from conftest import REPO
from pipeline.config import Paths
from pipeline.instrument import load_instrument
from pipeline.load import connect
from pipeline.anonymity import load_privacy_rules, privacy_path
from pipeline.retention import purge_raw
from pipeline.run import run_load
from pipeline.status import project_status, status_lines

DAY = dt.date(2026, 6, 2)
SKIPPED = ("the identifier check (no identifier in any output), which could not be run for wave 2025 (its raw "
           "exports were deleted with purge-raw on 2026-06-02")


def consult(paths: Paths, *args: str) -> tuple[int, str]:
    command = [sys.executable, "-m", "pipeline.cli", "--root", str(paths.root), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900)
    return done.returncode, done.stdout + done.stderr


def real_wave(project: Paths) -> Paths:
    """A real 2025 export (twelve alike responses, so the microdata checks pass), one respondent named."""
    instrument = load_instrument(project.surveys / "2025" / "instrument.yaml")
    rows = [response(i) for i in range(11)] + [response(11, RecipientFirstName="Ottoline", RecipientLastName="Quarrington")]
    write_export(project.raw / "2025" / "export.csv", instrument, rows)
    run_load(project)
    return project


def publish(paths: Paths) -> None:
    """The release.json purge-raw reads, made from the real export loaded."""
    export = paths.raw / "2025" / "export.csv"
    inputs = [{"file": export.name, "wave": 2025, "sha256": hashlib.sha256(export.read_bytes()).hexdigest()}]
    (paths.site / "data").mkdir(parents=True, exist_ok=True)
    (paths.site / "data" / "release.json").write_text(json.dumps(
        {"version": "2026.1", "date": "2026-06-01", "waves": [2025], "inputs_key": "", "inputs": inputs,
         "audit": "passed", "files": []}), encoding="utf-8")


def test_a_real_warehouse_is_searched_for_its_own_identifiers_not_the_synthetic_ones(project: Paths) -> None:
    from pipeline.audit import identifier_sources, identifier_values

    real_wave(project)  # `project` holds data/synthetic/ too
    rules = load_privacy_rules(privacy_path(project)).audit
    audit._NEEDLES_READ.clear()
    with connect(project.warehouse, read_only=True) as con:
        source, coverage = identifier_sources(project, con)
    assert source == "real" and coverage.waves == [2025] and coverage.missing == []
    needles, _ = identifier_values(project, rules, source)
    synthetic, _ = identifier_values(project, rules, "synthetic")
    assert "ottoline quarrington" in needles
    synthetic_names = {n for n, kinds in synthetic.items() if "full_name" in kinds}
    assert synthetic_names and not synthetic_names & needles.keys()


def test_after_purge_raw_the_identifier_check_says_it_could_not_run(project: Paths) -> None:
    paths = real_wave(project)  # data/synthetic/ is there too: its identifiers prove nothing here
    code, before = consult(paths, "audit")
    assert code == 0, before
    assert "[ok] no identifier in any output" in before and "Disclosure audit: PASSED\n" in before

    publish(paths)
    purge_raw(paths, 2025, today=DAY)
    code, after = consult(paths, "audit")

    # not "[ok] ... 0 identifier values searched": the wave is named, with why and the last real search
    assert code == 0, after
    assert f"Disclosure audit: PASSED, except {SKIPPED}" in after
    assert "[not checked] no identifier in any output: not checked for wave 2025" in after
    assert "[ok] no identifier in any output" not in after
    assert f"last searched for, with no identifier found, by the audit of {dt.date.today().isoformat()}" in after
    written = json.loads(audit.audit_file(paths).read_text(encoding="utf-8"))
    check = next(c for c in written["checks"] if c["name"] == "no identifier in any output")
    assert written["passed"] is True and check["waves_checked"] == [] and [g["wave"] for g in check["not_checked"]] == [2025]

    # a new release after the purge is not impossible, but never silent about it
    code, released = consult(paths, "release")
    assert code == 0, released
    assert f"warning: the disclosure audit PASSED, except {SKIPPED}" in released

    # status says the same as the audit
    status = project_status(paths, today=DAY)
    assert status["audit"]["state"] == "passed" and status["audit"]["except"].startswith(SKIPPED)
    assert any(line.startswith(f"  Audit:        passed, except {SKIPPED}") for line in status_lines(status))

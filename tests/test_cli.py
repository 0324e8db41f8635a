"""The `consult` command as a person uses it: help for every stage, plain errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from builders import response, write_export
from conftest import REPO
from pipeline.config import Paths
from pipeline.instrument import load_instrument

STAGES = ["synth", "ingest", "inspect", "instrument", "validate", "deidentify", "load", "indicators", "report",
          "qa", "quarantine", "audit", "quotes", "release", "run"]


def consult(*args: str, root: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline.cli"] + (["--root", str(root)] if root else []) + list(args)
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)


def test_help_lists_every_stage() -> None:
    result = consult("--help")
    assert result.returncode == 0
    for stage in STAGES:
        assert stage in result.stdout
    for stage in STAGES:
        assert consult(stage, "--help").returncode == 0


def test_ingest_describes_columns_as_json(synthetic_exports: Path) -> None:
    result = consult("ingest", str(synthetic_exports / "2024" / "qualtrics-2024.csv"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["platform"] == "qualtrics" and info["wave"] == 2024
    classes = {c["column"]: c["class"] for c in info["columns"]}
    assert classes["IPAddress"] == "identifier" and classes["Finished"] == "metadata"
    assert classes["Q1"] == "question"


def test_validate_reports_row_column_and_reason(tmp_path: Path) -> None:
    instrument = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    path = write_export(tmp_path / "2025" / "export.csv", instrument, [response(1), response(2, {"hourly_wage": 940})])
    result = consult("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "row 5, question hourly_wage: out_of_range (value '940')" in result.stdout


def test_bad_input_is_one_clear_message_and_a_non_zero_exit(tmp_path: Path) -> None:
    path = tmp_path / "2025" / "empty.csv"
    path.parent.mkdir()
    path.write_text("", encoding="utf-8")
    result = consult("validate", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_load_summary_balances(tmp_path: Path, synthetic_exports: Path) -> None:
    from conftest import make_project

    paths: Paths = make_project(tmp_path / "project")
    export = synthetic_exports / "2023" / "qualtrics-2023.csv"
    target = paths.raw / "2023" / export.name
    target.parent.mkdir(parents=True)
    target.write_bytes(export.read_bytes())
    result = consult("load", root=paths.root)
    assert result.returncode == 0, result.stderr
    total = next(line for line in result.stdout.splitlines() if line.strip().startswith("total")).split()[1:]
    read, loaded, quarantined, excluded, duplicates = map(int, total)
    assert read == loaded + quarantined + excluded + duplicates > 0
    again = consult("load", root=paths.root)
    assert "already loaded" in again.stdout


def test_a_column_matching_no_question_is_named_as_not_stored(tmp_path: Path) -> None:
    # A question added or renamed on the platform without the instrument knowing: its answers would be
    # lost without a word, so validate and load name the column and say how to keep it.
    import csv
    import io

    from conftest import make_project

    paths: Paths = make_project(tmp_path / "project")
    instrument = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    path = write_export(paths.raw / "2025" / "export.csv", instrument, [response(1), response(2), response(3)])
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    extra = ["Q57", "Which new thing matters most?", '{"ImportId":"QID57"}'] + ["more training"] * (len(rows) - 3)
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(row + [value] for row, value in zip(rows, extra))

    checked = consult("validate", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "1 column(s) match no question of the 2025 instrument and were NOT stored: Q57" in checked.stdout
    assert json.loads(consult("validate", str(path), "--json").stdout)["not_stored"] == ["Q57"]

    loaded = consult("load", root=paths.root)
    assert loaded.returncode == 0, loaded.stderr
    assert "export.csv: 1 column(s) match no question of the 2025 instrument and were NOT stored: Q57" in loaded.stdout
    assert "surveys/2025/instrument.yaml" in loaded.stdout
    [summary] = (paths.warehouse.parent / "runs").glob("*/summary.json")
    assert json.loads(summary.read_text(encoding="utf-8"))["files"][0]["not_stored"] == ["Q57"]


def test_the_wave_option_wins_over_the_folder_name(tmp_path: Path) -> None:
    instrument = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    path = write_export(tmp_path / "2025" / "export.csv", instrument, [response(1), response(2)])
    result = consult("validate", "--wave", "2030", str(path))
    assert result.returncode == 2 and "2030" in result.stderr and "Traceback" not in result.stderr
    assert consult("ingest", "--wave", "2025", str(path)).returncode == 0


def test_output_cut_short_by_head_is_not_an_error() -> None:
    # `consult indicators --list | head`: the reader goes away; no "error: [Errno 32] Broken pipe".
    command = [sys.executable, "-m", "pipeline.cli", "indicators", "--list"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    process.stdout.close()  # as `head` does once it has its lines
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=600) == 0
    assert "Broken pipe" not in stderr and "Traceback" not in stderr and "error" not in stderr.lower()


def test_validate_counts_responses_the_warehouse_holds_as_duplicates(tmp_path: Path) -> None:
    # What `consult run` would do with a re-export: the three responses loaded before are duplicates,
    # only the new one would load.
    from conftest import make_project

    paths: Paths = make_project(tmp_path / "project")
    instrument = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    write_export(paths.raw / "2025" / "export.csv", instrument, [response(i) for i in range(1, 4)])
    assert consult("load", root=paths.root).returncode == 0
    again = write_export(tmp_path / "2025" / "export-2.csv", instrument, [response(i) for i in range(1, 5)])
    result = consult("validate", str(again), "--json", root=paths.root)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert (counts["loaded"], counts["duplicate"]) == (1, 3)


def test_ctrl_c_after_the_load_does_not_claim_nothing_was_written(tmp_path: Path, monkeypatch, capsys) -> None:
    """Ctrl-C while `consult run` renders, once the load is committed: the message says the
    warehouse holds the load and what to run, not "nothing was written to the warehouse"."""
    from conftest import make_project
    from pipeline import cli
    from pipeline.load import connect

    paths: Paths = make_project(tmp_path / "project")
    instrument = load_instrument(paths.surveys / "2025" / "instrument.yaml")
    write_export(paths.raw / "2025" / "export.csv", instrument, [response(i) for i in range(6)])

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_quotes", interrupted)
    assert cli.main(["--root", str(paths.root), "run"]) == 130
    said = capsys.readouterr().err
    assert "nothing was written" not in said
    assert "interrupted after the load: the warehouse holds this run's load" in said and "`consult run`" in said
    with connect(paths.warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM load_ledger").fetchone()[0] == 1


def test_the_audit_is_listed_in_full_once_and_later_passes_say_one_line(empty_project, monkeypatch, capsys) -> None:
    import pipeline.audit
    from pipeline.audit import AuditReport, Check
    from pipeline.cli import _audit_passes

    good = [Check("k-anonymity", True, "smallest group 5"), Check("no identifier in any output", True, "none found")]
    reports = iter([
        AuditReport(good, "key"),  # before rendering
        AuditReport(good, "key"),  # the rendered report
        AuditReport([good[0], Check("no identifier in any output", False, "1 found", [{"file": "index.html"}])], "key"),
    ])
    monkeypatch.setattr(pipeline.audit, "run_audit", lambda paths, reuse=None: next(reports))

    first = _audit_passes(empty_project)
    full = capsys.readouterr().err.splitlines()
    assert full[0] == "Disclosure audit: PASSED"
    assert [line for line in full if "[ok]" in line] == ["  [ok] k-anonymity: smallest group 5",
                                                         "  [ok] no identifier in any output: none found"]

    assert _audit_passes(empty_project, rendered=True, earlier=first) is not None
    assert capsys.readouterr().err.splitlines() == [
        "Disclosure audit of the rendered report and release: PASSED, same checks"]

    empty_project.site.mkdir(parents=True)
    assert _audit_passes(empty_project, rendered=True, earlier=first) is None
    failed = capsys.readouterr().err.splitlines()
    assert failed[0] == "Disclosure audit of the rendered report and release: FAILED"
    assert "  [FAIL] no identifier in any output: 1 found" in failed
    assert any("file=index.html" in line for line in failed)  # the failing check in full
    assert not any("k-anonymity" in line for line in failed)  # not the checks that passed again
    assert not empty_project.site.exists()


def test_a_run_says_each_thing_once_and_the_cells_only_when_asked(tmp_path: Path) -> None:
    """`consult run` as an analyst reads it: no line per code cell (unless --verbose), no render-engine
    jargon, the audit of the rendered report and release said once, and a run with nothing new says
    the report is unchanged rather than "rendered"."""
    from conftest import make_project

    paths: Paths = make_project(tmp_path / "project")
    instrument = load_instrument(paths.surveys / "2025" / "instrument.yaml")
    write_export(paths.raw / "2025" / "export.csv", instrument, [response(i) for i in range(1, 40)])

    first = consult("run", "--engine", "offline", root=paths.root)
    assert first.returncode == 0, first.stderr
    said = first.stderr.splitlines()
    assert not [line for line in said if ": cell " in line]
    assert not [line for line in said if "format.html" in line]
    assert any(line.startswith("render index.qmd") for line in said), first.stderr  # still one line per page
    assert len([line for line in said if line.startswith("Disclosure audit of the rendered report")]) == 1
    assert any(line.startswith("report rendered by ") for line in said)

    again = consult("run", "--engine", "offline", root=paths.root)
    assert again.returncode == 0, again.stderr
    said = again.stderr.splitlines()
    assert not [line for line in said if line.startswith("report rendered")]
    assert f"report unchanged (same data, definitions and report sources): {paths.site / 'index.html'}" in said
    assert len([line for line in said if line.startswith("Disclosure audit of the rendered report")]) == 1

    verbose = consult("qa", "--engine", "offline", "--force", "--verbose", root=paths.root)
    assert verbose.returncode == 0, verbose.stderr
    assert "  index.qmd: cell 1" in verbose.stderr.splitlines()


def test_a_command_without_its_action_shows_its_own_actions() -> None:
    # `consult wave` or `consult instrument` alone: the actions of that command, not the list of all commands.
    for command, action in (("wave", "new"), ("instrument", "draft")):
        result = consult(command)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: consult {command} ")
        assert f"    {action} " in result.stdout
        assert "synth" not in result.stdout  # not the top-level list of commands


def test_errors_about_where_a_file_is_say_what_to_do(tmp_path: Path) -> None:
    from conftest import SHARED_FIXTURES, make_project

    instrument = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    loose = write_export(tmp_path / "x.csv", instrument, [response(1), response(2)])
    no_wave = consult("validate", str(loose))
    assert no_wave.returncode == 2
    assert f"cannot tell the wave; give it with --wave (e.g. `consult validate --wave 2025 {loose}`)" in no_wave.stderr

    later = write_export(tmp_path / "2030" / "export.csv", instrument, [response(1), response(2)])
    unknown = consult("validate", str(later))
    assert unknown.returncode == 2
    assert "no instrument for wave 2030" in unknown.stderr
    assert "If 2030 is a new wave, start it with `consult wave new 2030 --from 2025`" in unknown.stderr

    # Checking a file loads nothing: the error does not speak of loading it or moving it out of data/raw/.
    other = consult("deidentify", str(SHARED_FIXTURES / "googleforms" / "googleforms-responses.csv"), "--wave", "2025")
    assert other.returncode == 2 and "this looks like a different survey" in other.stderr
    assert "loaded" not in other.stderr and "move it out" not in other.stderr
    assert "check it against that survey's wave instead (--wave WAVE)" in other.stderr

    paths: Paths = make_project(tmp_path / "project")
    write_export(paths.raw / "loose.csv", instrument, [response(1), response(2)])
    status = consult("status", root=paths.root)
    assert "Next: move the export into data/raw/<wave>/ (the folder named after its wave)" in status.stdout
    assert "(no command)" not in status.stdout


def test_validate_says_a_run_would_skip_a_file_already_loaded(tmp_path: Path) -> None:
    from conftest import make_project

    paths: Paths = make_project(tmp_path / "project")
    instrument = load_instrument(paths.surveys / "2025" / "instrument.yaml")
    path = write_export(paths.raw / "2025" / "export.csv", instrument, [response(i) for i in range(1, 4)])
    before = consult("validate", str(path), root=paths.root)
    assert "already loaded" not in before.stdout
    assert consult("load", root=paths.root).returncode == 0
    after = consult("validate", str(path), root=paths.root)
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith(f"{path}: already loaded (same content as export.csv, wave 2025, loaded ")
    assert "`consult run` skips it, so it would load nothing." in after.stdout
    assert json.loads(consult("validate", str(path), "--json", root=paths.root).stdout)["already_loaded"] is True


def test_deidentify_shows_only_the_rounding_rules_of_questions_the_wave_has(tmp_path: Path) -> None:
    from conftest import SHARED_FIXTURES, make_project
    from pipeline.platforms.draft import draft_instrument

    paths: Paths = make_project(tmp_path / "project")
    export = SHARED_FIXTURES / "googleforms" / "googleforms-responses.csv"
    (paths.surveys / "2027").mkdir()
    (paths.surveys / "2027" / "instrument.yaml").write_text(draft_instrument(export).as_yaml(2027), encoding="utf-8")
    target = paths.raw / "2027" / "x.csv"
    target.parent.mkdir()
    target.write_bytes(export.read_bytes())
    result = consult("deidentify", str(target), root=paths.root)
    assert result.returncode == 0, result.stderr
    assert "respondents would be stored" in result.stdout
    assert "hourly_wage" not in result.stdout and "hours_per_week" not in result.stdout

    instrument = load_instrument(paths.surveys / "2025" / "instrument.yaml")
    wages = write_export(paths.raw / "2025" / "export.csv", instrument, [response(1), response(2)])
    asked = consult("deidentify", str(wages), root=paths.root)
    assert asked.returncode == 0, asked.stderr
    assert "  hourly_wage: rounded to the nearest 0.5" in asked.stdout

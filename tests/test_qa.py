"""The internal QA report and the quarantine workflow: staff see what was wrong, where, and what
the pipeline did about it, without a single identifier; a fixed row is released by re-exporting."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from builders import distinct_responses, export_again, response, write_export
from conftest import loaded_copy, REPO
from pipeline.config import Paths, export_files
from pipeline.qa import quarantined_rows
from pipeline.report import build_qa_report
from pipeline.run import run_load
from test_load import query, raw_identifier_values


@pytest.fixture(scope="module")
def qa_rendered(tmp_path_factory: pytest.TempPathFactory, loaded_template: Path) -> Paths:
    root = tmp_path_factory.mktemp("qa") / "project"
    paths = loaded_copy(loaded_template, root)
    build_qa_report(paths, engine="offline")
    return paths


def page_text(paths: Paths) -> str:
    return (paths.warehouse_dir / "qa" / "index.html").read_text(encoding="utf-8")


def cells(page: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", page, re.S)]


def test_the_qa_report_renders_beside_the_warehouse_not_in_the_public_site(qa_rendered: Paths) -> None:
    assert (qa_rendered.warehouse_dir / "qa" / "index.html").is_file()
    assert not list(qa_rendered.reports.rglob("index.html"))  # nothing rendered into reports/ (the public site)
    assert "Internal: do not publish" in page_text(qa_rendered)


def test_the_qa_report_shows_the_ledger_of_every_file(qa_rendered: Paths) -> None:
    table = cells(page_text(qa_rendered))
    ledger = query(qa_rendered, "SELECT file_name, rows_read, rows_loaded, rows_quarantined, rows_excluded, "
                                "rows_duplicate FROM load_ledger ORDER BY file_name")
    assert len(ledger) == 3
    for name, *counts in ledger:
        start = table.index(name)
        # Wave, file, platform, run, then the five counts and the identity check.
        row = table[start: start + 9]
        assert [int(v.replace(",", "")) for v in row[3:8]] == counts
        assert row[8] == "holds"


def table_rows(page: str, section: str) -> list[list[str]]:
    """The body rows of the first table after the heading with id `section`, as cell texts."""
    assert f'id="{section}"' in page, f"no section {section!r} in the QA report"
    table = re.search(r"<tbody>(.*?)</tbody>", page.split(f'id="{section}"', 1)[1], re.S).group(1)
    return [cells(row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)]


def test_after_a_re_export_the_qa_report_counts_each_response_once_beside_the_rows_read(loaded: Paths) -> None:
    # The runbook's corrected re-export: every response of wave 2025 read a second time.
    rows, received = distinct_responses(loaded)
    export_again(loaded)
    run_load(loaded)
    build_qa_report(loaded, engine="offline")
    page = page_text(loaded)

    shown = {row[0]: [int(v.replace(",", "")) for v in row[1:]] for row in table_rows(page, "responses")}
    assert set(shown) == {"2023", "2024", "2025"}
    responses, loaded_, quarantined, excluded, duplicates, rows_read, files = shown["2025"]
    assert responses == received and (rows_read, files) == (2 * rows, 2)
    assert loaded_ + quarantined + excluded + duplicates == received
    for wave in ("2023", "2024"):  # one export each: as many responses as distinct ids in it
        file_rows, distinct = distinct_responses(loaded, int(wave))
        assert shown[wave][0] == distinct and shown[wave][5:] == [file_rows, 1]
    # the per-file rows stay, both files of 2025 with every row read
    ledger = [row for row in table_rows(page, "ledger") if row[0] == "2025"]
    assert sorted((row[1], int(row[4].replace(",", ""))) for row in ledger) == [
        ("qualtrics-2025-again.csv", rows), ("qualtrics-2025.csv", rows)]
    assert "counts it once per file" in page


def test_the_qa_report_lists_rules_failures_and_flags_from_the_warehouse(qa_rendered: Paths) -> None:
    page = page_text(qa_rendered)
    failing = query(qa_rendered, "SELECT DISTINCT rule FROM validation_rules WHERE rows_failed > 0")
    assert failing and all(rule in page for (rule,) in failing)
    ran = query(qa_rendered, "SELECT count(DISTINCT rule) FROM validation_rules")[0][0]
    assert ran >= 8  # codes, numbers, ranges, dates, required, skip logic, window, rules.yaml
    for (flag,) in query(qa_rendered, "SELECT DISTINCT flag FROM quality_flags"):
        assert flag in page
    for (reason,) in query(qa_rendered, "SELECT DISTINCT reason FROM row_outcomes WHERE outcome IN ('excluded', 'duplicate')"):
        assert reason in page


def test_the_qa_report_contains_no_identifier(qa_rendered: Paths) -> None:
    identifiers = raw_identifier_values(export_files(qa_rendered.synthetic), qa_rendered.surveys)
    assert len(identifiers) > 1000
    page = page_text(qa_rendered)
    leaked = sorted(v for v in identifiers if ("@" in v or len(v) > 8) and v in page)
    assert leaked == []
    assert not set(cells(page)) & identifiers  # not even a short one (a last name) as a table cell


def test_the_qa_report_is_not_rendered_again_when_nothing_changed(qa_rendered: Paths) -> None:
    messages: list[str] = []
    build_qa_report(qa_rendered, engine="offline", progress=messages.append)
    assert any("up to date" in m for m in messages)


# --- releasing a quarantined row ------------------------------------------------------------------


def consult(paths: Paths, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline.cli", "--root", str(paths.root), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)


def test_a_quarantined_row_is_released_by_fixing_it_at_the_source_and_exporting_again(empty_project: Paths) -> None:
    from pipeline.instrument import load_instrument

    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    good = [response(i) for i in range(5)]
    week1 = good + [response(5, {"hourly_wage": 2450}), response(6, {"paid_sick_days": "8"})]
    write_export(empty_project.raw / "2025" / "week1.csv", instrument, week1)
    run_load(empty_project)

    # Staff see what to fix: file, row (header lines count: data starts at line 4), rule, column, value.
    waiting = quarantined_rows(empty_project.warehouse)
    assert [(r.file, r.row, r.status) for r in waiting] == [("week1.csv", 9, "waiting"), ("week1.csv", 10, "waiting")]
    listed = consult(empty_project, "quarantine")
    assert listed.returncode == 0, listed.stderr
    assert "row 9: hourly_wage (column Q13, value '2450'): expected a number from 0 to 150" in listed.stdout
    assert "row 10: paid_sick_days (column Q15, value '8'): " in listed.stdout
    assert "[invalid_code]" in listed.stdout

    # The wage is corrected on the platform; the other row is not yet. The platform exports everything again.
    week2 = good + [response(5), response(6, {"paid_sick_days": "8"}), response(7)]
    write_export(empty_project.raw / "2025" / "week2.csv", instrument, week2)
    summary = run_load(empty_project)
    second = next(f for f in summary.files if f.file == "week2.csv")
    assert (second.read, second.loaded, second.quarantined, second.duplicates) == (8, 2, 1, 5)
    assert query(empty_project, "SELECT count(*) FROM respondents")[0][0] == 7

    rows = {(r.file, r.row): (r.status, r.note) for r in quarantined_rows(empty_project.warehouse)}
    assert rows == {
        ("week1.csv", 9): ("released", "loaded from week2.csv"),
        ("week1.csv", 10): ("quarantined again", "see week2.csv"),
        ("week2.csv", 10): ("waiting", ""),
    }
    listed = consult(empty_project, "quarantine", "--json")
    assert [(r["file"], r["row"]) for r in json.loads(listed.stdout)] == [("week2.csv", 10)]
    only = consult(empty_project, "quarantine", "--file", "week1.csv")
    assert "No quarantined row in week1.csv is waiting" in only.stdout


def _yaml_question(wave_file: Path, concept: str) -> dict:
    """A question of an instrument, read as plain YAML (not through the pipeline)."""
    import yaml

    def walk(node):
        if isinstance(node, dict):
            if node.get("id") == concept and "type" in node:
                yield node
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    return next(walk(yaml.safe_load(wave_file.read_text(encoding="utf-8"))))


def test_quarantine_says_what_was_wrong_in_the_words_of_the_wave_s_definitions(empty_project: Paths) -> None:
    import yaml

    from pipeline.instrument import load_instrument

    wave = empty_project.surveys / "2025"
    instrument = load_instrument(wave / "instrument.yaml")
    rows = [response(i) for i in range(5)] + [
        response(5, {"contract_type": "2", "several_jobs": "1", "hours_per_week": 41}),  # part-time, one job, 41 h
        response(6, {"hours_per_week": 2000}),
    ]
    write_export(empty_project.raw / "2025" / "export.csv", instrument, rows)
    run_load(empty_project)

    declared = {r["id"]: r["message"] for r in yaml.safe_load((wave / "rules.yaml").read_text(encoding="utf-8"))["rules"]}
    hours = _yaml_question(wave / "instrument.yaml", "hours_per_week")
    low, high = hours["range"]["min"], hours["range"]["max"]
    listed = consult(empty_project, "quarantine")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    part_time = next(line for line in lines if line.startswith("  row 9: "))
    assert declared["part_time_hours"] in part_time and "[part_time_hours]" in part_time
    assert "hours_per_week" in part_time and "'41'" in part_time
    too_many = next(line for line in lines if line.startswith("  row 10: "))
    assert f"expected a number from {low} to {high}" in too_many and "[out_of_range]" in too_many
    assert "'2000'" in too_many

    # --json keeps its fields and gains the message
    problems = {r["row"]: r["problems"] for r in json.loads(consult(empty_project, "quarantine", "--json").stdout)}
    assert problems[9] == [{"rule": "part_time_hours", "concept": "hours_per_week", "column": "Q14", "value": "41",
                            "message": declared["part_time_hours"]}]
    assert problems[10][0]["rule"] == "out_of_range" and problems[10][0]["value"] == "2000"
    assert f"from {low} to {high}" in problems[10][0]["message"]


def test_the_run_summary_shows_the_identity_and_the_flags(tmp_path: Path, synthetic_exports: Path) -> None:
    from conftest import make_project

    paths = make_project(tmp_path / "project")
    target = paths.raw / "2023" / "qualtrics-2023.csv"
    target.parent.mkdir(parents=True)
    target.write_bytes((synthetic_exports / "2023" / "qualtrics-2023.csv").read_bytes())
    result = consult(paths, "load")
    assert result.returncode == 0, result.stderr
    assert "read = loaded + quarantined + excluded + duplicates: holds for every file" in result.stdout
    flags = dict(query(paths, "SELECT flag, count(*) FROM quality_flags GROUP BY flag"))
    assert flags  # the synthetic consultation has speeders and straight-lined grids
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("qualtrics-2023.csv:"))
    for flag, count in flags.items():
        assert f"{flag} {count}" in line
    assert "`consult quarantine` lists them" in result.stdout


def test_each_waves_export_csv_is_listed_apart(empty_project: Paths) -> None:
    """The runbook names every wave's file `export.csv`: a quarantined row is listed under its own
    export and wave, never merged with another file of the same name (same row number or not)."""
    from pipeline.instrument import load_instrument

    dated = {column: "2024-03-12 10:00:00" for column in ("StartDate", "EndDate", "RecordedDate")}
    for wave, metadata in ((2024, dated), (2025, {})):
        instrument = load_instrument(empty_project.surveys / str(wave) / "instrument.yaml")
        rows = [response(wave * 10 + i, **metadata) for i in range(4)]
        rows.append(response(wave * 10 + 4, {"hourly_wage": 2450}, **metadata))  # data row 5: line 8
        if wave == 2025:
            rows.append(response(wave * 10 + 5, {"paid_sick_days": "8"}))  # line 9
        write_export(empty_project.raw / str(wave) / "export.csv", instrument, rows)
    run_load(empty_project)

    waiting = quarantined_rows(empty_project.warehouse)
    assert sorted((r.wave, r.file, r.row, len(r.problems)) for r in waiting) == [
        (2024, "export.csv", 8, 1), (2025, "export.csv", 8, 1), (2025, "export.csv", 9, 1)]
    listed = consult(empty_project, "quarantine")
    assert listed.returncode == 0, listed.stderr
    assert "export.csv (wave 2024): 1 quarantined row(s)" in listed.stdout
    assert "export.csv (wave 2025): 2 quarantined row(s)" in listed.stdout


def test_a_re_export_saved_over_the_first_is_listed_apart(empty_project: Paths) -> None:
    """Step 4 of the runbook: export again into the same folder; saved under the same name, the
    response still wrong is 'quarantined again' in the first file and waiting in the second."""
    from pipeline.instrument import load_instrument

    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    target = empty_project.raw / "2025" / "export.csv"
    bad = response(6, {"paid_sick_days": "8"})
    write_export(target, instrument, [response(i) for i in range(5)] + [bad])  # line 9
    run_load(empty_project)
    write_export(target, instrument, [bad] + [response(i) for i in range(5)] + [response(7)])  # line 4
    run_load(empty_project)

    rows = {(r.row, r.status) for r in quarantined_rows(empty_project.warehouse)}
    assert rows == {(9, "quarantined again"), (4, "waiting")}
    listed = consult(empty_project, "quarantine", "--all")
    headings = [line for line in listed.stdout.splitlines() if "quarantined row(s)" in line]
    assert len(headings) == 2 and all(h.startswith("export.csv (wave 2025, loaded ") for h in headings)


def test_the_qa_tables_count_a_re_export_saved_over_the_first_apart(empty_project: Paths,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules run and rows set aside are counted per file: two exports of one wave under one name
    (the runbook's re-export saved over the first) are two files, told apart by their load time."""
    from pipeline import qa
    from pipeline.instrument import load_instrument

    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    target = empty_project.raw / "2025" / "export.csv"
    write_export(target, instrument, [response(i) for i in range(5)] + [response(6, {"paid_sick_days": "8"})])
    run_load(empty_project)
    write_export(target, instrument, [response(i) for i in range(7)])  # 5 seen before, 2 new
    run_load(empty_project)
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(empty_project.warehouse))
    ledger = query(empty_project, "SELECT strftime(loaded_at, '%Y-%m-%d %H:%M:%S'), rows_read, rows_duplicate "
                                  "FROM load_ledger ORDER BY loaded_at")
    assert [(read, dup) for _, read, dup in ledger] == [(6, 0), (7, 5)]
    names = [f"export.csv (loaded {when})" for when, _, _ in ledger]
    # duplicates: only the second file has any, 5 of them, on a row of its own
    duplicates = qa.outcomes_md("duplicate")
    assert names[1] in duplicates and names[0] not in duplicates
    assert re.search(rf"\| 2025 \| {re.escape(names[1])} \|[^\n]*\| 5 \|", duplicates)
    # the rules ran once per file: each file has its own rows, with its own rows checked
    rules = qa.rules_md().split("### Checks that failed")[0]
    assert all(name in rules for name in names)
    failing = qa.rules_md().split("### Checks that failed")[1]
    assert names[0] in failing and names[1] not in failing  # only the first file's paid_sick_days failed


def test_quarantine_takes_the_export_path_status_shows_and_names_the_loaded_ones_for_an_unknown_name(
        empty_project: Paths) -> None:
    from pipeline.instrument import load_instrument

    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    rows = [response(i) for i in range(5)] + [response(5, {"hourly_wage": 2450})]
    write_export(empty_project.raw / "2025" / "export.csv", instrument, rows)
    run_load(empty_project)

    by_path = consult(empty_project, "quarantine", "--file", "data/raw/2025/export.csv")
    assert by_path.returncode == 0, by_path.stderr
    assert "export.csv (wave 2025): 1 quarantined row(s)" in by_path.stdout
    assert "row 9: hourly_wage" in by_path.stdout

    typo = consult(empty_project, "quarantine", "--file", "exprot.csv")
    assert typo.returncode == 2
    assert "No quarantined row" not in typo.stdout
    assert typo.stderr.startswith("error: exprot.csv: no loaded export has this name. Loaded exports:\n  export.csv  wave 2025")
    assert "Next: `consult quarantine --file NAME`" in typo.stderr


def test_an_invalid_code_is_explained_with_the_codes_the_question_has(empty_project: Paths) -> None:
    from pipeline.instrument import load_instrument

    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    write_export(empty_project.raw / "2025" / "export.csv", instrument,
                 [response(i) for i in range(5)] + [response(5, {"paid_sick_days": "8"})])
    run_load(empty_project)
    listed = consult(empty_project, "quarantine")
    assert listed.returncode == 0, listed.stderr
    assert ("row 9: paid_sick_days (column Q15, value '8'): an answer code the question does not have; its codes: "
            '1 "Yes", 2 "No", 3 "Don\'t know" [invalid_code]') in listed.stdout


def test_a_long_list_of_codes_is_cut_short() -> None:
    from pipeline.instrument import Choice, Labels
    from pipeline.qa import problem_meaning

    choices = [Choice(code=str(n), label=Labels(en=f"Region {n}", fr=f"Région {n}")) for n in range(1, 15)]

    class Question:
        id, choices_ = "region", choices

    class Instrument:
        questions = [Question()]

        def choices_of(self, question):
            return question.choices_

    meaning = problem_meaning({"rule": "invalid_code", "concept": "region"}, (Instrument(), None))
    assert meaning.endswith('its codes: 1 "Region 1", 2 "Region 2", 3 "Region 3", 4 "Region 4", 5 "Region 5", '
                            '6 "Region 6", 7 "Region 7", 8 "Region 8", 9 "Region 9", 10 "Region 10", ...')

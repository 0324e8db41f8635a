"""Exports without response ids, two gaps closed:
- a row set aside (quarantined) and fixed on the platform is matched to its fixed version in a later
  export (same submission time to the second, same email, every answer equal except the ones that
  failed), so it counts once, as fixed, and no longer waits for a fix;
- one wave exported once with response ids and once without (export settings changed): the same
  responses are recognised across both kinds of export by their content and load once."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from builders import response, warehouse_rows, write_google_form
from pipeline.cli import main
from pipeline.config import Paths
from pipeline.instrument import load_instrument
from pipeline.qa import quarantined_rows
from pipeline.run import RunError, run_load
from pipeline.synth import limesurvey_csv

STAMPS = [f"3/{day}/2025 10:{day:02d}:{day + 7:02d}" for day in range(14, 20)]
BAD_WAGE, FIXED_WAGE = "2450", "24.5"


def instrument(paths: Paths):
    return load_instrument(paths.surveys / "2025" / "instrument.yaml")


def records_of(path: Path, delimiter: str = ",") -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def write_records(path: Path, records: list[list[str]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(records)
    return path


def wage_column(paths: Paths, header: list[str]) -> int:
    return header.index(instrument(paths).question("hourly_wage").label.en)


def form_with(paths: Paths, name: str, wages: dict[int, str], source: Path | None = None,
              change=None) -> Path:
    """A Google Forms download of the STAMPS responses, the wage of the rows in `wages` (0 = first
    response) set as given; `change(records)` edits it further."""
    base = source or write_google_form(paths.root / "form-source.csv", instrument(paths), STAMPS)
    records = records_of(base)
    column = wage_column(paths, records[0])
    for index, wage in wages.items():
        records[1 + index][column] = wage
    if change is not None:
        records = change(records)
    return write_records(paths.raw / "2025" / name, records)


def status_of(paths: Paths, capsys) -> dict:
    capsys.readouterr()
    assert main(["--root", str(paths.root), "status", "--json"]) == 0
    return next(w for w in json.loads(capsys.readouterr().out)["waves"] if w["wave"] == 2025)


# --- gap 1: a quarantined row without response id, fixed in a later download ------------------------


def test_a_fixed_row_without_response_id_releases_the_row_set_aside(empty_project: Paths, capsys) -> None:
    form_with(empty_project, "week1.csv", {2: BAD_WAGE, 4: BAD_WAGE})
    first = run_load(empty_project).files[0]
    assert (first.loaded, first.quarantined) == (len(STAMPS) - 2, 2)
    # both wages corrected on the platform, but the second response has another answer changed too
    # (possibly someone else: left waiting); the form downloaded again, with one response submitted since
    other = instrument(empty_project).question("paid_sick_days").label.en

    def since(records):
        column = records[0].index(other)
        records[5][column] = "No" if records[5][column] != "No" else "Yes"
        return records + [["3/25/2025 9:00:00", "new@example.org", *records[1][2:]]]

    form_with(empty_project, "week2.csv", {2: FIXED_WAGE, 4: FIXED_WAGE}, change=since)
    second = next(f for f in run_load(empty_project).files if f.file == "week2.csv")
    assert (second.loaded, second.duplicates, second.quarantined) == (3, len(STAMPS) - 2, 0)

    rows = [(r.file, r.row, r.status, r.note) for r in quarantined_rows(empty_project.warehouse)]
    assert rows == [("week1.csv", 4, "released", "loaded from week2.csv"), ("week1.csv", 6, "waiting", "")]
    wave = status_of(empty_project, capsys)
    # each response once: the fixed one is loaded; the other still waits (and is counted apart)
    assert wave["responses"]["read"] == len(STAMPS) + 2
    assert (wave["responses"]["loaded"], wave["responses"]["quarantined"]) == (len(STAMPS) + 1, 1)
    assert wave["quarantine_waiting"] == 1
    assert main(["--root", str(empty_project.root), "quarantine"]) == 0
    assert "row 4" not in capsys.readouterr().out


def test_a_row_set_aside_again_waits_once_and_one_fix_releases_both(empty_project: Paths, capsys) -> None:
    form_with(empty_project, "week1.csv", {2: BAD_WAGE})
    run_load(empty_project)
    form_with(empty_project, "week2.csv", {2: BAD_WAGE},  # downloaded again before the fix
              change=lambda records: records + [["3/25/2025 9:00:00", "new@example.org", *records[1][2:]]])
    run_load(empty_project)
    statuses = [(r.file, r.status) for r in quarantined_rows(empty_project.warehouse)]
    assert statuses == [("week1.csv", "quarantined again"), ("week2.csv", "waiting")]
    assert status_of(empty_project, capsys)["quarantine_waiting"] == 1
    form_with(empty_project, "week3.csv", {2: FIXED_WAGE})
    run_load(empty_project)
    assert {r.status for r in quarantined_rows(empty_project.warehouse)} == {"released"}
    wave = status_of(empty_project, capsys)
    assert (wave["quarantine_waiting"], wave["responses"]["read"], wave["responses"]["quarantined"]) == (
        0, len(STAMPS) + 1, 0)


def test_a_look_alike_beside_the_row_still_set_aside_is_not_its_fix(empty_project: Paths) -> None:
    def no_email(records):
        return [records[0]] + [[r[0], "", *r[2:]] for r in records[1:]]

    first = form_with(empty_project, "week1.csv", {2: BAD_WAGE}, change=no_email)
    run_load(empty_project)
    # the later download still holds the response set aside, unfixed, and a row alike but for the wage
    records = records_of(first)
    look_alike = list(records[3])
    look_alike[wage_column(empty_project, records[0])] = FIXED_WAGE
    write_records(empty_project.raw / "2025" / "week2.csv", records + [look_alike])
    second = next(f for f in run_load(empty_project).files if f.file == "week2.csv")
    assert (second.loaded, second.quarantined) == (1, 1)
    statuses = [(r.file, r.status) for r in quarantined_rows(empty_project.warehouse)]
    assert statuses == [("week1.csv", "quarantined again"), ("week2.csv", "waiting")]


def test_two_rows_set_aside_alike_are_not_matched_and_the_run_says_why(empty_project: Paths, capsys) -> None:
    # two people, no email collected, same second, same answers, both with the wage typed wrong
    def alike(records):
        twin = list(records[3])
        return [records[0], *records[1:3], records[3], twin, *records[4:]]

    def no_email(records):
        return [records[0]] + [[r[0], "", *r[2:]] for r in records[1:]]

    first = form_with(empty_project, "week1.csv", {2: BAD_WAGE}, change=lambda r: no_email(alike(r)))
    assert run_load(empty_project).files[0].quarantined == 2
    records = records_of(first)
    column = wage_column(empty_project, records[0])
    records[3][column] = records[4][column] = FIXED_WAGE
    write_records(empty_project.raw / "2025" / "week2.csv", records)
    second = next(f for f in run_load(empty_project).files if f.file == "week2.csv")
    assert second.loaded == 2
    assert [r.status for r in quarantined_rows(empty_project.warehouse)] == ["waiting", "waiting"]
    assert any("2 row(s) set aside" in note and "none was matched" in note for note in second.notes)


# --- gap 2: one wave exported with response ids, and without ---------------------------------------


def limesurvey(paths: Paths, name: str, numbers: list[int], with_ids: bool) -> Path:
    data = limesurvey_csv(instrument(paths), [response(n) for n in numbers]).decode("utf-8-sig")
    records = list(csv.reader(io.StringIO(data, newline=""), delimiter=";"))
    if not with_ids:  # exported without the Response ID column
        records = [r[1:] for r in records]
    return write_records(paths.raw / "2025" / name, records, delimiter=";")


@pytest.mark.parametrize("first_ids", [True, False], ids=["ids-then-none", "none-then-ids"])
def test_the_same_responses_exported_with_and_without_ids_load_once(empty_project: Paths, capsys,
                                                                   first_ids: bool) -> None:
    limesurvey(empty_project, "a.csv", [1, 2, 3, 4], with_ids=first_ids)
    assert run_load(empty_project).files[0].loaded == 4
    limesurvey(empty_project, "b.csv", [1, 2, 3, 4, 5], with_ids=not first_ids)
    later = next(f for f in run_load(empty_project).files if f.file == "b.csv")
    assert (later.loaded, later.duplicates) == (1, 4)
    assert warehouse_rows(empty_project, "SELECT count(*) FROM respondents") == [(5,)]
    reasons = warehouse_rows(empty_project, "SELECT DISTINCT o.reason FROM row_outcomes o JOIN load_ledger l "
                                            "USING (file_sha256) WHERE l.file_name = 'b.csv' AND outcome = 'duplicate'")
    assert reasons == [("loaded_before_other_export_kind",)]
    wave = status_of(empty_project, capsys)
    assert (wave["responses"]["read"], wave["responses"]["loaded"], wave["responses"]["duplicates"]) == (5, 5, 0)
    # a third export with response ids still recognises every response loaded, whichever way
    limesurvey(empty_project, "c.csv", [1, 2, 3, 4, 5, 6], with_ids=True)
    last = next(f for f in run_load(empty_project).files if f.file == "c.csv")
    assert (last.loaded, last.duplicates) == (1, 5)
    assert status_of(empty_project, capsys)["responses"]["read"] == 6


def test_responses_with_ids_stored_before_content_keys_stop_an_export_without_ids(empty_project: Paths) -> None:
    limesurvey(empty_project, "a.csv", [1, 2, 3], with_ids=True)
    run_load(empty_project)
    import duckdb

    con = duckdb.connect(str(empty_project.warehouse))  # as stored before rows with ids had content keys
    con.execute("UPDATE row_outcomes SET content_key = NULL")
    con.close()
    limesurvey(empty_project, "b.csv", [1, 2, 3], with_ids=False)
    with pytest.raises(RunError, match=r"a\.csv \(3 response\(s\)\).*consult unload"):
        run_load(empty_project)
    assert warehouse_rows(empty_project, "SELECT count(*) FROM respondents") == [(3,)]

"""Exports without a response id (Google Forms, plain tables, Kobo or LimeSurvey exported without
their id column): a later export that repeats the responses loaded before adds no respondent.
Each row is recognised by its content key (submission time, email, every answer; keyed hash)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from builders import warehouse_rows, write_google_form
from conftest import REPO
from pipeline.cli import main
from pipeline.config import Paths
from pipeline.ingest import read_export
from pipeline.instrument import load_instrument
from pipeline.run import RunError, run_load
from pipeline.unload import UnloadError, unload
from pipeline.validate import validate

SAME_CONTENT = "loaded_before_same_content"  # the reason code (spelled out: the tests also run on code without it)

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
SECRET = b"test-secret"
# Unambiguous dates (day above 12) inside the 2025 window, as a Google Sheet in the US writes them.
STAMPS = [f"3/{day}/2025 10:{day:02d}:{day + 7:02d}" for day in range(14, 24)]


def form(path: Path, stamps: list[str]) -> Path:
    return write_google_form(path, INSTRUMENT, stamps)


def checked(path: Path, seen: Counter | None = None):
    return validate(read_export(path, INSTRUMENT), INSTRUMENT, SECRET, seen_contents=seen)


def loaded_contents(result) -> Counter:
    return Counter(result.contents_of("loaded"))


def with_rows(path: Path, change) -> Path:
    """The export at `path` rewritten by `change(records)` (header row first), in place."""
    with path.open(encoding="utf-8", newline="") as handle:
        records = list(csv.reader(handle))
    records = change(records)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(records)
    return path


# --- validate: what matches and what does not ---------------------------------------------------


def copy_of(source: Path, target: Path, change) -> Path:
    """Another export of the same responses: `source`'s records changed by `change(records)`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return with_rows(target, change)


def test_a_later_export_repeating_the_rows_loaded_before_loads_none_of_them(tmp_path: Path) -> None:
    first_file = form(tmp_path / "2025" / "a.csv", STAMPS)
    first = checked(first_file)
    assert first.count("loaded") == len(STAMPS)
    # the same responses in another order, plus one submitted since
    since = form(tmp_path / "since.csv", ["3/24/2025 9:00:00"])
    extra = list(csv.reader(since.open(encoding="utf-8", newline="")))[1]
    extra[1] = "someone.else@example.org"  # another person (the same email would be a resubmission)
    later = checked(copy_of(first_file, tmp_path / "2025" / "b.csv",
                            lambda records: [records[0], *reversed(records[1:]), extra]), loaded_contents(first))
    assert later.outcome.tolist() == ["duplicate"] * len(STAMPS) + ["loaded"]
    assert set(later.reason.tolist()[:-1]) == {SAME_CONTENT}


def test_two_people_answering_alike_in_one_export_are_two_and_match_two_rows_later(tmp_path: Path) -> None:
    # two rows alike in everything (no email collected: the column left empty)
    def alike(records):
        rows = [[r[0], "", *r[2:]] for r in records[1:]]
        return [records[0], rows[0], list(rows[0]), rows[1]]

    first_file = copy_of(form(tmp_path / "source.csv", STAMPS[:2]), tmp_path / "2025" / "a.csv", alike)
    first = checked(first_file)
    assert first.count("loaded") == 3  # a file's rows are never merged with each other on content
    # a later export holds that content three times: two match the two loaded, the third is new
    later = checked(copy_of(first_file, tmp_path / "2025" / "b.csv",
                            lambda records: [records[0], records[1], records[2], records[1], records[3]]),
                    loaded_contents(first))
    assert later.outcome.tolist() == ["duplicate", "duplicate", "loaded", "duplicate"]


def test_an_excel_round_trip_of_the_timestamps_still_matches(tmp_path: Path) -> None:
    first_file = form(tmp_path / "2025" / "a.csv", STAMPS)
    first = checked(first_file)

    def through_excel(records):  # 3/14/2025 10:14:21 becomes 2025-03-14 10:14; cells padded, email in capitals
        rows = [[f"2025-03-{r[0].split('/')[1]} {r[0].split()[1].rsplit(':', 1)[0]}", r[1].upper(),
                 *[f" {c} " if c else c for c in r[2:]]] for r in records[1:]]
        return [records[0], *rows]

    later = checked(copy_of(first_file, tmp_path / "2025" / "b.csv", through_excel), loaded_contents(first))
    assert later.count("duplicate") == len(STAMPS) and later.count("loaded") == 0


def test_a_changed_answer_or_time_is_another_response(tmp_path: Path) -> None:
    first_file = form(tmp_path / "2025" / "a.csv", STAMPS)
    first = checked(first_file)

    def edited(records):  # edited on the platform: the time becomes the edit's; another an answer changed
        records[-1][0] = "3/29/2025 8:00:00"
        records[1][2] = "No"
        return records

    later = checked(copy_of(first_file, tmp_path / "2025" / "b.csv", edited), loaded_contents(first))
    assert later.outcome.iloc[0] != "duplicate" and later.outcome.iloc[-1] == "loaded"
    assert later.count("duplicate") == len(STAMPS) - 2


def test_rows_with_a_response_id_get_a_content_key_too(tmp_path: Path) -> None:
    # kept with them, so that an export of the same wave without response ids is checked against them
    from builders import response, write_export

    result = checked(write_export(tmp_path / "2025" / "q.csv", INSTRUMENT, [response(1), response(2)]), Counter())
    assert result.content_keys.notna().all() and result.response_keys.notna().all()
    assert result.contents_of("loaded") == []  # not counted among the rows loaded without an id


# --- a run: the warehouse, the counts, what the analyst is told ----------------------------------


def gf_project(project: Paths) -> Path:
    return form(project.raw / "2025" / "form.csv", STAMPS)


def again(project: Paths) -> Path:
    """The same responses downloaded again, in another order."""
    return copy_of(project.raw / "2025" / "form.csv", project.raw / "2025" / "again.csv",
                   lambda records: [records[0], *reversed(records[1:])])


def test_a_corrected_google_forms_re_export_adds_no_respondent(project: Paths, capsys) -> None:
    gf_project(project)
    run_load(project)
    # the reviewer's case: the same export with one timestamp broken, then the analyst's corrected one
    path = copy_of(project.raw / "2025" / "form.csv", project.raw / "2025" / "export-baddate.csv",
                     lambda records: [records[0], ["31/31/2025 99:00:00", *records[1][1:]], *records[2:]])
    summary = run_load(project)
    bad = next(f for f in summary.files if f.file == path.name)
    assert (bad.loaded, bad.quarantined, bad.duplicates) == (0, 1, len(STAMPS) - 1)
    assert warehouse_rows(project, "SELECT count(*) FROM respondents") == [(len(STAMPS),)]
    assert bad.notes and f"{len(STAMPS) - 1} row(s) match rows loaded before from form.csv" in bad.notes[0]
    assert "no response ids" in bad.notes[0] and "consult unload export-baddate.csv" in bad.notes[0]
    capsys.readouterr()
    assert main(["--root", str(project.root), "status", "--json"]) == 0
    wave = next(w for w in json.loads(capsys.readouterr().out)["waves"] if w["wave"] == 2025)
    # the set-aside copy cannot be matched to its loaded original (no id): it counts apart, said so
    assert wave["responses"]["read"] == len(STAMPS) + 1
    assert wave["responses"]["loaded"] == len(STAMPS)
    # only keyed hashes are kept (64 hexadecimal digits), one per row read
    assert warehouse_rows(project, "SELECT count(*), count(*) FILTER (WHERE regexp_full_match(content_key, "
                                   "'[0-9a-f]{64}')) FROM row_outcomes") == [(2 * len(STAMPS), 2 * len(STAMPS))]


def test_a_warehouse_with_id_less_rows_from_before_content_keys_stops_the_next_such_export(project: Paths) -> None:
    gf_project(project)
    run_load(project)
    import duckdb

    con = duckdb.connect(str(project.warehouse))
    # as made before content keys existed: no such column (the next run's schema adds it, empty)
    con.execute("ALTER TABLE row_outcomes DROP COLUMN IF EXISTS content_key")
    con.execute("DELETE FROM warehouse_meta WHERE key = 'schema_sha256'")
    con.close()
    assert main(["--root", str(project.root), "status", "--json"]) == 0  # read-only commands still read it
    again(project)
    with pytest.raises(RunError, match=r"form\.csv \(10 response\(s\)\).*consult unload"):
        run_load(project)
    assert warehouse_rows(project, "SELECT count(*) FROM respondents") == [(len(STAMPS),)]


def test_unload_refuses_the_earlier_export_while_a_later_one_holds_its_rows_as_duplicates(project: Paths) -> None:
    first = gf_project(project)
    run_load(project)
    again(project)
    run_load(project)
    first.rename(project.root / "form.csv")  # out of data/raw, as unload asks
    with pytest.raises(UnloadError, match=r"again\.csv \(wave 2025: 10 row\(s\)\)"):
        unload(project, "form.csv")


def test_rows_recognised_by_their_answers_alone_are_said_to_be(tmp_path: Path) -> None:
    from pipeline.run import content_note

    # a table someone assembled: no response id, no time, no email (the form's first two columns dropped)
    table = copy_of(form(tmp_path / "source.csv", STAMPS[:3]), tmp_path / "2025" / "table.csv",
                    lambda records: [r[2:] for r in records])
    first = checked(table)
    assert first.count("loaded") == 3 and first.content_answers_only
    later_file = copy_of(table, tmp_path / "2025" / "again.csv", lambda records: records)
    later = checked(later_file, loaded_contents(first))
    assert later.count("duplicate") == 3
    note = content_note("again.csv", "csv", later, ["table.csv"])
    assert note and "by their answers alone" in note and "set aside wrongly" in note

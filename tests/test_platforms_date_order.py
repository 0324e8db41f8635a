"""Dates that read both ways (03/06/2025, no number above 12): an English Google Sheet writes them
month first in the US and day first in Canada. The wave's collection window decides when it can;
otherwise the run stops and the analyst says which it is (`date_order:` in rules.yaml).

Expected outcomes are worked out here with datetime.strptime and the 2025 window as written in
surveys/2025/instrument.yaml, not with the pipeline's own reading."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from builders import response, write_export, write_google_form
from conftest import REPO
from pipeline.ingest import read_export
from pipeline.instrument import Instrument, load_instrument
from pipeline.validate import StructuralError, validate
from pipeline.wave_rules import RulesError

SECRET = b"test-secret"
OPENS, CLOSES = dt.date(2025, 3, 3), dt.date(2025, 5, 30)  # the 2025 collection window, both days included
DAY_FIRST, MONTH_FIRST = "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S"

# A Canadian sheet (day first), every day 12 or less: 4 March ... 12 May, and one test response sent
# on 2 March, before the survey opened. Read month first most would be in other months (April 3 is
# the only one inside), so the window shows the layout.
CANADIAN = ["04/03/2025 10:00:00", "06/03/2025 11:15:00", "10/03/2025 09:30:00", "11/03/2025 14:00:00",
            "01/04/2025 08:45:00", "02/04/2025 16:20:00", "07/04/2025 10:00:00", "09/04/2025 12:10:00",
            "12/04/2025 19:00:00", "01/05/2025 10:30:00", "06/05/2025 13:00:00", "08/05/2025 09:00:00",
            "12/05/2025 17:45:00", "02/03/2025 09:00:00"]
# A US sheet (month first), every day 12 or less: March 4 ... May 12, and one response on June 2,
# after the survey closed.
AMERICAN = ["3/4/2025 10:00:00", "3/6/2025 11:15:00", "3/10/2025 9:30:00", "3/11/2025 14:00:00",
            "4/1/2025 8:45:00", "4/2/2025 16:20:00", "4/7/2025 10:00:00", "4/9/2025 12:10:00",
            "4/12/2025 19:00:00", "5/1/2025 10:30:00", "5/6/2025 13:00:00", "5/8/2025 9:00:00",
            "5/12/2025 17:45:00", "6/2/2025 9:00:00"]
# 6 March and 5 June, or June 3 and May 6: one inside either way, the window cannot tell.
UNDECIDABLE = ["06/03/2025 10:00:00", "05/06/2025 10:00:00"]


def expected(stamps: list[str], layout: str) -> list[tuple[str, str | None]]:
    """Each response's outcome when its submission time is read with `layout`."""
    inside = [OPENS <= dt.datetime.strptime(s, layout).date() <= CLOSES for s in stamps]
    return [("loaded", None) if ok else ("quarantined", "outside_collection_window") for ok in inside]


def wave_with(tmp_path: Path, setting: str | None) -> Instrument:
    """The 2025 instrument from a copy of surveys/, its rules.yaml ending with `setting`."""
    surveys = tmp_path / "surveys"
    shutil.copytree(REPO / "surveys", surveys)
    if setting is not None:
        rules = surveys / "2025" / "rules.yaml"
        rules.write_text(rules.read_text(encoding="utf-8") + f"\n{setting}\n", encoding="utf-8")
    return load_instrument(surveys / "2025" / "instrument.yaml")


def outcomes(tmp_path: Path, stamps: list[str], setting: str | None = None,
             timestamp: str = "Timestamp") -> list[tuple[str, str | None]]:
    instrument = wave_with(tmp_path, setting)
    export = read_export(write_google_form(tmp_path / "raw" / "2025" / "form.csv", instrument, stamps, timestamp),
                         instrument)
    assert export.platform == "googleforms"
    result = validate(export, instrument, SECRET)
    return list(zip(result.outcome.tolist(), result.reason.tolist()))


def test_the_stamps_are_what_they_say() -> None:
    """The files above show what the tests claim: each layout puts a different set inside."""
    assert expected(CANADIAN, DAY_FIRST) != expected(CANADIAN, MONTH_FIRST)
    assert expected(AMERICAN, MONTH_FIRST) != expected(AMERICAN, DAY_FIRST)
    for stamps in (CANADIAN, AMERICAN, UNDECIDABLE):
        assert all(int(part) <= 12 for s in stamps for part in s.split(" ")[0].split("/")[:2])


def test_a_canadian_google_form_with_no_day_above_12_is_read_day_first_by_the_window(tmp_path: Path) -> None:
    got = outcomes(tmp_path, CANADIAN)
    assert got == expected(CANADIAN, DAY_FIRST)
    assert got.count(("loaded", None)) == 13  # only the test response of 2 March is outside


def test_a_us_google_form_with_no_day_above_12_is_read_month_first_by_the_window(tmp_path: Path) -> None:
    got = outcomes(tmp_path, AMERICAN)
    assert got == expected(AMERICAN, MONTH_FIRST)
    assert got.count(("loaded", None)) == 13  # only the response of June 2 is outside


def test_when_the_window_cannot_tell_the_run_stops_and_says_how_to_declare_it(tmp_path: Path) -> None:
    with pytest.raises(StructuralError) as error:
        outcomes(tmp_path, UNDECIDABLE)
    message = str(error.value)
    for phrase in ("form.csv: row 2, column Timestamp", "3 June or March 6", "2025-03-03 to 2025-05-30",
                   "Nothing was loaded", "date_order: day_first", "date_order: month_first",
                   str(tmp_path / "surveys" / "2025" / "rules.yaml")):
        assert phrase in message, (phrase, message)


@pytest.mark.parametrize("setting, layout", [("day_first", DAY_FIRST), ("month_first", MONTH_FIRST)])
def test_the_declared_date_order_is_obeyed_where_the_window_cannot_tell(tmp_path: Path, setting: str,
                                                                         layout: str) -> None:
    assert outcomes(tmp_path, UNDECIDABLE, f"date_order: {setting}") == expected(UNDECIDABLE, layout)


def test_the_declared_date_order_wins_over_the_windows_guess(tmp_path: Path) -> None:
    """The window reads CANADIAN day first; the analyst says month first: month first it is."""
    assert outcomes(tmp_path, CANADIAN, "date_order: month_first") == expected(CANADIAN, MONTH_FIRST)
    assert outcomes(tmp_path / "us", AMERICAN, "date_order: day_first") == expected(AMERICAN, DAY_FIRST)


def test_the_declared_date_order_wins_over_a_french_sheet(tmp_path: Path) -> None:
    got = outcomes(tmp_path, UNDECIDABLE, "date_order: month_first", timestamp="Horodateur")
    assert got == expected(UNDECIDABLE, MONTH_FIRST)


def test_a_date_that_contradicts_the_declared_order_stops_the_run(tmp_path: Path) -> None:
    """15/03/2025 can only be 15 March: a wave declared month first has the wrong setting (or the
    file comes from another sheet). Read month first it would be no date at all."""
    with pytest.raises(StructuralError) as error:
        outcomes(tmp_path, ["06/03/2025 10:00:00", "15/03/2025 10:00:00"], "date_order: month_first")
    message = str(error.value)
    for phrase in ("form.csv: row 3, column Timestamp", "date_order: month_first", "written day first",
                   "Nothing was loaded", "rules.yaml"):
        assert phrase in message, (phrase, message)


def test_a_file_that_shows_its_order_needs_no_setting_and_agrees_with_one(tmp_path: Path) -> None:
    stamps = ["06/03/2025 10:00:00", "15/03/2025 10:00:00", "05/06/2025 10:00:00"]
    assert outcomes(tmp_path / "a", stamps) == expected(stamps, DAY_FIRST)
    assert outcomes(tmp_path / "b", stamps, "date_order: day_first") == expected(stamps, DAY_FIRST)


@pytest.mark.parametrize("setting", ["date_order: dayfirst", "date_order: DD/MM/YYYY", "date_order: true"])
def test_an_invalid_date_order_names_the_file_and_the_allowed_values(tmp_path: Path, setting: str) -> None:
    with pytest.raises(RulesError) as error:
        outcomes(tmp_path, CANADIAN, setting)
    message = str(error.value)
    assert str(tmp_path / "surveys" / "2025" / "rules.yaml") in message
    assert "date_order" in message and "'day_first' or 'month_first'" in message


def test_a_declared_order_reads_dates_a_spreadsheet_rewrote_in_a_year_first_export(tmp_path: Path) -> None:
    """A Qualtrics export saved again by Excel (03/06/2025, no day above 12) stops the run unless
    the wave declares the order (see test_excel_roundtrip): declared, it is read that way."""
    rows = [response(1, StartDate="06/03/2025 10:00", EndDate="06/03/2025 10:20"),  # 6 March
            response(2, StartDate="05/06/2025 10:00", EndDate="05/06/2025 10:20")]  # 5 June: closed
    for setting, want in [(None, None),
                          ("day_first", [("loaded", None), ("quarantined", "outside_collection_window")]),
                          ("month_first", [("quarantined", "outside_collection_window"), ("loaded", None)])]:
        folder = tmp_path / str(setting)
        instrument = wave_with(folder, setting and f"date_order: {setting}")
        export = read_export(write_export(folder / "raw" / "2025" / "export.csv", instrument, rows), instrument)
        assert export.platform == "qualtrics"
        if want is None:
            with pytest.raises(StructuralError, match="opened in Excel"):
                validate(export, instrument, SECRET)
            continue
        result = validate(export, instrument, SECRET)
        assert list(zip(result.outcome.tolist(), result.reason.tolist())) == want

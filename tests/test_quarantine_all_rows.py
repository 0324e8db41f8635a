"""Every row failing a rule is quarantined, however many fail it: Great Expectations 1.x lists at
most 200 failing values per rule, and the rows past them must not slip into the warehouse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from builders import response, write_export
from pipeline import validate as validate_module
from pipeline.config import Paths
from pipeline.instrument import load_instrument
from pipeline.run import run_load
from pipeline.validate import RuleCountError
from test_load import query

FIRST_DATA_LINE = 4  # a Qualtrics export has 3 header lines: its first response is line 4
HIGH_WAGES, EARLY_STARTS, GOOD, NO_CONSENT, REPEATS = 450, 250, 30, 5, 3


def many_failures(paths: Paths) -> tuple[set[int], set[int]]:
    """An export where two rules each fail on more than 200 rows; returns, worked out from the
    rows written, the spreadsheet row numbers expected to fail each (wage, collection window)."""
    instrument = load_instrument(paths.surveys / "2025" / "instrument.yaml")
    rows = [response(i, {"hourly_wage": 5000}) for i in range(HIGH_WAGES)]  # the range is 0-150
    # The 2025 collection window opens on 2025-03-03.
    rows += [response(HIGH_WAGES + i, StartDate="2025-03-01 10:00:00") for i in range(EARLY_STARTS)]
    rows += [response(1000 + i) for i in range(GOOD)]
    rows += [response(2000 + i, {"consent": "2", "eligible_role": None, "oh_region": None}) for i in range(NO_CONSENT)]
    rows += [response(1000 + i) for i in range(REPEATS)]  # the same response ids again: duplicates
    write_export(paths.raw / "2025" / "export.csv", instrument, rows)
    wages = set(range(FIRST_DATA_LINE, FIRST_DATA_LINE + HIGH_WAGES))
    window = set(range(FIRST_DATA_LINE + HIGH_WAGES, FIRST_DATA_LINE + HIGH_WAGES + EARLY_STARTS))
    return wages, window


def test_every_row_failing_a_rule_is_quarantined_past_any_cap(empty_project: Paths) -> None:
    wages, window = many_failures(empty_project)
    summary = run_load(empty_project)

    issues = query(empty_project, "SELECT rule, source_row, value FROM quarantine_issues")
    assert {row for rule, row, _ in issues if rule == "out_of_range"} == wages
    assert {row for rule, row, _ in issues if rule == "outside_collection_window"} == window
    assert len(issues) == HIGH_WAGES + EARLY_STARTS  # one issue per failing row and rule, no more
    assert {value for rule, _, value in issues if rule == "out_of_range"} == {"5000"}
    quarantined = {r for (r,) in query(empty_project, "SELECT source_row FROM row_outcomes WHERE outcome = 'quarantined'")}
    assert quarantined == wages | window
    failed = dict(query(empty_project, "SELECT rule, rows_failed FROM validation_rules "
                                       "WHERE rule IN ('out_of_range', 'outside_collection_window') AND rows_failed > 0"))
    assert failed == {"out_of_range": HIGH_WAGES, "outside_collection_window": EARLY_STARTS}

    # None of them reached the warehouse: only the good rows are respondents, and the accounting holds.
    (file,) = summary.files
    read = HIGH_WAGES + EARLY_STARTS + GOOD + NO_CONSENT + REPEATS
    assert (file.read, file.loaded, file.quarantined, file.excluded, file.duplicates) == \
        (read, GOOD, HIGH_WAGES + EARLY_STARTS, NO_CONSENT, REPEATS)
    assert file.read == file.loaded + file.quarantined + file.excluded + file.duplicates
    assert query(empty_project, "SELECT count(*) FROM respondents")[0][0] == GOOD
    assert query(empty_project, "SELECT count(*) FROM answers WHERE concept = 'hourly_wage'")[0][0] == GOOD


def test_a_disagreement_with_great_expectations_stops_the_run(empty_project: Paths,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows the pipeline would miss are caught by Great Expectations' own count: nothing is loaded."""
    many_failures(empty_project)
    found = validate_module._failing

    def one_missed(values, spec) -> np.ndarray:
        failing = found(values, spec).copy()
        if spec["rule"] == "out_of_range" and failing.any():
            failing[np.flatnonzero(failing)[-1]] = False
        return failing

    monkeypatch.setattr(validate_module, "_failing", one_missed)
    with pytest.raises(RuleCountError, match=r"export\.csv: rule out_of_range on hourly_wage \(column Q13\)"):
        run_load(empty_project)
    assert not empty_project.warehouse.exists()

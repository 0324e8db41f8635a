"""Data-quality flags: responses that are kept but deserve a second look.

Flags never change a row's outcome. They are computed for every row in scope, stored for loaded
respondents (`quality_flags`, keyed by the random respondent key, no identifier), counted in the run
summary and listed in the internal QA report. Thresholds come from the wave's rules.yaml:
- speeder: finished implausibly fast for the questionnaire;
- straightlining: the same answer to every item of a Likert grid;
- mostly_empty: most of the questions shown were left unanswered;
- any rule of rules.yaml declared with `severity: flag`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.instrument import Instrument, QuestionType
from pipeline.wave_rules import Quality

SPEEDER, STRAIGHTLINING, MOSTLY_EMPTY = "speeder", "straightlining", "mostly_empty"
GRID_ITEM = re.compile(r"^(?P<grid>.+)_\d+$")  # Qualtrics names grid items Q<n>_<row>


@dataclass(frozen=True)
class Grid:
    name: str  # the items' shared concept prefix, stable across waves (e.g. incivility)
    items: tuple[str, ...]


def likert_grids(instrument: Instrument, min_items: int) -> list[Grid]:
    """Likert grids of the instrument with at least `min_items` items, from their column names."""
    grids: dict[str, list[str]] = {}
    for question in instrument.questions:
        match = GRID_ITEM.match(question.aliases[0]) if question.aliases else None
        if question.type is QuestionType.likert and match:
            grids.setdefault(match["grid"], []).append(question.id)
    return [Grid(_common_prefix(items) or stem, tuple(items)) for stem, items in grids.items() if len(items) >= min_items]


def _common_prefix(names: list[str]) -> str:
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return prefix.rstrip("_")


def speeder_threshold(durations: pd.Series, settings: Quality, instrument: Instrument) -> float:
    """Seconds below which a response counts as a speeder (durations: of the rows in scope)."""
    known = durations.dropna()
    rule = settings.speeder
    if len(known) >= rule.min_responses:
        return float(known.median()) * rule.fraction_of_median
    return rule.seconds_per_question * len(instrument.questions)


def quality_flags(
    answers: pd.DataFrame,
    durations: pd.Series,
    shown: pd.Series,
    answered: pd.Series,
    in_scope: pd.Series,
    settings: Quality,
    instrument: Instrument,
) -> pd.DataFrame:
    """One row per flag raised: row (index in the export), flag, detail (grid names).
    `shown`/`answered`: per row, questions shown, and shown and answered."""
    rows = in_scope[in_scope].index
    threshold = speeder_threshold(durations.loc[rows], settings, instrument)
    parts = [_frame(durations.loc[rows] < threshold, SPEEDER)]
    parts.append(_straightlined(answers, rows, likert_grids(instrument, settings.straightlining.min_items)))
    share = answered.loc[rows] / shown.loc[rows].where(shown.loc[rows] > 0)
    parts.append(_frame(share < settings.mostly_empty.min_share_answered, MOSTLY_EMPTY))
    return pd.concat(parts, ignore_index=True)


def _frame(mask: pd.Series, flag: str, detail: pd.Series | None = None) -> pd.DataFrame:
    hit = mask[mask.fillna(False).astype(bool)].index
    details = [None] * len(hit) if detail is None else detail.loc[hit].tolist()
    return pd.DataFrame({"row": list(hit), "flag": [flag] * len(hit), "detail": details}, dtype=object)


def _straightlined(answers: pd.DataFrame, rows: pd.Index, grids: list[Grid]) -> pd.DataFrame:
    same: dict[str, pd.Series] = {}
    for grid in grids:
        if all(item in answers for item in grid.items):
            first = answers[grid.items[0]]
            alike = first.notna().to_numpy(copy=True)
            for item in grid.items[1:]:  # where `first` is an answer, equal to it means answered alike
                alike &= answers[item].to_numpy() == first.to_numpy()
            same[grid.name] = pd.Series(alike, index=answers.index).loc[rows]
    if not same:
        return _frame(pd.Series(False, index=rows), STRAIGHTLINING)
    by_grid = pd.DataFrame(same)
    hit = by_grid.any(axis=1)
    return _frame(hit, STRAIGHTLINING, _grid_names(by_grid[hit]))


def _grid_names(flags: pd.DataFrame) -> pd.Series:
    """Per row, the names of the grids flagged (columns of `flags`), joined by commas. Rows share a
    few combinations: each row's combination becomes a number, each number's names are joined once."""
    combination = flags.to_numpy().astype(np.int64) @ (1 << np.arange(flags.shape[1], dtype=np.int64))
    names = {number: ", ".join(flags.columns[(number >> np.arange(flags.shape[1])) & 1 == 1])
             for number in set(combination.tolist())}
    return pd.Series([names[number] for number in combination.tolist()], index=flags.index, dtype=object)


def rule_flags(failed: dict[str, pd.Series]) -> pd.DataFrame:
    """Flags from rules.yaml rules with `severity: flag` (rule id -> rows failing it)."""
    parts = [_frame(mask, rule_id) for rule_id, mask in failed.items()]
    return pd.concat(parts, ignore_index=True) if parts else _frame(pd.Series(dtype=bool), SPEEDER)

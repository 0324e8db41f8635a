"""Validate: decide what happens to every row of an export, and say why.

Each row read gets exactly one outcome:
- excluded: out of scope by the instrument's inclusion rules (no consent, ineligible) or incomplete;
- duplicate: a repeated submission: the same platform response id (in this file: `same_response_id`,
  or loaded before: `loaded_before`); for a row without a response id (Google Forms, a plain table,
  Kobo or LimeSurvey exported without their id column), the same content as a row loaded from an
  earlier export (`loaded_before_same_content`: submission time, email or username, every answer), or
  the same content as a row of the wave loaded from an export made the other way, with response ids
  where this one has none or the reverse (`loaded_before_other_export_kind`);
  or the same person answering twice (`resubmitted`, judged on answers and timing with the
  thresholds of the wave's rules.yaml);
- quarantined: fails one or more rules run by Great Expectations: rules generated from the
  instrument (codes, numbers, ranges, dates, required answers, skip logic, collection window) and
  the cross-question rules of rules.yaml. Each failed rule is one Issue (reason code, question,
  column, and the value as `shown_value` lets it be shown: words that could be a name are never shown,
  the rest scrubbed of identifiers as open answers are; none where any value could identify someone). Every failing row is found (not only the first 200 Great Expectations lists), and Great
  Expectations' count of them must agree;
- loaded: everything else.
So read = loaded + quarantined + excluded + duplicates, by construction. Data-quality flags
(speeders, straight-lining, mostly empty, `severity: flag` rules) are raised beside the outcome and
never change it.

Structural problems (no rows, an export of another wave or survey, question columns missing) raise
StructuralError and stop the load.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import hmac
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.ingest import Export
from pipeline.instrument import (
    AllOf,
    Condition,
    Disclosure,
    Instrument,
    InstrumentError,
    Question,
    QuestionType,
    ShowIf,
    available_waves,
    instrument_path,
    load_instrument,
)
from pipeline.quality import MOSTLY_EMPTY, SPEEDER, STRAIGHTLINING, quality_flags, rule_flags
from pipeline.wave_rules import CrossRule, Duplicates, Requirement, WaveRules, load_wave_rules, rules_path

if TYPE_CHECKING:
    from pipeline.deidentify import Scrubber

LOADED, QUARANTINED, EXCLUDED, DUPLICATE = "loaded", "quarantined", "excluded", "duplicate"
OUTCOMES = (LOADED, QUARANTINED, EXCLUDED, DUPLICATE)
LOADED_BEFORE, SAME_RESPONSE_ID, RESUBMITTED = "loaded_before", "same_response_id", "resubmitted"
SAME_CONTENT = "loaded_before_same_content"  # no response id: recognised by its content (content_keys)
# one export of the wave with response ids, the other without: recognised by content across the two
OTHER_KIND = "loaded_before_other_export_kind"
OUTSIDE_WINDOW = "outside_collection_window"
# Rules whose failing value says nothing more than the rule itself (or is an exact timestamp).
NO_VALUE_RULES = {"required_missing", OUTSIDE_WINDOW}
TIMESTAMPS = ("started_at", "ended_at")  # identifier columns: checked, never shown
# What the window rule reads when an export has neither a start nor an end time (Google Forms,
# REDCap): the submission time, which must then fall inside the window.
SUBMITTED_AT = "recorded_at"
PREVIEW, SPAM = "preview", "spam"
# Rows that are not answers of the consultation, by the platform's own response type (Qualtrics'
# Status, exported as a number or as text; its DistributionChannel says "preview" too). Imported
# (4) and offline (16) responses are real ones and stay.
NOT_RESPONSES = [
    (SPAM, "status", ["8", "9", "12", "spam", "survey preview spam", "imported spam"]),
    (PREVIEW, "status", ["1", "2", "17", "survey preview", "survey test", "offline survey preview"]),
    (PREVIEW, "distribution_channel", ["preview", "test"]),
]
# What each reason code means, for staff (the QA report, `consult quarantine`). Inclusion rules are
# named in the instrument; rules.yaml rules carry their own message.
RULE_HELP = {
    "invalid_code": "an answer code the question does not have",
    "not_a_number": "a numeric answer that is not a number",
    "out_of_range": "a number outside the question's range",
    "not_a_date": "a date, or the response's start, end or submission time, that cannot be read",
    "required_missing": "a required question was shown but not answered",
    "skip_logic": "an answer to a question the skip logic hid",
    OUTSIDE_WINDOW: "started before the collection window opened or ended after it closed (submitted outside "
                    "it, for a platform that records only the submission time)",
    "incomplete": "the respondent did not finish the questionnaire",
    PREVIEW: "a preview or test response made while building the survey (the platform's response type)",
    SPAM: "a response the survey platform flagged as spam",
    LOADED_BEFORE: "the same response (platform response id) was loaded from an earlier export",
    SAME_CONTENT: "the same response (no response id on this platform: the same submission time, email and every "
                  "answer) was loaded from an earlier export",
    OTHER_KIND: "the same response (the same submission time, email and every answer) was loaded from an earlier "
                "export of the wave made with response ids where this one has none, or the reverse",
    SAME_RESPONSE_ID: "the same response (platform response id) appears twice in the file",
    RESUBMITTED: "the same person answered twice (judged on email or IP address, answers and timing)",
    SPEEDER: "finished implausibly fast for the questionnaire",
    STRAIGHTLINING: "the same answer to every item of a Likert grid",
    MOSTLY_EMPTY: "most questions shown were left unanswered",
}


class StructuralError(ValueError):
    """The export as a whole cannot be loaded; the message names the file and the column."""


@dataclass
class Issue:
    row: int  # index in the export's frame
    source_row: int  # row number as a spreadsheet shows it
    rule: str  # reason code, e.g. invalid_code
    concept: str  # the question (or identifier, for dates) the rule is about
    value: str | None  # shown_value, then scrubbed; None where any value could identify someone
    column: str = ""  # the column as named in the export


@dataclass
class RuleResult:
    rule: str
    concept: str
    column: str
    expectation: str
    checked_rows: int
    failed_rows: int


@dataclass
class Validation:
    outcome: pd.Series  # one of OUTCOMES per row
    reason: pd.Series  # exclusion or duplicate reason; first quarantine rule
    issues: list[Issue] = field(default_factory=list)
    rules: list[RuleResult] = field(default_factory=list)
    response_keys: pd.Series | None = None  # keyed hashes of platform response ids
    gx_result: dict[str, Any] = field(default_factory=dict)
    flags: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["row", "flag", "detail"]))
    # keyed hashes of the content of every row (rows with a response id too: an export of the same
    # wave without ids is checked against them)
    content_keys: pd.Series | None = None
    # the export has no submission time, email or username: content keys are the answers alone
    content_answers_only: bool = False
    # quarantined rows without a response id: the keyed hash of their content without the answers
    # that failed (fix_keys), and which those were (comma-separated), to match a fixed version later
    fix_keys: pd.Series | None = None
    fix_left_out: pd.Series | None = None
    # rows of this export loaded as the fixed version of a row set aside earlier: (row, that row's
    # file, its row number); one row may fix the same response set aside in several exports
    fixes: list[tuple[int, str, int]] = field(default_factory=list)
    ambiguous_fixes: int = 0  # rows set aside earlier that several rows here (or they several) could be
    # the response key each row counts under (row_outcomes.response_key): its own, but for a row matched by
    # content to a row loaded from an export made the other way (OTHER_KIND), which counts as that row does
    counted_as: pd.Series | None = None

    def count(self, outcome: str) -> int:
        return int((self.outcome == outcome).sum())

    def keys_of(self, outcome: str) -> list[str]:
        """Response keys of the rows with this outcome (rows without a response id have none)."""
        if self.response_keys is None:
            return []
        return self.response_keys[self.outcome == outcome].dropna().tolist()

    def contents_of(self, outcome: str) -> list[str]:
        """Content keys of the rows with this outcome and no response id."""
        if self.content_keys is None:
            return []
        chosen = self.outcome == outcome
        if self.response_keys is not None:
            chosen &= self.response_keys.isna()
        return self.content_keys[chosen].dropna().tolist()

    def id_contents_of(self, outcome: str) -> list[tuple[str, str]]:
        """(content key, response key) of the rows with this outcome and a response id."""
        if self.content_keys is None or self.response_keys is None:
            return []
        chosen = (self.outcome == outcome) & self.response_keys.notna() & self.content_keys.notna()
        return list(zip(self.content_keys[chosen].tolist(), self.response_keys[chosen].tolist()))

    def without_ids(self) -> pd.Series:
        """Rows without a platform response id (recognised by their content)."""
        if self.response_keys is None:
            return pd.Series(True, index=self.outcome.index)
        return self.response_keys.isna()

    def loaded_flags(self, keys: pd.Series) -> pd.DataFrame:
        """Flags of the loaded rows under their respondent keys (`keys`: row -> key): no identifier."""
        flagged = self.flags[self.flags["row"].isin(keys.index)]
        return pd.DataFrame({
            "respondent_key": keys.loc[flagged["row"].tolist()].tolist(),
            "flag": flagged["flag"].tolist(),
            "detail": flagged["detail"].tolist(),
        }, dtype=object)

    def flag_counts(self, outcome: str = LOADED) -> dict[str, int]:
        """Respondents with each data-quality flag, among the rows with this outcome."""
        rows = set(self.outcome[self.outcome == outcome].index)
        flagged = self.flags[self.flags["row"].isin(rows)]
        return {str(k): int(v) for k, v in flagged["flag"].value_counts().sort_index().items()}


def validate(
    export: Export,
    instrument: Instrument,
    secret: bytes,
    already_seen: set[str] | frozenset[str] = frozenset(),
    rules: WaveRules | None = None,
    scrubber: "Scrubber | None" = None,
    checking_only: bool = False,
    seen_contents: Mapping[str, int] | None = None,
    seen_id_contents: Mapping[str, list[str]] | None = None,
    waiting: Sequence["WaitingRow"] = (),
) -> Validation:
    """Give every row of `export` its outcome. `already_seen`: response keys loaded before;
    `seen_contents`: content keys of the rows loaded before without a response id, with how many
    rows loaded each (rows without a response id are recognised by them, and rows with one whose id
    was not loaded before); `seen_id_contents`: content keys of the wave's rows loaded before with
    a response id, with their response keys (rows without a response id are recognised by them);
    `waiting`: the wave's rows without a response id set aside earlier and not fixed since;
    `rules`: the wave's rules.yaml (default: the file beside the instrument, if any); `scrubber`:
    what failing values are scrubbed with (default: the one of the instrument's surveys folder);
    `checking_only`: for a command that loads nothing (validate, deidentify), whose errors then do
    not speak of loading."""
    rules = rules if rules is not None else load_wave_rules(instrument)
    if scrubber is None:
        from pipeline.deidentify import scrubber_beside  # deidentify imports this module

        scrubber = scrubber_beside(instrument)
    check_structure(export, instrument, checking_only)
    outcome = pd.Series(LOADED, index=export.answers.index, dtype=object)
    reason = _nones(export.answers.index)
    view = AnswerView(export.answers, instrument)
    _exclusions(export, instrument, view, outcome, reason)
    keys = _response_keys(export, secret)
    _repeated_ids(keys, already_seen, outcome, reason)
    times = _timestamps(export, instrument, rules.date_order, _rules_file(instrument, rules))
    contents = content_keys(export, instrument, times, secret, pd.Series(True, index=export.answers.index))
    counted_as = keys.copy()
    _repeated_contents(contents, counted_as, seen_contents or {}, seen_id_contents or {}, outcome, reason)
    in_scope = outcome == LOADED
    _check_dates(export, instrument, times)
    issues, results, gx_result = _expectations(export, instrument, rules, view, times, in_scope, scrubber)
    for issue in issues:
        if outcome.at[issue.row] == LOADED:
            outcome.at[issue.row] = QUARANTINED
            reason.at[issue.row] = issue.rule
    _resubmissions(export, instrument, rules.duplicates, times, outcome, reason)
    flags = pd.concat([
        quality_flags(export.answers, _durations(export), *view.shown_and_answered(), in_scope, rules.quality,
                      instrument),
        rule_flags({r.id: _rule_fails(view, r) & in_scope for r in rules.by_severity("flag")}),
    ], ignore_index=True)
    answers_only = not (bool(times.notna().to_numpy().any()) or any(
        role in export.identifiers and bool(export.identifiers[role].notna().any()) for role in ("email", "username")))
    held, left_out = _held_fix_keys(export, instrument, times, secret, outcome, keys, issues)
    fixes, ambiguous = match_fixes(export, instrument, times, secret, outcome, waiting)
    return Validation(outcome, reason, issues, results, keys, gx_result, flags, content_keys=contents,
                      content_answers_only=answers_only, fix_keys=held, fix_left_out=left_out, fixes=fixes,
                      ambiguous_fixes=ambiguous, counted_as=counted_as)


def _rules_file(instrument: Instrument, rules: WaveRules) -> str:
    """The wave's rules.yaml, as error messages name it (the file may not exist yet)."""
    return rules.source or str(rules_path(instrument) or f"surveys/{instrument.wave}/rules.yaml")


# --- structure: problems that stop the whole file ---------------------------------------------


# Platforms whose every export has a response id column. LimeSurvey and Kobo let the person
# exporting leave it out (a real LimeSurvey export in ../shared/fixtures has none); Google Forms and
# plain tables have none at all.
WRITE_RESPONSE_IDS = {"qualtrics": "ResponseId", "surveymonkey": "Respondent ID", "redcap": "record_id"}


def check_structure(export: Export, instrument: Instrument, checking_only: bool = False) -> None:
    sheets = "".join(f"; {note}" for note in export.notes if note.startswith("only the first sheet"))
    if export.rows == 0:
        raise StructuralError(f"{export.path}: the export has a header but no responses ("
                              + ("check that this is the survey's export, with its responses" if checking_only else
                                 "if this file is not a survey export, move it out of data/raw/") + f"){sheets}")
    _check_wave(export, instrument)
    _refuse_rounded_ids(export)
    present = set(export.answers.columns)
    questions = instrument.questions
    if len(present) / max(1, len(questions)) < 0.5:
        raise StructuralError(
            f"{export.path}: only {len(present)} of {len(questions)} questions of the "
            f"{instrument.wave} instrument were found; this looks like a different survey{sheets}. "
            + (f"If it is, check it against that survey's wave instead (--wave WAVE); if it is this wave's export, "
               if checking_only else
               "Nothing was loaded. If it is, move it out of data/raw/ (`consult run` reads every file there); if it "
               "is this wave's export, ")
            + f"check that the survey platform's column names match the instrument's aliases "
            f"(`consult inspect {export.path}` lists the columns)"
        )
    missing = [q for q in questions if q.id not in present]
    if missing:
        worded = export.platform in WORDED_HEADERS
        names = ", ".join(f"{q.id} ({_quoted(q.label.en)})" if worded else f"{q.id} (column {q.aliases[0] if q.aliases else q.id})"
                          for q in missing)
        unknown = unknown_columns(export)
        rename = (f"On {export.platform}, columns are named by the question's text: make each question's text on the "
                  f"platform the instrument's wording (case, spacing and apostrophes aside), or add the column's text "
                  f"to the question's aliases in {instrument.source or 'the instrument'}." if worded else
                  "If the platform renamed a question, add the new column name to its aliases in "
                  f"{instrument.source or 'the instrument'}.")
        hint = (f" The file has columns the instrument does not know: {', '.join(unknown[:10])}{_more(unknown, 10)}. "
                f"{rename}" if unknown else " Export every question of the survey (no column filter).")
        if twice := _repeated_names(export):
            hint += f" Some column names appear more than once ({', '.join(twice[:10])}): was one renamed by mistake?"
        raise StructuralError(
            f"{export.path}: question columns of the {instrument.wave} instrument are missing: {names}.{hint}"
        )
    _check_response_ids(export)


def _check_response_ids(export: Export) -> None:
    """Responses loaded before are recognised by their platform response id: an export without the
    column (removed by hand, or a column filter) would load every one of them a second time."""
    column = WRITE_RESPONSE_IDS.get(export.platform)
    if column is not None and "response_id" not in export.identifiers:
        raise StructuralError(
            f"{export.path}: the export has no response id column ({column}), which every {export.platform} export "
            "has: without it a response loaded before cannot be recognised, and would be loaded twice. "
            "Export the responses again with every column (no column filter)."
        )


def _repeated_names(export: Export) -> list[str]:
    names = [c.name.strip() for c in getattr(export, "columns", []) if c.name.strip()]
    return sorted({name for name in names if names.count(name) > 1})


def unknown_columns(export: Export) -> list[str]:
    """Columns of the file that are no question, identifier or platform field the pipeline knows:
    they are not stored, so the run names them (a question renamed on the platform would be lost)."""
    return [c.name for c in getattr(export, "columns", []) if c.kind == "unknown" and c.name.strip()]


def _question_like_columns(export: Export) -> list[str]:
    return [c.name for c in getattr(export, "columns", []) if c.kind in ("question", "unknown") and c.name.strip()]


def _fit(columns: list[str], instrument: Instrument, platform: str) -> tuple[float, int]:
    """How well an export's question columns fit an instrument: (score 0-1, questions matched), by
    column names. Questions of the instrument absent from the file and columns it does not know
    both count against."""
    aliases = {a.strip().lower(): q.id for q in instrument.questions for a in q.aliases_for(platform)}
    names = {c.strip().lower() for c in columns}
    matched = {aliases[n] for n in names if n in aliases}
    strangers = [n for n in names if n not in aliases]
    return len(matched) / max(1, len(instrument.questions) + len(strangers)), len(matched)


def _check_wave(export: Export, instrument: Instrument) -> None:
    """An export of another wave (in the wrong folder) fits that wave's instrument better."""
    columns = _question_like_columns(export)
    own, own_matched = _fit(columns, instrument, export.platform)
    if not columns or own == 1.0:
        return
    for other in _other_waves(instrument):
        score, matched = _fit(columns, other, export.platform)
        if score > max(own, 0.5):  # a file that fits no wave well is a different survey (below)
            raise StructuralError(
                f"{export.path}: this looks like an export of the {other.wave} questionnaire, not "
                f"{instrument.wave}: {matched} of its {len(columns)} question columns are questions of the "
                f"{other.wave} instrument, against {own_matched} of the {instrument.wave} one. Put it in a "
                f"folder named {other.wave} (e.g. data/raw/{other.wave}/)."
            )


def _check_dates(export: Export, instrument: Instrument, times: pd.DataFrame) -> None:
    """Every dated response outside the wave's collection window: another wave's export in this
    wave's folder (one with the same question columns, which _check_wave cannot tell apart), or a
    window typed wrong. Stopped, not quarantined: a file once loaded is skipped by its content, so
    its rows would never load after the file is moved or the window corrected."""
    outside = _outside_window(times, instrument.collection_window)
    dated = times.notna().any(axis=1)
    if not dated.any() or not outside[dated].all():
        return
    months = pd.concat([times[c] for c in times.columns]).dropna()
    when = f"dated {months.min():%Y-%m} to {months.max():%Y-%m}"
    window = instrument.collection_window
    for other in _other_waves(instrument):
        inside = int((~_outside_window(times, other.collection_window) & dated).sum())
        if inside * 2 > int(dated.sum()):
            raise StructuralError(
                f"{export.path}: this looks like an export of the {other.wave} wave: all {int(dated.sum())} dated "
                f"responses ({when}) fall outside the {instrument.wave} collection window ({window.start} to "
                f"{window.end}), and {inside} inside {other.wave}'s. Nothing was loaded. Put it in a folder named "
                f"{other.wave} (e.g. data/raw/{other.wave}/).")
    raise StructuralError(
        f"{export.path}: all {int(dated.sum())} dated responses ({when}) fall outside the {instrument.wave} "
        f"collection window ({window.start} to {window.end}), so none could load. Nothing was loaded. If the file "
        f"is in the wrong folder, move it to data/raw/<its wave>/; if the window is wrong, correct "
        f"collection_window in {instrument.source or 'the instrument'}.")


def _outside_window(times: pd.DataFrame, window) -> pd.Series:
    """Rows started before the window opened or ended after it closed (as the window rule reads them)."""
    outside = pd.Series(False, index=times.index)
    for name in times.columns:
        outside |= _outside(name, times[name], window).fillna(False)
    return outside


def _outside(name: str, stamps: pd.Series, window) -> pd.Series:
    """On datetimes, not dates: a start before the first day's midnight, an end from the midnight
    after the last day; a submission time (the only one some platforms record) either."""
    before = stamps < _midnight(window.start, stamps)
    after = stamps >= _midnight(window.end + dt.timedelta(days=1), stamps)
    if name == "started_at":
        return before
    return after if name == "ended_at" else before | after


# Platforms whose exports name a question's column by its text (no column names to set): a missing
# question is named by its wording, and the fix is the wording, not a column name.
WORDED_HEADERS = frozenset({"surveymonkey", "googleforms"})


def _quoted(text: str) -> str:
    return "“" + " ".join(text.split()) + "”"


def _more(items: list, shown: int) -> str:
    """What a list cut to its first `shown` items leaves out, said (a reader would take it as whole)."""
    return f" and {len(items) - shown} more" if len(items) > shown else ""


def _other_waves(instrument: Instrument) -> list[Instrument]:
    if not instrument.source:
        return []
    surveys = Path(instrument.source).parent.parent
    others = []
    for wave in available_waves(surveys):
        if wave != instrument.wave:
            try:
                others.append(load_instrument(instrument_path(surveys, wave)))
            except InstrumentError:
                continue  # a broken sibling is reported when its own exports are loaded
    return others


# --- exclusions and repeated response ids -----------------------------------------------------


def _exclusions(export: Export, instrument: Instrument, view: "AnswerView", outcome: pd.Series,
                reason: pd.Series) -> None:
    for name, condition in instrument.inclusion.items():
        newly = ~view.holds(condition) & (outcome == LOADED) & ~_unknown_code(view, instrument, condition)
        outcome[newly] = EXCLUDED
        reason[newly] = name
    for name, column, values in NOT_RESPONSES:
        if column in export.metadata:
            newly = _says_one_of(export.metadata[column], values) & (outcome == LOADED)
            outcome[newly] = EXCLUDED
            reason[newly] = name
    if "finished" in export.metadata:
        newly = ~_says_one_of(export.metadata["finished"], ["1", "true"]) & (outcome == LOADED)
        outcome[newly] = EXCLUDED
        reason[newly] = "incomplete"


def _unknown_code(view: "AnswerView", instrument: Instrument, condition: Any) -> pd.Series:
    """Rows answering an inclusion question (consent, eligibility) with a code it does not have: a
    broken export, not a "no". They stay in, so that the question's invalid_code rule quarantines
    them with that reason (and a corrected export loads them)."""
    index = view.answers.index
    question = instrument.question(condition.question) if isinstance(condition, Condition) else None
    if question is None or question.id not in view.answers or question.type is not QuestionType.single:
        return pd.Series(False, index=index)
    codes = [choice.code for choice in instrument.choices_of(question)]
    values = view.answers[question.id]
    return values.notna() & ~values.isin(codes)


def _says_one_of(values: pd.Series, wanted: list[str]) -> pd.Series:
    """Rows whose value, trimmed and in lower case, is one of `wanted` (never a missing value)."""
    return _per_distinct(values, lambda distinct: distinct.astype("string").str.strip().str.lower()
                         .isin(wanted).fillna(False).astype(bool))


def _per_distinct(values: pd.Series, work: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """work(values), done once per distinct value: a column repeats the same few codes, statuses
    or amounts on every row. Missing values (None, NaN) are worked on as one None."""
    codes, distinct = pd.factorize(values)  # code -1: missing
    done = work(pd.Series([*distinct.tolist(), None], dtype=object)).to_numpy()
    return pd.Series(done[codes], index=values.index, name=values.name)  # -1 takes the last: None's


def _nones(index: pd.Index) -> pd.Series:
    # pandas turns a scalar None into NaN; a list of None stays None.
    return pd.Series([None] * len(index), index=index, dtype=object)


def secret_key() -> bytes:
    """The key for keyed hashes of response ids: kept outside the repository and the warehouse.

    $CONSULT_SECRET_FILE, else ~/.config/peerworks-consult/secret.key, created on first use.
    """
    path = os.environ.get("CONSULT_SECRET_FILE") or os.path.join(
        os.path.expanduser("~"), ".config", "peerworks-consult", "secret.key"
    )
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32).hex().encode())
    with open(path, "rb") as handle:
        return handle.read().strip()


# A number as Excel shows one too long for its cell: 1.23457E+11 (French Excel: 1,23457E+11).
EXCEL_ROUNDED = r"^\s*\d(?:[.,]\d+)?E\+\d+\s*$"


def _refuse_rounded_ids(export: Export) -> None:
    """Response ids Excel rewrote as 1.23457E+11: different responses then share an id, and all but
    one would be counted as duplicates and never loaded."""
    if "response_id" not in export.identifiers:
        return
    rounded = export.identifiers["response_id"].astype("string").str.match(EXCEL_ROUNDED, case=False)
    positions = np.flatnonzero(rounded.fillna(False).to_numpy(dtype=bool))
    if len(positions):
        column = _source_columns(export).get("response_id", "response_id")
        raise StructuralError(
            f"{export.path}: row {export.source_row(int(positions[0]))}, column {column}: the response id is "
            f"written as a rounded number (like 1.23457E+11), as Excel saves long numbers, in {len(positions)} "
            "rows. Different responses would then share an id and be counted as duplicates. Export the file "
            "again from the platform and put it in the wave's folder without opening it in Excel (or, from "
            "Excel, save it as an Excel Workbook (.xlsx)). Nothing was loaded.")


def _response_keys(export: Export, secret: bytes) -> pd.Series:
    if "response_id" not in export.identifiers:
        return _nones(export.answers.index)
    keyed = hmac.new(secret, digestmod=hashlib.sha256)  # copied per value: the key is prepared once

    def key(value: str) -> str:
        digest = keyed.copy()
        digest.update(value.encode("utf-8"))
        return digest.hexdigest()

    keys = [key(v) if isinstance(v, str) and v else None for v in export.identifiers["response_id"].tolist()]
    return pd.Series(keys, index=export.answers.index, dtype=object)


def _repeated_ids(keys: pd.Series, already_seen: set[str] | frozenset[str], outcome: pd.Series,
                  reason: pd.Series) -> None:
    earlier = keys.isin(already_seen) & keys.notna() & (outcome == LOADED)
    outcome[earlier] = DUPLICATE
    reason[earlier] = LOADED_BEFORE
    repeated = keys.duplicated(keep="first") & keys.notna() & (outcome == LOADED)
    outcome[repeated] = DUPLICATE
    reason[repeated] = SAME_RESPONSE_ID


# --- rows without a response id: recognised by their content --------------------------------------
#
# Google Forms has no response id, nor has a plain table, nor a Kobo or LimeSurvey export made
# without its id column. A corrected or later export repeats every response loaded before, so each
# row without an id gets a content key: a keyed hash (the response ids' secret) of its submission
# time (the parsed one, to the minute: Excel rewrites 2025-06-03 14:22:05 as 6/3/2025 14:22 and
# drops the seconds; the text as written when it cannot be read), its email and username when the
# export has them, and every answer as read (codes, numbers, sorted choices, trimmed text).
# - Only rows loaded from earlier exports are matched, and each at most once: two rows of one export
#   with the same content are two people (a file's rows are never merged with each other on content
#   alone), and an earlier export that loaded a content twice matches two rows of a later one.
# - A response the respondent edited on the platform after an earlier export (Google Forms' "allow
#   response editing": the timestamp becomes the edit's and answers change) no longer matches: its
#   new version loads beside the old. No id means this cannot be told apart from a new response;
#   the run says so (pipeline/run.py, content_note) and how to replace the earlier export instead.
# The key holds no identifier in the clear; like a response id's, it is stored, the content never.


CONTENT_KEY_VERSION = "content-v1"


def content_keys(export: Export, instrument: Instrument, times: pd.DataFrame, secret: bytes,
                 rows: pd.Series) -> pd.Series:
    """The content key of each row where `rows` is True; None elsewhere."""
    index = export.answers.index
    chosen = np.flatnonzero(rows.reindex(index, fill_value=False).to_numpy(dtype=bool))
    out = _nones(index)
    if not len(chosen):
        return out
    out.iloc[chosen] = _hashed(_content_parts(export, instrument, times, chosen), len(chosen), secret,
                               CONTENT_KEY_VERSION)
    return out


def _content_parts(export: Export, instrument: Instrument, times: pd.DataFrame, chosen: np.ndarray,
                   seconds: bool = False, left_out: frozenset[str] = frozenset()) -> list[list[str]]:
    """Each part of the chosen rows' content as text, one list per column: the times (to the minute,
    or to the second), email, username and every answer, but the columns named in `left_out`."""
    parts: list[list[str]] = []
    layout = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    for name in times.columns:
        if name in left_out:
            continue
        stamps = times[name].iloc[chosen]
        written = export.identifiers[name].iloc[chosen] if name in export.identifiers else stamps
        parts.append(_stamps_text(stamps, written, layout))
    for role in ("email", "username"):
        if role in export.identifiers and role not in left_out:
            parts.append([_cell(v) for v in _normalised(export.identifiers[role].iloc[chosen]).tolist()])
    for question in instrument.questions:
        if question.id not in export.answers or question.id in left_out:
            continue
        values = export.answers[question.id].iloc[chosen]
        if question.type is QuestionType.multiple:
            parts.append(_choices_text(values))
        elif question.type is QuestionType.numeric:  # the number read; as written when it cannot be read
            parts.append(_per_distinct(values, lambda d: pd.Series(
                [_cell(n) if n == n else _cell(v) for n, v in zip(numbers(d).tolist(), d.tolist())], dtype=object)
            ).tolist())
        else:  # once per distinct value: a column repeats the same few codes
            parts.append(_per_distinct(values, lambda d: pd.Series([_cell(v) for v in d.tolist()], dtype=object)).tolist())
    return parts


def _stamps_text(stamps: pd.Series, written: pd.Series, layout: str) -> list[str]:
    """Each time in `layout`; as written where it could not be read (a time in every row of an export
    with ids: vectorised)."""
    if pd.api.types.is_datetime64_any_dtype(stamps):
        text = stamps.dt.strftime(layout).astype(object)
        missing = stamps.isna().to_numpy()
        if missing.any():
            text[missing] = [_cell(w) for w in written[missing].tolist()]
        return text.tolist()
    return [t.strftime(layout) if not pd.isna(t) else _cell(w) for t, w in zip(stamps.tolist(), written.tolist())]


def _choices_text(values: pd.Series) -> list[str]:
    """A multiple choice answer's selected codes, in order and once each; once per distinct selection
    (a few hundred combinations among thousands of rows)."""
    seen: dict[tuple, str] = {}
    out = []
    for v in values.tolist():
        if isinstance(v, list):
            key = tuple(v)
            text = seen.get(key)
            if text is None:
                text = seen[key] = _cell(sorted(set(v)))
        else:
            text = _cell(v)
        out.append(text)
    return out


def _hashed(parts: list[list[str]], rows: int, secret: bytes, version: str) -> list[str]:
    keyed = hmac.new(secret, version.encode(), digestmod=hashlib.sha256)
    keys = []
    for row in zip(*parts) if parts else ([()] * rows):
        digest = keyed.copy()
        digest.update("\x1f".join(row).encode("utf-8"))
        keys.append(digest.hexdigest())
    return keys


def _cell(value: Any) -> str:
    """A cell as the content key reads it: missing as one mark, text trimmed with its spaces collapsed,
    a whole number without its .0, a list as its items."""
    if value is None or (isinstance(value, float) and value != value):
        return "\x00"
    if isinstance(value, list):
        return "\x1e".join(_cell(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = " ".join(str(value).split())
    return text if text else "\x00"


def _repeated_contents(contents: pd.Series, counted_as: pd.Series, seen: Mapping[str, int],
                       seen_with_ids: Mapping[str, list[str]], outcome: pd.Series, reason: pd.Series) -> None:
    """Rows whose content was loaded before: as many as were loaded, in the file's order. A row
    without a response id matches a row loaded without one (SAME_CONTENT) or, failing that, a row of
    the wave loaded with one (OTHER_KIND: it then stands for that response id, so that both count as
    one response); a row with a response id not loaded before matches only a row loaded without one
    (OTHER_KIND: it then counts by content, as that row does). Two rows both with ids are told apart
    by their ids alone. `counted_as`: the rows' response keys, changed for the rows matched across
    the two kinds of export."""
    if not seen and not seen_with_ids:
        return
    left = dict(seen)
    left_with_ids = {key: list(ids) for key, ids in seen_with_ids.items()}
    candidates = contents[contents.notna() & (outcome == LOADED)]
    if not seen:  # then only rows without an id can match (rows loaded with one): a re-export's rows have ids
        candidates = candidates[counted_as.reindex(candidates.index).isna().to_numpy()]
    for row, key in zip(candidates.index.tolist(), candidates.tolist()):
        has_id = isinstance(counted_as.at[row], str)
        if left.get(key, 0) > 0:
            left[key] -= 1
            outcome.at[row], reason.at[row] = DUPLICATE, OTHER_KIND if has_id else SAME_CONTENT
            if has_id:
                counted_as.at[row] = None  # counted by content, as the response it repeats
        elif not has_id and left_with_ids.get(key):
            outcome.at[row], reason.at[row] = DUPLICATE, OTHER_KIND
            counted_as.at[row] = left_with_ids[key].pop(0)


# --- a row set aside without a response id, fixed in a later export ------------------------------
#
# With a response id, a row set aside (quarantined) and fixed on the platform is recognised in the
# corrected export by its id. Without one, each quarantined row keeps a fix key: the keyed hash of
# its submission time (to the second), email, username and every answer except those that failed a
# check (and of which those were). A row a later export loads with the same fix key is its fixed
# version, when nothing else could be: a row set aside matched by several rows of the later export,
# or a row matching several rows set aside (two people who answered alike at the same second, without
# an email), is matched to none, and the run says so. Rows set aside with the same fix key in
# different exports are the same response exported again (within one export, two people).
# A row with neither a readable time nor an email or username left to compare gets no fix key: the
# answers alone would be too weak a match.


FIX_KEY_VERSION = "fix-v1"


@dataclass(frozen=True)
class WaitingRow:
    """A row set aside without a response id, not fixed since."""
    file_sha256: str
    source_row: int
    fix_key: str
    left_out: str  # the columns that failed, comma-separated (question ids, or a time's name)


def _fix_keys(export: Export, instrument: Instrument, times: pd.DataFrame, secret: bytes, chosen: np.ndarray,
              left_out: str) -> list[str | None]:
    """The fix key of the chosen rows, leaving out the columns in `left_out`; None for a row with no
    time and no email or username left to compare."""
    leave = frozenset(filter(None, left_out.split(",")))
    keys = _hashed(_content_parts(export, instrument, times, chosen, seconds=True, left_out=leave), len(chosen),
                   secret, f"{FIX_KEY_VERSION}\x1d{left_out}")
    anchored = np.zeros(len(chosen), dtype=bool)
    for name in times.columns:
        if name not in leave:
            anchored |= times[name].iloc[chosen].notna().to_numpy()
    for role in ("email", "username"):
        if role in export.identifiers and role not in leave:
            anchored |= _normalised(export.identifiers[role].iloc[chosen]).notna().to_numpy()
    return [key if ok else None for key, ok in zip(keys, anchored.tolist())]


def _held_fix_keys(export: Export, instrument: Instrument, times: pd.DataFrame, secret: bytes, outcome: pd.Series,
                   keys: pd.Series, issues: list[Issue]) -> tuple[pd.Series, pd.Series]:
    """The fix key and the columns left out of each quarantined row without a response id."""
    failed: dict[int, set[str]] = {}
    for issue in issues:
        failed.setdefault(issue.row, set()).add(issue.concept)
    held, left = _nones(outcome.index), _nones(outcome.index)
    rows = [row for row in outcome.index[(outcome == QUARANTINED) & keys.isna()].tolist()]
    by_left_out: dict[str, list[int]] = {}
    for row in rows:
        by_left_out.setdefault(",".join(sorted(failed.get(row, set()))), []).append(row)
    for left_out, members in by_left_out.items():
        positions = outcome.index.get_indexer(members)
        for row, key in zip(members, _fix_keys(export, instrument, times, secret, positions, left_out)):
            if key is not None:
                held.at[row], left.at[row] = key, left_out
    return held, left


def match_fixes(export: Export, instrument: Instrument, times: pd.DataFrame, secret: bytes, outcome: pd.Series,
                waiting: Sequence[WaitingRow]) -> tuple[list[tuple[int, str, int]], int]:
    """The rows of this export loaded as the fixed version of a row set aside earlier (row, that
    row's file and row number), and how many rows set aside could not be matched for want of a
    single candidate."""
    # rows set aside here are compared too: one still set aside is that response, not fixed (any
    # loaded row alike is then someone else)
    compared = np.flatnonzero(outcome.isin([LOADED, QUARANTINED]).to_numpy())
    if not waiting or not (outcome == LOADED).any():
        return [], 0
    # one response per (fix key, columns left out, n-th in its file): exported again, it is the same
    groups: dict[tuple[str, str, int], list[WaitingRow]] = {}
    nth: dict[tuple[str, str, str], int] = {}
    for item in sorted(waiting, key=lambda w: (w.file_sha256, w.source_row)):
        count = nth[item.file_sha256, item.left_out, item.fix_key] = nth.get(
            (item.file_sha256, item.left_out, item.fix_key), 0) + 1
        groups.setdefault((item.left_out, item.fix_key, count), []).append(item)
    candidates: dict[tuple, set[int]] = {}  # response set aside -> rows of this export
    claimed: dict[int, set[tuple]] = {}  # row of this export -> responses set aside it matches
    by_key: dict[tuple[str, str], list[tuple]] = {}
    for group in groups:
        by_key.setdefault(group[:2], []).append(group)
    for left_out in sorted({group[0] for group in groups}):
        for position, key in zip(compared.tolist(), _fix_keys(export, instrument, times, secret, compared, left_out)):
            for group in by_key.get((left_out, key), []) if key is not None else []:
                candidates.setdefault(group, set()).add(position)
                claimed.setdefault(position, set()).add(group)
    fixes: list[tuple[int, str, int]] = []
    ambiguous = 0
    for group, positions in candidates.items():
        position = next(iter(positions))
        if len(positions) == 1 and len(claimed[position]) == 1:
            if outcome.iloc[position] == LOADED:
                fixes += [(outcome.index[position], item.file_sha256, item.source_row) for item in groups[group]]
        elif not (outcome.iloc[sorted(positions)] == QUARANTINED).any():
            ambiguous += len(groups[group])
    return fixes, ambiguous


# --- the same person answering twice ------------------------------------------------------------
#
# A resubmission has a new response id, so it is recognised by who sent it and what it says.
# Conservative on purpose: merging two different people loses a respondent, so
# - by email (platform recipient email, else the contact question): the two responses agree on at
#   least `same_email.min_agreement` of the coded questions either answered;
# - by IP address: every coded answer identical, at least `same_ip.min_answers` of them, and the
#   two sessions one after the other (not overlapping; within `same_ip.max_days_apart` days if set).
#   Two people behind one address (an agency network) answering every question alike is unlikely
#   enough with that many answers; two sessions at the same time are two people.
# Only rows that would be loaded, and responses loaded before (`loaded_before`: the respondent is
# already in the warehouse), are compared; quarantined rows are never the one kept. Responses loaded
# before come first, then the rest by start time: the earliest is kept, later ones are duplicates.
# Emails and addresses are compared in memory only and never stored.


def _resubmissions(export: Export, instrument: Instrument, settings: Duplicates, times: pd.DataFrame,
                   outcome: pd.Series, reason: pd.Series) -> None:
    pool = (outcome == LOADED) | reason.isin([LOADED_BEFORE, SAME_CONTENT, OTHER_KIND])
    emails = _normalised(_person_email(export)).where(pool)
    ips = _normalised(export.identifiers["ip_address"]).where(pool) if "ip_address" in export.identifiers \
        else _nones(export.answers.index)
    shared = (emails.notna() & emails.duplicated(keep=False)) | (ips.notna() & ips.duplicated(keep=False))
    if not shared.any():
        return
    candidates = shared[shared].index
    sessions = _sessions(times, candidates)
    earlier = set(candidates[reason.loc[candidates].isin([LOADED_BEFORE, SAME_CONTENT, OTHER_KIND]).to_numpy()])
    rows = sorted(sessions, key=lambda r: (r not in earlier, sessions[r][0] or dt.datetime.max, r))
    answers = _comparable(export.answers.loc[rows], instrument)
    # Plain dicts: the loop below reads one value at a time, which pandas' .at makes slow.
    email_of, ip_of = dict(zip(rows, emails.loc[rows].tolist())), dict(zip(rows, ips.loc[rows].tolist()))
    kept_by_email: dict[str, list[int]] = {}
    kept_by_ip: dict[tuple, list[int]] = {}
    resubmitted = []
    for row in rows:
        email, ip = email_of[row], ip_of[row]
        fingerprint = (ip, answers[row]) if isinstance(ip, str) else None
        same_person = (
            isinstance(email, str)
            and any(_agreement(answers[row], answers[k]) >= settings.same_email.min_agreement
                    for k in kept_by_email.get(email, []))
        ) or (
            fingerprint is not None
            and _answered_count(answers[row]) >= settings.same_ip.min_answers
            and any(_one_after_the_other(sessions[row], sessions[k], settings.same_ip.max_days_apart)
                    for k in kept_by_ip.get(fingerprint, []))
        )
        if same_person and row not in earlier:
            resubmitted.append(row)
            continue
        if isinstance(email, str):
            kept_by_email.setdefault(email, []).append(row)
        if fingerprint is not None:
            kept_by_ip.setdefault(fingerprint, []).append(row)
    outcome.loc[resubmitted] = DUPLICATE
    reason.loc[resubmitted] = RESUBMITTED


def _person_email(export: Export) -> pd.Series:
    """The platform's recipient email, else the email left in the contact question (contact_email)."""
    email = export.identifiers["email"] if "email" in export.identifiers else _nones(export.answers.index)
    question = export.identifier_questions.get("email")
    if question in export.answers:
        email = email.where(email.notna(), export.answers[question])
    return email


def _normalised(values: pd.Series) -> pd.Series:
    """Trimmed, lower-case text (anything else as text first); None where missing or empty."""
    missing = values.isna().tolist()
    text = [None if gone else (v if isinstance(v, str) else str(v)).strip().lower() or None
            for v, gone in zip(values.tolist(), missing)]
    return pd.Series(text, index=values.index, dtype=object)


def _comparable(answers: pd.DataFrame, instrument: Instrument) -> dict[int, tuple]:
    """Each row's coded answers as a tuple (free text and direct identifiers left out)."""
    columns = []
    for question in instrument.questions:
        if question.id not in answers or question.type is QuestionType.text or question.disclosure is Disclosure.direct:
            continue
        values = answers[question.id]
        if question.type is QuestionType.multiple:
            columns.append([tuple(sorted(set(v))) or None if isinstance(v, list) else None for v in values.tolist()])
        elif question.type is QuestionType.numeric:
            columns.append([None if v != v else v for v in numbers(values).tolist()])  # v != v: NaN
        else:
            columns.append([v if isinstance(v, str) else None for v in values.tolist()])
    return dict(zip(answers.index, zip(*columns))) if columns else {row: () for row in answers.index}


def _agreement(a: tuple, b: tuple) -> float:
    either = [(x, y) for x, y in zip(a, b) if x is not None or y is not None]
    return sum(x == y for x, y in either) / len(either) if either else 0.0


def _answered_count(answers: tuple) -> int:
    return sum(v is not None for v in answers)


def _sessions(times: pd.DataFrame, rows: pd.Index) -> dict[int, tuple[dt.datetime | None, dt.datetime | None]]:
    """(start, end) of each row's session; None where unknown."""
    def column(name: str) -> list:
        if name not in times:
            return [None] * len(rows)
        return [None if pd.isna(t) else t.to_pydatetime() for t in times.loc[rows, name].tolist()]

    return dict(zip(rows, zip(column("started_at"), column("ended_at"))))


def _one_after_the_other(a: tuple, b: tuple, max_days: float | None) -> bool:
    """The two sessions do not overlap and the later starts within `max_days` (None: any time) of
    the earlier's end. Unknown timing: not the same person."""
    if None in a or None in b:
        return False
    (first_end, second_start) = (a[1], b[0]) if a[0] <= b[0] else (b[1], a[0])
    gap = second_start - first_end
    return gap >= dt.timedelta(0) and (max_days is None or gap <= dt.timedelta(days=max_days))


# --- answers, shown and answered, computed once per question ------------------------------------


class AnswerView:
    """The export's answers with the masks the rules need, vectorised and computed once."""

    def __init__(self, answers: pd.DataFrame, instrument: Instrument):
        self.answers = answers
        self.instrument = instrument
        self.multiple = {q.id for q in instrument.questions if q.type is QuestionType.multiple}
        self.coded = {q.id for q in instrument.questions if q.type in (QuestionType.single, QuestionType.likert)}
        self._holds: dict[str, pd.Series] = {}
        self._categories: dict[str, pd.Series] = {}
        self._answered: dict[str, pd.Series] = {}
        self._numbers: dict[str, pd.Series] = {}
        self._exploded: dict[str, pd.Series] = {}

    def holds(self, show_if: ShowIf | None) -> pd.Series:
        """Rows for which a condition (skip logic, inclusion rule) holds."""
        if show_if is None:
            return pd.Series(True, index=self.answers.index)
        key = show_if.model_dump_json()
        if key not in self._holds:
            self._holds[key] = self._evaluate(show_if)
        return self._holds[key]

    def _evaluate(self, show_if: ShowIf) -> pd.Series:
        if isinstance(show_if, Condition):
            if show_if.question not in self.answers:
                return pd.Series(False, index=self.answers.index)
            return self._any_code_in(show_if.question, show_if.in_)
        parts = [self.holds(part) for part in (show_if.all if isinstance(show_if, AllOf) else show_if.any)]
        combined = parts[0]
        for part in parts[1:]:
            combined = (combined & part) if isinstance(show_if, AllOf) else (combined | part)
        return combined

    def _any_code_in(self, concept: str, codes: list[str]) -> pd.Series:
        if concept in self.multiple:
            return _any_per_row(self.exploded(concept).isin(codes), self.answers.index)
        values = self.categorical(concept) if concept in self.coded else self.answers[concept]
        return values.isin(codes).astype(bool)

    def categorical(self, concept: str) -> pd.Series:
        """A single-choice column as a categorical: its few codes hashed once, then every check
        (answered, skip logic, allowed codes) works on small integers."""
        if concept not in self._categories:
            self._categories[concept] = _categorical(self.answers[concept])
        return self._categories[concept]

    def exploded(self, concept: str) -> pd.Series:
        """A multiple-choice column as one row per selected code (Series.explode), computed once."""
        if concept not in self._exploded:
            self._exploded[concept] = self.answers[concept].explode()
        return self._exploded[concept]

    def drop_exploded(self) -> None:
        """Free the exploded columns (about twice a column's size each); the masks made from them
        stay. Anything asked later explodes its column again."""
        self._exploded.clear()

    def answered(self, concept: str) -> pd.Series:
        if concept not in self._answered:
            values = self.categorical(concept) if concept in self.coded else self.answers[concept]
            self._answered[concept] = _any_per_row(self.exploded(concept).notna(), values.index) \
                if concept in self.multiple else values.notna().astype(bool)
        return self._answered[concept]

    def numbers(self, concept: str) -> pd.Series:
        if concept not in self._numbers:
            self._numbers[concept] = numbers(self.answers[concept])
        return self._numbers[concept]

    def shown_and_answered(self) -> tuple[pd.Series, pd.Series]:
        """Per response: how many questions it was shown, and how many of those it answered."""
        shown_count = np.zeros(len(self.answers), dtype=np.int64)
        answered_count = np.zeros(len(self.answers), dtype=np.int64)
        for question in self.instrument.questions:
            if question.id in self.answers:
                shown = self.holds(question.show_if).to_numpy()
                shown_count += shown
                answered_count += shown & self.answered(question.id).to_numpy()
        index = self.answers.index
        return pd.Series(shown_count, index=index), pd.Series(answered_count, index=index)


def _categorical(values: pd.Series) -> pd.Series:
    """values.astype("category"), built from one hashing pass (factorize) rather than two."""
    codes, uniques = pd.factorize(values, sort=True)
    dtype = pd.CategoricalDtype(uniques.tolist())  # a list: categories get the dtype astype would infer
    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), index=values.index, name=values.name)


def _any_per_row(exploded: pd.Series, index: pd.Index) -> pd.Series:
    """Back from one row per selected code (Series.explode) to one row per response: any true.
    explode keeps a row for every response (NaN for none selected) under its label: counting the
    true ones per position is all it takes (no groupby)."""
    positions = index.get_indexer(exploded.index)
    hits = np.bincount(positions, weights=exploded.to_numpy(dtype=bool), minlength=len(index))
    return pd.Series(hits > 0, index=index)


def numbers(values: pd.Series) -> pd.Series:
    """Answers to numeric questions as floats (NaN where empty or not a number). A currency sign and
    spaces are ignored; a single comma without a point is a decimal comma, as French exports write."""
    return _per_distinct(values, _parse_numbers)


def _parse_numbers(values: pd.Series) -> pd.Series:
    parsed = pd.to_numeric(values, errors="coerce").astype(float)  # plain numbers: most answers, fast
    retry = parsed.isna() & values.notna()
    if retry.any():
        text = pd.Series(values[retry], dtype="string").str.strip()
        # a dollar sign before or after the number (as ingest's number_text reads it), never inside
        text = text.str.replace(" ", "", regex=False).str.replace(r"^\$|\$$", "", regex=True)
        decimal_comma = ((text.str.count(",") == 1) & ~text.str.contains(".", regex=False)).fillna(False).astype(bool)
        text = text.where(~decimal_comma, text.str.replace(",", ".", regex=False))
        parsed[retry] = pd.to_numeric(text, errors="coerce").astype(float)
    return parsed


def _durations(export: Export) -> pd.Series:
    if "duration_s" not in export.metadata:
        return pd.Series(float("nan"), index=export.answers.index)
    return numbers(export.metadata["duration_s"])


def _timestamps(export: Export, instrument: Instrument, date_order: str | None = None,
                rules_file: str = "rules.yaml") -> pd.DataFrame:
    """Start and end of each response as datetimes (NaT when missing or unreadable), or its
    submission time when the export has neither (SUBMITTED_AT). In memory only. `date_order`: the
    wave's rules.yaml setting (day_first, month_first or None), declared in `rules_file`."""
    names = [name for name in TIMESTAMPS if name in export.identifiers]
    if not names and SUBMITTED_AT in export.identifiers:
        names = [SUBMITTED_AT]
    iso: dict[str, pd.Series] = {}
    others: dict[str, pd.Series] = {}  # the dates that are not ISO, as written: their layout is to be found
    for name in names:
        parsed, local, retry = _read_iso(export.identifiers[name])
        iso[name] = parsed
        if retry.any():
            others[name] = local[retry]
    stamps = pd.DataFrame(iso, index=export.answers.index)
    if not others:
        return stamps
    # One layout per file: every date that is not ISO is read the same way.
    parts = {name: _day_and_month(text) for name, text in others.items()}
    day_first = _known_order(export, parts, date_order, rules_file)
    if day_first is not None:
        return _with_others(stamps, others, day_first)
    _refuse_undecidable_dates(export, parts)
    return _with_others(stamps, others, _by_window(export, instrument, stamps, parts, rules_file))


def _day_and_month(text: pd.Series) -> pd.DataFrame:
    """The two numbers before the year of dates like 03/06/2025 (columns 0 and 1), and the year
    (column 2); NaN for other layouts. Vectorised: only the dates that are not ISO get here."""
    return text.astype("string").str.extract(DAY_AND_MONTH).astype(float)


def _known_order(export: Export, parts: dict[str, pd.DataFrame], date_order: str | None,
                 rules_file: str) -> bool | None:
    """Whether the dates that are not ISO are day first, when something says so: the wave's
    rules.yaml, the platform (a French Google Sheet), or a date that can be read one way only (a
    number above 12 before the month or before the day). None: both readings are possible."""
    every = pd.concat(parts.values())
    first_only, second_only = bool((every[0] > 12).any()), bool((every[1] > 12).any())
    if date_order is not None:
        _refuse_contradicted_order(export, parts, date_order, rules_file)
        return date_order == "day_first"
    if export.day_first or first_only:
        return True
    if second_only or not _differ(every).any():
        return False  # month first, or the two readings give the same dates
    return None


def _differ(part: pd.DataFrame) -> pd.Series:
    """Dates whose day-first and month-first readings are different days (03/06, not 03/03)."""
    return ((part[0] != part[1]) & part[0].notna() & part[1].notna()).fillna(False).astype(bool)


def _with_others(stamps: pd.DataFrame, others: dict[str, pd.Series], day_first: bool) -> pd.DataFrame:
    """The ISO timestamps with the other dates read day first or month first."""
    stamps = stamps.copy()
    for name, text in others.items():  # other layouts (e.g. 3/10/2025 10:00) are parsed one by one
        stamps.loc[text.index, name] = pd.to_datetime(text, errors="coerce", format="mixed", dayfirst=day_first)
    return stamps


def _by_window(export: Export, instrument: Instrument, stamps: pd.DataFrame, parts: dict[str, pd.DataFrame],
               rules_file: str) -> bool:
    """Whether dates that read both ways (03/06/2025 with no day above 12, e.g. an English Google
    Sheet: month first in the US, day first in Canada) are day first, by the reading that fits the
    collection window. Stop when the window does not tell them apart: a guess would move responses
    in or out of the window and match the wrong resubmissions, without anyone knowing."""
    window = instrument.collection_window
    day, month = _read_days(stamps, parts, True), _read_days(stamps, parts, False)
    out_day, out_month = int(_outside_window(day, window).sum()), int(_outside_window(month, window).sum())
    if _clearly_fewer(out_day, out_month) or _clearly_fewer(out_month, out_day):
        return _clearly_fewer(out_day, out_month)
    name, part = next((name, part) for name, part in parts.items() if _differ(part).any())
    column = _source_columns(export).get(name, name)
    position = export.identifiers.index.get_loc(part.index[_differ(part).to_numpy()][0])
    dated = int(day.notna().any(axis=1).sum())
    raise StructuralError(
        f"{export.path}: row {export.source_row(int(position))}, column {column}: the dates are written with the "
        "day and the month before the year (like 03/06/2025) and none has a number above 12 before the year, so "
        "it cannot be told whether 03/06 is 3 June or March 6 (a Google Sheet writes dates as its locale does: "
        "month first in the US, day first in Canada or the UK). The collection window "
        f"({window.start} to {window.end}) does not tell either: read day first, {out_day} of the {dated} dated "
        f"responses fall outside it; read month first, {out_month}. Nothing was loaded. Say how this wave's "
        f"exports write dates: add the line `date_order: day_first` (03/06/2025 is 3 June) or "
        f"`date_order: month_first` (03/06/2025 is March 6) to {rules_file}, then run again.")


def _read_days(stamps: pd.DataFrame, parts: dict[str, pd.DataFrame], day_first: bool) -> pd.DataFrame:
    """The ISO timestamps with the other dates as their day alone (midnight), read day or month
    first: built from the numbers already found (vectorised, not parsed again), and enough for the
    window, which counts whole local days."""
    stamps = stamps.copy()
    for name, part in parts.items():
        year = part[2].where(part[2] >= 100, part[2] + 2000)  # Excel's 3/6/25
        day, month = (part[0], part[1]) if day_first else (part[1], part[0])
        days = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce")
        stamps.loc[part.index, name] = days.astype(stamps[name].dtype)
    return stamps


def _clearly_fewer(outside: int, other: int) -> bool:
    """One reading leaves clearly fewer responses outside the window than the other: none when the
    other leaves some out, or at most a tenth as many (a few test responses sent before the survey
    opened do not hide the layout of hundreds of real ones)."""
    return outside < other and outside * 10 <= other


def _refuse_contradicted_order(export: Export, parts: dict[str, pd.DataFrame], date_order: str,
                               rules_file: str) -> None:
    """A date that can only be read the other way than rules.yaml says: the setting is wrong, or the
    file comes from a sheet that writes dates differently. Reading it as declared would give no date."""
    place = 1 if date_order == "day_first" else 0  # the month's place, as declared
    for name, part in parts.items():
        wrong = part.index[(part[place] > 12).fillna(False).to_numpy(dtype=bool)]
        if len(wrong):
            column = _source_columns(export).get(name, name)
            position = export.identifiers.index.get_loc(wrong[0])
            declared, other = ("day first", "month first") if date_order == "day_first" else ("month first", "day first")
            raise StructuralError(
                f"{export.path}: row {export.source_row(int(position))}, column {column}: {rules_file} says this "
                f"wave's dates are written {declared} (date_order: {date_order}), but this date has a number above "
                f"12 where the month would be, so it is written {other}. Nothing was loaded. Correct date_order in "
                f"{rules_file}, or remove it (each file's dates are then read as the file and the collection "
                "window show).")


# Platforms that write dates year first (2025-06-03 14:22:05). A date written day and month first
# in their export was rewritten by a spreadsheet: Excel saves dates in the computer's own format.
YEAR_FIRST_PLATFORMS = frozenset({"qualtrics", "limesurvey", "kobo", "redcap"})
DAY_AND_MONTH = r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})\b"  # day or month, month or day, year


def _refuse_undecidable_dates(export: Export, parts: dict[str, pd.DataFrame]) -> None:
    """Stop when a spreadsheet rewrote the dates as 03/06/2025 and nothing in the file says whether
    that is 3 June or March 6 (no day above 12): a guess would move responses in or out of the
    collection window and match the wrong resubmissions, without anyone knowing. `parts`: the day
    and month places of the dates that are not ISO (see _day_and_month), when neither shows the order."""
    if export.platform not in YEAR_FIRST_PLATFORMS:
        return
    for name, part in parts.items():
        undecided = part.index[_differ(part).to_numpy()]
        if len(undecided):  # only the dates not written year first are here: their index says where
            column = _source_columns(export).get(name, name)
            position = export.identifiers.index.get_loc(undecided[0])
            raise StructuralError(
                f"{export.path}: row {export.source_row(int(position))}, column {column}: the dates are "
                "written with the day and the month before the year (like 03/06/2025) and none has a number above 12 "
                "before the year, so it cannot be told "
                "whether 03/06 is 3 June or March 6. The survey platform writes dates year first "
                "(2025-06-03 14:22:05): the file was most likely opened in Excel and saved again as CSV. Export "
                "it again from the platform and put it in the wave's folder without opening it in Excel (or, "
                "from Excel, save it as an Excel Workbook (.xlsx), which keeps the dates as they were). "
                "Nothing was loaded.")


def _day_first(values: pd.Series) -> bool:
    """Whether dates are written day first (15/03/2025, as a spreadsheet set to a Canadian, French
    or British locale saves them): some date starts with a number above 12 before a / or a dot."""
    text = values.dropna().astype("string").str.strip()
    return bool(text.str.match(DAY_FIRST).fillna(False).any())


DAY_FIRST = r"^(1[3-9]|2\d|3[01])[/.]\d{1,2}[/.]\d{2,4}\b"


def _parse_datetimes(values: pd.Series, day_first: bool | None = None) -> pd.Series:
    """Datetimes as written (NaT when missing or unreadable). A UTC offset after the time (Kobo,
    ISO 8601: 10:00:00-05:00) is dropped: the time is read as the local time written, as the
    collection window is in local days, and one file may mix offsets (daylight saving time).
    Dates that are not ISO (3/10/2025) are read month first unless `day_first` (by default: when
    some of them can only be day first, see _day_first). The response timestamps are read by
    _timestamps, which also looks at the wave's rules.yaml and collection window."""
    parsed, local, retry = _read_iso(values)
    if retry.any():  # other layouts (e.g. 3/10/2025 10:00) are rare: parsed one by one
        if day_first is None:
            day_first = _day_first(local[retry])
        parsed[retry] = pd.to_datetime(local[retry], errors="coerce", format="mixed", dayfirst=day_first)
    return parsed


def _read_iso(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """The ISO datetimes of `values` (NaT elsewhere, vectorised), the values with any UTC offset
    dropped, and which of them are not ISO (to be read in another layout)."""
    try:
        parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
    except ValueError:  # offsets that differ from row to row
        parsed = None
    local = values
    if parsed is None or getattr(parsed.dtype, "tz", None) is not None:
        local = values.astype("string").str.strip().str.replace(UTC_OFFSET, r"\1", regex=True)
        parsed = pd.to_datetime(local, errors="coerce", format="ISO8601")
    return parsed, local, parsed.isna() & local.notna()


# An offset from UTC right after a time of day (10:00, 10:00:00, 10:00:00.123), then nothing else.
UTC_OFFSET = r"(\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"


# --- rules generated from the instrument and rules.yaml, run by Great Expectations --------------


def _rule_columns(export: Export, instrument: Instrument, rules: WaveRules, view: AnswerView,
                  times: pd.DataFrame, in_scope: pd.Series) -> tuple[pd.DataFrame, list[dict]]:
    """Derived columns that make each rule a plain column expectation, and the rule specs."""
    columns: dict[str, pd.Series] = {}
    specs: list[dict] = []
    source = _source_columns(export)
    for question in instrument.questions:
        if question.id not in view.answers:
            continue
        column = source.get(question.id, question.id)
        specs += _question_rules(question, instrument, view, columns, column)
        shown, answered = view.holds(question.show_if), view.answered(question.id)
        if question.required:
            columns[f"{question.id}__required_missing"] = shown & ~answered
            specs.append(_spec("required_missing", question, f"{question.id}__required_missing", "false", column))
        if question.show_if is not None:
            columns[f"{question.id}__answered_when_hidden"] = ~shown & answered
            specs.append(_spec("skip_logic", question, f"{question.id}__answered_when_hidden", "false", column,
                               value_from="answer"))
    specs += _window_rules(export, instrument, times, columns, source)
    for rule in rules.by_severity("quarantine"):
        columns[f"rule__{rule.id}"] = _rule_fails(view, rule)
        target = instrument.question(rule.require.question)
        specs.append(_spec(rule.id, target, f"rule__{rule.id}", "false", source.get(target.id, target.id),
                           value_from="answer"))
    view.drop_exploded()  # every mask is built: freed before the frame's copies, the memory peak
    return pd.DataFrame(columns)[in_scope.to_numpy()], specs


def _source_columns(export: Export) -> dict[str, str]:
    """Concept id or identifier name -> the column name in the file."""
    return {c.maps_to: c.name for c in getattr(export, "columns", []) if c.maps_to}


def _question_rules(question: Question, instrument: Instrument, view: AnswerView,
                    columns: dict[str, pd.Series], column: str) -> list[dict]:
    values = view.answers[question.id]
    codes = [c.code for c in instrument.choices_of(question)]
    if question.type in (QuestionType.single, QuestionType.likert):
        columns[question.id] = view.categorical(question.id)
        return [_spec("invalid_code", question, question.id, "in_set", column, value_set=codes)]
    if question.type is QuestionType.multiple:
        exploded = view.exploded(question.id)
        unknown = exploded[exploded.notna() & ~exploded.isin(codes)]
        joined = unknown.groupby(level=0).agg(",".join) if len(unknown) else pd.Series(dtype=object)
        columns[f"{question.id}__unknown_codes"] = joined.reindex(values.index).astype(object)
        return [_spec("invalid_code", question, f"{question.id}__unknown_codes", "null", column)]
    if question.type is QuestionType.numeric:
        number = view.numbers(question.id)
        columns[f"{question.id}__not_a_number"] = values.where(values.notna() & number.isna())
        specs = [_spec("not_a_number", question, f"{question.id}__not_a_number", "null", column)]
        if question.range is not None:
            columns[f"{question.id}__number"] = number
            specs.append(_spec("out_of_range", question, f"{question.id}__number", "between", column,
                               value_from="answer", min_value=question.range.min, max_value=question.range.max))
        return specs
    if question.type is QuestionType.date:
        dates = _parse_datetimes(values)
        columns[f"{question.id}__not_a_date"] = values.where(values.notna() & dates.isna())
        return [_spec("not_a_date", question, f"{question.id}__not_a_date", "null", column)]
    return []


def _window_rules(export: Export, instrument: Instrument, times: pd.DataFrame,
                  columns: dict[str, pd.Series], source: dict[str, str]) -> list[dict]:
    """Responses started before the collection window opened or ended after it closed (or, with
    only a submission time, submitted outside it: see _timestamps). The timestamps are
    identifiers: only the derived true/false columns reach Great Expectations."""
    window = instrument.collection_window
    specs = []
    for name in times.columns:
        stamps, raw = times[name], export.identifiers[name]
        outside = _outside(name, stamps, window)
        columns[f"{name}__unreadable"] = raw.notna() & stamps.isna()
        columns[f"{name}__outside_window"] = outside.fillna(False).astype(bool)
        specs.append(_identifier_spec("not_a_date", name, f"{name}__unreadable", source.get(name, name)))
        specs.append(_identifier_spec(OUTSIDE_WINDOW, name, f"{name}__outside_window", source.get(name, name)))
    return specs


def _midnight(day: dt.date, stamps: pd.Series) -> pd.Timestamp:
    """The start of `day` in the time zone of `stamps` (their local day is the one that counts)."""
    return pd.Timestamp(day).tz_localize(stamps.dt.tz)


def _rule_fails(view: AnswerView, rule: CrossRule) -> pd.Series:
    """Rows where a rules.yaml rule applies (`when`) and its requirement does not hold."""
    return view.holds(rule.when) & ~_requirement_holds(view, rule.require)


def _requirement_holds(view: AnswerView, need: Requirement) -> pd.Series:
    concept = need.question
    if concept not in view.answers:
        return pd.Series(True, index=view.answers.index)
    answered = view.answered(concept)
    if need.answered is not None:
        return answered if need.answered else ~answered
    if need.codes:
        selected = view.holds(Condition.model_validate({"question": concept, "in": need.codes}))
        return ~answered | (selected if need.in_ is not None else ~selected)
    number = view.numbers(concept)
    within = pd.Series(True, index=number.index)
    if need.at_least is not None:
        within &= number >= need.at_least
    if need.at_most is not None:
        within &= number <= need.at_most
    return number.isna() | within


def _spec(rule: str, question: Question, column: str, kind: str, source_column: str,
          value_from: str = "unexpected", **kwargs: Any) -> dict:
    identifying = question.disclosure is Disclosure.direct or question.type is QuestionType.text
    return {"rule": rule, "concept": question.id, "column": column, "kind": kind, "source_column": source_column,
            "value_from": None if identifying or rule in NO_VALUE_RULES else value_from, **kwargs}


def _identifier_spec(rule: str, name: str, column: str, source_column: str) -> dict:
    return {"rule": rule, "concept": name, "column": column, "kind": "false", "source_column": source_column,
            "value_from": None}


def _expectations(export: Export, instrument: Instrument, rules: WaveRules, view: AnswerView,
                  times: pd.DataFrame, in_scope: pd.Series,
                  scrubber: "Scrubber") -> tuple[list[Issue], list[RuleResult], dict]:
    rows = in_scope[in_scope].index
    frame, specs = _rule_columns(export, instrument, rules, view, times, in_scope)
    if frame.empty or not specs:
        return [], [], {}
    result = _run_gx(frame, specs, name=f"wave-{instrument.wave}")
    issues: list[Issue] = []
    results: list[RuleResult] = []
    for outcome in result.results:
        spec = specs[int(outcome.expectation_config.meta["spec"])]
        failed = frame.index[_failing(frame[spec["column"]], spec)]
        _check_count(export, spec, outcome, len(failed))
        results.append(RuleResult(spec["rule"], spec["concept"], spec["source_column"],
                                  outcome.expectation_config.type, len(rows), len(failed)))
        shown = _shown_values(export, instrument, view, frame, spec, failed, scrubber)
        issues += [Issue(int(row), export.source_row(int(row)), spec["rule"], spec["concept"], value,
                         spec["source_column"]) for row, value in zip(failed, shown)]
    issues.sort(key=lambda i: (i.row, i.rule, i.concept))
    return issues, results, result.describe_dict()


def _failing(values: pd.Series, spec: dict) -> np.ndarray:
    """The rows failing a rule, worked out here: Great Expectations 1.x lists at most 200 failing
    values (MAX_RESULT_RECORDS) whatever the result format, and its full index lists cost a Python
    object per row. Read as its column expectations read them: a missing value never fails
    in_set/between (they skip missing values), and is the only value that passes `null`."""
    present = values.notna()
    if spec["kind"] == "null":
        return present.to_numpy(dtype=bool)
    if spec["kind"] in ("in_set", "false"):
        allowed = spec["value_set"] if spec["kind"] == "in_set" else [False]
        return (present & ~values.isin(allowed)).to_numpy(dtype=bool)
    within = pd.Series(True, index=values.index)
    if spec["min_value"] is not None:
        within &= values >= spec["min_value"]
    if spec["max_value"] is not None:
        within &= values <= spec["max_value"]
    return (present & ~within).to_numpy(dtype=bool)


class RuleCountError(RuntimeError):
    """Great Expectations and the pipeline disagree on how many rows fail a rule: nothing is loaded,
    since rows that fail a rule could otherwise reach the warehouse."""


def _check_count(export: Export, spec: dict, outcome: Any, found: int) -> None:
    """Great Expectations' own count of failing rows, as a cross-check of the rows quarantined."""
    counted = outcome.result.get("unexpected_count")
    if counted is not None and int(counted) == found:
        return
    why = f"counts {counted} failing rows" if counted is not None else "could not check it"
    raise RuleCountError(
        f"{export.path}: rule {spec['rule']} on {spec['concept']} (column {spec['source_column']}): Great "
        f"Expectations {why}, the pipeline found {found}. Nothing was loaded; this is a bug in the pipeline, "
        "please report it with this message."
    )


def _shown_values(export: Export, instrument: Instrument, view: AnswerView, frame: pd.DataFrame, spec: dict,
                  failed: pd.Index, scrubber: "Scrubber") -> list[str | None]:
    """The value each failing row shows staff: what `shown_value` lets through, then scrubbed as open
    answers are (a phone number typed as a wage). This is the only value of a failing row that
    reaches printed output, the warehouse, the QA report and run records; None where any value
    could identify."""
    if spec["value_from"] is None or not len(failed):
        return [None] * len(failed)
    if spec["value_from"] == "unexpected":
        values = frame.loc[failed, spec["column"]].tolist()
    elif spec["concept"] in view.answers:
        values = view.answers.loc[failed, spec["concept"]].tolist()
    else:
        return [None] * len(failed)
    from pipeline.deidentify import scrub_texts  # deidentify imports this module

    known = known_answers(instrument, spec["concept"])
    shown = [shown_value(_printable(v), known) for v in values]
    return scrub_texts(shown, export, export.answers.index.get_indexer(failed), scrubber)


# --- what of a failing value may be shown -----------------------------------------------------
# A value failing a check on a question that is not open text is shown to help staff fix the row
# (a wage of 4000, a code 7, a date 31/31/2026), but never as typed when it holds words that could
# be a name: "Rivka Okonkwo-Bélanger" typed as a wage is not one the scrubber knows, and a
# respondent's own name is the only one it learns from the row. Letters are shown only where they
# are the question's own answer text (a code or label of its choices) or words no one is named
# (below); anything else is replaced by NOT_SHOWN. Open-text and direct questions show no value.
NOT_SHOWN = "(text of {length} characters, not shown: it may identify someone)"
_NOT_SHOWN = re.compile(r"^\(text of \d+ characters, not shown: it may identify someone\)$")
_WORDS = re.compile(r"[^\W\d_]+")  # runs of letters, any alphabet
# Words typed beside or instead of a number or a date that name no one: answer tokens (yes, FALSE,
# n/a) and units. Compared in lower case, whole words only.
PLAIN_WORDS = frozenset({
    "yes", "no", "y", "n", "true", "false", "na", "n/a", "a", "none", "nil", "null", "nan", "unknown", "dk",
    "oui", "non", "vrai", "faux", "aucun", "aucune", "nsp", "o",
    "h", "hr", "hrs", "hour", "hours", "heure", "heures", "hre", "hres", "min", "mins", "minutes",
    "day", "days", "jour", "jours", "week", "weeks", "wk", "semaine", "semaines", "month", "months", "mois",
    "year", "years", "yr", "yrs", "an", "ans", "année", "années", "per", "par", "am", "pm", "t", "z", "k",
    "cad", "usd", "dollars", "dollar", "approx", "about", "environ", "and", "et", "to", "or", "ou",
    # amounts written out: what was meant is worth seeing to fix the row
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "fifteen", "twenty", "thirty", "forty", "fifty", "sixty", "hundred", "thousand", "half", "dozen",
    "un", "une", "deux", "trois", "quatre", "cinq", "sept", "huit", "neuf", "dix", "douze", "quinze",
    "vingt", "trente", "quarante", "cinquante", "soixante", "cent", "mille", "demi", "demie",
    "lots", "many", "few", "several", "some", "more", "less", "than", "varies", "beaucoup", "plusieurs", "peu",
    "plus", "moins", "que", "variable",
})


def known_answers(instrument: Instrument, concept: str) -> frozenset[str]:
    """The question's own answer text (codes and labels of its choices, in every language), in
    lower case: shown when typed where they fail a check, since the questionnaire wrote them."""
    try:
        question = instrument.question(concept)
    except KeyError:  # an identifier (dates of the collection window): no answer text
        return frozenset()
    return frozenset(text.strip().casefold() for c in instrument.choices_of(question)
                     for text in (c.code, c.label.en, c.label.fr))


def shown_value(value: str | None, known: frozenset[str] = frozenset()) -> str | None:
    """What of a value failing a check may be shown and stored: the value itself when it holds no
    letters (a number, a code, a date: a phone number in it is scrubbed after), is one of the
    question's `known` answers (whole, or each comma-separated part of a multiple choice), or whose
    words are all PLAIN_WORDS; otherwise NOT_SHOWN with its length, as a name would be."""
    if value is None:
        return None
    words = _WORDS.findall(value)
    if not words or all(w.casefold() in PLAIN_WORDS for w in words):
        return value
    if value.strip().casefold() in known or all(p.strip().casefold() in known for p in value.split(",")):
        return value
    return NOT_SHOWN.format(length=len(value))


# Bumped when shown_value lets less through: the values a warehouse stored before are then judged
# again at the next `consult run` (mask_stored_values), so no name typed before stays stored.
SHOWN_VALUES_VERSION = "1"


def mask_stored_values(con: Any, surveys: Path) -> int:
    """Judge the failing values already stored (quarantine_issues) by shown_value, with the answer
    text of each wave's questionnaire; returns how many stored values were replaced. The stored
    values were scrubbed already ("22 (ask [NAME] [PHONE])"): what is left of their words decides."""
    rows = con.execute(
        "SELECT DISTINCT l.wave, i.concept, i.value FROM quarantine_issues i JOIN load_ledger l USING (file_sha256) "
        "WHERE i.value IS NOT NULL").fetchall()
    instruments: dict[int, Instrument | None] = {}
    changes = []
    for wave, concept, value in rows:
        if wave not in instruments:
            path = instrument_path(surveys, int(wave))
            instruments[wave] = load_instrument(path) if path.exists() else None
        known = known_answers(instruments[wave], concept) if instruments[wave] is not None else frozenset()
        if (shown := shown_value(value, known)) != value:
            changes.append((wave, concept, value, shown))
    if not changes:
        return 0
    con.register("masked", pd.DataFrame(changes, columns=["wave", "concept", "old", "new"]))
    try:
        return con.execute(
            "UPDATE quarantine_issues SET value = m.new FROM masked m, load_ledger l "
            "WHERE l.file_sha256 = quarantine_issues.file_sha256 AND l.wave = m.wave "
            "AND quarantine_issues.concept = m.concept AND quarantine_issues.value = m.old").fetchall()[0][0]
    finally:
        con.unregister("masked")


def is_not_shown(value: Any) -> bool:
    """Whether a stored or printed value is NOT_SHOWN (a masked value, not one typed)."""
    return isinstance(value, str) and bool(_NOT_SHOWN.match(value))


def value_text(value: str) -> str:
    """A failing value as staff read it: quoted as typed, or NOT_SHOWN as it is."""
    return value if is_not_shown(value) else repr(value)


def _printable(value: Any) -> str | None:
    if value is None or (not isinstance(value, list) and pd.isna(value)):
        return None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


# Counts only: the lists of failing values Great Expectations would add are capped (see _failing)
# and would carry the raw values into the run records (pipeline/run.py).
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}


def _run_gx(frame: pd.DataFrame, specs: list[dict], name: str):
    import great_expectations as gx  # slow to import: only when validating
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("consult").add_dataframe_asset("export")
    batch = asset.add_batch_definition_whole_dataframe("all rows").get_batch(batch_parameters={"dataframe": frame})
    # The suite is validated on the batch directly: adding it and a validation definition to the
    # context's stores only serialises them (and the run's results) again, for nobody to read.
    suite = gx.ExpectationSuite(name=name, expectations=[_expectation(gx, spec, n) for n, spec in enumerate(specs)])
    try:
        with _cyclic_gc_paused():
            return batch.validate(suite, result_format=RESULT_FORMAT)
    finally:
        # GX keeps its context for the process: its data source would hold the rule columns and
        # every metric computed on them (a third of a large export's memory) until the run ends.
        context.data_sources.delete("consult")


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """GX builds tens of thousands of objects that live until its result is made: each time they
    pile up, Python's cyclic collector would walk the whole heap (a tenth of validation's time).
    What they leave is collected afterwards (pipeline/run.py collects after each file)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _expectation(gx: Any, spec: dict, number: int):
    meta = {"rule": spec["rule"], "concept": spec["concept"], "spec": number}
    column = spec["column"]
    if spec["kind"] == "in_set":
        return gx.expectations.ExpectColumnValuesToBeInSet(column=column, value_set=spec["value_set"], meta=meta)
    if spec["kind"] == "between":
        return gx.expectations.ExpectColumnValuesToBeBetween(
            column=column, min_value=spec["min_value"], max_value=spec["max_value"], meta=meta
        )
    if spec["kind"] == "false":
        return gx.expectations.ExpectColumnValuesToBeInSet(column=column, value_set=[False], meta=meta)
    return gx.expectations.ExpectColumnValuesToBeNull(column=column, meta=meta)

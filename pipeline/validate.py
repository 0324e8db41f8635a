"""Validate: decide what happens to every row of an export, and say why.

Each row read gets exactly one outcome:
- excluded: out of scope by the instrument's inclusion rules (no consent, ineligible) or incomplete;
- duplicate: a repeated submission (same platform response id, in this file or an earlier load,
  or the same person answering twice with the same answers);
- quarantined: fails one or more rules generated from the instrument (Great Expectations);
- loaded: everything else.
So read = loaded + quarantined + excluded + duplicates, by construction.

Structural problems (a question column missing, no rows) raise StructuralError and stop the load.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.ingest import Export
from pipeline.instrument import (
    AllOf,
    Condition,
    Disclosure,
    Instrument,
    Question,
    QuestionType,
    ShowIf,
)

LOADED, QUARANTINED, EXCLUDED, DUPLICATE = "loaded", "quarantined", "excluded", "duplicate"
OUTCOMES = (LOADED, QUARANTINED, EXCLUDED, DUPLICATE)


class StructuralError(ValueError):
    """The export as a whole cannot be loaded; the message names the file and the column."""


@dataclass
class Issue:
    row: int  # index in the export's frame
    source_row: int  # row number as a spreadsheet shows it
    rule: str  # reason code, e.g. invalid_code
    concept: str
    value: str | None  # None where the value could identify someone


@dataclass
class RuleResult:
    rule: str
    concept: str
    expectation: str
    failed_rows: int


@dataclass
class Validation:
    outcome: pd.Series  # one of OUTCOMES per row
    reason: pd.Series  # exclusion or duplicate reason; first quarantine rule
    issues: list[Issue] = field(default_factory=list)
    rules: list[RuleResult] = field(default_factory=list)
    response_keys: pd.Series | None = None  # keyed hashes of platform response ids
    gx_result: dict[str, Any] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return int((self.outcome == outcome).sum())


def validate(
    export: Export,
    instrument: Instrument,
    secret: bytes,
    already_seen: set[str] | frozenset[str] = frozenset(),
) -> Validation:
    """Give every row of `export` its outcome. `already_seen`: response keys loaded before."""
    check_structure(export, instrument)
    outcome = pd.Series(LOADED, index=export.answers.index, dtype=object)
    reason = _nones(export.answers.index)
    _exclusions(export, instrument, outcome, reason)
    keys = _response_keys(export, secret)
    _duplicates(export, keys, already_seen, outcome, reason)
    in_scope = outcome == LOADED
    issues, rules, gx_result = _expectations(export, instrument, in_scope)
    for issue in issues:
        if outcome.at[issue.row] == LOADED:
            outcome.at[issue.row] = QUARANTINED
            reason.at[issue.row] = issue.rule
    return Validation(outcome, reason, issues, rules, keys, gx_result)


def check_structure(export: Export, instrument: Instrument) -> None:
    if export.rows == 0:
        raise StructuralError(f"{export.path}: the export has a header but no responses")
    present = set(export.answers.columns)
    needed = [q for q in instrument.questions if q.required and q.id not in present]
    if needed:
        names = ", ".join(f"{q.id} (column {q.aliases[0] if q.aliases else q.id})" for q in needed)
        raise StructuralError(
            f"{export.path}: required question columns are missing: {names}. "
            f"Is this an export of the {instrument.wave} questionnaire?"
        )
    matched = len(present) / max(1, len(instrument.questions))
    if matched < 0.5:
        raise StructuralError(
            f"{export.path}: only {len(present)} of {len(instrument.questions)} questions of the "
            f"{instrument.wave} instrument were found; this looks like a different survey"
        )


def _exclusions(export: Export, instrument: Instrument, outcome: pd.Series, reason: pd.Series) -> None:
    for name, condition in instrument.inclusion.items():
        holds = shown_mask(export.answers, condition)
        newly = (~holds) & (outcome == LOADED)
        outcome[newly] = EXCLUDED
        reason[newly] = name
    if "finished" in export.metadata:
        finished = export.metadata["finished"].map(lambda v: str(v).strip().lower() in {"1", "true"})
        newly = (~finished) & (outcome == LOADED)
        outcome[newly] = EXCLUDED
        reason[newly] = "incomplete"


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


def _keyed(secret: bytes, value: str) -> str:
    return hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _response_keys(export: Export, secret: bytes) -> pd.Series:
    if "response_id" not in export.identifiers:
        return _nones(export.answers.index)
    keys = [_keyed(secret, v) if v else None for v in export.identifiers["response_id"].tolist()]
    return pd.Series(keys, index=export.answers.index, dtype=object)


def _duplicates(
    export: Export,
    keys: pd.Series,
    already_seen: set[str] | frozenset[str],
    outcome: pd.Series,
    reason: pd.Series,
) -> None:
    candidates = outcome == LOADED
    earlier = keys.isin(already_seen) & keys.notna() & candidates
    outcome[earlier] = DUPLICATE
    reason[earlier] = "loaded_before"
    candidates = outcome == LOADED
    repeated = keys.duplicated(keep="first") & keys.notna() & candidates
    outcome[repeated] = DUPLICATE
    reason[repeated] = "same_response_id"
    # The same person twice: same email (platform or survey field) and the same answers.
    person = _person_key(export)
    answers = export.answers.drop(
        columns=[c for c in export.answers.columns if c.startswith("contact_")], errors="ignore"
    ).map(lambda v: ",".join(v) if isinstance(v, list) else v)
    fingerprint = person + "|" + pd.util.hash_pandas_object(answers, index=False).astype(str)
    candidates = (outcome == LOADED) & person.notna()
    resubmitted = fingerprint.where(candidates).duplicated(keep="first") & candidates
    outcome[resubmitted] = DUPLICATE
    reason[resubmitted] = "resubmitted"


def _person_key(export: Export) -> pd.Series:
    emails = [None] * len(export.answers)
    for frame, column in [(export.identifiers, "email"), (export.answers, "contact_email")]:
        if column in frame:
            found = [v.strip().lower() if isinstance(v, str) and v.strip() else None for v in frame[column].tolist()]
            emails = [e if e is not None else f for e, f in zip(emails, found)]
    return pd.Series(emails, index=export.answers.index, dtype=object)


# --- rules generated from the instrument, run by Great Expectations ----------------------------


def shown_mask(answers: pd.DataFrame, show_if: ShowIf | None) -> pd.Series:
    """Rows for which a question is shown (its skip logic holds)."""
    if show_if is None:
        return pd.Series(True, index=answers.index)
    if isinstance(show_if, Condition):
        if show_if.question not in answers:
            return pd.Series(False, index=answers.index)
        allowed = set(show_if.in_)
        return answers[show_if.question].map(
            lambda v: bool(set(v) & allowed) if isinstance(v, list) else v in allowed
        ).astype(bool)
    masks = [shown_mask(answers, part) for part in (show_if.all if isinstance(show_if, AllOf) else show_if.any)]
    combined = masks[0]
    for mask in masks[1:]:
        combined = (combined & mask) if isinstance(show_if, AllOf) else (combined | mask)
    return combined


def _rule_columns(export: Export, instrument: Instrument, rows: pd.Index) -> tuple[pd.DataFrame, list[dict]]:
    """Derived columns that make each instrument rule a plain column expectation."""
    answers = export.answers.loc[rows]
    columns: dict[str, pd.Series] = {}
    specs: list[dict] = []
    for question in instrument.questions:
        if question.id not in answers:
            continue
        values = answers[question.id]
        shown = shown_mask(answers, question.show_if)
        answered = values.map(_answered)
        specs += _question_rules(question, instrument, values, columns)
        if question.required:
            columns[f"{question.id}__required_missing"] = shown & ~answered
            specs.append(_spec("required_missing", question, f"{question.id}__required_missing", "false"))
        if question.show_if is not None:
            columns[f"{question.id}__answered_when_hidden"] = ~shown & answered
            specs.append(_spec("skip_logic", question, f"{question.id}__answered_when_hidden", "false"))
    return pd.DataFrame(columns, index=rows), specs


def _question_rules(
    question: Question, instrument: Instrument, values: pd.Series, columns: dict[str, pd.Series]
) -> list[dict]:
    codes = [c.code for c in instrument.choices_of(question)]
    if question.type in (QuestionType.single, QuestionType.likert):
        columns[question.id] = values
        return [_spec("invalid_code", question, question.id, "in_set", value_set=codes)]
    if question.type is QuestionType.multiple:
        columns[f"{question.id}__unknown_codes"] = values.map(
            lambda v: ",".join(c for c in v if c not in codes) or None if isinstance(v, list) else None
        )
        return [_spec("invalid_code", question, f"{question.id}__unknown_codes", "null")]
    if question.type is QuestionType.numeric:
        numbers = values.map(_number)
        columns[f"{question.id}__not_a_number"] = values.where(values.notna() & numbers.isna())
        specs = [_spec("not_a_number", question, f"{question.id}__not_a_number", "null")]
        if question.range is not None:
            columns[f"{question.id}__number"] = numbers.astype(float)
            specs.append(
                _spec("out_of_range", question, f"{question.id}__number", "between",
                      min_value=question.range.min, max_value=question.range.max)
            )
        return specs
    if question.type is QuestionType.date:
        dates = pd.to_datetime(values, errors="coerce", format="mixed")
        columns[f"{question.id}__not_a_date"] = values.where(values.notna() & dates.isna())
        return [_spec("not_a_date", question, f"{question.id}__not_a_date", "null")]
    return []


def _spec(rule: str, question: Question, column: str, kind: str, **kwargs: Any) -> dict:
    return {"rule": rule, "concept": question.id, "column": column, "kind": kind,
            "identifying": question.disclosure is Disclosure.direct or question.type is QuestionType.text,
            **kwargs}


def _answered(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) > 0
    return value is not None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    text = str(value).strip().replace("$", "").replace(" ", "")
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")  # a decimal comma, as French-language exports write
    try:
        return float(text)
    except ValueError:
        return None


def _expectations(
    export: Export, instrument: Instrument, in_scope: pd.Series
) -> tuple[list[Issue], list[RuleResult], dict]:
    rows = in_scope[in_scope].index
    frame, specs = _rule_columns(export, instrument, rows)
    if frame.empty or not specs:
        return [], [], {}
    result = _run_gx(frame, specs, name=f"wave-{instrument.wave}")
    issues: list[Issue] = []
    rules: list[RuleResult] = []
    for spec, outcome in zip(specs, result.results):
        failed = outcome.result.get("unexpected_index_list") or []
        unexpected = outcome.result.get("unexpected_list") or []
        rules.append(RuleResult(spec["rule"], spec["concept"], outcome.expectation_config.type, len(failed)))
        for row, value in zip(failed, unexpected):
            shown = None if spec["identifying"] or spec["rule"] in ("required_missing", "skip_logic") else value
            issues.append(Issue(int(row), export.source_row(int(row)), spec["rule"], spec["concept"],
                                None if shown is None else _printable(shown)))
    return issues, rules, result.describe_dict() if hasattr(result, "describe_dict") else result.to_json_dict()


def _printable(value: Any) -> str:
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def _run_gx(frame: pd.DataFrame, specs: list[dict], name: str):
    import great_expectations as gx  # slow to import: only when validating
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = context.data_sources.add_pandas("consult").add_dataframe_asset("export")
    definition = batch.add_batch_definition_whole_dataframe("all rows")
    # Built whole, then added once: adding expectations one by one re-serialises the suite each time.
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=[_expectation(gx, s) for s in specs]))
    run = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=definition, suite=suite))
    return run.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE")


def _expectation(gx: Any, spec: dict):
    meta = {"rule": spec["rule"], "concept": spec["concept"]}
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

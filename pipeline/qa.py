"""The internal QA report (reports/qa/, never published) and `consult quarantine`.

Everything here reads the warehouse READ-ONLY. The warehouse holds no identifier, so neither can
anything built from it: rows are named by their row number in the export, values that could
identify someone were never stored (`quarantine_issues.value` is NULL for them) and show as
"(not shown)"; the others were stored as `validate.shown_value` lets them through (a number, a code,
a date, the question's own answer text; words that could be a name replaced by "(text of 22
characters, not shown: it may identify someone)"), then scrubbed as open answers are. Functions return markdown, printed from `#| output: asis` cells.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.charts import md_text, query
from pipeline.config import project_paths
from pipeline.instrument import Instrument, InstrumentError, instrument_path, load_instrument
from pipeline.load import LOAD_TIME, RESPONSES_BY_WAVE, ROW_OUTCOMES
from pipeline.validate import NO_VALUE_RULES, RULE_HELP, value_text
from pipeline.wave_rules import WaveRules, load_wave_rules

EXAMPLES_PER_FILE = 20
HIDDEN = "(not shown)"


def _table(frame: pd.DataFrame, numeric: set[str] = frozenset()) -> str:
    """A pipe table; every cell escaped (file names and values come from the data)."""
    if frame.empty:
        return "\n*None.*\n"
    head = "| " + " | ".join(md_text(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if c in numeric else ":---" for c in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n" + "\n".join([head, rule, *body]) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not pd.isna(value):
        return f"{int(value):,}" if float(value) == int(value) else f"{value:,.2f}"
    return md_text(value)


# --- the load ledger ----------------------------------------------------------------------------


def ledger_md() -> str:
    """Every file loaded: what happened to its rows, and whether the accounting identity holds."""
    led = query("""
        SELECT l.wave, l.file_name, l.platform, l.run_id, l.rows_read, l.rows_loaded, l.rows_quarantined,
               l.rows_excluded, l.rows_duplicate, count(o.source_row) AS outcomes
        FROM load_ledger l LEFT JOIN row_outcomes o USING (file_sha256)
        GROUP BY ALL ORDER BY l.wave, l.run_id, l.file_name""")
    if led.empty:
        return "\nNo export has been loaded yet.\n"
    parts = led[["rows_loaded", "rows_quarantined", "rows_excluded", "rows_duplicate"]].sum(axis=1)
    holds = (led["rows_read"] == parts) & (led["rows_read"] == led["outcomes"])
    table = pd.DataFrame({
        "Wave": led["wave"].astype(str), "File": led["file_name"], "Platform": led["platform"], "Run": led["run_id"],
        "Read": led["rows_read"], "Loaded": led["rows_loaded"], "Quarantined": led["rows_quarantined"],
        "Excluded": led["rows_excluded"], "Duplicates": led["rows_duplicate"],
        "read = loaded + quarantined + excluded + duplicates": holds.map({True: "holds", False: "DOES NOT HOLD"}),
    })
    verdict = ("The identity holds for every file." if holds.all() else
               "**The identity does not hold for some files: the warehouse is inconsistent; do not publish.**")
    return _table(table, {"Read", "Loaded", "Quarantined", "Excluded", "Duplicates"}) + f"\n{verdict}\n"


def responses_md() -> str:
    """Per wave, each response once with its best outcome (the query of the public methods page
    and `consult status`), beside the rows read from the wave's files: the ledger counts a response
    once per export that held it, so after a corrected re-export its rows add up to more."""
    got = query(f"""
        SELECT r.wave, r.read AS responses, r.loaded, r.quarantined, r.excluded, r.duplicates,
               f.rows_read, f.files
        FROM ({RESPONSES_BY_WAVE}) r
        JOIN (SELECT wave, sum(rows_read) AS rows_read, count(*) AS files FROM load_ledger GROUP BY wave) f USING (wave)
        ORDER BY r.wave""")
    if got.empty:
        return "\nNo export has been loaded yet.\n"
    table = pd.DataFrame({
        "Wave": got["wave"].astype(str), "Responses (each once)": got["responses"], "Loaded": got["loaded"],
        "Quarantined": got["quarantined"], "Excluded": got["excluded"], "Duplicates": got["duplicates"],
        "Rows read (all files)": got["rows_read"], "Files": got["files"],
    })
    return _table(table, set(table.columns) - {"Wave"})


# --- validation rules ----------------------------------------------------------------------------

# Each loaded file with the name the tables show it by: its name, and when it was loaded where
# another export of the same wave has the same name (the runbook's corrected re-export saved over the
# first): the tables below count per file, never two files together.
LEDGER_FILES = f"""SELECT file_sha256, wave, loaded_at,
    CASE WHEN count(*) OVER (PARTITION BY wave, file_name) > 1
         THEN file_name || ' (loaded ' || strftime(loaded_at, '{LOAD_TIME}') || ')' ELSE file_name END AS file_name
    FROM load_ledger"""


def rules_md() -> str:
    """Which rules ran (per reason code), how many checks and failing rows; then the failing checks."""
    rules = query(f"""
        SELECT l.wave, l.file_sha256, l.file_name, r.rule, r.concept, r.column_name, r.expectation, r.rows_checked,
               r.rows_failed
        FROM validation_rules r JOIN ({LEDGER_FILES}) l USING (file_sha256)
        ORDER BY l.wave, l.loaded_at, l.file_name, r.rule, r.concept""")
    if rules.empty:
        return "\nNo validation results are stored yet.\n"
    by_code = rules.groupby(["wave", "file_sha256", "file_name", "rule"], as_index=False, sort=False).agg(
        checks=("concept", "size"), rows_checked=("rows_checked", "max"), failures=("rows_failed", "sum"))
    summary = pd.DataFrame({
        "Wave": by_code["wave"].astype(str), "File": by_code["file_name"], "Rule": by_code["rule"],
        "What it checks": by_code["rule"].map(_rule_help), "Checks run": by_code["checks"],
        "Rows checked": by_code["rows_checked"], "Failures": by_code["failures"],
    })
    failing = rules[rules["rows_failed"] > 0]
    detail = pd.DataFrame({
        "Wave": failing["wave"].astype(str), "File": failing["file_name"], "Rule": failing["rule"],
        "Question": failing["concept"], "Column": failing["column_name"], "Rows failing": failing["rows_failed"],
    })
    return (
        "\n### Rules that ran\n\nEach rule runs once per question (or identifier) it applies to; "
        "*Failures* counts failed checks (a row failing two rules counts twice).\n"
        + _table(summary, {"Checks run", "Rows checked", "Failures"})
        + "\n### Checks that failed\n" + _table(detail, {"Rows failing"})
    )


DECLARED_RULE = "a rule declared in the wave's rules.yaml"


def _rule_help(rule: str) -> str:
    if rule in RULE_HELP:
        return RULE_HELP[rule]
    return declared_rule_messages().get(rule, DECLARED_RULE)


def declared_rule_messages(surveys: Path | None = None) -> dict[str, str]:
    """Rule id -> message, from the rules.yaml of every wave that has an instrument."""
    messages: dict[str, str] = {}
    for rules in wave_rules(surveys).values():
        messages.update({r.id: r.message for r in rules.rules})
    return messages


def wave_rules(surveys: Path | None = None) -> dict[int, WaveRules]:
    return {wave: rules for wave, (_, rules) in wave_definitions(surveys).items()}


def wave_definitions(surveys: Path | None = None) -> dict[int, tuple[Instrument, WaveRules]]:
    """Each wave's instrument and rules.yaml (default: the project's surveys/ folder)."""
    surveys = surveys or project_paths().surveys
    found: dict[int, tuple[Instrument, WaveRules]] = {}
    for folder in sorted(surveys.glob("[0-9][0-9][0-9][0-9]")):
        try:
            instrument = load_instrument(instrument_path(surveys, int(folder.name)))
            found[int(folder.name)] = (instrument, load_wave_rules(instrument))
        except (InstrumentError, OSError):
            continue  # the QA report describes what is loaded; a broken file is reported by the load
    return found


# --- quarantine ------------------------------------------------------------------------------------


@dataclass
class QuarantinedRow:
    file: str
    wave: int
    row: int
    status: str  # waiting | released | quarantined again
    problems: list[dict] = field(default_factory=list)  # rule, concept, column, value
    note: str = ""  # where it was released or quarantined again
    # which export: names repeat (every wave's `export.csv`, a re-export saved over the first)
    file_sha256: str = ""
    loaded_at: str = ""


def quarantined_rows(warehouse: Path | None = None, file: str | None = None) -> list[QuarantinedRow]:
    """Every quarantined row with its problems and status. A row is `released` when its response
    (same keyed response id; without one, its fixed version matched by content, row_outcomes.fixed_in)
    was loaded later from a corrected export, `quarantined again` when a
    later export set it aside again (see that file), and `waiting` otherwise."""
    issues = query(f"""
        SELECT l.file_sha256, l.file_name, l.wave, l.loaded_at, o.source_row, i.rule, i.concept, r.column_name, i.value,
               k.response_key, coalesce(s.file_sha256, f.file_sha256) AS released_in
        FROM {ROW_OUTCOMES} o JOIN load_ledger l USING (file_sha256)
        LEFT JOIN quarantine_issues i USING (file_sha256, source_row)
        LEFT JOIN validation_rules r ON r.file_sha256 = i.file_sha256 AND r.rule = i.rule AND r.concept = i.concept
        LEFT JOIN quarantine_keys k USING (file_sha256, source_row)
        LEFT JOIN seen_responses s ON s.response_key = k.response_key
        LEFT JOIN row_outcomes f ON f.file_sha256 = o.fixed_in AND f.source_row = o.fixed_row AND f.outcome = 'loaded'
        WHERE o.outcome = 'quarantined' AND (? IS NULL OR l.file_name = ?)
        ORDER BY l.wave, l.loaded_at, l.file_name, o.source_row, i.rule, i.concept""",
        [file, file], warehouse)
    names = dict(query("SELECT file_sha256, file_name FROM load_ledger", [], warehouse).itertuples(index=False))
    later = _quarantined_again(warehouse)
    again = _set_aside_again_without_ids(warehouse)
    rows: dict[tuple[str, int], QuarantinedRow] = {}
    for item in issues.itertuples(index=False):
        entry = rows.get((item.file_sha256, int(item.source_row)))
        if entry is None:
            status, note = "waiting", ""
            if isinstance(item.released_in, str):
                status, note = "released", f"loaded from {names.get(item.released_in, 'a later export')}"
            elif isinstance(item.response_key, str) and (item.file_sha256, item.response_key) in later:
                status, note = "quarantined again", f"see {later[(item.file_sha256, item.response_key)]}"
            elif (item.file_sha256, int(item.source_row)) in again:
                status, note = "quarantined again", f"see {again[(item.file_sha256, int(item.source_row))]}"
            entry = QuarantinedRow(item.file_name, int(item.wave), int(item.source_row), status, note=note,
                                   file_sha256=item.file_sha256, loaded_at=item.loaded_at.strftime(LOAD_TIME))
            rows[(item.file_sha256, int(item.source_row))] = entry
        if isinstance(item.rule, str):
            entry.problems.append({"rule": item.rule, "concept": item.concept, "column": item.column_name or item.concept,
                                   "value": item.value if isinstance(item.value, str) else None})
    return list(rows.values())


def _quarantined_again(warehouse: Path | None) -> dict[tuple[str, str], str]:
    """(file sha256, response key) -> the name of the later file that quarantined the same response again."""
    keys = query("""
        SELECT l.file_sha256, l.file_name, l.loaded_at, k.response_key FROM quarantine_keys k JOIN load_ledger l
        USING (file_sha256) ORDER BY l.loaded_at, l.file_name""", [], warehouse)
    latest: dict[str, tuple[str, str]] = {}
    for item in keys.itertuples(index=False):
        latest[item.response_key] = (item.file_sha256, item.file_name)  # ordered: the last one wins
    return {(item.file_sha256, item.response_key): latest[item.response_key][1]
            for item in keys.itertuples(index=False) if latest[item.response_key][0] != item.file_sha256}


def _set_aside_again_without_ids(warehouse: Path | None) -> dict[tuple[str, int], str]:
    """(file sha256, row) -> the name of the later file that set the same response aside again, for
    rows without a response id: the same fix key (content but the answers that failed) and the same
    failed answers; the n-th such row of a file is the n-th of another (within a file, two people)."""
    held = query(f"""
        SELECT o.file_sha256, l.file_name, o.source_row, o.fix_key, o.fix_left_out
        FROM {ROW_OUTCOMES} o JOIN load_ledger l USING (file_sha256)
        WHERE o.outcome = 'quarantined' AND o.fix_key IS NOT NULL
        ORDER BY l.loaded_at, l.file_name, o.source_row""", [], warehouse)
    files: dict[tuple[str, str], dict[str, list[int]]] = {}  # (left out, key) -> file -> rows, in load order
    names: dict[str, str] = {}
    for item in held.itertuples(index=False):
        files.setdefault((item.fix_left_out, item.fix_key), {}).setdefault(item.file_sha256, []).append(
            int(item.source_row))
        names[item.file_sha256] = item.file_name
    again: dict[tuple[str, int], str] = {}
    for by_file in files.values():
        last = list(by_file)[-1]  # dicts keep the load order
        for sha, rows in by_file.items():
            if sha != last:
                again.update({(sha, row): names[last] for row in rows[:len(by_file[last])]})
    return again


def by_export(rows: list[QuarantinedRow]) -> list[tuple[str, list[QuarantinedRow]]]:
    """The rows grouped by the export they came from, each with a heading naming it: file and wave,
    and when it was loaded where another export of the wave has the same name."""
    groups: dict[str, list[QuarantinedRow]] = {}
    for r in rows:
        groups.setdefault(r.file_sha256, []).append(r)
    named = Counter((g[0].file, g[0].wave) for g in groups.values())
    return [(f"{g[0].file} (wave {g[0].wave}" + (f", loaded {g[0].loaded_at}" if named[g[0].file, g[0].wave] > 1 else "")
             + ")", g) for g in groups.values()]


def problem_text(problem: dict) -> str:
    """`rule on question (column C, value V)`; the value only where it was stored and means something."""
    return f"{problem['rule']} on {problem['concept']} ({_where(problem)})"


def _where(problem: dict) -> str:
    where = f"column {problem['column']}"
    if problem["value"] is not None:
        where += f", value {value_text(problem['value'])}"
    elif problem["rule"] not in NO_VALUE_RULES:
        where += f", value {HIDDEN}"
    return where


def explained_problem(problem: dict) -> str:
    """`question (column C, value V): what was wrong [rule]`, for `consult quarantine`; the rule id
    stays visible because staff search for it (`problem["message"]`: from `problem_meaning`)."""
    return f"{problem['concept']} ({_where(problem)}): {problem['message']} [{problem['rule']}]"


def problem_meaning(problem: dict, definitions: tuple[Instrument, WaveRules] | None) -> str:
    """What a failed check means, in the words of the wave's own definitions: the allowed range of
    the question for out_of_range, the rules.yaml `message` for a declared rule, else RULE_HELP."""
    rule = problem["rule"]
    if rule == "out_of_range" and definitions is not None:
        allowed = _allowed_range(definitions[0], problem["concept"])
        if allowed:
            return allowed
    if rule == "invalid_code" and definitions is not None:
        allowed = _allowed_codes(definitions[0], problem["concept"])
        if allowed:
            return allowed
    if rule in RULE_HELP:
        return RULE_HELP[rule]
    declared = {r.id: r.message for r in definitions[1].rules} if definitions is not None else {}
    return declared.get(rule, DECLARED_RULE)


SHOWN_CODES = 10  # a longer list of codes ends with "..."


def _allowed_codes(instrument: Instrument, concept: str) -> str | None:
    """`an answer code the question does not have; its codes: 1 "Yes", 2 "No"`, from the instrument."""
    question = next((q for q in instrument.questions if q.id == concept), None)
    choices = instrument.choices_of(question) if question is not None else []
    if not choices:
        return None

    def label(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= 40 else text[:39].rstrip() + "…"

    shown = [f'{c.code} "{label(c.label.en)}"' for c in choices[:SHOWN_CODES]]
    more = ", ..." if len(choices) > SHOWN_CODES else ""
    return f"{RULE_HELP['invalid_code']}; its codes: {', '.join(shown)}{more}"


def _allowed_range(instrument: Instrument, concept: str) -> str | None:
    question = next((q for q in instrument.questions if q.id == concept), None)
    if question is None or question.range is None:
        return None
    unit = f" ({question.unit})" if question.unit else ""
    return f"expected a number from {question.range.min:g} to {question.range.max:g}{unit}"


def quarantine_md(limit: int = EXAMPLES_PER_FILE) -> str:
    rows = quarantined_rows()
    if not rows:
        return "\nNo row is in quarantine.\n"
    reasons = pd.DataFrame([(r.wave, r.file, p["rule"], p["concept"]) for r in rows for p in r.problems],
                           columns=["Wave", "File", "Rule", "Question"])
    counts = reasons.value_counts().rename("Rows").reset_index().sort_values(["Wave", "File", "Rule", "Question"])
    counts["Wave"] = counts["Wave"].astype(str)
    status = pd.DataFrame([(str(r.wave), r.file, r.status) for r in rows], columns=["Wave", "File", "Status"])
    status = status.value_counts().rename("Rows").reset_index().sort_values(["Wave", "File", "Status"])
    examples = []
    for _, mine in by_export(rows):
        examples += mine[:limit]
    table = pd.DataFrame([(str(r.wave), r.file, r.row, r.status, "; ".join(problem_text(p) for p in r.problems))
                          for r in examples], columns=["Wave", "File", "Row", "Status", "Problems"])
    return (
        "\n### Reasons\n" + _table(counts, {"Rows"})
        + "\n### Status\n\n*waiting*: still to be fixed at the source; *released*: loaded later from a "
          "corrected export (without response ids: its fixed version, recognised by the same submission time, "
          "email and other answers); *quarantined again*: a later export set it aside again.\n"
        + _table(status, {"Rows"})
        + f"\n### Examples (first {limit} rows of each file)\n\nRow numbers count the header rows, as a "
          f"spreadsheet does. {HIDDEN} marks a value that could identify someone, and \"text of N characters, not "
          "shown\" one holding words that could be a name: neither was stored.\n"
        + _table(table, {"Row"})
    )


# --- exclusions, duplicates and data-quality flags --------------------------------------------------


def outcomes_md(outcome: str) -> str:
    """Rows with this outcome (excluded or duplicate), by file and reason."""
    found = query(f"""
        SELECT l.wave, l.file_sha256, l.loaded_at, l.file_name, coalesce(o.reason, '(none)') AS reason, count(*) AS n
        FROM row_outcomes o JOIN ({LEDGER_FILES}) l USING (file_sha256)
        WHERE o.outcome = ? GROUP BY ALL ORDER BY l.wave, l.loaded_at, l.file_name, reason""", [outcome])
    table = pd.DataFrame({"Wave": found["wave"].astype(str), "File": found["file_name"], "Reason": found["reason"],
                          "What it means": found["reason"].map(_reason_help), "Rows": found["n"]})
    return _table(table, {"Rows"})


def _reason_help(reason: str) -> str:
    return RULE_HELP.get(reason) or f"does not meet the instrument's inclusion rule {reason}"


def duplicate_rules_md() -> str:
    """How each wave judges a resubmission (from its rules.yaml), in plain words."""
    lines = []
    for wave, rules in wave_rules().items():
        email, ip = rules.duplicates.same_email, rules.duplicates.same_ip
        gap = "any time in the wave" if ip.max_days_apart is None else f"at most {ip.max_days_apart:g} days later"
        lines.append(
            f"- **{wave}**: same email and the same answer to at least {email.min_agreement:.0%} of the coded "
            f"questions either response answered; or same IP address, every coded answer identical (at least "
            f"{ip.min_answers} of them), the second started after the first ended, {gap}."
        )
    return "\n" + "\n".join(lines) + "\n"


def flags_md() -> str:
    """Loaded respondents with each data-quality flag, by wave (counts only)."""
    found = query("""
        SELECT f.wave, f.flag, count(*) AS n, (SELECT count(*) FROM respondents r WHERE r.wave = f.wave) AS loaded
        FROM quality_flags f GROUP BY ALL ORDER BY f.wave, f.flag""")
    table = pd.DataFrame({
        "Wave": found["wave"].astype(str), "Flag": found["flag"],
        "What it means": found["flag"].map(lambda f: RULE_HELP.get(f) or declared_rule_messages().get(f, "")),
        "Respondents": found["n"], "Share of loaded": (100 * found["n"] / found["loaded"]).map(lambda v: f"{v:.1f}%"),
    })
    grids = query("""
        SELECT wave, trim(grid) AS grid, count(*) AS n
        FROM (SELECT wave, unnest(string_split(detail, ',')) AS grid FROM quality_flags WHERE flag = 'straightlining')
        GROUP BY ALL ORDER BY wave, grid""")
    grid_table = pd.DataFrame({"Wave": grids["wave"].astype(str), "Grid": grids["grid"], "Respondents": grids["n"]})
    return (_table(table, {"Respondents"}) + "\n**Straight-lining by grid.** The same answer to every item can be "
            "genuine (for example *never* to every incivility item): the flag asks for a look, it is not a verdict.\n"
            + _table(grid_table, {"Respondents"}))

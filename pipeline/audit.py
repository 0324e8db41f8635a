"""`consult audit`: the disclosure report of a finished run, and whether it may be published.

Checks, each passing or failing on its own:
- k-anonymity: the smallest group of respondents sharing their key quasi-identifiers, as stored,
  in every wave, and how many respondents are in groups under k (surveys/privacy.yaml).
- l-diversity: for each sensitive question, the fewest different answers found in a group
  (reported; it fails the audit only when the rules say `enforce: true`).
- published cells: no figure that leaves the warehouse is under the small-cell thresholds
  (surveys/disclosure.yaml).
- derivability: for every hidden cell, the range of values it can take given everything published
  in its table, solved exactly (integer programming); a range of width zero means it is disclosed.
- identifier scan: no identifier value of the raw exports (names, emails, IPs, coordinates, response
  ids, exact timestamps, direct-identifier answers) appears in any output: warehouse tables, the
  report, run records, QA output, quote review files.

The report names where something was found and what kind of identifier it is, never the value.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import duckdb
import numpy as np

from pipeline.anonymity import (
    AuditRules,
    MicrodataRules,
    equivalence_classes,
    load_privacy_rules,
    privacy_path,
)
from pipeline.config import Paths, export_files
from pipeline.disclosure import DisclosureRules, load_rules
from pipeline.load import connect

AUDIT_FILE = "audit.json"
# Identifier columns that are single given names or surnames are searched as a full name only:
# alone they match ordinary words (White, Hope) in any report.
NAME_PARTS = ("first_name", "last_name")
TOKEN = re.compile(r"\w+")


@dataclass
class Check:
    name: str
    passed: bool
    summary: str
    details: list[dict] = field(default_factory=list)


@dataclass
class AuditReport:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed, "checks": [asdict(c) for c in self.checks]}, indent=2) + "\n"

    def lines(self) -> Iterator[str]:
        yield f"Disclosure audit: {'PASSED' if self.passed else 'FAILED'}"
        for check in self.checks:
            yield f"  [{'ok' if check.passed else 'FAIL'}] {check.name}: {check.summary}"
            if not check.passed:
                for detail in check.details[:20]:
                    yield "         " + ", ".join(f"{k}={v}" for k, v in detail.items())
                if len(check.details) > 20:
                    yield f"         ... and {len(check.details) - 20} more (see the JSON report)"


def audit_file(paths: Paths) -> Path:
    return paths.warehouse_dir / AUDIT_FILE


def run_audit(paths: Paths, write: bool = True) -> AuditReport:
    """Every check on the warehouse and the outputs; writes data/warehouse/audit.json."""
    privacy = load_privacy_rules(privacy_path(paths))
    tables = load_rules(paths.disclosure_file)
    needles, unreadable = identifier_values(paths, privacy.audit)
    with connect(paths.warehouse, read_only=True) as con:
        checks = [
            check_k_anonymity(con, privacy.microdata),
            check_l_diversity(con, privacy.microdata),
            check_published_cells(con, tables),
            check_derivability(con),
            check_identifiers(paths, con, needles, unreadable),
        ]
    report = AuditReport(checks)
    if write:
        audit_file(paths).write_text(report.to_json(), encoding="utf-8")
    return report


# --- microdata --------------------------------------------------------------------------------


def _waves(con: duckdb.DuckDBPyConnection) -> list[int]:
    return [w for (w,) in con.execute("SELECT DISTINCT wave FROM respondents ORDER BY wave").fetchall()]


def key_concepts(con: duckdb.DuckDBPyConnection, wave: int, micro: MicrodataRules) -> list[str]:
    asked = {c for (c,) in con.execute("SELECT concept FROM concepts WHERE wave = ? AND stored", [wave]).fetchall()}
    return [c for c in micro.key_quasi_identifiers if c in asked]


def check_k_anonymity(con: duckdb.DuckDBPyConnection, micro: MicrodataRules) -> Check:
    details, failed = [], False
    for wave in _waves(con):
        concepts = key_concepts(con, wave, micro)
        frame = equivalence_classes(con, wave, concepts)
        sizes = frame.groupby(concepts).size() if concepts else None
        smallest = int(sizes.min()) if sizes is not None else len(frame)
        at_risk = int(sizes[sizes < micro.k].sum()) if sizes is not None else 0
        lost = dict(con.execute(
            "SELECT concept, cells_suppressed FROM column_protection WHERE wave = ? AND k_anonymity_key ORDER BY concept",
            [wave]).fetchall())
        levels = dict(con.execute(
            "SELECT concept, level_name FROM column_protection WHERE wave = ? AND k_anonymity_key ORDER BY concept",
            [wave]).fetchall())
        failed |= smallest < micro.k
        details.append({"wave": wave, "respondents": len(frame), "key": ", ".join(concepts),
                        "groups": int(len(sizes)) if sizes is not None else 1, "smallest_group": smallest,
                        "respondents_at_risk": at_risk, "cells_suppressed": lost, "generalised_to": levels})
    worst = min((d["smallest_group"] for d in details), default=0)
    return Check("k-anonymity", not failed,
                 f"smallest group {worst} (k = {micro.k}) over the key quasi-identifiers, stored values", details)


def check_l_diversity(con: duckdb.DuckDBPyConnection, micro: MicrodataRules) -> Check:
    details, below = [], 0
    l_min = micro.l_diversity.l
    for wave in _waves(con):
        concepts = key_concepts(con, wave, micro)
        classes = equivalence_classes(con, wave, concepts)
        classes["group"] = classes[concepts].agg("|".join, axis=1) if concepts else "all"
        sensitive = [c for (c,) in con.execute(
            "SELECT concept FROM concepts WHERE wave = ? AND disclosure = 'sensitive' AND stored AND type <> 'text' "
            "ORDER BY concept", [wave]).fetchall()]
        answers = con.execute(
            """
            SELECT a.respondent_key, a.concept, string_agg(a.value, ',' ORDER BY a.value) AS value
            FROM answers a JOIN choices ch ON ch.wave = a.wave AND ch.concept = a.concept AND ch.code = a.value
            WHERE a.wave = ? AND NOT ch.missing GROUP BY ALL
            """, [wave]).df()
        merged = answers.merge(classes[["respondent_key", "group"]], on="respondent_key")
        for concept in sensitive:
            diversity = merged[merged["concept"] == concept].groupby("group")["value"].nunique()
            if diversity.empty:
                continue
            low = int((diversity < l_min).sum())
            below += low
            details.append({"wave": wave, "question": concept, "l": int(diversity.min()),
                            "groups": int(len(diversity)), "groups_below_l": low})
    passed = below == 0 or not micro.l_diversity.enforce
    worst = min((d["l"] for d in details), default=0)
    note = "" if micro.l_diversity.enforce else " (reported, not enforced)"
    return Check("l-diversity", passed,
                 f"lowest l {worst}; {below} group-question pairs under l = {l_min}{note}", details)


# --- published tables -------------------------------------------------------------------------

# Each published view: its table key, and the (n, count) column pairs it shows.
PUBLISHED = {
    "published_estimates": ("indicator_id, wave, breakdown, group_code", [("n", "count")]),
    "published_gaps": ("indicator_id, wave, breakdown, group_code", [("n", "count"), ("rest_n", "rest_count")]),
    "published_changes": ("indicator_id, breakdown, group_code, wave", [("n", None), ("previous_n", None)]),
}


def check_published_cells(con: duckdb.DuckDBPyConnection, rules: DisclosureRules) -> Check:
    views = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    details = []
    for view, (key, pairs) in PUBLISHED.items():
        if view not in views:
            continue
        for n_col, count_col in pairs:
            small_cell = (f" OR least({count_col}, {n_col} - {count_col}) < {rules.min_cell}" if count_col else "")
            rows = con.execute(
                f"SELECT {key}, {n_col}{', ' + count_col if count_col else ''} FROM {view} "
                f"WHERE NOT suppressed AND ({n_col} < {rules.min_group_n}{small_cell}) ORDER BY ALL"
            ).fetchall()
            names = [k.strip() for k in key.split(",")] + [n_col] + ([count_col] if count_col else [])
            details += [{"table": view, **dict(zip(names, row))} for row in rows]
    return Check("published cells", not details,
                 f"{len(details)} published figures under the thresholds (groups under {rules.min_group_n}, "
                 f"or fewer than {rules.min_cell} answering one way)", details)


@dataclass
class System:
    """Linear equations over the hidden values of a release, with the bounds an attacker knows.

    Solved as a mixed-integer programme (HiGHS, through scipy): the range a hidden value can take
    is its minimum and maximum over every solution that agrees with what is published."""

    names: list[str] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    equations: list[tuple[dict[int, float], float]] = field(default_factory=list)  # sum = value
    inequalities: list[tuple[dict[int, float], float]] = field(default_factory=list)  # sum <= value

    def variable(self, name: str, integer: bool, lower: float, upper: float) -> int:
        self.names.append(name)
        self.integer.append(integer)
        self.lower.append(lower)
        self.upper.append(upper)
        return len(self.names) - 1

    def either(self, first: tuple[dict[int, float], float], second: tuple[dict[int, float], float], big: float) -> None:
        """At least one of two inequalities holds (a binary switch between them, big-M)."""
        switch = self.variable("either", True, 0, 1)
        self.inequalities.append(({**first[0], switch: -big}, first[1]))
        self.inequalities.append(({**second[0], switch: big}, second[1] + big))

    def value_range(self, terms: dict[int, float], sides: tuple[int, ...] = (1, -1)) -> tuple[float, float]:
        """The smallest and largest value of a linear expression over every feasible solution."""
        from scipy.optimize import Bounds, LinearConstraint, milp

        width = len(self.names)
        rows = [(t, v, v) for t, v in self.equations] + [(t, -np.inf, v) for t, v in self.inequalities]
        matrix = np.zeros((len(rows), width))
        for r, (t, _, _) in enumerate(rows):
            for i, coef in t.items():
                matrix[r, i] = coef
        constraints = [LinearConstraint(matrix, [r[1] for r in rows], [r[2] for r in rows])] if rows else []
        objective = np.zeros(width)
        for i, coef in terms.items():
            objective[i] = coef
        found = {1: -np.inf, -1: np.inf}  # what is not asked for stays open
        # Sums of cells with bounds and count <= n form a totally unimodular system: its linear
        # programme has whole-number optima, so integrality is only needed for the either-or switches.
        integrality = np.array(self.integer, dtype=int) if "either" in self.names else np.zeros(width, dtype=int)
        for sign in sides:
            result = milp(sign * objective, integrality=integrality,
                          bounds=Bounds(self.lower, self.upper), constraints=constraints)
            found[sign] = float(objective @ result.x) if result.status == 0 else sign * -np.inf
        return found[1], found[-1]


def table_systems(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[tuple, System, list[dict]]]:
    """One system per published table (indicator, wave, breakdown) that hides something.

    The attacker knows every published figure, the rules and the reasons given, how many people
    each wave has (the report says so), and, to be safe, how many people in the table are in no
    group of it (`rest_n` of the published gaps, or other tables, can tell it). More equations
    (other breakdowns, other indicators about the same people) can be added to the same system."""
    kinds = dict(con.execute("SELECT indicator_id, kind FROM indicator_catalogue").fetchall())
    sizes = dict(con.execute("SELECT wave, count(*) FROM respondents GROUP BY wave").fetchall())
    cells = con.execute(
        "SELECT indicator_id, wave, breakdown, group_code, n, count, estimate, suppressed, suppression "
        "FROM indicator_estimates ORDER BY indicator_id, wave, breakdown, group_code"
    ).df()
    overall = cells[cells["breakdown"] == "all"].set_index(["indicator_id", "wave"])
    for key, table in cells[cells["breakdown"] != "all"].groupby(["indicator_id", "wave", "breakdown"], sort=True):
        total = overall.loc[[key[:2]]].reset_index() if key[:2] in overall.index else table.iloc[0:0]
        if not (table["suppressed"].any() or total["suppressed"].any()):
            continue
        yield key, *_table_system(total, table, kinds.get(key[0], "proportion"), sizes.get(key[1], 0))


def _table_system(total, groups, kind: str, population: int) -> tuple[System, list[dict]]:
    measures = ["n", "count" if kind == "proportion" else "sum"]
    second = measures[1]
    system, targets = System(), []
    terms: dict[str, dict[int, float]] = {m: {} for m in measures}
    constant = {m: 0.0 for m in measures}  # published side of: sum of groups - total = -(in no group)
    for sign, rows in ((1.0, groups), (-1.0, total)):
        for position, row in enumerate(rows.itertuples()):
            values = {m: _true_values(rows, m)[position] for m in measures}
            if not row.suppressed:
                for m in measures:
                    constant[m] += sign * values[m]
                continue
            upper = _stated_maximum(row.suppression, r"in the group|minimum reportable")
            n = system.variable(f"n:{row.group_code}", True, 1, population if upper is None else upper)
            x = system.variable(f"{second}:{row.group_code}", second == "count",
                                0 if second == "count" else -np.inf, np.inf)
            terms["n"][n] = sign
            terms[second][x] = sign
            if second == "count":
                system.inequalities.append(({x: 1.0, n: -1.0}, 0.0))  # count <= n
                small = _stated_maximum(row.suppression, r"answered one way")
                if small is not None:  # few said yes, or few said no
                    system.either(({x: 1.0}, small), ({n: 1.0, x: -1.0}, small), population)
            targets.append({"group_code": row.group_code, "n": n, second: x, "true": values})
    for m in measures:
        if terms[m]:
            outside = _true_values(total, m)[0] - sum(_true_values(groups, m)) if len(total) else 0.0
            system.equations.append((terms[m], -outside - constant[m]))
    return system, targets


def _true_values(rows, measure: str) -> list[float]:
    if measure == "n":
        return [float(v) for v in rows["n"]]
    if measure == "count":
        return [float(v) for v in rows["count"].fillna(0)]
    return [float(e) * float(n) for e, n in zip(rows["estimate"].fillna(0), rows["n"])]


def _stated_maximum(reason: str | None, context: str) -> float | None:
    """A suppression reason tells the attacker a bound: 'fewer than 10 respondents in the group'."""
    found = re.search(r"fewer than (\d+) respondents", reason or "")
    if found and re.search(context, reason or ""):
        return float(int(found.group(1)) - 1)
    return None


def check_derivability(con: duckdb.DuckDBPyConnection) -> Check:
    details, tables, cells = [], 0, 0
    for (indicator, wave, breakdown), system, targets in table_systems(con):
        tables += 1
        for target in targets:
            cells += 1
            found = _disclosure(system, target)
            if found:
                details.append({"indicator_id": indicator, "wave": int(wave), "breakdown": breakdown,
                                "group_code": target["group_code"], "disclosed": found})
    return Check("suppressed cells cannot be worked out", not details,
                 f"{cells} hidden cells in {tables} tables checked against their published totals; "
                 f"{len(details)} can be worked out exactly", details)


def _disclosure(system: System, target: dict) -> str | None:
    """What an attacker learns exactly about one hidden cell, if anything.

    The true values are one solution, so a bound the truth already passes needs no solving: "nobody
    answered yes" can only be learnt when nobody did, and a count is only pinned if it cannot move."""
    n, true = target["n"], target["true"]
    if "count" in target:
        c = target["count"]
        if true["count"] == 0 and system.value_range({c: 1.0}, sides=(-1,))[1] < 1:
            return "nobody in the group answered yes"
        if true["count"] == true["n"] and system.value_range({n: 1.0, c: -1.0}, sides=(-1,))[1] < 1:
            return "everybody in the group answered yes"
    if not _pinned(system, n, true["n"]):
        return None
    if "count" in target:
        return f"n = {int(true['n'])} and count = {int(true['count'])}" if _pinned(system, target["count"], true["count"]) else None
    return f"n = {int(true['n'])} and its mean" if _pinned(system, target["sum"], true["sum"], tolerance=1e-6) else None


def _pinned(system: System, variable: int, truth: float, tolerance: float = 0.5) -> bool:
    """Whether every solution gives the variable its true value (whole numbers: within 0.5)."""
    if system.value_range({variable: 1.0}, sides=(-1,))[1] > truth + tolerance:
        return False
    return system.value_range({variable: 1.0}, sides=(1,))[0] >= truth - tolerance


# --- identifiers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Needle:
    kind: str
    tokens: tuple[str, ...]


def identifier_values(paths: Paths, rules: AuditRules) -> tuple[list[Needle], list[dict]]:
    """The identifier values of every raw export present (real and synthetic), as token sequences."""
    from pipeline.instrument import Disclosure, instrument_path, load_instrument
    from pipeline.ingest import read_export
    from pipeline.run import wave_of

    needles: set[Needle] = set()
    unreadable = []
    for path in [*export_files(paths.raw), *export_files(paths.synthetic)]:
        try:
            instrument = load_instrument(instrument_path(paths.surveys, wave_of(path)))
            export = read_export(path, instrument)
        except Exception as exc:  # noqa: BLE001 - any file the audit cannot read is reported, not skipped
            unreadable.append({"file": str(path.relative_to(paths.root)), "problem": type(exc).__name__})
            continue
        ids = export.identifiers
        for column in ids.columns:
            if column not in NAME_PARTS:
                needles |= _needles(column, ids[column].tolist(), rules)
        if set(NAME_PARTS) <= set(ids.columns):
            full = [f"{a} {b}" for a, b in zip(ids["first_name"], ids["last_name"]) if a and b]
            needles |= _needles("full_name", full, rules)
        for question in instrument.by_disclosure(Disclosure.direct):
            if question.id in export.answers:
                needles |= _needles(question.id, export.answers[question.id].tolist(), rules)
    return sorted(needles, key=lambda n: (n.kind, n.tokens)), unreadable


def _needles(kind: str, values: Iterable, rules: AuditRules) -> set[Needle]:
    found = set()
    for value in values:
        if value is None or not isinstance(value, (str, int, float)):
            continue
        tokens = tuple(TOKEN.findall(str(value).lower()))
        if sum(map(len, tokens)) >= rules.min_identifier_chars:
            found.add(Needle(kind, tokens))
    return found


def output_files(paths: Paths) -> list[Path]:
    """Everything a run writes outside the warehouse file: report, run records, QA, quote reviews."""
    roots = [paths.site, paths.runs, paths.warehouse_dir / "qa", paths.root / "data" / "review"]
    files = [p for root in roots if root.is_dir() for p in sorted(root.rglob("*")) if p.is_file()]
    return files + sorted(p for p in paths.warehouse_dir.glob("*.json") if p.name != AUDIT_FILE)


def check_identifiers(paths: Paths, con: duckdb.DuckDBPyConnection, needles: list[Needle],
                      unreadable: list[dict]) -> Check:
    index: dict[str, list[Needle]] = {}
    for needle in needles:
        index.setdefault(needle.tokens[0], []).append(needle)
    found: dict[tuple[str, str], int] = {}
    for where, text in _warehouse_texts(con):
        for kind in _matches(text, index):
            found[(where, kind)] = found.get((where, kind), 0) + 1
    files = output_files(paths)
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for kind in _matches(text, index):
            where = str(path.relative_to(paths.root))
            found[(where, kind)] = found.get((where, kind), 0) + 1
    details = [{"where": where, "identifier": kind, "occurrences": n} for (where, kind), n in sorted(found.items())]
    details += [{"where": u["file"], "identifier": "the export could not be read to collect its identifiers",
                 "occurrences": 0, "problem": u["problem"]} for u in unreadable]
    return Check("no identifier in any output", not details,
                 f"{len(needles)} identifier values searched for in every warehouse table and {len(files)} output "
                 f"files; {len(found)} places hold one", details)


def _warehouse_texts(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[str, str]]:
    tables = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main' "
        "ORDER BY table_name, ordinal_position").fetchall()
    for table, column in tables:
        values = con.execute(f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM "{table}"').fetchall()
        for (value,) in values:
            if value:
                yield f"warehouse {table}.{column}", value


def _matches(text: str, index: dict[str, list[Needle]]) -> Iterator[str]:
    tokens = TOKEN.findall(text.lower())
    for i, token in enumerate(tokens):
        for needle in index.get(token, ()):
            if tuple(tokens[i:i + len(needle.tokens)]) == needle.tokens:
                yield needle.kind

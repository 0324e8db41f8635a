"""`consult audit`: the disclosure report of a finished run, and whether it may be published.

Checks, each passing or failing on its own:
- k-anonymity: the smallest group of respondents sharing their key quasi-identifiers, as stored,
  in every wave, and how many respondents are in groups under k (surveys/privacy.yaml).
- l-diversity: for each sensitive question, the fewest different answers found in a group
  (reported; it fails the audit only when the rules say `enforce: true`).
- published cells: no figure that leaves the warehouse is under the small-cell thresholds
  (surveys/disclosure.yaml).
- derivability: for every hidden cell, the range of values it can take given everything published
  in its wave (every table and breakdown, overall figures, gaps and changes, and the links between
  indicators whose definitions share questions: pipeline/derivation.py), solved exactly (integer
  programming); a range of width zero means it is disclosed.
- identifier scan: no identifier value of the raw exports (names, emails, IPs, coordinates, response
  ids, exact timestamps, direct-identifier answers) appears in any output: warehouse tables, the
  report, run records, QA output, quote review files. In any case, with or without accents, as the
  scrubber matches a respondent's own name ("Belanger" in the export, "Bélanger" in a report).
  The identifiers are those of the exports of the warehouse's own data (data/raw/ for real data,
  data/synthetic/ for the synthetic consultation: the other's prove nothing). A loaded wave whose
  exports are gone (deleted by `consult purge-raw` once published, the documented last step) has
  nothing left to search for: the check is `not checked` for it, neither ok nor failed, and says
  so, with the last audit that did search for its identifiers. It does not fail the audit: the
  warehouse was searched while the exports were there, every later page is built from that
  warehouse, and the pattern scan still runs; so `consult audit` and a new release version stay
  possible after publication, but the verdict reads "PASSED, except ..." and names the waves.
- identifier pattern scan: nothing the scrubber's precise detectors find (emails, phone numbers, URLs,
  @handles, IP addresses, social insurance numbers, postal codes, street addresses:
  deidentify.precise_findings) in any text column of the warehouse or any output file, whether or
  not it was ever in an identifier column: an email typed into an open answer or a number question
  that some path stored or printed without scrubbing. What the project's own definitions write
  (the release's contact and URL, a reference's source: surveys/, reports/ sources) is not a finding.

The report names where something was found and what kind of identifier it is, never the value (the
pattern scan shows its first two characters, to help find it).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import itertools
import json
import operator
import datetime as dt
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import duckdb
import numpy as np
import pandas as pd

from pipeline.anonymity import (
    AuditRules,
    MicrodataRules,
    load_privacy_rules,
    privacy_path,
)
from pipeline.config import Paths, export_files
from pipeline.deidentify import fold_accents, precise_findings
from pipeline.derivation import CHANGE, GAP, Contradiction, disclosures, linked_families, wave_systems, withheld_gaps
from pipeline.disclosure import DisclosureRules, add_no_group, load_rules
from pipeline.indicators import load_catalogue, sql_literal
from pipeline.load import connect

AUDIT_FILE = "audit.json"
# Identifier columns that are single given names or surnames are searched as a full name only:
# alone they match ordinary words (White, Hope) in any report.
NAME_PARTS = ("first_name", "last_name")
COORDINATES = ("latitude", "longitude")
TOKEN = re.compile(r"\w+")
# Many values are tokenized at once (_token_texts), joined by SEPARATOR: NOT_TOKEN is what lies
# between two tokens of one value. For ASCII text, faster: each byte lower-cased or, when not a
# token character, made a space (bytes over 127 never occur: their entries are left as they are).
SEPARATOR = "\x00"
NOT_TOKEN = re.compile(r"[^\w\x00]+")
ASCII_TOKENS = bytes(ord(chr(b).lower()) if chr(b).isalnum() or chr(b) in "_\x00" else ord(" ") for b in range(128)) \
    + bytes(range(128, 256))
ASCII_SPACES = re.compile(rb"  +")
SPACES = operator.methodcaller("count", " ")
LAST_SPACE = operator.methodcaller("rfind", " ")
NEEDLE_BATCH = 1 << 16  # values tokenized at once
IDENTIFIER_CHECK = "no identifier in any output"
PATTERN_CHECK = "no identifier pattern in any output"
OUTPUT_SCANS = (IDENTIFIER_CHECK, PATTERN_CHECK)  # checks of the files: made again after rendering
WAREHOUSE_PLACE = "warehouse "  # how the identifier check names a warehouse column where it found one


@dataclass
class Check:
    name: str
    passed: bool
    summary: str
    details: list[dict] = field(default_factory=list)
    equations: list[dict] = field(default_factory=list)  # what a derivability check solved, per wave
    # the identifier check: the waves searched, and those it could not search (wave, reason, the
    # last audit that did): `passed` then says only that nothing was found in what was searched
    waves_checked: list[int] = field(default_factory=list)
    not_checked: list[dict] = field(default_factory=list)

    @property
    def state(self) -> str:
        if not self.passed:
            return "FAIL"
        return "not checked" if self.not_checked and not self.waves_checked else "ok"


@dataclass
class AuditReport:
    checks: list[Check]
    key: str = ""  # hash of everything the audit read (audit_key): same key, same answers
    # the warehouse tables' part of the key (warehouse_digest), for an audit reusing this one: not saved
    warehouse: str = field(default="", repr=False, compare=False)

    audited_on: str = ""  # the day the checks were made (kept by a reuse: same checks)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def exceptions(self) -> list[str]:
        """What could not be checked, for the verdict: `the identifier check, which could not be run
        for wave 2025 (its raw exports were deleted with purge-raw on 2026-06-02)`."""
        return [f"the identifier check ({check.name}), which could not be run for " + "; ".join(
                    f"wave {gap['wave']} ({gap['reason']})" for gap in check.not_checked)
                for check in self.checks if check.not_checked]

    @property
    def verdict(self) -> str:
        if not self.passed:
            return "FAILED"
        return "PASSED" + (", except " + " and ".join(self.exceptions) if self.exceptions else "")

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed, "verdict": self.verdict, "audited_on": self.audited_on,
                           "key": self.key, "checks": [asdict(c) for c in self.checks]}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> AuditReport:
        data = json.loads(text)
        return cls([Check(**c) for c in data["checks"]], data.get("key", ""), audited_on=data.get("audited_on", ""))

    def lines(self) -> Iterator[str]:
        yield f"Disclosure audit: {self.verdict}"
        for check in self.checks:
            yield f"  [{check.state}] {check.name}: {check.summary}"
            if not check.passed:
                for detail in check.details[:20]:
                    yield "         " + ", ".join(f"{k}={v}" for k, v in detail.items())
                if len(check.details) > 20:
                    yield f"         ... and {len(check.details) - 20} more (see the JSON report)"


def audit_file(paths: Paths) -> Path:
    return paths.warehouse_dir / AUDIT_FILE


def _previous_audit(paths: Paths) -> AuditReport | None:
    try:
        return AuditReport.from_json(audit_file(paths).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def audit_key(paths: Paths, warehouse: str | None = None) -> str:
    """A hash of everything the audit reads: every warehouse table's content, the raw and synthetic
    exports (where the identifiers come from), every output file, the definitions and the code.
    A re-run with nothing new has the same key and need not repeat the checks. `warehouse`: the
    tables' digest when already known (an earlier audit of the same command, same warehouse)."""
    digest = hashlib.sha256((warehouse or warehouse_digest(paths)).encode())
    package = Path(__file__).parent
    code = [(p.relative_to(package.parent), p) for p in sorted([*package.rglob("*.py"), *package.rglob("*.sql")])]
    files = [(p.relative_to(paths.root), p) for p in [*export_files(paths.raw), *export_files(paths.synthetic),
                                                      *output_files(paths), *sorted(paths.surveys.rglob("*.yaml"))]]
    for name, path in [*files, *code]:  # names relative to the project: the same key in any folder
        digest.update(str(name).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def warehouse_digest(paths: Paths) -> str:
    """Every warehouse table's content, order-independent: its row count and the sum of its rows' hashes."""
    digest = hashlib.sha256()
    with connect(paths.warehouse, read_only=True) as con:
        tables = [t for (t,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
        for table in tables:
            digest.update(repr((table, con.execute(f'SELECT count(*), sum(hash("{table}")) FROM "{table}"').fetchall()))
                          .encode())
    return digest.hexdigest()


def run_audit(paths: Paths, write: bool = True, reuse: AuditReport | None = None) -> AuditReport:
    """Every check on the warehouse and the outputs; writes data/warehouse/audit.json.

    `reuse`: an audit made earlier in the same command, on the same warehouse (e.g. before the
    report was rendered): its warehouse checks still hold, so only the identifier scans, which also
    cover the files written since, are done again (nor is the warehouse hashed again for the key)."""
    warehouse = reuse.warehouse if reuse is not None and reuse.warehouse else warehouse_digest(paths)
    key = audit_key(paths, warehouse)
    previous = _previous_audit(paths)
    if previous is not None and previous.key == key and previous.passed:
        previous.warehouse = warehouse
        return previous  # nothing it reads has changed since it passed: same checks, same answers
    privacy = load_privacy_rules(privacy_path(paths))
    tables = load_rules(paths.disclosure_file)
    with connect(paths.warehouse, read_only=True) as con:
        source, coverage = identifier_sources(paths, con, previous)
    needles, unreadable = identifier_values(paths, privacy.audit, source)
    with connect(paths.warehouse, read_only=True) as con:
        if reuse:
            checks = [c for c in reuse.checks if c.name not in OUTPUT_SCANS]
        else:
            with equivalence_classes(con, privacy.microdata) as classes:
                checks = [check_k_anonymity(con, privacy.microdata, classes),
                          check_l_diversity(con, privacy.microdata, classes)]
            checks += [check_published_cells(con, tables), check_derivability(con, load_catalogue(paths.indicators_file), tables)]
        earlier = {c.name: c for c in reuse.checks} if reuse else {}
        checks = [*checks, check_identifiers(paths, con, needles, unreadable, earlier.get(IDENTIFIER_CHECK), coverage),
                  check_identifier_patterns(paths, con, earlier.get(PATTERN_CHECK))]
    report = AuditReport(checks, key, warehouse, audited_on=dt.date.today().isoformat())
    if write:
        audit_file(paths).write_text(report.to_json(), encoding="utf-8")
    return report


# --- microdata --------------------------------------------------------------------------------


def _waves(con: duckdb.DuckDBPyConnection) -> list[int]:
    return [w for (w,) in con.execute("SELECT DISTINCT wave FROM respondents ORDER BY wave").fetchall()]


def key_concepts(con: duckdb.DuckDBPyConnection, wave: int, micro: MicrodataRules) -> list[str]:
    asked = {c for (c,) in con.execute("SELECT concept FROM concepts WHERE wave = ? AND stored", [wave]).fetchall()}
    return [c for c in micro.key_quasi_identifiers if c in asked]


def _classes(concepts: list[str], sets: dict[str, bool]) -> str:
    """SQL for one wave's respondents (parameter: $wave) and their key quasi-identifiers' stored
    values, one column per key concept (NULL: not answered): respondents with the same columns are
    one equivalence class. `sets`: the multiple-choice key concepts, each with whether its codes fit
    in a bit mask (at most 63 different values).

    Shaped for a million respondents: the concepts are a literal IN list (the answers are stored
    concept by concept, so the scan skips the other concepts' row groups), and each value is first
    made an integer (idx: its rank among its concept's values), so the aggregate per respondent
    is over integers, not strings. A multiple choice's answer is the set of its codes: the OR of one
    bit per code (or, past 63 codes, their sorted distinct list), gathered in the same aggregate
    (no list per respondent and concept to sort and join). Any other question has one answer row
    at most."""
    if not concepts:
        return "SELECT respondent_key, 'all' AS c1 FROM respondents WHERE wave = $wave"
    columns = []
    for i, concept in enumerate(concepts, 1):
        this = f"FILTER (WHERE concept = {sql_literal(concept)})"
        if concept not in sets:
            columns.append(f"max(idx) {this} AS c{i}")
        elif sets[concept]:
            columns.append(f"bit_or(1::BIGINT << idx) {this} AS c{i}")
        else:
            columns.append(f"list_sort(list_distinct(list(idx) {this})) AS c{i}")
    return f"""
        WITH given AS (
            SELECT respondent_key, concept, value FROM answers
            WHERE wave = $wave AND concept IN ({", ".join(map(sql_literal, concepts))})),
        codes AS (
            SELECT concept, value, (row_number() OVER (PARTITION BY concept ORDER BY value) - 1)::INTEGER AS idx
            FROM (SELECT DISTINCT concept, value FROM given)),
        by_respondent AS (
            SELECT respondent_key, {", ".join(columns)}
            FROM given JOIN codes USING (concept, value) GROUP BY respondent_key)
        SELECT r.respondent_key, {", ".join(f"c{i}" for i in range(1, len(concepts) + 1))}
        FROM respondents r LEFT JOIN by_respondent USING (respondent_key) WHERE r.wave = $wave"""


def _key_sets(con: duckdb.DuckDBPyConnection, wave: int, concepts: list[str]) -> dict[str, bool]:
    """The multiple-choice concepts among these, each with whether its values fit in a bit mask."""
    several = [c for (c,) in con.execute("SELECT concept FROM concepts WHERE wave = ? AND type = 'multiple' "
                                         "AND list_contains(?, concept)", [wave, concepts]).fetchall()]
    if not several:
        return {}
    counts = dict(con.execute(f"SELECT concept, count(DISTINCT value) FROM answers WHERE wave = ? "
                              f"AND concept IN ({', '.join(map(sql_literal, several))}) GROUP BY concept",
                              [wave]).fetchall())
    return {c: counts.get(c, 0) <= 63 for c in several}


# Each wave's key concepts, and the temporary table of its respondents' classes (equivalence_classes).
Classes = dict[int, tuple[list[str], str]]


@contextmanager
def equivalence_classes(con: duckdb.DuckDBPyConnection, micro: MicrodataRules) -> Iterator[Classes]:
    """Every wave's respondents with their equivalence class, computed once for the k-anonymity and
    l-diversity checks, as temporary tables of the connection (allowed on a read-only one): each
    respondent a number (rid) and its class a number (the rank of its `_classes` values), integer
    keys being much cheaper to group by than the strings. Dropped on leaving: the identifier scan
    reads every table the connection shows, temporary ones included."""
    classes: Classes = {}
    for wave in _waves(con):
        concepts = key_concepts(con, wave, micro)
        classes[wave] = (concepts, f"audit_classes_{wave}")
        order = ", ".join(f"c{i}" for i in range(1, max(len(concepts), 1) + 1))
        con.execute(f"""CREATE OR REPLACE TEMP TABLE {classes[wave][1]} AS
                        SELECT respondent_key, (row_number() OVER ())::INTEGER AS rid,
                               (dense_rank() OVER (ORDER BY {order}))::INTEGER AS class
                        FROM ({_classes(concepts, _key_sets(con, wave, concepts))})""", {"wave": wave})
    yield classes
    # not on an error: it reaches the caller as it is (an out-of-memory one, say), and closing the
    # connection drops the tables anyway
    for _, table in classes.values():
        con.execute(f"DROP TABLE temp.{table}")


def check_k_anonymity(con: duckdb.DuckDBPyConnection, micro: MicrodataRules, classes: Classes | None = None) -> Check:
    if classes is None:
        with equivalence_classes(con, micro) as classes:
            return check_k_anonymity(con, micro, classes)
    details, failed = [], False
    for wave, (concepts, table) in classes.items():
        groups, smallest, at_risk, respondents = con.execute(
            f"""SELECT count(*), min(size), coalesce(sum(size) FILTER (WHERE size < $k), 0), sum(size)
                FROM (SELECT count(*) AS size FROM {table} GROUP BY class)""", {"k": micro.k}).fetchall()[0]
        lost = dict(con.execute(
            "SELECT concept, cells_suppressed FROM column_protection WHERE wave = ? AND k_anonymity_key ORDER BY concept",
            [wave]).fetchall())
        levels = dict(con.execute(
            "SELECT concept, level_name FROM column_protection WHERE wave = ? AND k_anonymity_key ORDER BY concept",
            [wave]).fetchall())
        failed |= smallest < micro.k
        details.append({"wave": wave, "respondents": int(respondents), "key": ", ".join(concepts),
                        "groups": int(groups), "smallest_group": int(smallest),
                        "respondents_at_risk": int(at_risk), "cells_suppressed": lost, "generalised_to": levels})
    worst = min((d["smallest_group"] for d in details), default=0)
    return Check("k-anonymity", not failed,
                 f"smallest group {worst} (k = {micro.k}) over the key quasi-identifiers, stored values", details)


def check_l_diversity(con: duckdb.DuckDBPyConnection, micro: MicrodataRules, classes: Classes | None = None) -> Check:
    if classes is None:
        with equivalence_classes(con, micro) as classes:
            return check_l_diversity(con, micro, classes)
    details, below = [], 0
    l_min = micro.l_diversity.l
    for wave, (_, table) in classes.items():
        sensitive = con.execute(
            "SELECT concept, type = 'multiple' FROM concepts WHERE wave = ? AND disclosure = 'sensitive' AND stored "
            "AND type <> 'text' ORDER BY concept", [wave]).fetchall()
        rows = con.execute(_diversity(table, sensitive), {"wave": wave, "l": l_min}).fetchall() if sensitive else []
        for concept, lowest, groups, low in rows:
            below += low
            details.append({"wave": wave, "question": concept, "l": int(lowest), "groups": int(groups),
                            "groups_below_l": int(low)})
    passed = below == 0 or not micro.l_diversity.enforce
    worst = min((d["l"] for d in details), default=0)
    note = "" if micro.l_diversity.enforce else " (reported, not enforced)"
    return Check("l-diversity", passed,
                 f"lowest l {worst}; {below} group-question pairs under l = {l_min}{note}", details)


def _diversity(table: str, sensitive: list[tuple[str, bool]]) -> str:
    """SQL of each sensitive question's l-diversity in a wave (parameters $wave, $l): its lowest l,
    its groups (classes in `table` with an answer) and those under l, by question.

    Shaped for a million respondents: the questions are a literal IN list (the answers are stored
    concept by concept, so the scan skips the other questions' row groups), and each answer is an
    integer code (vid: one per question and non-missing code) with its question's number (cid), so
    the large GROUP BYs are over integers, not strings. A group's different answers to a question
    of at most 63 codes are counted as the bits set in the OR of one bit per code (idx: the code's
    place in its question): one group by (question, class), where a count(DISTINCT) needs a second
    one by (question, class, code), 8 million groups at a million responses. A respondent's answer
    to a multiple choice is its codes gathered and sorted (the same choices, the same answer); only
    those are gathered per respondent, any other question having one answer row at most."""
    listed = ", ".join(sql_literal(c) for c, _ in sensitive)
    several = ", ".join(sql_literal(c) for c, multiple in sensitive if multiple)
    several = f"concept IN ({several})" if several else "false"  # IN (NULL) would be NULL: no answer kept
    return f"""
        WITH codes AS (
            SELECT concept, code, {several} AS several, count(*) OVER (PARTITION BY concept) <= 63 AS few,
                   (dense_rank() OVER (ORDER BY concept))::INTEGER AS cid, (row_number() OVER ())::INTEGER AS vid,
                   (row_number() OVER (PARTITION BY concept) - 1)::INTEGER AS idx
            FROM choices WHERE wave = $wave AND NOT missing AND concept IN ({listed})),
        given AS (
            SELECT c.class, c.rid, k.cid, k.vid, k.idx, k.several, k.few
            FROM answers a JOIN codes k ON k.concept = a.concept AND k.code = a.value
            JOIN {table} c USING (respondent_key)
            WHERE a.wave = $wave AND a.concept IN ({listed})),
        diversity AS (
            SELECT cid, class, bit_count(bit_or(1::BIGINT << idx)) AS l FROM given WHERE NOT several AND few
            GROUP BY cid, class
            UNION ALL
            SELECT cid, class, count(DISTINCT vid) AS l FROM given WHERE NOT several AND NOT few GROUP BY cid, class
            UNION ALL
            SELECT cid, class, count(DISTINCT answer) AS l
            FROM (SELECT cid, class, list_sort(list(vid)) AS answer FROM given WHERE several GROUP BY class, rid, cid)
            GROUP BY cid, class)
        SELECT q.concept, min(l), count(*), count(*) FILTER (WHERE l < $l)
        FROM diversity JOIN (SELECT DISTINCT concept, cid FROM codes) q USING (cid)
        GROUP BY q.concept ORDER BY q.concept"""


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


def check_derivability(con: duckdb.DuckDBPyConnection, catalogue=None, rules: DisclosureRules | None = None) -> Check:
    """Whether any hidden cell can be worked out from everything published in its wave: every table,
    its overall figure and margins, the gaps' figures for everyone else, the changes, and (given the
    indicator catalogue) the links between indicators whose definitions share questions. Given the
    disclosure rules, the people in no group of a breakdown who fail them are hidden cells too."""
    cells = _estimate_cells(con)
    families = _families(con, catalogue, cells) if catalogue is not None else None
    if rules is not None:
        add_no_group(cells, rules)
        cells["gaps_withheld"] = withheld_gaps(cells, families)
    details, hidden, systems, used = [], 0, 0, {}
    for family, system, targets, equations in wave_systems(cells, families, published_figures(con)):
        systems += 1
        hidden += len(targets)
        wave = int(targets[0].key[1]) if targets else 0
        summary = used.setdefault(wave, {"wave": wave, "linked_indicators": [], "equations": {}})
        if len(family.indicators) > 1:
            summary["linked_indicators"].append(", ".join(family.indicators))
        for kind, count in equations.items():
            summary["equations"][kind] = summary["equations"].get(kind, 0) + count
        try:
            found = disclosures(system, targets)
        except Contradiction:
            details.append({"indicators": ", ".join(family.indicators), "wave": wave,
                            "disclosed": "the published figures contradict the equations linking them"})
            continue
        details += [{"indicator_id": t.key[0], "wave": int(t.key[1]), "breakdown": t.key[2], "group_code": t.key[3],
                     "disclosed": what} for t, what in found]
    linked = "across linked indicators, " if catalogue is not None else ""
    return Check("suppressed cells cannot be worked out", not details,
                 f"{hidden} hidden cells in {systems} systems of equations (one per wave and family of linked "
                 f"indicators: every breakdown, {linked}overall figures, gaps and changes); "
                 f"{len(details)} can be worked out exactly", details,
                 equations=[used[w] for w in sorted(used)])


def _estimate_cells(con: duckdb.DuckDBPyConnection):
    """Every cell with its true values, as the derivation needs them (a mean's sum = mean x n)."""
    cells = con.execute(
        "SELECT e.indicator_id, e.wave, e.breakdown, e.group_code, coalesce(c.kind, 'proportion') AS kind, e.n, "
        "e.count, CASE WHEN c.kind = 'mean' THEN e.estimate * e.n END AS sum, e.suppressed, e.suppression "
        "FROM indicator_estimates e LEFT JOIN indicator_catalogue c USING (indicator_id) "
        "ORDER BY e.indicator_id, e.wave, e.breakdown, e.group_code"
    ).df()
    cells["count"] = cells["count"].astype("float64")
    return cells


def _families(con: duckdb.DuckDBPyConnection, catalogue, cells) -> dict:
    from pipeline.indicators import concept_types

    kinds = {**concept_types(con), "living_wage": "numeric", **{name: "numeric" for name in catalogue.scores}}
    return linked_families(con, catalogue, kinds, cells)


def published_figures(con: duckdb.DuckDBPyConnection):
    """Figures of cells published beside the tables: each shown gap's group and everyone else, each
    shown change's two waves. As (indicator_id, wave, breakdown, group_code, measure, value, source)."""
    import pandas as pd

    views = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    parts = []
    if "published_gaps" in views:
        parts.append(
            "SELECT g.indicator_id, g.wave, g.breakdown, g.group_code, m.measure, m.value, 'gap' AS source "
            "FROM published_gaps g JOIN indicator_catalogue c USING (indicator_id), LATERAL (VALUES "
            "('n', g.n::DOUBLE), ('rest_n', g.rest_n::DOUBLE), "
            "(CASE WHEN c.kind = 'mean' THEN 'sum' ELSE 'count' END, "
            " CASE WHEN c.kind = 'mean' THEN g.estimate * g.n ELSE g.count END), "
            "('rest_count', g.rest_count::DOUBLE)) AS m(measure, value) "
            "WHERE NOT g.suppressed AND m.value IS NOT NULL")
    if "published_changes" in views:
        for wave, n, estimate in (("wave", "n", "estimate"), ("previous_wave", "previous_n", "previous_estimate")):
            parts.append(
                f"SELECT h.indicator_id, h.{wave}, h.breakdown, h.group_code, m.measure, m.value, 'change' "
                f"FROM published_changes h JOIN indicator_catalogue c USING (indicator_id), LATERAL (VALUES "
                f"('n', h.{n}::DOUBLE), (CASE WHEN c.kind = 'mean' THEN 'sum' ELSE 'count' END, "
                f" CASE WHEN c.kind = 'mean' THEN h.{estimate} * h.{n} ELSE round(h.{estimate} * h.{n} / 100) END)) "
                f"AS m(measure, value) WHERE NOT h.suppressed AND m.value IS NOT NULL")
    if not parts:
        return pd.DataFrame(columns=["indicator_id", "wave", "breakdown", "group_code", "measure", "value", "source"])
    figures = con.execute(" UNION ALL ".join(parts) + " ORDER BY ALL").df()
    figures.columns = ["indicator_id", "wave", "breakdown", "group_code", "measure", "value", "source"]
    figures["source"] = figures["source"].map({"gap": GAP, "change": CHANGE})
    return figures


# --- identifiers ------------------------------------------------------------------------------


# Identifier values to search for: each value's tokens (joined by one space: a token holds none),
# and the kinds of identifier it is (sorted; one tuple shared by every value of the same kinds).
# Millions of values for a large export: a string each, not a tuple of tokens and a set.
Needles = dict[str, tuple[str, ...]]


def identifier_values(paths: Paths, rules: AuditRules, source: str | None = None) -> tuple[Needles, list[dict]]:
    """The identifier values of the exports of `source` ('real': data/raw/, 'synthetic':
    data/synthetic/; None, a warehouse holding nothing yet: both), as token sequences.
    Kept in memory for the command, which audits before and after rendering and after the release
    (reading a large export again costs as much as the first time); never written to disk."""
    files = _source_exports(paths, source)
    key = (rules.model_dump_json(), *(_file_key(paths, path) for path in files))
    if key not in _NEEDLES_READ:
        _NEEDLES_READ.clear()  # one set of exports at a time
        _INDEXES.clear()
        _NEEDLES_READ[key] = _read_all_needles(paths, files, rules)
    return _NEEDLES_READ[key]


_NEEDLES_READ: dict[tuple, tuple[Needles, list[dict]]] = {}


def _source_exports(paths: Paths, source: str | None) -> list[Path]:
    real = export_files(paths.raw) if source in ("real", None) else []
    return [*real, *(export_files(paths.synthetic) if source in ("synthetic", None) else [])]


@dataclass
class Coverage:
    """Which loaded waves the identifier check can search for: those whose loaded exports are all
    still there. `missing`: per other wave, why not (wave, reason, last_checked)."""
    waves: list[int] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)


def identifier_sources(paths: Paths, con: duckdb.DuckDBPyConnection,
                       previous: AuditReport | None = None) -> tuple[str | None, Coverage]:
    """What the warehouse holds ('real', 'synthetic', None when nothing), and which of its loaded
    waves still have every loaded export to take identifiers from (by hash: a file of the same name
    with other content is not the one loaded). A wave without is named with the reason (purged, with
    the date, or removed by hand) and the last audit (`previous`) that searched its identifiers."""
    from pipeline.load import data_source
    from pipeline.retention import purged_files

    try:
        source = data_source(con)
        loaded = con.execute("SELECT wave, file_sha256, file_name FROM load_ledger ORDER BY wave, file_name").fetchall()
    except duckdb.CatalogException:  # a warehouse file without the schema: nothing loaded
        return None, Coverage()
    present = {_export_sha256(path) for path in _source_exports(paths, source)}
    purged = purged_files(con)
    last = _last_checked(previous)
    coverage = Coverage()
    for wave, files in itertools.groupby(loaded, key=lambda row: int(row[0])):
        gone = [(sha, name) for _, sha, name in files if sha not in present]
        if not gone:
            coverage.waves.append(wave)
            continue
        dates = sorted({purged[sha]["purged_on"] for sha, _ in gone if sha in purged})
        if all(sha in purged for sha, _ in gone):
            reason = f"its raw exports were deleted with purge-raw on {', '.join(dates)}"
        else:
            names = ", ".join(name for sha, name in gone if sha not in purged)
            reason = (f"its loaded exports {names} are no longer in the exports folder, and were not deleted "
                      "with purge-raw")
        if wave in last:
            reason += f"; last searched for, with no identifier found, by the audit of {last[wave]}"
        coverage.missing.append({"wave": wave, "reason": reason, "last_checked": last.get(wave, "")})
    return source, coverage


def _export_sha256(path: Path) -> str:
    """An export's hash, read once per command while the file is unchanged (size and time): a run
    audits three times (before and after rendering, after the release), and a large export takes
    a second to hash each time."""
    from pipeline.ingest import file_sha256

    stat = path.stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _EXPORT_HASHES:
        _EXPORT_HASHES[key] = file_sha256(path)
    return _EXPORT_HASHES[key]


_EXPORT_HASHES: dict[tuple, str] = {}


def _last_checked(previous: AuditReport | None) -> dict[int, str]:
    """The waves whose identifiers an earlier audit searched for without finding any, and when."""
    check = next((c for c in previous.checks if c.name == IDENTIFIER_CHECK), None) if previous else None
    if check is None or not check.passed:
        return {}
    last = {int(gap["wave"]): gap["last_checked"] for gap in check.not_checked if gap.get("last_checked")}
    return {**last, **{int(w): previous.audited_on for w in check.waves_checked if previous.audited_on}}


def _file_key(paths: Paths, path: Path) -> tuple:
    """What the needles of an export depend on: the file, and its wave's instrument."""
    from pipeline.ingest import file_sha256
    from pipeline.instrument import instrument_path

    try:
        stat = path.stat()
        return path, stat.st_size, stat.st_mtime_ns, file_sha256(instrument_path(paths.surveys, _wave(path)))
    except Exception:  # noqa: BLE001 - an unreadable file is reported by _read_all_needles
        return (path,)


def _read_all_needles(paths: Paths, files: list[Path], rules: AuditRules) -> tuple[Needles, list[dict]]:
    needles: Needles = {}
    kinds: dict[tuple[str, ...], tuple[str, ...]] = {}  # every tuple of kinds in `needles`, shared
    unreadable = []
    for path in files:
        try:
            _read_needles(needles, kinds, paths, path, rules)
            gc.collect()  # the export's frames, before the next file is read
        except Exception as exc:  # noqa: BLE001 - any file the audit cannot read is reported, not skipped
            unreadable.append({"file": str(path.relative_to(paths.root)), "problem": type(exc).__name__})
    return needles, unreadable


def _wave(path: Path) -> int:
    from pipeline.run import wave_of

    return wave_of(path)


def _read_needles(needles: Needles, kinds: dict[tuple[str, ...], tuple[str, ...]], paths: Paths, path: Path,
                  rules: AuditRules) -> None:
    from pipeline.ingest import read_export
    from pipeline.instrument import Disclosure, instrument_path, load_instrument

    instrument = load_instrument(instrument_path(paths.surveys, _wave(path)))
    wanted = [q.id for q in instrument.by_disclosure(Disclosure.direct)]
    export = read_export(path, instrument, answers_of=wanted)  # the other answers are not even built
    direct = [question for question in wanted if question in export.answers]
    # only what holds identifiers is kept while the needles are made: the other answers are let go
    ids, answers = export.identifiers, export.answers[direct]
    del export
    for column in ids.columns:
        if column not in NAME_PARTS:
            _add_needles(needles, kinds, column, ids[column], rules)
    if set(NAME_PARTS) <= set(ids.columns):
        full = [f"{a} {b}" for a, b in zip(ids["first_name"], ids["last_name"]) if a and b]
        _add_needles(needles, kinds, "full_name", full, rules)
    for question in direct:
        _add_needles(needles, kinds, question, answers[question], rules)


def _add_needles(needles: Needles, kinds: dict[tuple[str, ...], tuple[str, ...]], kind: str, values: Iterable,
                 rules: AuditRules) -> None:
    """`kinds`: every tuple of kinds already in `needles`, to share (not copy) it. Millions of values:
    most are new needles of this kind alone, which take the shared one-kind tuple directly."""
    alone = kinds.setdefault((kind,), (kind,))
    texts, others = _distinct_values(values)
    for start in range(0, len(texts), NEEDLE_BATCH):  # batches: what a batch holds for a moment stays small
        found = _token_texts(texts[start:start + NEEDLE_BATCH])
        _merge_needles(needles, kinds, kind, _needles_kept(kind, found, rules), alone)
    found = [_needle_of(value) for value in others]
    _merge_needles(needles, kinds, kind, _needles_kept(kind, found, rules), alone)


def _distinct_values(values: Iterable) -> tuple[list[str], list]:
    """The distinct values worth reading (text and numbers), the texts apart from the others."""
    # one dimension, whatever the cells (a list of choices stays one cell)
    values = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.fromiter(values, dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        distinct = pd.unique(values)  # in C; only texts (and missing values), so equal values are equal texts
    else:  # numbers too: 1 == 1.0 == True, written differently; the first of them stands, as in a set
        distinct = list(set(v for v in values if isinstance(v, (str, int, float))))
    texts = [v for v in distinct if type(v) is str]
    return texts, [v for v in distinct if type(v) is not str and isinstance(v, (str, int, float))]


def _needle_of(value: str | int | float) -> str:
    """A value as the audit searches for it: its lower-case tokens without accents, joined by one
    space. Accents are folded as the scrubber folds them (deidentify.fold_accents): a name typed
    "Belanger" on the platform and "Bélanger" in a report (or the other way round) is one person."""
    return " ".join(TOKEN.findall(fold_accents(str(value).lower())))


def _token_texts(texts: list[str]) -> list[str]:
    """_needle_of every text, made on one string joining them all by NUL: neither a token character
    nor a cased or case-ignorable one, so the lower case and the tokens of each text are those it
    has alone. One by one when a text holds a NUL itself."""
    joined = SEPARATOR.join(texts)
    if joined.count(SEPARATOR) != max(len(texts) - 1, 0):
        return [_needle_of(text) for text in texts]
    if joined.isascii():  # the usual case: ASCII's token characters are [A-Za-z0-9_], lower case its own
        joined = ASCII_SPACES.sub(b" ", joined.encode("ascii").translate(ASCII_TOKENS)).decode("ascii")
    else:
        joined = NOT_TOKEN.sub(" ", fold_accents(joined.lower()))  # one call over the whole batch
    # every run between tokens (not across texts) is now one space
    joined = joined.replace(" " + SEPARATOR, SEPARATOR).replace(SEPARATOR + " ", SEPARATOR).strip(" ")
    return joined.split(SEPARATOR) if texts else []


def _needles_kept(kind: str, found: list[str], rules: AuditRules) -> set[str]:
    """The needles long enough (the spaces joining their tokens do not count) and precise enough,
    tested in C over the whole list (millions of needles)."""
    lengths = np.fromiter(map(len, found), dtype=np.int64, count=len(found))
    keep = lengths - np.fromiter(map(SPACES, found), dtype=np.int64, count=len(found)) >= rules.min_identifier_chars
    if kind in COORDINATES:
        keep &= _precise_enough(lengths, np.fromiter(map(LAST_SPACE, found), dtype=np.int64, count=len(found)), rules)
    return set(itertools.compress(found, keep.tolist()))


def _precise_enough(lengths: np.ndarray, last_spaces: np.ndarray, rules: AuditRules) -> np.ndarray:
    """A coordinate is searched for only when written with enough decimals: 43.125 (a trailing zero
    dropped) is also a percentage the report publishes (69 of 160), and says no more than a town.
    Of needles of these lengths whose last space is there (-1: none), those with two tokens or more
    and enough characters in the last."""
    return (last_spaces >= 0) & (lengths - last_spaces - 1 >= rules.min_coordinate_decimals)


def _merge_needles(needles: Needles, kinds: dict[tuple[str, ...], tuple[str, ...]], kind: str, found: set[str],
                   alone: tuple[str, ...]) -> None:
    """Needles already known (as another kind) take this kind too; the others (most) are new.
    Loops in C: hundreds of thousands are known (a response's end and record times are one)."""
    common = needles.keys() & found
    found -= common
    known = list(map(needles.__getitem__, common))
    widened: dict[tuple[str, ...], tuple[str, ...]] = {}  # each tuple of kinds known (a few), with this kind
    for kinds_known in set(known):
        either = kinds_known if kind in kinds_known else tuple(sorted((*kinds_known, kind)))
        widened[kinds_known] = kinds.setdefault(either, either)
    needles.update(zip(common, map(widened.__getitem__, known)))
    needles.update(zip(found, itertools.repeat(alone)))


def output_files(paths: Paths) -> list[Path]:
    """Everything a run writes outside the warehouse file: report, run records, QA, quote reviews."""
    roots = [paths.site, paths.runs, paths.warehouse_dir / "qa", paths.root / "data" / "review"]
    files = [p for root in roots if root.is_dir() for p in sorted(root.rglob("*")) if p.is_file()]
    return files + sorted(p for p in paths.warehouse_dir.glob("*.json") if p.name != AUDIT_FILE)


def check_identifiers(paths: Paths, con: duckdb.DuckDBPyConnection, needles: Needles,
                      unreadable: list[dict], earlier: Check | None = None, coverage: Coverage | None = None) -> Check:
    """`earlier`: this check, made in the same command on the same warehouse and needles: its
    warehouse findings still hold, so only the files are read again. `coverage`: the loaded waves
    whose identifiers are at hand, and the others (not checked, said in the summary)."""
    index = needle_index(needles)
    found: dict[tuple[str, str], int] = {}
    if earlier is not None:
        found = {(d["where"], d["identifier"]): d["occurrences"] for d in earlier.details
                 if d["where"].startswith(WAREHOUSE_PLACE)}
    else:
        for where, texts in _warehouse_texts(con, index):
            for kind in _matches_among(texts, index):
                found[(where, kind)] = found.get((where, kind), 0) + 1
    files = output_files(paths)
    for path in files:
        text = _output_text(path)
        for kind in _matches(text, index):
            where = str(path.relative_to(paths.root))
            found[(where, kind)] = found.get((where, kind), 0) + 1
    details = [{"where": where, "identifier": kind, "occurrences": n} for (where, kind), n in sorted(found.items())]
    details += [{"where": u["file"], "identifier": "the export could not be read to collect its identifiers",
                 "occurrences": 0, "problem": u["problem"]} for u in unreadable]
    summary = (f"{len(needles)} identifier values searched for in every warehouse table and {len(files)} output "
               f"files; {len(found)} places hold one")
    coverage = coverage or Coverage()
    if coverage.missing:
        gaps = "not checked for " + "; ".join(f"wave {gap['wave']} ({gap['reason']})" for gap in coverage.missing) \
            + ": no export is left to take its identifiers from"
        summary = f"{gaps}; waves {', '.join(map(str, coverage.waves))}: {summary}" if coverage.waves else \
            f"{gaps}, so none was searched for" + (f" ({summary})" if needles or found else "")
    return Check(IDENTIFIER_CHECK, not details, summary, details, waves_checked=coverage.waves,
                 not_checked=coverage.missing)


def _output_text(path: Path) -> str:
    """What a reader of the file sees: a PDF's text is compressed, so it is extracted page by page.
    Third-party code embedded verbatim in a page is left out (see `vendored_code`)."""
    if path.suffix.lower() == ".pdf":
        from pypdf import PdfReader

        return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
    text = path.read_text(encoding="utf-8", errors="replace")
    for code in vendored_code():
        text = text.replace(code, "")
    return text


@functools.cache
def vendored_code() -> tuple[str, ...]:
    """Libraries the pages embed as they come from their package (plotly.js: the vendored basic
    bundle, or the full library plotly.py ships, see pipeline/plotly_bundle.py): they hold no survey
    answer, and their thousands of numeric constants (map projections: 79.4188, 48.5904) equal
    coordinates of a large export by chance. Only an exact copy is left out."""
    from plotly.offline import get_plotlyjs

    from pipeline.plotly_bundle import basic_bundle_text

    basic = basic_bundle_text()
    return (get_plotlyjs(),) if basic is None else (basic, get_plotlyjs())


def _warehouse_texts(con: duckdb.DuckDBPyConnection, index: NeedleIndex) -> Iterator[tuple[str, list[str]]]:
    """Each column of every table, with its distinct values as text; of a whole-number column, only
    the values some needle can match (see `_integers_matching`)."""
    tables = con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'main' "
        "ORDER BY table_name, ordinal_position").fetchall()
    for table, column, data_type in tables:
        where = f"{WAREHOUSE_PLACE}{table}.{column}"
        if data_type in INTEGER_TYPES:
            yield where, _integers_matching(con, table, column, index)
        else:
            yield where, _distinct_texts(con, table, column)


# Whole numbers written as text are one token of digits (a minus sign is no token character).
INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"})


def _integers_matching(con: duckdb.DuckDBPyConnection, table: str, column: str, index: NeedleIndex) -> list[str]:
    """The distinct values of a whole-number column that equal a needle, as text. Such a value's text
    is one token of digits, which only a one-token needle of the same digits (no leading zero) can
    match; so they are picked out by the database, not by reading every distinct value (a million
    respondent keys over 60 million answer rows) and matching each in Python. Same findings."""
    if not index.digits:
        return []
    values = con.execute(f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM "{table}" '
                         f'WHERE "{column}" IN (SELECT unnest($values::HUGEINT[]))', {"values": index.digits}).fetchall()
    return [value for (value,) in values]


def _distinct_texts(con: duckdb.DuckDBPyConnection, table: str, column: str) -> list[str]:
    """A column's distinct values as text (none empty). Made distinct before they are cast: a key
    column holds the same million numbers over 60 million answer rows, and a number is far cheaper
    to compare than its text (the cast is applied to the distinct values only). Left out by the
    database: keyed hashes (64 hex digits: response, content and fix keys, a million a column), one
    token that no identifier is, which neither check could find anything in."""
    values = con.execute(
        f'SELECT v FROM (SELECT DISTINCT CAST("{column}" AS VARCHAR) AS v FROM (SELECT DISTINCT "{column}" '
        f"FROM \"{table}\")) WHERE NOT regexp_full_match(v, '[0-9a-f]{{64}}')").fetchall()
    return [value for (value,) in values if value]


# --- identifier patterns -----------------------------------------------------------------------

# Definitions the project writes itself, whose emails, URLs and numbers the outputs may repeat (the
# release's contact and URL, a reference's source). Not deidentification.yaml: what it lists is
# what must be scrubbed.
SCRUB_LIST = "deidentification.yaml"
STYLESHEET = re.compile(r"<style\b[^>]*>.*?</style\s*>", re.IGNORECASE | re.DOTALL)
ONE_LONG_WORD = re.compile(r"[0-9A-Za-z_]{12,}")  # a hash or response key: no precise detector finds anything in it
URL_HOST = re.compile(r"^(?:https?://)?(?:www\.)?([^/?#:\s\"'<>()\[\]{}|\\^`]+)", re.IGNORECASE)


def check_identifier_patterns(paths: Paths, con: duckdb.DuckDBPyConnection, earlier: Check | None = None) -> Check:
    """What the scrubber's precise detectors find in every text column of the warehouse (its
    distinct values) and every output file, but what the project's own definitions write.
    `earlier`: this check, made in the same command on the same warehouse: its warehouse findings
    still hold, so only the files are read again."""
    read = dict(_FILE_FINDINGS)  # the files of an earlier scan in this command, by their content
    _FILE_FINDINGS.clear()  # only this scan's files are kept
    own = project_findings(paths, read)
    found: dict[tuple[str, str], list] = {}  # (where, kind) -> [occurrences, masked example]
    if earlier is not None:
        found = {(d["where"], d["identifier"]): [d["occurrences"], d["example"]] for d in earlier.details
                 if d["where"].startswith(WAREHOUSE_PLACE)}
    else:
        for where, texts in _warehouse_free_texts(con):
            _add_findings(found, where, SEPARATOR.join(texts), own)
    files = output_files(paths)
    for path in files:
        if path.suffix.lower() != ".css":  # a stylesheet holds no answer (its @media is no handle)
            for kind, value in _file_findings(path, read):
                _add_finding(found, str(path.relative_to(paths.root)), kind, value, own)
    details = [{"where": where, "identifier": kind, "occurrences": n, "example": example}
               for (where, kind), (n, example) in sorted(found.items())]
    return Check(PATTERN_CHECK, not details,
                 f"emails, phone numbers, URLs, handles, IP addresses, social insurance numbers, postal codes and "
                 f"street addresses looked for in every text column of the warehouse and {len(files)} output files; "
                 f"{len(found)} places hold one", details)


def _add_findings(found: dict[tuple[str, str], list], where: str, text: str, own: frozenset[str]) -> None:
    for kind, value in precise_findings(text):
        _add_finding(found, where, kind, value, own)


def _add_finding(found: dict[tuple[str, str], list], where: str, kind: str, value: str, own: frozenset[str]) -> None:
    if _normalised(kind, value) not in own:
        entry = found.setdefault((where, kind), [0, mask(value)])
        entry[0] += 1


# What the precise detectors found in each file the last pattern scan read, by the file's type and
# content: the audits after rendering and after the release read again the files that did not change.
_FILE_FINDINGS: dict[tuple[str, bytes], list[tuple[str, str]]] = {}


def _file_findings(path: Path, read: dict[tuple[str, bytes], list[tuple[str, str]]]) -> list[tuple[str, str]]:
    key = (path.suffix.lower(), hashlib.sha256(path.read_bytes()).digest())
    if key not in _FILE_FINDINGS:
        _FILE_FINDINGS[key] = read[key] if key in read else list(precise_findings(_pattern_text(path)))
    return _FILE_FINDINGS[key]


def mask(value: str) -> str:
    """What the audit report shows of a value it found: its first two characters."""
    return value[:2] + "…"


def _normalised(kind: str, value: str) -> str:
    """A finding as it is compared with the project's own: a URL by its site, a phone number by its
    digits, anything else in lower case."""
    if kind == "url":
        host = URL_HOST.match(value)
        return f"url {host.group(1).lower().rstrip('.') if host else value.lower()}"
    if kind == "phone":
        return "phone " + "".join(c for c in value if c.isdigit()).removeprefix("1")
    return f"{kind} {value.lower()}"


def project_findings(paths: Paths, read: dict | None = None) -> frozenset[str]:
    """What the precise detectors find in the project's own definitions (surveys/, but its scrub
    list, and the report sources), normalised: what outputs may repeat. `read`: see _file_findings."""
    sources = [p for p in sorted(paths.surveys.rglob("*.yaml")) if p.name != SCRUB_LIST]
    reports = paths.root / "reports"
    if reports.is_dir():
        sources += [p for p in sorted(reports.rglob("*")) if p.is_file() and p.suffix in (".qmd", ".yml", ".yaml", ".md")
                    and not {"_site", ".quarto"} & set(p.relative_to(reports).parts)]
    return frozenset(_normalised(kind, value) for path in sources for kind, value in _file_findings(path, read or {}))


def _pattern_text(path: Path) -> str:
    """An output's text as the pattern scan reads it: as the identifier scan does, without the
    stylesheets of a page (CSS rules such as @media, colours such as #b8b8b8: no answer is there)."""
    text = _output_text(path)
    return STYLESHEET.sub(" ", text) if path.suffix.lower() in (".html", ".htm") else text


def _warehouse_free_texts(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[str, list[str]]]:
    """Each text column (VARCHAR, lists of them) of every table, with its distinct values: numbers,
    dates and booleans hold no typed text (and their digits would be taken for phone numbers).
    Left out: values that are a single word of 12 ASCII letters, digits or _ or
    more (hashes, response keys: a million of them), in which no precise detector finds anything
    (each needs some other character, or the whole value: a phone number has 11 digits at most)."""
    columns = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main' "
        "AND data_type LIKE 'VARCHAR%' ORDER BY table_name, ordinal_position").fetchall()
    for table, column in columns:
        texts = _distinct_texts(con, table, column)
        # filtered here, not in the query: DuckDB would test every row, not each distinct value
        yield f"{WAREHOUSE_PLACE}{table}.{column}", [text for text in texts if not ONE_LONG_WORD.fullmatch(text)]


def needle_index(needles: Needles) -> NeedleIndex:
    """The index of these needles, made once for the command's audits (as the needles are read once)."""
    if id(needles) not in _INDEXES or _INDEXES[id(needles)][0] is not needles:
        _INDEXES.clear()
        _INDEXES[id(needles)] = (needles, NeedleIndex(needles))
    return _INDEXES[id(needles)][1]


_INDEXES: dict[int, tuple[Needles, NeedleIndex]] = {}


class NeedleIndex:
    """The needles' kinds by their tokens, and the numbers of tokens of the needles that start with
    each token: a text position is looked up once per length, not once per needle sharing its first
    token (thousands of coordinates start with "43")."""

    def __init__(self, needles: Needles):
        self.kinds = needles
        self.lengths: dict[str, tuple[int, ...]] = {}
        shared: dict[tuple[int, ...], tuple[int, ...]] = {}  # a few distinct tuples for millions of needles
        for needle in needles:
            count = needle.count(" ") + 1
            first = needle if count == 1 else needle[:needle.index(" ")]  # a one-token needle is its own key
            known = self.lengths.get(first, ())
            if count not in known:
                either = tuple(sorted((*known, count)))
                self.lengths[first] = shared.setdefault(either, either)
        # the whole numbers a one-token needle of digits is (either sign: "-42" holds the token "42");
        # one with a leading zero is the text of no number, and none is beyond any integer column
        self.digits = sorted({sign * int(needle) for needle in needles if needle.isdigit()
                              and needle.isascii() and (needle == "0" or needle[0] != "0") and len(needle) <= 20 for sign in (1, -1)})


def _matches(text: str, index: NeedleIndex) -> Iterator[str]:
    """The kind of every needle occurrence in the text, one per occurrence."""
    return _token_matches(TOKEN.findall(fold_accents(text.lower())), index)


def _matches_among(texts: list[str], index: NeedleIndex) -> Iterator[str]:
    """_matches of each text (a million distinct values of a column): all are tokenized together,
    and only those holding a token that starts some needle are looked at one by one."""
    forms: list[str] = []
    for start in range(0, len(texts), NEEDLE_BATCH):
        forms += _token_texts(texts[start:start + NEEDLE_BATCH])
    starts = index.lengths.keys() & set(" ".join(forms).split(" "))
    if starts:
        for form in forms:
            tokens = form.split(" ")
            if not starts.isdisjoint(tokens):
                yield from _token_matches(tokens, index)


def _token_matches(tokens: list[str], index: NeedleIndex) -> Iterator[str]:
    for i, token in enumerate(tokens):
        for length in index.lengths.get(token, ()):
            yield from index.kinds.get(" ".join(tokens[i:i + length]), ())

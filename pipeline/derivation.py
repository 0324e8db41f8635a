"""What a reader can work out from all the published figures of one wave taken together.

Published figures are linked by exact equations: in every table, the groups of a breakdown and the
people in none of its groups add up to the overall figure; and indicators whose definitions share
questions count overlapping sets of people. Two such indicators of the same group are linked
through the group's *atoms*: the kinds of respondent their definitions can tell apart. For
"any incivility" and "frequent incivility" the atoms are: in the population but neither, any but not
frequent, and both (frequent without any is impossible); every published n and count is a sum of
atoms. The atoms come from the definitions (surveys/indicators.yaml) and the questionnaire's
answers, never from a list written here: every answer a respondent could give to the questions an
indicator family uses is tried, and each distinct pattern of (outside the population, in it,
counted) across the family is an atom. Band partitions, nested and complementary conditions and
shared denominators all follow from that.

The attacker is assumed to know every published figure, the rules and the reasons given, and, to be
safe, how many people (and how many counted) are in no group of a breakdown wherever the gaps'
"everyone else" figures could give it away (a group and the overall figure shown). Where those
people would fail the primary rules themselves, the gaps are not published and they are one more
hidden cell, keyed by NO_GROUP (pipeline/disclosure.py). A hidden value is disclosed when every solution of the equations (in
whole numbers, with the bounds the reasons state) gives it its true value: its feasible range has
width zero. Ranges are solved with HiGHS (scipy), one system per family of linked indicators and
wave, with sparse matrices. Before solving: a value that is a linear combination of the equations
is pinned (checked exactly, in whole numbers); a count whose linear relaxation cannot move is pinned;
and every solution found is checked against every value still open.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

import duckdb
import numpy as np
import pandas as pd

# Kinds of equation, as the audit reports them.
CELL = "published figures of a cell (n, count or sum)"
MARGIN = "a breakdown's groups and the people in none of them add up to the overall figure"
OUTSIDE = "people in no group of a breakdown (known from the gaps' everyone-else figures)"
GAP = "gap figures: the group's own, and everyone else's (rest = everyone who answered - group)"
CHANGE = "change figures: a cell's n and estimate shown beside the previous wave's"
MAX_PROFILES = 200_000  # answer combinations tried per family of linked indicators
CELL_COLUMNS = ("indicator_id", "wave", "breakdown", "group_code", "n", "count", "sum", "suppressed", "suppression",
                "no_group", "gaps_withheld")
NO_GROUP = "~in no group~"  # the group code of the people in no group of a breakdown, as a hidden cell's key


@dataclass(frozen=True)
class Family:
    """Indicators of one wave linked by their definitions, and the atoms that link them.

    An atom gives, for each indicator in order: 0 outside its population, 1 in its population (n)
    but not counted, 2 counted. A mean's value is in n only (0 or 1)."""

    indicators: tuple[str, ...]
    kinds: tuple[str, ...]
    atoms: tuple[tuple[int, ...], ...]


def alone(indicator: str, kind: str) -> Family:
    """An indicator linked to no other: its atoms are 'not counted' and 'counted'."""
    return Family((indicator,), (kind,), ((1,), (2,)) if kind == "proportion" else ((1,),))


# --- families of linked indicators, from the definitions -------------------------------------


def linked_families(con: duckdb.DuckDBPyConnection, catalogue, kinds: dict[str, str],
                    cells: pd.DataFrame) -> dict[int, list[Family]]:
    """For each wave of `cells`, the indicators it has grouped into families that share a question,
    with their atoms; `kinds` is each concept's type (as indicators.build_wide returns it)."""
    by_id = {i.id: i for i in catalogue.indicators}
    families: dict[int, list[Family]] = {}
    for wave, in_wave in cells.groupby("wave", sort=True):
        ids = [i.id for i in catalogue.indicators if i.id in set(in_wave["indicator_id"])]
        codes = _answer_codes(con, int(wave))
        families[int(wave)] = [_family([by_id[i] for i in group], kinds, codes) for group in _linked(ids, by_id)]
    return families


def _linked(ids: list[str], by_id: dict) -> list[list[str]]:
    """Indicators that share a question, a condition concept or a value, transitively; the
    population rule alone (everyone in a paid role) does not link two indicators."""
    parent = {i: i for i in ids}

    def root(i: str) -> str:
        while parent[i] != i:
            i = parent[i]
        return i

    owner: dict[str, str] = {}
    for i in ids:
        indicator = by_id[i]
        used = set(indicator.questions) | ({indicator.value} if indicator.value else set())
        if indicator.condition is not None:
            used |= set(_concepts(indicator.condition))
        for concept in sorted(used):
            if concept in owner:
                parent[root(i)] = root(owner[concept])
            else:
                owner[concept] = i
    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _concepts(expr) -> list[str]:
    from pipeline.indicators import _rule_concepts

    return _rule_concepts(expr)


def _answer_codes(con: duckdb.DuckDBPyConnection, wave: int) -> dict[str, list[str]]:
    rows = con.execute("SELECT concept, list(code ORDER BY code) FROM choices WHERE wave = ? AND NOT missing "
                       "GROUP BY concept", [wave]).fetchall()
    return dict(rows)


def _family(indicators: list, kinds: dict[str, str], codes: dict[str, list[str]]) -> Family:
    ids = tuple(i.id for i in indicators)
    ikinds = tuple(i.kind for i in indicators)
    if len(indicators) == 1:
        return alone(ids[0], ikinds[0])
    from pipeline.indicators import _answered, _q, compile_rule

    rules = [r for i in indicators for r in _leaves(i.population) + (_leaves(i.condition) if i.condition else [])]
    concepts = sorted({c for i in indicators for c in
                       _concepts(i.population) + i.questions + ([i.value] if i.value else [])
                       + (_concepts(i.condition) if i.condition else [])})
    values = {c: _representatives(c, kinds.get(c), rules, codes.get(c, [])) for c in concepts}
    if int(np.prod([len(v) for v in values.values()])) > MAX_PROFILES:
        raise ValueError(f"indicators {', '.join(ids)} share too many questions to work out how their figures "
                         f"are linked ({' x '.join(str(len(v)) for v in values.values())} answer combinations)")
    literals = {c: _literal(v, kinds.get(c)) for c, v in values.items()}
    signature = ", ".join(
        f"CASE WHEN {compile_rule(i.population, kinds)} AND {_answered(i.questions)} THEN "
        + (f"CASE WHEN {compile_rule(i.condition, kinds)} THEN 2 ELSE 1 END" if i.kind == "proportion" else "1")
        + " ELSE 0 END" for i in indicators)
    sources = " CROSS JOIN ".join(f"(SELECT unnest({literal}) AS {_q(c)})" for c, literal in literals.items())
    with duckdb.connect() as scratch:
        found = scratch.execute(f"SELECT DISTINCT [{signature}] AS atom FROM {sources} ORDER BY atom").fetchall()
    atoms = tuple(tuple(a) for (a,) in found if any(a))
    return Family(ids, ikinds, atoms)


def _leaves(expr) -> list:
    inner = getattr(expr, "any", None) or getattr(expr, "all", None)
    return [leaf for e in inner for leaf in _leaves(e)] if inner is not None else [expr]


def _representatives(concept: str, kind: str | None, rules: list, codes: list[str]) -> list:
    """One answer of each kind the rules tell apart, and no answer (None)."""
    on = [r for r in rules if r.question == concept]
    if kind in ("numeric", "date", None):
        cuts = {float(v) for r in on for v in (r.below, r.at_least) if isinstance(v, (int, float))}
        # compared with another concept (a wage below the living wage): values on both sides
        compared = any(isinstance(v, str) for r in on for v in (r.below, r.at_least)) or any(
            concept in (r.below, r.at_least) for r in rules)
        return [None, *sorted({0.0, *cuts, *(c - 0.5 for c in cuts), *((1.0, 2.0, 3.0) if compared else ())})]
    lists = [set(c) for r in on for c in (r.in_, r.not_in, r.only) if c is not None]
    every = list(dict.fromkeys([*codes, *(c for listed in lists for c in sorted(listed)), "~another answer~"]))
    classes: dict[tuple[bool, ...], str] = {}
    for code in every:
        classes.setdefault(tuple(code in listed for listed in lists), code)
    picks = list(classes.values())
    if kind == "multiple":
        return [None, *(list(s) for k in range(1, len(picks) + 1) for s in itertools.combinations(picks, k))]
    return [None, *picks]


def _literal(values: list, kind: str | None) -> str:
    """Answers as a DuckDB list literal of the column's type in respondent_wide."""
    def one(value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, list):
            return "[" + ", ".join(one(v) for v in value) + "]"
        return repr(float(value)) if isinstance(value, float) else "'" + value.replace("'", "''") + "'"

    kind_sql = "VARCHAR[]" if kind == "multiple" else "DOUBLE" if kind in ("numeric", "date", None) else "VARCHAR"
    return "[" + ", ".join(one(v) for v in values) + f"]::{kind_sql}[]"


# --- the system of equations ----------------------------------------------------------------


@dataclass
class System:
    """Linear equations over what a release hides, with the bounds an attacker knows.

    Solved as a mixed-integer programme (HiGHS, through scipy, sparse): the range a hidden value can
    take is its minimum and maximum over every solution that agrees with what is published."""

    names: list[str] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    equations: list[tuple[dict[int, float], float]] = field(default_factory=list)  # sum = value
    inequalities: list[tuple[dict[int, float], float]] = field(default_factory=list)  # sum <= value
    # a shown cell's key -> what hiding it would do to the equations (see _hiding)
    hiding: dict[tuple, tuple[list[int], list[dict[int, float]]]] = field(default_factory=dict)
    _compiled: tuple | None = None
    _solved: bool = False  # a whole-number solve has run (had it found no solution, Contradiction was raised)
    _row_space: dict[int, dict[int, int]] | None = None  # the equations, reduced (_row_echelon)

    def variable(self, name: str, integer: bool, lower: float, upper: float) -> int:
        self.names.append(name)
        self.integer.append(integer)
        self.lower.append(lower)
        self.upper.append(upper)
        self._compiled = self._row_space = None
        self._solved = False
        return len(self.names) - 1

    def fixes(self, terms: dict[int, float]) -> bool:
        """Whether the equations alone give the expression a single value (it is a linear combination
        of them, found exactly, in whole numbers): then no solution can move it, and nothing needs solving."""
        if self._row_space is None:
            self._row_space = _row_echelon([t for t, _ in self.equations])
        if self._row_space is None or any(not float(c).is_integer() for c in terms.values()):
            return False  # not worked out in whole numbers: left to the solver
        return not _reduce(terms, self._row_space)

    def either(self, first: tuple[dict[int, float], float], second: tuple[dict[int, float], float], big: float) -> None:
        """At least one of two inequalities holds (a binary switch between them, big-M)."""
        switch = self.variable("either", True, 0, 1)
        self.inequalities.append(({**first[0], switch: -big}, first[1]))
        self.inequalities.append(({**second[0], switch: big}, second[1] + big))

    def _compile(self) -> tuple:
        from scipy.optimize import Bounds, LinearConstraint
        from scipy.sparse import csr_array

        if self._compiled is None:
            rows = [(t, v, v) for t, v in self.equations] + [(t, -np.inf, v) for t, v in self.inequalities]
            entries = [(r, i, c) for r, (t, _, _) in enumerate(rows) for i, c in t.items()]
            matrix = csr_array(([e[2] for e in entries], ([e[0] for e in entries], [e[1] for e in entries])),
                               shape=(len(rows), len(self.names)))
            constraints = [LinearConstraint(matrix, [r[1] for r in rows], [r[2] for r in rows])] if rows else []
            self._compiled = (constraints, Bounds(self.lower, self.upper), np.array(self.integer, dtype=int))
        return self._compiled

    def _objective(self, terms: dict[int, float], sign: int) -> np.ndarray:
        """milp minimises: maximising (sign 1) is minimising the negated expression."""
        objective = np.zeros(len(self.names))
        for i, coef in terms.items():
            objective[i] = -sign * coef
        return objective

    def solve(self, terms: dict[int, float], sign: int) -> tuple[str, np.ndarray | None]:
        """Maximise (sign 1) or minimise (sign -1) a linear expression: ('optimal', a solution),
        ('unbounded', None), or ('infeasible', None) when the published figures contradict the model."""
        from scipy.optimize import milp

        constraints, bounds, integrality = self._compile()
        result = milp(self._objective(terms, sign), integrality=integrality, bounds=bounds, constraints=constraints)
        self._solved = True
        if result.status == 0:
            return "optimal", result.x
        return ("infeasible", None) if result.status == 2 else ("unbounded", None)

    def relaxed_within(self, terms: dict[int, float], sign: int, bound: float) -> bool:
        """Whether the linear relaxation (whole numbers not required) already keeps the expression
        at most `bound` (sign 1) or at least `bound` (sign -1): then so does every whole solution."""
        from scipy.optimize import milp

        constraints, bounds, integrality = self._compile()
        result = milp(self._objective(terms, sign), integrality=np.zeros_like(integrality), bounds=bounds,
                      constraints=constraints)
        return result.status == 0 and sign * (_value(terms, result.x) - bound) <= 0


def _row_echelon(rows: list[dict[int, float]], sources: dict[int, set[int]] | None = None
                 ) -> dict[int, dict[int, int]] | None:
    """The rows in row echelon form, exactly, in whole numbers: pivot variable -> its row, whose
    smallest variable it is and in which no smaller pivot appears. None when a coefficient is not a
    whole number. Not reduced further (other pivots may stay in a row): membership needs no more.
    `sources`, if given, gets for each pivot the positions of the rows its row was made from."""
    if any(not float(c).is_integer() for row in rows for c in row.values()):
        return None
    pivots: dict[int, dict[int, int]] = {}
    for position, row in enumerate(rows):
        used = {position}
        rest = _reduce(row, pivots, sources, used if sources is not None else None)
        if rest:  # else a combination of the rows before
            pivots[min(rest)] = rest
            if sources is not None:
                sources[min(rest)] = used
    return pivots


def _reduce(terms: dict[int, float], pivots: dict[int, dict[int, int]], sources: dict[int, set[int]] | None = None,
            used: set[int] | None = None) -> dict[int, int]:
    """What is left of an expression (whole coefficients) once the pivot rows are taken out
    (nothing: it is a combination of them). Smallest pivot first: a pivot row only brings in
    larger variables, so no pivot taken out comes back. `used`, if given, gets the `sources` of
    the pivot rows taken out."""
    rest = {i: int(c) for i, c in terms.items() if c}
    while found := [i for i in rest if i in pivots]:
        pivot = min(found)
        _eliminate(rest, pivots[pivot], pivot)
        if used is not None:
            used |= sources[pivot]
    return rest


def _eliminate(row: dict[int, int], other: dict[int, int], pivot: int) -> None:
    """Take `pivot` out of `row` with a multiple of `other`, in whole numbers (divided by their gcd)."""
    scale, factor = other[pivot], row[pivot]
    for i in row:
        row[i] *= scale
    for i, c in other.items():
        value = row.get(i, 0) - factor * c
        if value:
            row[i] = value
        else:
            row.pop(i, None)
    divisor = math.gcd(*row.values())
    if divisor > 1:
        for i in row:
            row[i] //= divisor


def _value(terms: dict[int, float], x: np.ndarray) -> float:
    return float(sum(c * x[i] for i, c in terms.items()))


class Contradiction(ValueError):
    """The published figures have no solution under the equations: the model of them is wrong."""


@dataclass
class Target:
    """A hidden cell: the expressions of its n and of its count (or sum, for a mean), and their
    true values."""

    key: tuple  # indicator_id, wave, breakdown, group_code
    kind: str
    n: dict[int, float]
    measure: dict[int, float]
    true_n: float
    true_measure: float


def wave_systems(cells: pd.DataFrame, families: dict[int, list[Family]] | None = None,
                 extra: pd.DataFrame | None = None) -> Iterator[tuple[Family, System, list[Target], dict[str, int]]]:
    """One system per wave and family of linked indicators that hides something.

    `cells`: indicator_id, wave, breakdown, group_code, kind, n, count, sum (a mean's n x mean),
    suppressed, suppression, with true values (the 'all' breakdown holds the overall figure).
    `families`: linked_families(); None treats every indicator as linked to no other.
    `extra`: further published figures of cells (gaps, changes): indicator_id, wave, breakdown,
    group_code, measure (n, count, sum, rest_n or rest_count), value, source (GAP or CHANGE)."""
    for family, members in family_cells(cells, families):
        if hides_something(members):
            figures = extra[extra["wave"] == members["wave"].iloc[0]] if extra is not None and not extra.empty else None
            yield family, *family_system(family, members, figures)


def withheld_gaps(cells: pd.DataFrame, families: dict[int, list[Family]] | None) -> pd.Series:
    """Whether each cell's table keeps its gaps unpublished: the people in none of its groups fail the
    primary rules (column no_group), or those of an indicator linked to it (same wave, family and
    breakdown) do. Linked indicators count some of the same people in no group, so the gaps of one
    would tell the other's."""
    withheld = pd.Series(False, index=cells.index)
    if "no_group" not in cells.columns:
        return withheld
    for _, members in family_cells(cells, families):
        breakdowns = set(members.loc[members["no_group"].notna(), "breakdown"])
        if breakdowns:
            withheld[members.index[members["breakdown"].isin(breakdowns)]] = True
    return withheld


def hides_something(cells: pd.DataFrame) -> bool:
    """Whether any of the cells is hidden, or leaves people in no group who fail the rules hidden."""
    return bool(cells["suppressed"].any() or ("no_group" in cells.columns and cells["no_group"].notna().any()))


def family_cells(cells: pd.DataFrame, families: dict[int, list[Family]] | None) -> Iterator[tuple[Family, pd.DataFrame]]:
    """The cells of each wave and family of linked indicators."""
    for wave, in_wave in cells.groupby("wave", sort=True):
        known = list(families.get(int(wave), [])) if families is not None else []
        linked = {i for family in known for i in family.indicators}
        kinds = in_wave.drop_duplicates("indicator_id").set_index("indicator_id")["kind"]
        known += [alone(i, k) for i, k in kinds.items() if i not in linked]  # e.g. no catalogue given
        for family in known:
            members = in_wave[in_wave["indicator_id"].isin(family.indicators)]
            if not members.empty:
                yield family, members


def family_system(family: Family, cells: pd.DataFrame, figures: pd.DataFrame | None = None
                  ) -> tuple[System, list[Target], dict[str, int]]:
    system, targets, used = System(), [], {}
    # only the columns read here: itertuples costs a column lookup per column and row
    rows = list(cells[[c for c in CELL_COLUMNS if c in cells.columns]].itertuples())
    table = {(r.indicator_id, r.breakdown, r.group_code): r for r in rows}
    present = {i for i, _, _ in table}
    position = {i: k for k, i in enumerate(family.indicators) if i in present}
    keys = sorted({(r.breakdown, r.group_code) for r in rows})
    everyone = float(cells["n"].sum())  # more than any count of the family can be
    atoms = {(key, s): system.variable(f"atom:{key}:{s}", True, 0, everyone) for key in keys for s in family.atoms}

    def equation(kind: str, terms: dict[int, float], value: float) -> None:
        system.equations.append((terms, value))
        used[kind] = used.get(kind, 0) + 1

    def in_n(k: int, key) -> dict[int, float]:
        return {atoms[key, s]: 1.0 for s in family.atoms if s[k] >= 1}

    def counted(k: int, key) -> dict[int, float]:
        return {atoms[key, s]: 1.0 for s in family.atoms if s[k] == 2}

    sums: dict[tuple, dict[int, float] | float] = {}  # a mean's sum: a variable if hidden, else its value
    shown: dict[tuple, list[int]] = {}  # a published cell's key -> its equations
    margins: dict[tuple[str, str], int | None] = {}  # a mean's sums' margin in a breakdown -> its equation
    # (indicator, breakdown) whose people in no group are known -> those equations, and the groups shown
    outside_known: dict[tuple[str, str], tuple[list[int], int]] = {}
    for indicator, k in position.items():
        proportion = family.kinds[k] == "proportion"
        for key in keys:
            row = table.get((indicator, *key))
            if row is None:  # no such cell: nobody of the group is in the population
                equation(CELL, in_n(k, key), 0.0)
                continue
            true = (float(row.count) if proportion else float(row.sum))
            if not proportion:
                sums[indicator, key] = true if not row.suppressed else {
                    system.variable(f"sum:{indicator}:{key}", False, -np.inf, np.inf): 1.0}
            if not row.suppressed:
                shown[indicator, *key] = [len(system.equations), len(system.equations) + 1][:1 + proportion]
                equation(CELL, in_n(k, key), float(row.n))
                if proportion:
                    equation(CELL, counted(k, key), true)
                continue
            measure = counted(k, key) if proportion else sums[indicator, key]
            targets.append(Target((indicator, row.wave, *key), family.kinds[k], in_n(k, key), measure,
                                  float(row.n), true))
            _stated_bounds(system, in_n(k, key), counted(k, key) if proportion else None, row.suppression, everyone)
    total = next((key for key in keys if key[1] == "all"), None)  # the overall figure
    breakdowns = sorted({b for b, g in keys if g != "all"}) if total is not None else []
    outside = {(b, s): system.variable(f"outside:{b}:{s}", True, 0, everyone) for b in breakdowns for s in family.atoms}
    for b in breakdowns:
        groups = [key for key in keys if key[0] == b and key[1] != "all"]
        for s in family.atoms:
            terms = {atoms[key, s]: 1.0 for key in groups}
            equation(MARGIN, {**terms, outside[b, s]: 1.0, atoms[total, s]: -1.0}, 0.0)
        for indicator, k in position.items():
            rows = [table.get((indicator, *key)) for key in [total, *groups]]
            if rows[0] is None:
                continue
            rest = [r for r in rows[1:] if r is not None]
            # people in no group who fail the primary rules (disclosure.no_group) are a hidden cell
            # like any other: their table's gaps are not published
            withheld = next((r.no_group for r in rest if isinstance(getattr(r, "no_group", None), str)), None)
            # a gap (group + everyone else who answered) tells how many are in no group, and their
            # count or sum; it is published only beside a shown group and a shown overall figure
            known = (not any(getattr(r, "gaps_withheld", False) for r in rest) and withheld is None
                     and not rows[0].suppressed and any(not r.suppressed for r in rest))
            in_no_group = {outside[b, s]: 1.0 for s in family.atoms if s[k] >= 1}
            n_out = float(rows[0].n) - sum(float(r.n) for r in rest)
            first_row = len(system.equations)
            if known:
                equation(OUTSIDE, in_no_group, n_out)
            cell = (indicator, rows[0].wave, b, NO_GROUP)
            if family.kinds[k] == "proportion":
                counted_out = {outside[b, s]: 1.0 for s in family.atoms if s[k] == 2}
                count_out = float(rows[0].count) - sum(float(r.count) for r in rest)
                if known:
                    equation(OUTSIDE, counted_out, count_out)
                elif withheld is not None:
                    targets.append(Target(cell, "proportion", in_no_group, counted_out, n_out, count_out))
                    _stated_bounds(system, in_no_group, counted_out, withheld, everyone)
            else:
                parts = [sums[indicator, total]] + [sums[indicator, key] for key in groups if (indicator, key) in sums]
                sum_out = float(rows[0].sum) - sum(float(r.sum) for r in rest)
                before = len(system.equations)
                if known:
                    _mean_margin(system, equation, parts, sum_out)
                else:  # their sum is one more unknown of the margin
                    unknown = {system.variable(f"sum:{indicator}:{b}:no group", False, -np.inf, np.inf): 1.0}
                    _mean_margin(system, equation, parts + [unknown], 0.0)
                    if withheld is not None:
                        targets.append(Target(cell, "mean", in_no_group, unknown, n_out, sum_out))
                        _stated_bounds(system, in_no_group, None, withheld, everyone)
                margins[indicator, b] = before if len(system.equations) > before else None
            if known:
                outside_known[indicator, b] = (list(range(first_row, len(system.equations))),
                                               sum(not r.suppressed for r in rest))
    if figures is None:  # further figures would tie a hidden sum to more equations
        _hiding(system, shown, {i: family.kinds[k] for i, k in position.items()}, margins, outside_known, total)
    for r in (figures[figures["indicator_id"].isin(family.indicators)].itertuples() if figures is not None else ()):
        key = (r.breakdown, r.group_code)
        if (r.indicator_id, *key) not in table or (r.measure.startswith("rest_") and r.breakdown not in breakdowns):
            continue
        k = position[r.indicator_id]
        measure = r.measure.removeprefix("rest_")
        terms = (in_n(k, key) if measure == "n" else counted(k, key) if measure == "count"
                 else sums[r.indicator_id, key])
        if r.measure.startswith("rest_") and measure != "sum":  # rest = overall - in no group - group
            whole = in_n(k, total) if measure == "n" else counted(k, total)
            out = {outside[r.breakdown, s]: -1.0 for s in family.atoms if (s[k] >= 1 if measure == "n" else s[k] == 2)}
            terms = _combine(whole, out, {i: -c for i, c in terms.items()})
        if isinstance(terms, dict):
            equation(r.source, terms, float(r.value))
    return system, targets, used


def _hiding(system: System, shown: dict[tuple, list[int]], kinds: dict[str, str],
            margins: dict[tuple[str, str], int | None], outside_known: dict[tuple[str, str], tuple[list[int], int]],
            total: tuple | None) -> None:
    """What hiding each shown cell (with no reason given) would do to the equations, for the rank
    test (still_fixed): the rows it takes away (its own figures, the margins its sum is in, and what
    the gaps told of the people in no group when it is the overall figure or its breakdown's last
    shown group), and the rows left once its sum, then unknown, is taken out of those margins
    (their differences, among the margins whose people in no group stay known)."""
    for cell, rows in shown.items():
        indicator, key = cell[0], cell[1:]
        lost = {(i, b) for (i, b), (_, groups) in outside_known.items()
                if i == indicator and (key == total or (key[0] == b and groups == 1))}
        away = rows + [row for table in sorted(lost) for row in outside_known[table][0]]
        if kinds[indicator] == "proportion":
            system.hiding[cell] = (away, [])
            continue
        held = [(b, row) for (i, b), row in margins.items() if i == indicator and (key == total or key[0] == b)]
        kept = [row for b, row in held if (indicator, b) not in lost]
        terms = [system.equations[row][0] if row is not None else {} for row in kept]
        system.hiding[cell] = (list(dict.fromkeys(away + [row for _, row in held if row is not None])),
                               [_combine(t, {i: -c for i, c in terms[0].items()}) for t in terms[1:]])


def _combine(*parts: dict[int, float]) -> dict[int, float]:
    total: dict[int, float] = {}
    for part in parts:
        for i, c in part.items():
            total[i] = total.get(i, 0.0) + c
    return {i: c for i, c in total.items() if c}


def _mean_margin(system: System, equation, parts: list, outside: float) -> None:
    """Sum of the groups' sums + those in no group = the overall sum (only worth an equation when
    something in it is hidden)."""
    terms, constant = {}, 0.0
    for sign, part in zip([-1.0] + [1.0] * (len(parts) - 1), parts):
        if isinstance(part, dict):
            terms.update({i: sign * c for i, c in part.items()})
        else:
            constant += sign * part
    if terms:
        equation(MARGIN, terms, -outside - constant)


def stated_maximum(reason: str | None, context: str) -> float | None:
    """A suppression reason tells the attacker a bound: 'fewer than 10 respondents in the group'."""
    found = re.search(r"fewer than (\d+) respondents", reason or "")
    if found and re.search(context, reason or ""):
        return float(int(found.group(1)) - 1)
    return None


def _stated_bounds(system: System, n: dict[int, float], count: dict[int, float] | None, reason: str | None,
                   everyone: float) -> None:
    system.inequalities.append(({i: -c for i, c in n.items()}, -1.0))  # a published group has somebody in it
    upper = stated_maximum(reason, r"in the group|minimum reportable")
    if upper is not None:
        system.inequalities.append((n, upper))
    small = stated_maximum(reason, r"answered one way") if count is not None else None
    if small is not None:  # few said yes, or few said no
        said_no = {i: n.get(i, 0.0) - count.get(i, 0.0) for i in {*n, *count}}
        system.either((count, small), (said_no, small), everyone)


# --- which hidden cells follow ----------------------------------------------------------------


def disclosures(system: System, targets: list[Target], moving: set[tuple] | None = None,
                first: bool = False) -> list[tuple[Target, str]]:
    """Each hidden cell an attacker can work out exactly, and what they learn.

    The true values are one solution, so a value is pinned when no solution moves it. What the
    equations alone fix (the exact rank test) needs no solving. Solving for every other target at
    once (the sum of all, up then down) moves most of them in two solves; those left (or two counts
    or fewer from the start) are solved one by one, the linear relaxation first, and each solution
    found on the way also moves the others it can.

    `moving`: (cell key, figure) pairs known to move in a system that this one relaxes (hiding one
    more cell only drops equations, so whatever could move still can); those found to move here
    are added to it. `first`: stop at the first cell worked out, in the order of `targets`."""
    moving = set() if moving is None else moving
    checks = [check for t in targets for check in _checks(t)]
    moved = [(c[0].key, c[1]) in moving for c in checks]
    # the exact rank test first: what the equations alone fix needs no solving (and no solution moves it)
    fixed = [not m and system.fixes(c[2]) for c, m in zip(checks, moved)]
    # a count left open is solved for at least once, so that figures no solution fits are reported
    anything_open = any(_whole(c) and not m for c, m in zip(checks, moved))
    _move_together(system, checks, moved, fixed)
    pinned = {}

    def is_pinned(k: int) -> bool:
        if k not in pinned:
            pinned[k] = not moved[k] and (fixed[k] or not _moves(system, checks, k, moved))
        return pinned[k]

    found = []
    for k in range(0, len(checks), 2):
        learned = _learned(checks[k][0], lambda j, k=k: is_pinned(k + j))
        if learned is not None:
            found.append((checks[k][0], learned))
        if first and found:
            break
    if anything_open and not system._solved and system.solve({}, 1)[0] == "infeasible":
        raise Contradiction("the published figures have no solution")
    moving.update((c[0].key, c[1]) for c, m in zip(checks, moved) if m)
    return found


def _checks(t: Target) -> list[tuple]:
    """The two figures of a hidden cell a solution may move: (target, role, terms, truth, tolerance)."""
    if t.kind == "proportion":
        said_no = {i: t.n.get(i, 0.0) - t.measure.get(i, 0.0) for i in {*t.n, *t.measure}}
        return [(t, "yes", t.measure, t.true_measure, 0.5), (t, "no", said_no, t.true_n - t.true_measure, 0.5)]
    return [(t, "n", t.n, t.true_n, 0.5), (t, "sum", t.measure, t.true_measure, 1e-6)]


def _learned(t: Target, pinned: Callable[[int], bool]) -> str | None:
    """What a reader learns of the hidden cell t, given which of its two checks (0, 1) no solution
    moves (asked lazily, in this order: each answer may cost a solve)."""
    if t.kind != "proportion":
        return f"n = {int(t.true_n)} and its mean" if pinned(0) and pinned(1) else None
    if t.true_measure == 0 and pinned(0):
        return "nobody in the group answered yes"
    if t.true_n == t.true_measure and pinned(1):
        return "everybody in the group answered yes"
    if pinned(0) and pinned(1):
        return f"n = {int(t.true_n)} and count = {int(t.true_measure)}"
    return None


def still_fixed(system: System, target: Target, trials: list[tuple[list[int], list[dict[int, float]]] | None],
                moving: set[tuple]) -> Iterator[bool]:
    """For each trial, in order, whether the equations changed by it (rows taken away: indices into
    system.equations; rows added) still give the hidden cell `target` away by the exact rank test
    alone (as System.fixes does), as disclosures() would find it: then what the trial hides cannot
    protect it. None: not known here (False). `moving`: as for disclosures().

    The equations every trial keeps are reduced once, and the others once; a trial that takes
    away none of the rows a figure was found to combine needs nothing more, any other works out
    the rank of the rows it keeps."""
    checks = _checks(target)
    open_ = [(target.key, check[1]) not in moving for check in checks]
    rows = [terms for terms, _ in system.equations]
    added = [terms for trial in trials if trial is not None for terms in trial[1]]
    if any(not float(c).is_integer() for terms in rows + added + [c[2] for c in checks] for c in terms.values()):
        yield from (False for _ in trials)  # not worked out in whole numbers: left to the solver
        return
    dropped = sorted({i for trial in trials if trial is not None for i in trial[0]})
    core = _row_echelon([row for i, row in enumerate(rows) if i not in set(dropped)])
    reduced = {i: _reduce(rows[i], core) for i in dropped}
    left = [_reduce(check[2], core) for check in checks]
    sources: dict[int, set[int]] = {}
    spanned = _row_echelon([reduced[i] for i in dropped], sources)
    combined = []  # per check: whether the dropped rows give it, and which of them it was made of
    for terms in left:
        used: set[int] = set()
        combined.append((not _reduce(terms, spanned, sources, used), used))
    position = {i: k for k, i in enumerate(dropped)}
    for trial in trials:
        if trial is None:
            yield False
            continue
        away = {position[i] for i in trial[0]}
        learned = _learned(target, lambda j, away=away: open_[j] and combined[j][0] and not combined[j][1] & away)
        if learned is not None:
            yield True
            continue
        others = _row_echelon([reduced[i] for i in dropped if i not in trial[0]]
                              + [_reduce(terms, core) for terms in trial[1]])
        yield _learned(target, lambda j, others=others: open_[j] and not _reduce(left[j], others)) is not None


def _whole(check: tuple) -> bool:
    """A count (solved with the others, to the nearest person); a mean's sum is solved on its own."""
    return check[4] >= 0.5


def _move_together(system: System, checks: list, moved: list[bool], fixed: list[bool]) -> None:
    """Move as many open counts as one solution can, up then down, while that finds more; two or
    fewer are left to _moves (the linear relaxation first, often enough)."""
    whole = [k for k, c in enumerate(checks) if _whole(c) and not fixed[k]]
    progress = True
    while progress:
        progress = False
        for sign in (1, -1):
            open_ = [k for k in whole if not moved[k]]
            if len(open_) <= 2:
                return
            terms: dict[int, float] = {}
            for k in open_:
                for i, c in checks[k][2].items():
                    terms[i] = terms.get(i, 0.0) + c
            status, x = system.solve(terms, sign)
            if status == "infeasible":
                raise Contradiction("the published figures have no solution")
            if status == "optimal" and _mark_moved(checks, open_, moved, x):
                progress = True


def _mark_moved(checks: list, open_: list[int], moved: list[bool], x: np.ndarray) -> bool:
    """Mark the checks that the solution `x` gives another value than their true one."""
    marked = False
    for k in open_:
        if abs(_value(checks[k][2], x) - checks[k][3]) > checks[k][4]:
            moved[k] = marked = True
    return marked


def _moves(system: System, checks: list, k: int, moved: list[bool]) -> bool:
    """Whether some solution gives check k's expression another value than its true one. For a
    count, the linear relaxation (cheaper) first: if even it cannot move the count, nothing can.
    A solution that moves it also marks the other open counts it moves."""
    terms, truth, tolerance = checks[k][2], checks[k][3], checks[k][4]
    for sign in (1, -1):
        if _whole(checks[k]) and system.relaxed_within(terms, sign, truth + sign * tolerance):
            continue
        status, x = system.solve(terms, sign)
        if status == "infeasible":
            raise Contradiction("the published figures have no solution")
        if status == "unbounded":
            moved[k] = True
            return True
        _mark_moved(checks, [k] + [j for j, c in enumerate(checks) if _whole(c) and not moved[j]], moved, x)
        if moved[k]:
            return True
    return False

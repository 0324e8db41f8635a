"""Disclosure control: the one place every published value passes through.

Primary suppression hides cells of small groups (and proportions where almost all or almost none
answered yes); complementary suppression then hides a second cell wherever a single hidden cell
could be recovered from its breakdown's total; then every hidden cell is checked against all the
published figures of its wave taken together, across tables and linked indicators
(pipeline/derivation.py), and more cells are hidden until none can be worked out. Comparisons built
from published cells (a group against everyone else, a wave against the previous one) are hidden
with the cells they use, and a group's gap with the overall figure its everyone-else adds back to.
Rules live in surveys/disclosure.yaml.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from pipeline.derivation import (Family, disclosures, family_cells, family_system, hides_something, still_fixed,
                                 withheld_gaps)
from pipeline.instrument import read_yaml

SMALL_GROUP = "fewer than {n} respondents in the group"
SMALL_CELL = "fewer than {n} respondents answered one way"
BELOW_MIN_N = "fewer than {n} respondents, the indicator's minimum reportable n"
COMPLEMENTARY = "hidden so that another hidden value cannot be worked out from the total"
HIDDEN_GROUP = "the group's own figure is suppressed"
HIDDEN_OVERALL = "the overall figure is suppressed"
HIDDEN_REST = "the figure for everyone else is too small to publish: {reason}"
HIDDEN_WAVE = "the {wave} figure is suppressed"
HIDDEN_NO_GROUP = ("the people in none of the groups (who did not answer, or whose answer was not kept) are too "
                   "few to publish, and everyone else's figure would give theirs away: {reason}")
HIDDEN_LINKED_NO_GROUP = ("everyone else's figure would give away the people in none of the groups of a linked measure "
                          "(one that counts some of the same people), who are too few to publish")


@dataclass(frozen=True)
class DisclosureRules:
    min_group_n: int = 10
    min_cell: int = 5
    complementary: bool = True


def rules_sha256(rules: DisclosureRules) -> str:
    """What the suppression depends on in the rules (not the file's comments), as one hash: a run
    recomputes the indicators when it changed, as when the definitions did."""
    return hashlib.sha256(json.dumps(asdict(rules), sort_keys=True).encode("utf-8")).hexdigest()


def load_rules(path: Path) -> DisclosureRules:
    data = read_yaml(path) or {}
    return DisclosureRules(
        min_group_n=int(data.get("min_group_n", 10)),
        min_cell=int(data.get("min_cell", 5)),
        complementary=bool(data.get("complementary", True)),
    )


def suppress(cells: pd.DataFrame, rules: DisclosureRules, families: dict[int, list[Family]] | None = None) -> pd.DataFrame:
    """Add `suppressed` and `suppression` to cells (columns n, count, kind, and a table key).

    Cells of one table share indicator_id, wave and breakdown; the row with group_code 'all' is
    the table's total. An optional `min_n` column holds an indicator's own minimum reportable n,
    applied with the primary rules so that complementary suppression sees it. An optional
    `partition` column names indicators that split one population (their counts add up to the
    group's n): the cells of one group across such indicators form a table of their own, so a
    single hidden band cannot be worked out from the others either.

    Then, wave by wave, every hidden cell is checked against all the published figures of the wave
    taken together (pipeline/derivation.py): every breakdown and overall figure, and the indicators
    linked to it by their definitions (`families`, from derivation.linked_families; None links no
    indicators). Where one could still be worked out, a further cell is hidden until none can.
    A mean's exact sum may be given in a `total` column.

    The people in a breakdown's table who are in none of its groups (they did not answer the
    question, or their answer was not kept for k-anonymity) are a group too: the overall figure
    minus the groups gives theirs. Where they would fail the primary rules, the column `no_group`
    of the table's rows says why; they are then protected as a hidden group (complementary
    suppression, and derivation.py's check), and the table's gaps are not published
    (suppress_gaps), since everyone else's figure would give theirs away; nor are the gaps of
    indicators linked to it in that breakdown (column gaps_withheld).
    """
    cells = cells.copy()
    used = cells[[c for c in ("n", "count", "kind", "min_n") if c in cells.columns]]
    reasons = pd.Series([_primary(row, rules) for row in used.itertuples()], index=cells.index, dtype=object)
    cells["suppression"] = reasons
    cells["suppressed"] = reasons.notna()
    in_no_group = add_no_group(cells, rules)
    cells["gaps_withheld"] = withheld_gaps(cells, families)
    if rules.complementary:
        unknown = {(r.indicator_id, r.wave, r.breakdown): r for r in in_no_group.itertuples() if r.n > 0}
        tables, residuals = [], []
        for key, t in cells.groupby(["indicator_id", "wave", "breakdown"], sort=False):
            tables.append((t[t["group_code"] != "all"].index, ["n", "group_code"], True))
            residuals.append(unknown.get(key) if t["gaps_withheld"].any() else None)
        if "partition" in cells.columns:
            linked = cells[cells["partition"].notna()]
            tables += [(t.index, ["count", "indicator_id"], False)
                       for _, t in linked.groupby(["partition", "wave", "breakdown", "group_code"], sort=False)]
        _complement_all(cells, tables, rules, residuals)
        moving: dict[tuple, set[tuple]] = {}  # what is known to move, per family and wave (cells are only ever hidden)
        # a cell hidden for the wave's linked figures can expose its own table again, and back
        while _complement_linked(cells, families, moving) and _complement_all(cells, tables, rules, residuals):
            pass
    return cells


def add_no_group(cells: pd.DataFrame, rules: DisclosureRules) -> pd.DataFrame:
    """Set the column `no_group` of every cell of a breakdown's table: why the people in none of its
    groups would fail the primary rules (None when they pass, or there is nobody). Returns no_group()."""
    table = no_group(cells, rules)
    keys = ["indicator_id", "wave", "breakdown"]
    reasons = cells[keys].merge(table[keys + ["reason"]], how="left", on=keys)["reason"]
    cells["no_group"] = [r if isinstance(r, str) else None for r in reasons]
    return table


def no_group(cells: pd.DataFrame, rules: DisclosureRules) -> pd.DataFrame:
    """Per breakdown table (indicator, wave, breakdown) with an overall figure: the people of the
    population in none of its groups (groups of a breakdown do not overlap, so the overall figure
    minus the groups), their count for a proportion, and why they would fail the primary rules
    (`reason`; None when they pass or there is nobody)."""
    key = ["indicator_id", "wave"]
    columns = [c for c in ("n", "count") if c in cells.columns]
    overall = cells[cells["group_code"] == "all"]
    overall = overall[key + columns + [c for c in ("kind", "min_n") if c in cells.columns]]
    groups = cells[cells["breakdown"] != "all"]
    sums = groups.groupby(key + ["breakdown"], sort=False)[columns].sum(min_count=1).reset_index()
    table = sums.merge(overall, on=key, suffixes=("_groups", ""))
    for column in columns:
        table[column] = table[column] - table[f"{column}_groups"]
    table["reason"] = [_primary(row, rules) if row.n > 0 else None for row in table.itertuples()]
    return table[key + ["breakdown", *columns, "reason"]]


def suppress_gaps(gaps: pd.DataFrame, rules: DisclosureRules) -> pd.DataFrame:
    """Add `suppressed` and `suppression` to gaps between a group and everyone else.

    Columns used: group_suppressed (the group's cell is hidden in its published table),
    overall_suppressed (the indicator's overall figure of the wave is hidden), and the figure for
    everyone else, published with the gap: rest_n, rest_count, kind, min_n. A gap is hidden when its
    group is (with everyone else's figure the gap would give the group's back); when the overall
    figure is (the group and everyone else who answered, plus the people in none of the
    breakdown's groups, add up to it: pipeline/derivation.py assumes a reader knows those); when the
    people in none of the breakdown's groups fail the primary rules (column no_group, see suppress:
    the group and everyone else add up to those who answered, and the overall figure minus those
    gives theirs); or when everyone else's figure would fail the primary rules itself.
    """
    gaps = gaps.copy()
    reasons = [_gap_reason(row, rules) for row in gaps.itertuples()]
    gaps["suppression"] = pd.Series(reasons, index=gaps.index, dtype=object)
    gaps["suppressed"] = gaps["suppression"].notna()
    return gaps


def _gap_reason(row, rules: DisclosureRules) -> str | None:
    if row.group_suppressed:
        return HIDDEN_GROUP
    if row.overall_suppressed:
        return HIDDEN_OVERALL
    if isinstance(getattr(row, "no_group", None), str):
        return HIDDEN_NO_GROUP.format(reason=row.no_group)
    if getattr(row, "gaps_withheld", False):
        return HIDDEN_LINKED_NO_GROUP
    rest_reason = _primary(SimpleNamespace(n=row.rest_n, count=row.rest_count, kind=row.kind, min_n=row.min_n), rules)
    return None if rest_reason is None else HIDDEN_REST.format(reason=rest_reason)


def suppress_changes(changes: pd.DataFrame) -> pd.DataFrame:
    """Add `suppressed` and `suppression` to changes between waves: a change is hidden when either
    wave's figure is (columns suppressed_now, suppressed_before, wave, previous_wave)."""
    changes = changes.copy()
    reasons = [
        HIDDEN_WAVE.format(wave=row.wave) if row.suppressed_now
        else HIDDEN_WAVE.format(wave=row.previous_wave) if row.suppressed_before else None
        for row in changes.itertuples()
    ]
    changes["suppression"] = pd.Series(reasons, index=changes.index, dtype=object)
    changes["suppressed"] = changes["suppression"].notna()
    return changes


def _primary(row, rules: DisclosureRules) -> str | None:
    if row.n < rules.min_group_n:
        return SMALL_GROUP.format(n=rules.min_group_n)
    own_min = getattr(row, "min_n", None)
    if own_min is not None and own_min == own_min and row.n < own_min:
        return BELOW_MIN_N.format(n=int(own_min))
    if row.kind == "proportion" and min(row.count, row.n - row.count) < rules.min_cell:
        return SMALL_CELL.format(n=rules.min_cell)
    return None


def _complement_all(cells: pd.DataFrame, tables: list[tuple[pd.Index, list[str], bool]], rules: DisclosureRules,
                    residuals: list | None = None) -> bool:
    """Complementary suppression over tables whose members add up to a published total: wherever
    the hidden members could be worked out from the total, hide a partner (the first shown member
    in the table's partner order). That is when exactly one member is hidden, or, for the groups of
    a breakdown, when the hidden groups taken together would fail the primary rules as one group:
    their combined n, count and sum follow from the total, so together they are a published group
    (fewer than min_group_n people, or "all of them" / "none of them", must not show; for a mean,
    the combined group's mean follows). Hiding a partner can expose another table the partner
    belongs to, so repeat until nothing changes. Returns whether any cell was hidden.

    `residuals[k]`, for the breakdown table k, holds the people in none of its groups (n, count and
    `reason`, why they fail the primary rules, or None) when the table's gaps are not published
    (else None): then they are not known, and count as a hidden member, exposed on their own only
    when they fail the rules. When they are its only hidden member, the largest shown group is the
    partner: the overall figure already tells most about it, and the smaller groups the report is
    there to show stay."""
    residuals = list(residuals or []) + [None] * (len(tables) - len(residuals or []))
    hidden = cells["suppressed"].to_numpy(dtype=bool, copy=True)
    columns = {c: cells[c].to_numpy() for _, order, _ in tables for c in order}
    counts = cells["count"].to_numpy() if "count" in cells.columns else None
    sizes = cells["n"].to_numpy()
    kinds = cells["kind"].to_numpy() if "kind" in cells.columns else None
    own_min = cells["min_n"].to_numpy() if "min_n" in cells.columns else None
    positions = [
        sorted(cells.index.get_indexer(members), key=lambda p, order=order: tuple(columns[c][p] for c in order))
        for members, order, _ in tables
    ]
    breakdown = [flag for _, _, flag in tables]
    membership: dict[int, list[int]] = {}
    for number, members in enumerate(positions):
        for p in members:
            membership.setdefault(p, []).append(number)

    def exposed(number: int) -> bool:
        members = [p for p in positions[number] if hidden[p]]
        residual = residuals[number]
        if residual is None and len(members) == 1:
            return True
        if residual is not None and not members:
            return residual.reason is not None
        if not members or not breakdown[number]:
            return False
        together_n = sum(int(sizes[p]) for p in members) + (int(residual.n) if residual is not None else 0)
        smallest = max([rules.min_group_n] + [int(own_min[p]) for p in members
                                              if own_min is not None and own_min[p] == own_min[p]])
        if together_n < smallest:
            return True
        if counts is None or kinds is None or any(kinds[p] != "proportion" for p in members):
            return False
        together_count = sum(int(counts[p]) for p in members) + (int(residual.count) if residual is not None else 0)
        return min(together_count, together_n - together_count) < rules.min_cell

    changed, hid_any = True, False
    while changed:
        changed = False
        for number, members in enumerate(positions):
            shown = [p for p in members if not hidden[p]]
            if not shown or not exposed(number):
                continue  # nothing hidden that follows from the total, or nothing left to hide with it
            # Prefer a partner that is also the missing second cell of another table.
            default = shown[-1] if len(shown) == len(members) and residuals[number] is not None else shown[0]
            partner = next((p for p in shown if any(exposed(o) for o in membership[p] if o != number)), default)
            hidden[partner] = True
            cells.iloc[partner, cells.columns.get_loc("suppressed")] = True
            cells.iloc[partner, cells.columns.get_loc("suppression")] = COMPLEMENTARY
            changed = hid_any = True
    return hid_any


def _complement_linked(cells: pd.DataFrame, families: dict[int, list[Family]] | None,
                       moving: dict[tuple, set[tuple]]) -> bool:
    """Hide further cells until no hidden cell of a wave follows from the wave's published figures.

    For the first cell that can be worked out, the partner hidden is, among the published cells that
    share an equation with it (another group of its table, or the same group in a linked indicator),
    the one with the fewest respondents (then the smallest count) that protects it on its own (else
    the first of them): the least information lost. Deterministic: cells are taken in order.
    `moving` keeps, per family and wave, the hidden figures known to move: hiding a cell only ever
    takes equations away, so they need no solving again. Returns whether any cell was hidden."""
    hid_any = False
    frame = cells.assign(sum=[float(t) if t is not None and t == t else 0.0 for t in cells["total"]]
                         if "total" in cells.columns else 0.0)
    for family, members in list(family_cells(frame, families)):
        known = moving.setdefault((family, int(members["wave"].iloc[0])), set())
        while hides_something(members):
            system, targets, _ = family_system(family, members)
            found = disclosures(system, targets, moving=known, first=True)
            if not found:
                break
            shown = _partner_pool(members, found[0][0].key)
            if shown.empty:
                break  # nothing of the family is published any more: nothing left to work anything out from
            order = {i: k for k, i in enumerate(family.indicators)}
            columns = ["indicator_id", "breakdown", "group_code", "kind", "n", "count"]  # itertuples: only these
            ranked = sorted(shown[columns].itertuples(), key=lambda r: (
                r.n, r.count if r.kind == "proportion" else float("inf"), order[r.indicator_id], r.group_code))
            # where the equations left once a candidate is hidden still give the cell away by the rank
            # test, it cannot protect it, and needs no trial system
            trials = [system.hiding.get((r.indicator_id, r.breakdown, r.group_code)) for r in ranked]
            candidates = [r.Index for r in ranked]
            partner = next((p for p, given_away in zip(candidates, still_fixed(system, found[0][0], trials, known))
                            if not given_away and _protects(family, members, p, found[0][0].key, known)),
                           candidates[0])
            for frame_ in (cells, members):
                frame_.loc[partner, ["suppressed", "suppression"]] = [True, COMPLEMENTARY]
            hid_any = True
    return hid_any


def _partner_pool(members: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """The published cells that may be hidden to protect the cell `key`, nearest first: another
    group of its table or the same group of a linked indicator; failing those (small data can leave
    none), any cell of the same breakdown or the overall figures it adds up to; failing those, any
    published cell of the family."""
    indicator, _, breakdown, group = key
    shown = members[~members["suppressed"]]
    same_breakdown = shown["breakdown"] == breakdown
    nearest = shown[same_breakdown & (((shown["indicator_id"] == indicator) & (shown["group_code"] != "all"))
                                      | (shown["group_code"] == group))]
    if not nearest.empty:
        return nearest
    wider = shown[same_breakdown | (shown["group_code"] == "all")]
    return wider if not wider.empty else shown


def _protects(family: Family, members: pd.DataFrame, partner, key: tuple, moving: set[tuple]) -> bool:
    """Whether hiding `partner` alone leaves the hidden cell `key` impossible to work out (`moving`:
    what moves without hiding it, and so still moves with it hidden)."""
    trial = members.copy()
    trial.loc[partner, "suppressed"] = True
    system, targets, _ = family_system(family, trial)
    return not disclosures(system, [t for t in targets if t.key == key], moving=set(moving))

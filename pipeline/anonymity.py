"""Anonymity of the stored microdata: k-anonymity on the key quasi-identifiers of every wave.

The rules live in surveys/privacy.yaml. Inside the run's transaction, after the new files are
written, every wave's respondents (old and new together: loads are incremental) are protected:

1. Global recoding: each key quasi-identifier gets one level of its generalisation hierarchy for the
   whole wave. Of all combinations of levels, the one that loses least information once step 2 is
   done is kept (the most promising candidates are evaluated in full).
2. Local suppression: a respondent still in a group of fewer than k gets single values removed, as
   if not answered, choosing each time the value whose removal loses least and joins the largest
   group.

A stored value cannot be made precise again, so a wave's levels never go below what is stored.
What was done is written to `column_protection` and `anonymity_summary`; the view
`respondent_columns` lets an auditor find every quasi-identifier without reading code.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.config import Paths
from pipeline.instrument import Disclosure, Instrument, Labels, QuestionType, read_yaml_model

PRIVACY_FILE = "privacy.yaml"
NOT_ANSWERED = "*"  # a value removed by suppression is stored as no answer: both read as "*"
ORDER_TABLE = "anonymity_order"  # temporary: the respondents of the wave being protected, in order
# The key quasi-identifiers' answers the run's load wrote, which protection replaces: a table that
# lives only within the run's transaction. Kept out of `answers` until then: DuckDB commits the rows a
# transaction appended to a table by moving the blocks it already wrote, unless some of them were
# deleted in that transaction; then it compresses and writes every appended row again (at 1,000,000
# responses, a commit of 17 s for 2 s). Not a TEMP table: those are not compressed (at 200,000
# responses, 80 MB more at the run's peak).
HELD_ANSWERS = "held_answers"
_ANSWERS = f"(SELECT * FROM answers UNION ALL SELECT * FROM {HELD_ANSWERS})"  # stored or held


class PrivacyError(ValueError):
    """Privacy rules that cannot be used; the message names the file and the field."""


def privacy_path(paths: Paths) -> Path:
    return paths.surveys / PRIVACY_FILE


# --- the rules --------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Group(Strict):
    code: str
    codes: list[str]
    label: Labels

    @field_validator("code", mode="before")
    @classmethod
    def _code_as_text(cls, value: Any) -> str:
        return str(value)

    @field_validator("codes", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> list[str]:
        return [str(v) for v in value] if isinstance(value, list) else value


class Combined(Strict):
    code: str
    label: Labels


class Level(Strict):
    name: str
    groups: list[Group] = Field(default_factory=list)
    more_than_one: Combined | None = None

    def mapping(self) -> dict[str, str]:
        return {code: group.code for group in self.groups for code in group.codes}


class KeyQuasiIdentifier(Strict):
    weight: float = Field(default=1.0, gt=0)
    # The finest level ever stored: answers are at least this general, whatever they cost (e.g. race
    # as the Anti-Racism Data Standards report it, one category or "more than one").
    min_level: int = Field(default=0, ge=0)
    levels: list[Level] = Field(min_length=1)

    @model_validator(mode="after")
    def _nested(self) -> "KeyQuasiIdentifier":
        if self.levels[0].groups or self.levels[0].more_than_one:
            raise ValueError("level 0 is the answer as asked: it takes no groups")
        if self.min_level >= len(self.levels):
            raise ValueError(f"min_level {self.min_level} names no level: levels are numbered 0 to {len(self.levels) - 1}")
        members: dict[str, frozenset[str]] = {}
        for number, level in enumerate(self.levels):
            for group in level.groups:
                if members.setdefault(group.code, frozenset(group.codes)) != frozenset(group.codes):
                    raise ValueError(f"group code {group.code!r} names different answers at different levels")
            if number == 0:
                continue
            before, now = self.levels[number - 1].mapping(), level.mapping()
            images: dict[str, set[str]] = {}
            for code in set(before) | set(now):
                images.setdefault(before.get(code, code), set()).add(now.get(code, code))
            split = sorted(value for value, into in images.items() if len(into) > 1)
            if split:
                raise ValueError(
                    f"level {number} ({level.name}) splits {split} of level {number - 1}: "
                    "each level must merge whole groups of the level before"
                )
            if self.levels[number - 1].more_than_one and level.more_than_one != self.levels[number - 1].more_than_one:
                raise ValueError(f"level {number} ({level.name}) must keep more_than_one of the level before")
        originals = {code for group_codes in members.values() for code in group_codes}
        clash = sorted(originals & (set(members) | {lvl.more_than_one.code for lvl in self.levels if lvl.more_than_one}))
        if clash:
            raise ValueError(f"group codes {clash} are also answer codes")
        return self

    def group_codes(self) -> dict[str, tuple[int, Labels]]:
        """Every code a level introduces -> (the first level using it, its label)."""
        codes: dict[str, tuple[int, Labels]] = {}
        for number, level in enumerate(self.levels):
            for group in level.groups:
                codes.setdefault(group.code, (number, group.label))
            if level.more_than_one:
                codes.setdefault(level.more_than_one.code, (number, level.more_than_one.label))
        return codes

    def members(self, code: str) -> frozenset[str]:
        for level in self.levels:
            for group in level.groups:
                if group.code == code:
                    return frozenset(group.codes)
        return frozenset([code])

    def level_of(self, code: str) -> int:
        return self.group_codes().get(code, (0, None))[0]

    def combined_codes(self) -> set[str]:
        return {level.more_than_one.code for level in self.levels if level.more_than_one}

    def generalise(self, value: frozenset[str], level: int, missing: frozenset[str]) -> frozenset[str]:
        """A stored value (a set of codes, at any level up to `level`) at `level`."""
        chosen = self.levels[level]
        combined = chosen.more_than_one
        answered = {code for code in value if code not in missing}
        if combined and (combined.code in answered or len(answered) >= 2):
            return frozenset([combined.code])
        mapping = chosen.mapping()
        # A group stored by an earlier run stands for its members: they all map to the same coarser group.
        mapped = {mapping.get(min(self.members(code)), code) for code in answered}
        return frozenset(mapped | (value & missing))


class NumericCoarsening(Strict):
    round_to: float = Field(gt=0)
    top_code: float | None = None
    bottom_code: float | None = None

    def apply(self, value: str) -> str:
        number = float(value)
        if self.top_code is not None:
            number = min(number, self.top_code)
        if self.bottom_code is not None:
            number = max(number, self.bottom_code)
        number = round(number / self.round_to) * self.round_to
        return f"{number:.2f}".rstrip("0").rstrip(".")

    def describe(self) -> str:
        parts = [f"rounded to the nearest {self.round_to:g}"]
        if self.top_code is not None:
            parts.append(f"values above {self.top_code:g} stored as {self.top_code:g}")
        if self.bottom_code is not None:
            parts.append(f"values below {self.bottom_code:g} stored as {self.bottom_code:g}")
        return "; ".join(parts)


class LDiversity(Strict):
    l: int = Field(default=2, ge=1)
    enforce: bool = False


class MicrodataRules(Strict):
    k: int = Field(default=5, ge=1)
    key_quasi_identifiers: dict[str, KeyQuasiIdentifier]
    numeric_quasi_identifiers: dict[str, NumericCoarsening] = Field(default_factory=dict)
    other_quasi_identifiers: dict[str, str] = Field(default_factory=dict)
    l_diversity: LDiversity = LDiversity()
    candidates: int = Field(default=30, ge=1)

    def declared(self, concept: str) -> bool:
        return any(concept in part for part in (self.key_quasi_identifiers, self.numeric_quasi_identifiers,
                                                self.other_quasi_identifiers))

    def group_labels(self) -> dict[tuple[str, str], Labels]:
        """(question, code) -> label of every code a level introduces (merged answers, "more than
        one"), whether or not a wave's stored answers use it: indicator rules name these codes
        (e.g. `indigenous`), and the choices table labels only the codes a wave stores."""
        return {(concept, code): label for concept, rule in self.key_quasi_identifiers.items()
                for code, (_, label) in rule.group_codes().items()}


class QuoteRules(Strict):
    min_words: int = Field(default=8, ge=1)
    max_words: int = Field(default=80, ge=1)


class AuditRules(Strict):
    min_identifier_chars: int = Field(default=5, ge=1)
    min_coordinate_decimals: int = Field(default=4, ge=0)


class PrivacyRules(Strict):
    microdata: MicrodataRules
    quotes: QuoteRules = QuoteRules()
    audit: AuditRules = AuditRules()
    # Days a wave's raw exports may stay in data/raw/ after loading (`consult status` warns after).
    raw_retention_days: int = Field(default=365, ge=1)
    source: str = ""
    sha256: str = ""


def load_privacy_rules(path: Path) -> PrivacyRules:
    """surveys/privacy.yaml, validated; errors name the file and the field."""
    rules, raw = read_yaml_model(path, PrivacyRules, PrivacyError, "privacy rules", "microdata, quotes and audit")
    return rules.model_copy(update={"source": str(path), "sha256": hashlib.sha256(raw).hexdigest()})


# --- one wave ---------------------------------------------------------------------------------


@dataclass
class Column:
    """One key quasi-identifier of one wave: its stored values and what each level makes of them.
    Respondents are held as positions in `distinct`: the work is done once per distinct value."""

    concept: str
    rule: KeyQuasiIdentifier
    distinct: list[frozenset[str]]  # each stored value once, in order of first appearance
    index: np.ndarray  # per respondent: its stored value, as a position in `distinct`
    missing: frozenset[str]  # codes that mean "no answer" (prefer not to answer, ...)
    answer_codes: int  # M in the loss metric: how many real answers the question offers
    floor: int = 0
    codes: dict[int, np.ndarray] = field(default_factory=dict)  # level -> code of each distinct value, 0 = "*"
    names: dict[int, np.ndarray] = field(default_factory=dict)  # level -> stored value of each code ("*" for 0)
    costs: dict[int, np.ndarray] = field(default_factory=dict)  # level -> loss of each code (0-1)

    @classmethod
    def of_values(cls, concept: str, rule: KeyQuasiIdentifier, values: list[frozenset[str]],
                  missing: frozenset[str], answer_codes: int) -> "Column":
        """A column from every respondent's stored value."""
        distinct: dict[frozenset[str], int] = {}
        index = np.array([distinct.setdefault(v, len(distinct)) for v in values], dtype=np.int64)
        return cls(concept, rule, list(distinct), index, missing, answer_codes)

    def prepare(self) -> None:
        # Codes are numbered in order of first appearance, as a pass over the respondents would number them.
        stored = max((self.rule.level_of(code) for value in self.distinct for code in value), default=0)
        self.floor = max(stored, self.rule.min_level)
        for level in range(self.floor, len(self.rule.levels)):
            generalised = [self.rule.generalise(v, level, self.missing) for v in self.distinct]
            labels = {NOT_ANSWERED: 0}
            self.codes[level] = np.array([labels.setdefault(",".join(sorted(v)) or NOT_ANSWERED, len(labels))
                                          for v in generalised], dtype=np.int64)
            self.names[level] = np.array(list(labels), dtype=object)
            self.costs[level] = np.zeros(len(labels))
            self.costs[level][self.codes[level]] = [self._loss(v) for v in generalised]

    def respondent_codes(self, level: int) -> np.ndarray:
        return self.codes[level][self.index]

    def respondent_costs(self, level: int) -> np.ndarray:
        return self.costs[level][self.respondent_codes(level)]

    def _loss(self, value: frozenset[str]) -> float:
        answered = [code for code in value if code not in self.missing]
        if not answered or self.answer_codes <= 1:
            return 0.0
        if set(answered) & self.rule.combined_codes():
            return 1.0  # "more than one": which answers were given is lost
        return sum((len(self.rule.members(c)) - 1) / (self.answer_codes - 1) for c in answered) / len(answered)


@dataclass
class Outcome:
    levels: tuple[int, ...]
    final: np.ndarray  # the stored combination of every respondent, as codes (0 = no value)
    names: list[np.ndarray]  # per column: code -> stored value ("*" = no value)
    suppressed: list[np.ndarray]  # per column: respondents whose value was removed (boolean)
    loss: float  # weighted loss metric, 0-1
    at_risk_before: int  # respondents in groups under k after generalisation, before suppression

    def column(self, j: int) -> list[str]:
        """The stored value of column j for every respondent ("*" = no value)."""
        return self.names[j][self.final[:, j]].tolist()

    @cached_property
    def rows(self) -> list[tuple[str, ...]]:
        """The stored combination of every respondent ("*" = no value)."""
        return list(zip(*(self.column(j) for j in range(self.final.shape[1]))))


@dataclass
class WaveProtection:
    wave: int
    respondents: int
    k: int
    columns: list[Column]
    outcome: Outcome | None

    @property
    def smallest_class(self) -> int:
        if not self.outcome or not len(self.outcome.final):
            return self.respondents
        return int(_class_sizes(_keys(self.outcome.final)).min())


def protect_wave(columns: list[Column], k: int, candidates: int, order: np.ndarray) -> Outcome | None:
    """Choose levels and suppress values so every stored combination is shared by k respondents;
    `order` ranks the respondents for the choices between equals."""
    if not columns:
        return None
    for column in columns:
        column.prepare()
    weights = np.array([c.rule.weight for c in columns])
    best: Outcome | None = None
    for levels in _candidate_levels(columns, k, weights, candidates):
        outcome = _evaluate(columns, levels, k, weights, order)
        rank = (round(outcome.loss, 12), int(sum(s.sum() for s in outcome.suppressed)), sum(levels), levels)
        if best is None or rank < (round(best.loss, 12), int(sum(s.sum() for s in best.suppressed)),
                                   sum(best.levels), best.levels):
            best = outcome
    return best


def _keys(matrix: np.ndarray, bases: np.ndarray | None = None) -> np.ndarray:
    """One integer per row identifying its combination (mixed radix over the columns, so keys sort as
    the rows do; pass the same `bases` to compare keys of different matrices)."""
    bases = matrix.max(axis=0, initial=0) + 1 if bases is None else bases
    key = np.zeros(len(matrix), dtype=np.int64)
    for j in range(matrix.shape[1]):
        key = key * int(bases[j]) + matrix[:, j]
    return key


def _class_sizes(key: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse]


def _merge(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) with the sum of their counts."""
    shift = int(counts.sum()).bit_length()
    if keys.size and int(keys.max()) < 1 << (62 - shift):
        # Each count packed under its key: one plain sort, much faster than an argsort.
        packed = np.sort((keys << shift) | counts)
        merged = packed >> shift
        starts = np.flatnonzero(np.r_[True, merged[1:] != merged[:-1]])
        return merged[starts], np.add.reduceat(packed & ((1 << shift) - 1), starts)
    merged, inverse = np.unique(keys, return_inverse=True)
    return merged, np.bincount(inverse, weights=counts, minlength=len(merged)).astype(np.int64)


def _strides(bases: np.ndarray) -> np.ndarray:
    """What one unit of each column is worth in a key of _keys(matrix, bases)."""
    strides = np.ones(len(bases), dtype=np.int64)
    for j in range(len(bases) - 2, -1, -1):
        strides[j] = strides[j + 1] * bases[j + 1]
    return strides


def _candidate_levels(columns: list[Column], k: int, weights: np.ndarray, candidates: int) -> list[tuple[int, ...]]:
    """The combinations of levels worth evaluating in full: half with the lowest loss before
    suppression plus one value per respondent at risk, half with the fewest respondents at risk."""
    n = len(columns[0].index)
    spent = [{level: w * c.respondent_costs(level).sum() for level in c.codes} for w, c in zip(weights, columns)]
    scored = []
    for levels, at_risk in _at_risk_by_levels(columns, k):
        generalised = sum(spent[j][level] for j, level in enumerate(levels))
        scored.append((levels, float(generalised + at_risk * weights.min()) / (weights.sum() * n), at_risk))
    by_estimate = sorted(scored, key=lambda s: (s[1], sum(s[0]), s[0]))
    by_risk = sorted(scored, key=lambda s: (s[2], s[1], s[0]))
    chosen = dict.fromkeys(s[0] for s in by_estimate[: max(1, candidates // 2)])
    for s in by_risk:
        if len(chosen) >= candidates:
            break
        chosen.setdefault(s[0])
    return list(chosen)


def _at_risk_by_levels(columns: list[Column], k: int) -> list[tuple[tuple[int, ...], int]]:
    """Respondents in groups under k, for every combination of levels. The groups of a combination
    are made by merging those of the combination one level finer in one column (levels nest), never
    from the respondents again: the coarser the levels, the fewer groups there are to count."""
    bases = np.array([max(len(names) for names in c.names.values()) for c in columns], dtype=np.int64)
    strides = _strides(bases)

    def groups(levels: list[int]) -> tuple[np.ndarray, np.ndarray]:
        key = sum(c.respondent_codes(level) * strides[j] for j, (c, level) in enumerate(zip(columns, levels)))
        return np.unique(key, return_counts=True)

    found: list[tuple[tuple[int, ...], int]] = []

    def descend(levels: list[int], keys: np.ndarray, counts: np.ndarray) -> None:
        j = len(levels)
        if j == len(columns):
            found.append((tuple(levels), int(counts[counts < k].sum())))
            return
        column = columns[j]
        for level in sorted(column.codes):
            if level > column.floor:
                step = _step(column, level)
                if step is None:  # the finer code does not decide the coarser one: count from the respondents
                    keys, counts = groups(levels + [level] + [c.floor for c in columns[j + 1:]])
                else:
                    code = keys // strides[j] % bases[j]
                    keys, counts = _merge(keys + (step[code] - code) * strides[j], counts)
            descend(levels + [level], keys, counts)

    descend([], *groups([c.floor for c in columns]))
    return found


def _step(column: Column, level: int) -> np.ndarray | None:
    """Code at level - 1 -> code at `level`, when the finer code decides the coarser one."""
    finer, coarser = column.codes[level - 1], column.codes[level]
    step = np.zeros(len(column.names[level - 1]), dtype=np.int64)
    step[finer] = coarser
    return step if np.array_equal(step[finer], coarser) else None


def _evaluate(columns: list[Column], levels: tuple[int, ...], k: int, weights: np.ndarray, order: np.ndarray) -> Outcome:
    original = np.stack([c.respondent_codes(level) for c, level in zip(columns, levels)], axis=1)
    costs = np.stack([c.respondent_costs(level) for c, level in zip(columns, levels)], axis=1)
    # Respondents sharing a combination are treated alike by local suppression: it works on the groups.
    _, first, inverse, counts = np.unique(_keys(original), return_index=True, return_inverse=True, return_counts=True)
    at_risk = int(counts[counts < k].sum())
    final = _suppress_locally(original[first], counts, k, weights)[inverse]
    _fill_blank_class(final, k, weights, costs, order)
    suppressed = [(original[:, j] != 0) & (final[:, j] == 0) for j in range(len(columns))]
    kept_cost = np.where(final != 0, costs, 0.0)
    loss = float((weights * (np.stack(suppressed, axis=1) + kept_cost)).sum() / (weights.sum() * max(len(final), 1)))
    names = [c.names[level] for c, level in zip(columns, levels)]
    return Outcome(levels, final, names, suppressed, loss, at_risk)


def _suppress_locally(groups: np.ndarray, counts: np.ndarray, k: int, weights: np.ndarray) -> np.ndarray:
    """Groups (distinct combinations, with how many respondents share each) under k keep only some of
    their values: for each set of values to keep, from the most to the least informative (by weight),
    groups at risk that agree on it merge with '*' elsewhere, once the merged group (with anyone
    already stored that way) reaches k. Returns the stored combination of each group."""
    final = groups.copy()
    remaining = np.flatnonzero(counts < k)
    if remaining.size == 0:
        return final
    width = groups.shape[1]
    subsets = sorted(
        (kept for r in range(width - 1, -1, -1) for kept in itertools.combinations(range(width), r)),
        key=lambda kept: (weights.sum() - weights[list(kept)].sum(), -len(kept), kept),
    )
    parts = groups * _strides(groups.max(axis=0, initial=0) + 1)  # each column's share of the key
    # Combinations stored by groups not at risk (they never change), plus the combinations joined
    # since. A key with '*' (0) in the columns dropped only equals the keys of combinations with no
    # value there, so they need no separate test. Only the groups at risk are looked at per subset.
    safe = counts >= k
    settled, settled_counts = _merge(parts[safe].sum(axis=1), counts[safe])
    joined, joined_counts = _merge(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    at_risk = parts[remaining]
    for kept in subsets:
        mask = np.zeros(width, dtype=np.int64)
        mask[list(kept)] = 1
        candidates = at_risk @ mask
        tally_keys, tally = _merge(candidates, counts[remaining])
        together = (tally + _counts_of(tally_keys, settled, settled_counts)
                    + _counts_of(tally_keys, joined, joined_counts))
        reached = tally_keys[together >= k]
        if reached.size:
            joins = np.isin(candidates, reached)
            final[remaining[joins]] = groups[remaining[joins]] * mask
            joined, joined_counts = _merge(np.concatenate([joined, candidates[joins]]),
                                           np.concatenate([joined_counts, counts[remaining[joins]]]))
            remaining, at_risk = remaining[~joins], at_risk[~joins]
        if remaining.size == 0:
            break
    final[remaining] = 0  # whatever is left keeps no value (see _fill_blank_class)
    return final


def _counts_of(wanted: np.ndarray, keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """How many times each of `wanted` occurs, given the sorted distinct `keys` and their `counts`."""
    if keys.size == 0:
        return np.zeros(len(wanted), dtype=np.int64)
    position = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    return np.where(keys[position] == wanted, counts[position], 0)


def _fill_blank_class(final: np.ndarray, k: int, weights: np.ndarray, costs: np.ndarray, order: np.ndarray) -> None:
    """Respondents with every value removed form one group; if it is under k, more respondents join
    it, taken where their own group stays at k or more without them (least informative first)."""
    count = int((~final.any(axis=1)).sum())
    if count == 0 or count >= k or count == len(final):
        return
    _, first, members, sizes = np.unique(_keys(final), return_index=True, return_inverse=True, return_counts=True)
    stored = final[first]  # each group's combination, groups in the order of their combinations
    blank = ~stored.any(axis=1)
    # What each group's kept values are worth (the same for all its respondents).
    value = (weights * (stored != 0) * (1 - costs[first])).sum(axis=1)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    moved = np.zeros(len(final), dtype=bool)  # respondents who joined the blank group
    while 0 < count < k and count != len(final):
        spare = ~blank & (sizes > k)
        if spare.any():  # one respondent: the least valuable, the first in `order` among equals
            takers = spare & (value == value[spare].min())
            eligible = np.flatnonzero(takers[members] & ~moved)
            chosen = eligible[np.argmin(rank[eligible])]
            moved[chosen] = True
            sizes[members[chosen]] -= 1
            count += 1
        else:  # no group can spare anyone: the smallest group joins as a whole
            others = ~blank & (sizes > 0)
            smallest = int(np.flatnonzero(others & (sizes == sizes[others].min()))[0])
            moved |= (members == smallest) & ~moved
            count += int(sizes[smallest])
            sizes[smallest] = 0
    final[moved] = 0


# --- the warehouse ----------------------------------------------------------------------------


def protect_microdata(con: duckdb.DuckDBPyConnection, rules: PrivacyRules) -> list[WaveProtection]:
    """Apply k-anonymity to every wave with new respondents (every wave when the rules changed);
    the caller holds the transaction. Answers held by the load (HELD_ANSWERS) are read as stored
    ones, and stored: protected, or as they are where nothing replaced them."""
    hold_answers(con)  # none held when the load held none
    counts = con.execute("SELECT wave, count(*) FROM respondents GROUP BY wave ORDER BY wave").fetchall()
    same_rules = con.execute(
        "SELECT count(*) FROM warehouse_meta WHERE key = 'privacy_sha256' AND value = ?", [rules.sha256]).fetchall()[0][0]
    done = dict(con.execute("SELECT wave, respondents FROM anonymity_summary").fetchall()) if same_rules else {}
    results = []
    for wave, respondents in counts:
        if done.get(wave) == respondents:
            continue  # nobody new, same rules: what was done (and its record) stands
        results.append(_protect_stored_wave(con, wave, rules.microdata))
        _write_protection(con, wave, rules, results[-1])
    con.execute(f"INSERT INTO answers SELECT * FROM {HELD_ANSWERS}")
    con.execute(f"DROP TABLE {HELD_ANSWERS}")
    con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES ('privacy_sha256', ?)", [rules.sha256])
    return results


def hold_answers(con: duckdb.DuckDBPyConnection) -> None:
    """The table of answers written for protect_microdata, in the same transaction (which drops it)."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {HELD_ANSWERS} AS SELECT * FROM answers LIMIT 0")


def load_checked_privacy_rules(path: Path, surveys_dir: Path) -> PrivacyRules:
    """The privacy rules, checked against every wave's questionnaire before anything is loaded."""
    from pipeline.instrument import available_waves, instrument_path, load_instrument

    rules = load_privacy_rules(path)
    for wave in available_waves(surveys_dir):
        check_against_instrument(rules, load_instrument(instrument_path(surveys_dir, wave)))
    return rules


def check_against_instrument(rules: PrivacyRules, instrument: Instrument) -> None:
    """Every quasi-identifier of the wave is covered by the rules, with codes the wave has."""
    micro, where = rules.microdata, f"{rules.source}: microdata"
    for question in instrument.by_disclosure(Disclosure.quasi):
        if not micro.declared(question.id):
            raise PrivacyError(
                f"{rules.source}: {instrument.source} marks {question.id!r} as a quasi-identifier, which the "
                "privacy rules do not cover: add it under microdata.key_quasi_identifiers, "
                "numeric_quasi_identifiers or other_quasi_identifiers (with the reason)"
            )
    for concept, rule in micro.key_quasi_identifiers.items():
        if concept not in {q.id for q in instrument.questions}:
            continue
        question = instrument.question(concept)
        if question.type not in (QuestionType.single, QuestionType.likert, QuestionType.multiple):
            raise PrivacyError(f"{where}.key_quasi_identifiers.{concept}: a {question.type.value} question in "
                               f"{instrument.source}; only choice questions can be generalised")
        codes = {c.code for c in instrument.choices_of(question)}
        unknown = sorted({c for level in rule.levels for g in level.groups for c in g.codes} - codes)
        if unknown:
            raise PrivacyError(f"{where}.key_quasi_identifiers.{concept}: answer codes {unknown} are not in "
                               f"{instrument.source}")
        clash = sorted(set(rule.group_codes()) & codes)
        if clash:
            raise PrivacyError(f"{where}.key_quasi_identifiers.{concept}: group codes {clash} are answer codes in "
                               f"{instrument.source}; choose other codes")
    for concept in micro.numeric_quasi_identifiers:
        if concept in {q.id for q in instrument.questions} and instrument.question(concept).type is not QuestionType.numeric:
            raise PrivacyError(f"{where}.numeric_quasi_identifiers.{concept}: not a numeric question in "
                               f"{instrument.source}")


def _protect_stored_wave(con: duckdb.DuckDBPyConnection, wave: int, micro: MicrodataRules) -> WaveProtection:
    asked = {c for (c,) in con.execute("SELECT concept FROM concepts WHERE wave = ? AND stored", [wave]).fetchall()}
    concepts = [c for c in micro.key_quasi_identifiers if c in asked]
    respondents = con.execute("SELECT count(*) FROM respondents WHERE wave = ?", [wave]).fetchall()[0][0]
    if not concepts:
        return WaveProtection(wave, respondents, micro.k, [], None)
    distinct, index = _stored_values_in_order(con, wave, concepts)
    columns = []
    for j, concept in enumerate(concepts):
        codes = con.execute(
            "SELECT code, missing FROM choices WHERE wave = ? AND concept = ?", [wave, concept]
        ).fetchall()
        rule = micro.key_quasi_identifiers[concept]
        own = {code for code, _ in codes} - set(rule.group_codes())  # the catalogue also holds groups
        columns.append(Column(
            concept, rule, distinct[j], index[j],
            frozenset(code for code, missing in codes if missing),
            sum(1 for code, missing in codes if not missing and code in own),
        ))
    outcome = protect_wave(columns, micro.k, micro.candidates, np.arange(respondents))
    if outcome is not None:
        _store_values(con, wave, columns, outcome)
    con.execute(f"DROP TABLE {ORDER_TABLE}")
    return WaveProtection(wave, respondents, micro.k, columns, outcome)


def _stored_values_in_order(con, wave: int, concepts: list[str]) -> tuple[list[list[frozenset[str]]], list[np.ndarray]]:
    """Per concept, the distinct stored values (in order of first appearance) and each respondent's
    value as a position among them. Same answers, same treatment: respondents are taken in the order
    of their stored values, then of all their answers (only needed where the values tie), then of
    their position in the load, never of their random keys, so a re-run on the same exports stores
    the same data. That order is kept in the temporary table ORDER_TABLE (position, respondent_key)."""
    loaded, stored = _read_stored_values(con, wave, concepts)
    ranks = []
    for sets, kind in stored:
        text = [",".join(sorted(s)) for s in sets]  # values sort as their text ("", "1", "1,3", ...)
        rank = np.empty(len(text), dtype=np.int64)
        rank[sorted(range(len(text)), key=text.__getitem__)] = np.arange(len(text))
        ranks.append(rank[kind])
    order = np.lexsort([loaded, _answers_where_tied(con, loaded, ranks), *reversed(ranks)])
    con.register("anonymity_positions", pd.DataFrame({"position": np.arange(len(order)), "loaded": loaded[order]}))
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {ORDER_TABLE} AS SELECT p.position, r.respondent_key
                    FROM anonymity_positions p JOIN respondents r ON r.rowid = p.loaded""")
    con.unregister("anonymity_positions")
    # Values numbered in order of first appearance (what Column.prepare's codes follow).
    distinct, index = [], []
    for sets, kind in stored:
        in_order = kind[order]
        present, first = np.unique(in_order, return_index=True)
        appearance = present[np.argsort(first)]
        number = np.empty(len(sets), dtype=np.int64)
        number[appearance] = np.arange(len(appearance))
        distinct.append([sets[d] for d in appearance.tolist()])
        index.append(number[in_order])
    return distinct, index


def _read_stored_values(con, wave: int, concepts: list[str]) -> tuple[np.ndarray, list[tuple[list[frozenset[str]], np.ndarray]]]:
    """Every respondent of the wave (its row in `respondents`) and, per concept, the distinct stored
    values with each respondent's value as a position among them."""
    # A stored value (a set of codes) is read as bits, one per code the wave's answers use, in 64-bit
    # words: a few integers per respondent instead of lists of strings.
    marks = ", ".join("?" for _ in concepts)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE anonymity_bits AS
            SELECT concept, value, row_number() OVER (PARTITION BY concept ORDER BY value) - 1 AS bit
            FROM (SELECT DISTINCT concept, value FROM {_ANSWERS} WHERE wave = ? AND concept IN ({marks}))""",
        [wave, *concepts],
    )
    codes = con.execute("SELECT concept, value, bit FROM anonymity_bits").fetchall()
    words = [max((bit // 64 + 1 for concept, _, bit in codes if concept == c), default=1) for c in concepts]
    masks = ", ".join(
        f"coalesce(bit_or(1::UBIGINT << (c.bit % 64)) FILTER (WHERE c.concept = ? AND c.bit // 64 = {w}), 0) AS m{j}_{w}"
        for j, count in enumerate(words) for w in range(count))
    found = con.execute(
        f"""SELECT r.rowid AS loaded, {masks}
            FROM respondents r
            LEFT JOIN {_ANSWERS} a ON a.respondent_key = r.respondent_key AND a.wave = ? AND a.concept IN ({marks})
            LEFT JOIN anonymity_bits c ON c.concept = a.concept AND c.value = a.value
            WHERE r.wave = ? GROUP BY r.rowid""",
        [*(c for c, count in zip(concepts, words) for _ in range(count)), wave, *concepts, wave],
    ).fetchnumpy()
    con.execute("DROP TABLE anonymity_bits")
    by_bit = {(concept, bit): value for concept, value, bit in codes}
    stored = []
    for j, concept in enumerate(concepts):
        bits = np.stack([np.asarray(found[f"m{j}_{w}"], dtype=np.uint64) for w in range(words[j])], axis=1)
        distinct, kind = np.unique(bits, axis=0, return_inverse=True)
        sets = [frozenset(by_bit[(concept, 64 * w + b)] for w, word in enumerate(row) for b in range(64) if word >> b & 1)
                for row in distinct.tolist()]
        stored.append((sets, kind.reshape(-1)))
    return np.asarray(found["loaded"], dtype=np.int64), stored


def _answers_where_tied(con, loaded: np.ndarray, ranks: list[np.ndarray]) -> np.ndarray:
    """Respondents whose stored values tie, ranked by all their answers (an md5 of them); 0 elsewhere."""
    _, same, counts = np.unique(_keys(np.stack(ranks, axis=1)), return_inverse=True, return_counts=True)
    tied = np.flatnonzero(counts[same] > 1)
    content = np.zeros(len(loaded), dtype=np.int64)
    if tied.size:
        con.register("anonymity_tied", pd.DataFrame({"loaded": loaded[tied]}))
        found = con.execute(
            f"""SELECT t.loaded, md5(coalesce(string_agg(a.concept || '=' || a.value, ';' ORDER BY a.concept, a.value), '')) AS digest
               FROM anonymity_tied t JOIN respondents r ON r.rowid = t.loaded
               LEFT JOIN {_ANSWERS} a ON a.respondent_key = r.respondent_key GROUP BY t.loaded"""
        ).fetchnumpy()
        con.unregister("anonymity_tied")
        sorter = np.argsort(loaded)
        where = sorter[np.searchsorted(loaded, np.asarray(found["loaded"], dtype=np.int64), sorter=sorter)]
        content[where] = np.unique(np.asarray(found["digest"], dtype=object), return_inverse=True)[1].reshape(-1) + 1
    return content


def _store_values(con, wave: int, columns: list[Column], outcome: Outcome) -> None:
    for j, column in enumerate(columns):
        for table in ("answers", HELD_ANSWERS):
            con.execute(f"DELETE FROM {table} WHERE wave = ? AND concept = ?", [wave, column.concept])
        introduced = column.rule.group_codes()
        if introduced:
            con.execute(
                f"DELETE FROM choices WHERE wave = ? AND concept = ? AND code IN ({', '.join('?' for _ in introduced)})",
                [wave, column.concept, *introduced],
            )
        level = outcome.levels[j]
        labels = [(wave, column.concept, code, label.en, label.fr, None, False)
                  for code, (first, label) in introduced.items() if first <= level and _used_at(column.rule, code, level)]
        if labels:
            con.executemany("INSERT INTO choices VALUES (?, ?, ?, ?, ?, ?, ?)", labels)
    # One answer row per code of each stored value, in the order of the columns and the respondents.
    positions = np.arange(len(outcome.final))
    for j, column in enumerate(columns):
        parts = [(code, part, value) for code, name in enumerate(outcome.names[j]) if name != NOT_ANSWERED
                 for part, value in enumerate(name.split(","))]
        con.register("anonymity_codes", pd.DataFrame({"code": np.array([p[0] for p in parts], dtype=np.int64),
                                                      "part": np.array([p[1] for p in parts], dtype=np.int64),
                                                      "value": pd.Series([p[2] for p in parts], dtype="str")}))
        con.register("anonymity_stored", pd.DataFrame({"position": positions, "code": outcome.final[:, j]}))
        con.execute(
            f"""INSERT INTO answers (respondent_key, wave, concept, value)
                SELECT o.respondent_key, ?, ?, c.value
                FROM anonymity_stored s JOIN {ORDER_TABLE} o ON o.position = s.position JOIN anonymity_codes c ON c.code = s.code
                ORDER BY s.position, c.part""",
            [wave, column.concept],
        )
        con.unregister("anonymity_codes")
        con.unregister("anonymity_stored")


def _used_at(rule: KeyQuasiIdentifier, code: str, level: int) -> bool:
    chosen = rule.levels[level]
    return code in {g.code for g in chosen.groups} or (chosen.more_than_one is not None and chosen.more_than_one.code == code)


def _write_protection(con, wave: int, rules: PrivacyRules, protection: WaveProtection) -> None:
    micro = rules.microdata
    outcome = protection.outcome
    by_concept = {c.concept: (j, c) for j, c in enumerate(protection.columns)}
    rows = []
    for concept, kind, disclosure, stored in con.execute(
        "SELECT concept, type, disclosure, stored FROM concepts WHERE wave = ? ORDER BY concept", [wave]
    ).fetchall():
        if concept in by_concept and outcome is not None:
            j, column = by_concept[concept]
            level = outcome.levels[j]
            values, costs = outcome.final[:, j], column.respondent_costs(level)
            generalised = int(((values != 0) & (costs > 0)).sum())
            removed = outcome.suppressed[j]
            loss = float((removed.sum() + costs[~removed].sum()) / max(len(values), 1))
            rows.append((wave, concept, True, _treatment(concept, kind, disclosure, stored, micro, column.rule.levels[level].name),
                         level, column.rule.levels[level].name, generalised, int(removed.sum()), round(loss, 6)))
        else:
            rows.append((wave, concept, False, _treatment(concept, kind, disclosure, stored, micro, None),
                         None, None, 0, 0, 0.0))
    con.execute("DELETE FROM column_protection WHERE wave = ?", [wave])
    con.executemany("INSERT INTO column_protection VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute("DELETE FROM anonymity_summary WHERE wave = ?", [wave])
    con.execute(
        "INSERT INTO anonymity_summary VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [wave, micro.k, protection.respondents, protection.smallest_class,
         outcome.at_risk_before if outcome else 0,
         int(np.logical_or.reduce(outcome.suppressed).sum()) if outcome else 0,
         round(outcome.loss, 6) if outcome else 0.0,
         ", ".join(c.concept for c in protection.columns)],
    )


def _treatment(concept: str, kind: str, disclosure: str, stored: bool, micro: MicrodataRules, level: str | None) -> str:
    if not stored:
        return "never stored (direct identifier)"
    if level is not None:
        return f"key quasi-identifier: generalised to '{level}', values suppressed where a group was under k={micro.k}"
    if concept in micro.numeric_quasi_identifiers:
        return "quasi-identifier: " + micro.numeric_quasi_identifiers[concept].describe()
    if concept in micro.other_quasi_identifiers:
        return "quasi-identifier outside the key: " + micro.other_quasi_identifiers[concept]
    if kind == "text":
        return "free text, scrubbed before storage; quoted only after a person approves the quote"
    if disclosure == "sensitive":
        return f"sensitive: l-diversity (l={micro.l_diversity.l}) reported by consult audit"
    return "stored as answered"


__all__ = ["PrivacyError", "PrivacyRules", "load_privacy_rules", "load_checked_privacy_rules", "privacy_path",
           "protect_microdata"]

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
    levels: list[Level] = Field(min_length=1)

    @model_validator(mode="after")
    def _nested(self) -> "KeyQuasiIdentifier":
        if self.levels[0].groups or self.levels[0].more_than_one:
            raise ValueError("level 0 is the answer as asked: it takes no groups")
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
    """One key quasi-identifier of one wave: its stored values and what each level makes of them."""

    concept: str
    rule: KeyQuasiIdentifier
    stored: list[frozenset[str]]
    missing: frozenset[str]  # codes that mean "no answer" (prefer not to answer, ...)
    answer_codes: int  # M in the loss metric: how many real answers the question offers
    floor: int = 0
    values: dict[int, list[str]] = field(default_factory=dict)  # level -> value per respondent
    codes: dict[int, np.ndarray] = field(default_factory=dict)  # level -> value as an integer, 0 = "*"
    costs: dict[int, np.ndarray] = field(default_factory=dict)  # level -> loss per respondent (0-1)

    def prepare(self) -> None:
        # Work on each distinct stored value once, then spread the result over the respondents
        # (values are numbered in order of first appearance, so codes are those a per-respondent pass gives).
        distinct: dict[frozenset[str], int] = {}
        index = np.array([distinct.setdefault(v, len(distinct)) for v in self.stored], dtype=np.int64)
        self.floor = max((self.rule.level_of(code) for value in distinct for code in value), default=0)
        for level in range(self.floor, len(self.rule.levels)):
            generalised = [self.rule.generalise(v, level, self.missing) for v in distinct]
            names = [",".join(sorted(v)) or NOT_ANSWERED for v in generalised]
            labels = {NOT_ANSWERED: 0}
            codes = np.array([labels.setdefault(v, len(labels)) for v in names], dtype=np.int64)
            self.values[level] = np.array(names, dtype=object)[index].tolist()
            self.codes[level] = codes[index]
            self.costs[level] = np.array([self._loss(v) for v in generalised], dtype=float)[index]

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
    """Choose levels and suppress values so every stored combination is shared by k respondents."""
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
    """One integer per row identifying its combination (mixed radix over the columns; pass the
    same `bases` to compare keys of different matrices)."""
    bases = matrix.max(axis=0, initial=0) + 1 if bases is None else bases
    key = np.zeros(len(matrix), dtype=np.int64)
    for j in range(matrix.shape[1]):
        key = key * int(bases[j]) + matrix[:, j]
    return key


def _class_sizes(key: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse]


def _candidate_levels(columns: list[Column], k: int, weights: np.ndarray, candidates: int) -> list[tuple[int, ...]]:
    """The combinations of levels worth evaluating in full: half with the lowest loss before
    suppression plus one value per respondent at risk, half with the fewest respondents at risk."""
    n = len(columns[0].stored)
    scored = []
    for levels in itertools.product(*[sorted(c.codes) for c in columns]):
        matrix = np.stack([c.codes[level] for c, level in zip(columns, levels)], axis=1)
        at_risk = int((_class_sizes(_keys(matrix)) < k).sum())
        generalised = sum(w * c.costs[level].sum() for w, c, level in zip(weights, columns, levels))
        scored.append((levels, float(generalised + at_risk * weights.min()) / (weights.sum() * n), at_risk))
    by_estimate = sorted(scored, key=lambda s: (s[1], sum(s[0]), s[0]))
    by_risk = sorted(scored, key=lambda s: (s[2], s[1], s[0]))
    chosen = dict.fromkeys(s[0] for s in by_estimate[: max(1, candidates // 2)])
    for s in by_risk:
        if len(chosen) >= candidates:
            break
        chosen.setdefault(s[0])
    return list(chosen)


def _evaluate(columns: list[Column], levels: tuple[int, ...], k: int, weights: np.ndarray, order: np.ndarray) -> Outcome:
    original = np.stack([c.codes[level] for c, level in zip(columns, levels)], axis=1)
    costs = np.stack([c.costs[level] for c, level in zip(columns, levels)], axis=1)
    sizes = _class_sizes(_keys(original))
    at_risk = int((sizes < k).sum())
    final = _suppress_locally(original, k, weights, order, sizes)
    _fill_blank_class(final, original, k, weights, costs, order)
    suppressed = [(original[:, j] != 0) & (final[:, j] == 0) for j in range(len(columns))]
    kept_cost = np.where(final != 0, costs, 0.0)
    loss = float((weights * (np.stack(suppressed, axis=1) + kept_cost)).sum() / (weights.sum() * max(len(final), 1)))
    names = [_code_names(c, level) for c, level in zip(columns, levels)]
    return Outcome(levels, final, names, suppressed, loss, at_risk)


def _code_names(column: Column, level: int) -> np.ndarray:
    """Code -> stored value ('*' for 0), as an array indexed by code."""
    names = np.empty(int(column.codes[level].max(initial=0)) + 1, dtype=object)
    names[column.codes[level]] = column.values[level]
    names[0] = NOT_ANSWERED
    return names


def _suppress_locally(original: np.ndarray, k: int, weights: np.ndarray, order: np.ndarray,
                      sizes: np.ndarray) -> np.ndarray:
    """Respondents in groups under k keep only some of their values: for each set of values to keep,
    from the most to the least informative (by weight), respondents at risk who agree on it form a
    group with '*' elsewhere, once that group (with anyone already stored that way) reaches k."""
    final = original.copy()
    remaining = order[sizes[order] < k]
    if remaining.size == 0:
        return final
    width = original.shape[1]
    subsets = sorted(
        (kept for r in range(width - 1, -1, -1) for kept in itertools.combinations(range(width), r)),
        key=lambda kept: (weights.sum() - weights[list(kept)].sum(), -len(kept), kept),
    )
    bases = original.max(axis=0, initial=0) + 1
    # Combinations already stored by respondents not at risk (they never change), plus the keys of
    # those who joined a group since: only the respondents still at risk are looked at per subset.
    safe = np.ones(len(original), dtype=bool)
    safe[remaining] = False
    settled, settled_counts = np.unique(_keys(original, bases)[safe], return_counts=True)
    joined, joined_counts = np.unique(np.zeros(0, dtype=np.int64), return_counts=True)
    for kept in subsets:
        mask = np.zeros(width, dtype=np.int64)
        mask[list(kept)] = 1
        projected = original[remaining] * mask
        candidates = _keys(projected, bases)
        tally_keys, inverse, tally = np.unique(candidates, return_inverse=True, return_counts=True)
        together = tally + _counts_of(tally_keys, settled, settled_counts) + _counts_of(tally_keys, joined, joined_counts)
        joins = together[inverse] >= k
        if joins.any():
            final[remaining[joins]] = projected[joins]
            joined, joined_counts = np.unique(np.concatenate([np.repeat(joined, joined_counts), candidates[joins]]),
                                              return_counts=True)
            remaining = remaining[~joins]
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


def _fill_blank_class(final: np.ndarray, original: np.ndarray, k: int, weights: np.ndarray, costs: np.ndarray,
                      order: np.ndarray) -> None:
    """Respondents with every value removed form one group; if it is under k, more respondents join
    it, taken where their own group stays at k or more without them (least informative first)."""
    # What each respondent's kept values are worth; only respondents who become blank change.
    value = (weights * (final != 0) * (1 - costs)).sum(axis=1)
    while True:
        blank = ~final.any(axis=1)
        count = int(blank.sum())
        if count == 0 or count >= k or count == len(final):
            return
        keys = _keys(final)
        sizes = _class_sizes(keys)
        spare = order[~blank[order] & (sizes[order] > k)]
        if spare.size:
            chosen = spare[[np.argmin(value[spare])]]  # the first in `order` among equals
        else:  # no group can spare anyone: the smallest group joins as a whole
            others = order[~blank[order]]
            smallest_size = sizes[others].min()
            smallest = keys[others][sizes[others] == smallest_size].min()
            chosen = np.flatnonzero(keys == smallest)
        final[chosen] = 0


# --- the warehouse ----------------------------------------------------------------------------


def protect_microdata(con: duckdb.DuckDBPyConnection, rules: PrivacyRules) -> list[WaveProtection]:
    """Apply k-anonymity to every wave with new respondents (every wave when the rules changed);
    the caller holds the transaction."""
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
    con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES ('privacy_sha256', ?)", [rules.sha256])
    return results


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
    respondents = con.execute(
        """
        SELECT r.respondent_key,
               md5(coalesce(string_agg(a.concept || '=' || a.value, ';' ORDER BY a.concept, a.value), '')) AS content
        FROM respondents r LEFT JOIN answers a ON a.respondent_key = r.respondent_key
        WHERE r.wave = ? GROUP BY r.respondent_key
        """,
        [wave],
    ).fetchall()
    stored = _stored_values(con, wave, concepts)
    columns = []
    for concept in concepts:
        codes = con.execute(
            "SELECT code, missing FROM choices WHERE wave = ? AND concept = ?", [wave, concept]
        ).fetchall()
        rule = micro.key_quasi_identifiers[concept]
        own = {code for code, _ in codes} - set(rule.group_codes())  # the catalogue also holds groups
        columns.append(Column(
            concept, rule,
            [stored.get((key, concept), frozenset()) for key, _ in respondents],
            frozenset(code for code, missing in codes if missing),
            sum(1 for code, missing in codes if not missing and code in own),
        ))
    # Same answers, same treatment: respondents are taken in the order of their stored values and
    # answers, never of their random keys, so a re-run on the same exports publishes the same figures.
    signature = [tuple(c.stored[i] and ",".join(sorted(c.stored[i])) or "" for c in columns) + (content,)
                 for i, (_key, content) in enumerate(respondents)]
    order = np.array(sorted(range(len(respondents)), key=lambda i: signature[i]), dtype=np.int64)
    outcome = protect_wave(columns, micro.k, micro.candidates, order)
    protection = WaveProtection(wave, len(respondents), micro.k, columns, outcome)
    if outcome is not None:
        _store_values(con, wave, [key for key, _ in respondents], columns, outcome)
    return protection


def _stored_values(con, wave: int, concepts: list[str]) -> dict[tuple[str, str], frozenset[str]]:
    if not concepts:
        return {}
    rows = con.execute(
        "SELECT respondent_key, concept, list(value ORDER BY value) FROM answers "
        f"WHERE wave = ? AND concept IN ({', '.join('?' for _ in concepts)}) GROUP BY ALL",
        [wave, *concepts],
    ).fetchall()
    return {(key, concept): frozenset(values) for key, concept, values in rows}


def _store_values(con, wave: int, keys: list[str], columns: list[Column], outcome: Outcome) -> None:
    rows = []
    for j, column in enumerate(columns):
        for key, value in zip(keys, outcome.column(j)):
            if value != NOT_ANSWERED:
                rows.extend((key, wave, column.concept, code) for code in value.split(","))
        con.execute("DELETE FROM answers WHERE wave = ? AND concept = ?", [wave, column.concept])
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
    if rows:
        frame = pd.DataFrame(rows, columns=["respondent_key", "wave", "concept", "value"])
        con.register("protected_answers", frame)
        con.execute("INSERT INTO answers (respondent_key, wave, concept, value) "
                    "SELECT respondent_key, wave, concept, value FROM protected_answers")
        con.unregister("protected_answers")


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
            values = outcome.final[:, j]
            generalised = int(((values != 0) & (column.costs[level] > 0)).sum())
            removed = outcome.suppressed[j]
            loss = float((removed.sum() + column.costs[level][~removed].sum()) / max(len(values), 1))
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


def equivalence_classes(con: duckdb.DuckDBPyConnection, wave: int, concepts: list[str]) -> pd.DataFrame:
    """respondent_key plus one column per concept: the stored value (codes joined by ',' or '*')."""
    frame = pd.DataFrame({"respondent_key": [k for (k,) in con.execute(
        "SELECT respondent_key FROM respondents WHERE wave = ? ORDER BY respondent_key", [wave]).fetchall()]})
    stored = _stored_values(con, wave, concepts)
    for concept in concepts:
        frame[concept] = [",".join(sorted(stored.get((key, concept), ()))) or NOT_ANSWERED for key in frame["respondent_key"]]
    return frame


__all__ = ["PrivacyError", "PrivacyRules", "load_privacy_rules", "load_checked_privacy_rules", "privacy_path",
           "protect_microdata", "equivalence_classes"]

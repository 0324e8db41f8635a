"""Who is in scope, compared between waves: each wave's `inclusion:` rules (instrument.yaml).

When a wave admits other people than the wave before (another eligible role, no consent rule,
an admitted answer that now means something else), every indicator's change between the two
compares two different populations. The run stops before reading an export until the analyst says
in the later wave's rules.yaml whether the figures still compare (`population_change:`); the
statement then applies to every indicator's change across that boundary (indicators.comparability_of).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.instrument import Instrument, code_order
from pipeline.instrument import plain_text as _plain
from pipeline.wave_rules import PopulationChange, load_wave_rules, rules_path


@dataclass(frozen=True)
class Admits:
    """One inclusion rule as compared: a question and the answers it admits, with their English
    wording (only the wording's letters and digits count: a comma is not another population)."""
    question: str
    codes: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]  # (code, wording as written), for describing only

    @property
    def key(self) -> tuple:
        return self.question, self.codes, tuple(_plain(label) for _, label in self.labels)


def inclusion_of(instrument: Instrument) -> list[Admits]:
    """A wave's inclusion rules in a form equal when the meaning is: rule names, rule order, code
    order and YAML style do not count; the wording of the admitted answers does."""
    rules = []
    for condition in instrument.inclusion.values():
        codes = tuple(sorted(set(condition.in_), key=code_order))
        wording = {c.code: c.label.en for c in instrument.choices_of(instrument.question(condition.question))}
        rules.append(Admits(condition.question, codes, tuple((c, wording.get(c, "")) for c in codes)))
    return sorted(set(rules), key=lambda r: r.key)


def same_population(old: Instrument, new: Instrument) -> bool:
    return [r.key for r in inclusion_of(old)] == [r.key for r in inclusion_of(new)]


def _answers(rule: Admits, codes: list[str]) -> str:
    wording = dict(rule.labels)
    return ", ".join(f'{c} "{wording[c]}"' if wording.get(c) else c for c in codes)


def describe_inclusion_change(old: Instrument, new: Instrument) -> list[str]:
    """What differs between two waves' inclusion rules, a plain line each, by question."""
    before, after = old.wave, new.wave
    was = {r.question: r for r in inclusion_of(old)}
    now = {r.question: r for r in inclusion_of(new)}
    lines = []
    for question in sorted(was.keys() | now.keys()):
        a, b = was.get(question), now.get(question)
        if a is None:
            lines.append(f"{question}: new rule in {after}: only responses answering {_answers(b, list(b.codes))} "
                         f"are kept ({before} did not select on {question})")
        elif b is None:
            lines.append(f"{question}: rule dropped in {after}: {before} kept only responses answering "
                         f"{_answers(a, list(a.codes))}; {after} keeps responses whatever their answer")
        else:
            added = [c for c in b.codes if c not in a.codes]
            removed = [c for c in a.codes if c not in b.codes]
            if added:
                lines.append(f"{question}: {after} also admits answer {_answers(b, added)}")
            if removed:
                lines.append(f"{question}: {after} no longer admits answer {_answers(a, removed)}")
            old_words, new_words = dict(a.labels), dict(b.labels)
            for code in (c for c in b.codes if c in a.codes):
                if _plain(old_words[code]) != _plain(new_words[code]):
                    lines.append(f'{question}: admitted answer {code} now means "{new_words[code]}" '
                                 f'(in {before}: "{old_words[code]}")')
    # rules on one question written twice differ only in ways the lines above cannot say
    return lines or [f"the rules differ: compare the `inclusion:` blocks of the two instrument.yaml files"]


def population_statements(instruments: dict[int, Instrument]) -> dict[int, PopulationChange]:
    """By wave: its rules.yaml's `population_change:` statement, where it has one."""
    statements = {}
    for wave, instrument in instruments.items():
        stated = load_wave_rules(instrument).population_change
        if stated is not None:
            statements[wave] = stated
    return statements


def unstated_population_changes(instruments: dict[int, Instrument],
                                before_check: set[int] = frozenset()) -> list[tuple[Instrument, Instrument]]:
    """Each pair of consecutive waves (of `instruments`) whose inclusion rules differ in meaning with
    no `population_change:` statement in the later wave's rules.yaml naming the earlier wave. Two waves
    both loaded before the warehouse checked this (`before_check`) are not: it keeps running."""
    statements = population_statements(instruments)
    waves = sorted(instruments)
    unstated = []
    for before, after in zip(waves, waves[1:]):
        if before in before_check and after in before_check:
            continue
        stated = statements.get(after)
        if (stated is None or stated.since != before) and not same_population(instruments[before], instruments[after]):
            unstated.append((instruments[before], instruments[after]))
    return unstated


def population_message(unstated: list[tuple[Instrument, Instrument]]) -> str:
    """Why the run stops (and status says it would): which waves, what changed, what to write."""
    lines = []
    for old, new in unstated:
        where = rules_path(new) or Path(f"surveys/{new.wave}/rules.yaml")
        lines.append(
            f"Who is in scope changed between {old.wave} and {new.wave}: the `inclusion:` rules of "
            f"{old.source or old.wave} and {new.source or new.wave} differ, so every indicator's change from "
            f"{old.wave} to {new.wave} would compare two different groups of people. What changed:")
        lines += [f"  {line}" for line in describe_inclusion_change(old, new)]
        lines.append(
            f"Say whether the {old.wave} and {new.wave} figures still compare: add to {where}\n"
            f"  population_change: {{since: {old.wave}, status: not_comparable, note: \"why\", "
            f"note_fr: \"pourquoi\"}}\n"
            f"  (status: comparable, comparable_with_caveat or not_comparable. not_comparable breaks every "
            f"indicator's trend at {new.wave}: its changes from {old.wave} read \"not comparable\" (no figure), as for "
            f"a question stated not_comparable; with the other two the changes are computed and the note is shown "
            f"with them. note_fr is the note in French, for the French report.)")
    return "\n".join(lines)

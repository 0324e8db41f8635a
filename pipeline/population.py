"""Who is in scope, compared between waves: each wave's `inclusion:` rules (instrument.yaml).

When a wave admits other people than the wave before (another eligible role, no consent rule,
an admitted answer that now means something else), every indicator's change between the two
compares two different populations. The run stops before reading an export until the analyst says
in the later wave's rules.yaml whether the figures still compare (`population_change:`); the
statement then applies to every indicator's change across that boundary (indicators.comparability_of).
"""

from __future__ import annotations

import json
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


# --- a loaded wave's own rules, changed since its exports were loaded -------------------------


def inclusion_record(instrument: Instrument) -> str:
    """The wave's inclusion rules as stored beside its responses (wave_inclusion): rule names and the
    codes each admits, in a canonical order so that the same rules always give the same text."""
    rules = [{"rule": name, "question": c.question, "in": sorted(set(c.in_), key=code_order)}
             for name, c in sorted(instrument.inclusion.items())]
    return json.dumps(rules, ensure_ascii=False, sort_keys=True)


def _admitted(record: str) -> dict[str, set[str]]:
    """By question, the codes every rule on it admits (rule names and order do not change who is in)."""
    admitted: dict[str, set[str]] = {}
    for rule in json.loads(record):
        codes = set(rule["in"])
        admitted[rule["question"]] = admitted[rule["question"]] & codes if rule["question"] in admitted else codes
    return admitted


@dataclass(frozen=True)
class RulesChangedSinceLoaded:
    """A loaded wave whose current `inclusion:` rules admit other answers than those its exports were
    loaded under."""
    instrument: Instrument
    recorded: str  # inclusion_record() of the rules its exports were loaded under


def inclusion_changed_since_loaded(recorded: dict[int, str],
                                   instruments: dict[int, Instrument]) -> list[RulesChangedSinceLoaded]:
    """The loaded waves (`recorded`: wave_inclusion) whose instrument now admits other answers. A wave
    with no record (loaded before the warehouse kept one) is not compared."""
    return [RulesChangedSinceLoaded(instruments[wave], record) for wave, record in sorted(recorded.items())
            if wave in instruments and _admitted(record) != _admitted(inclusion_record(instruments[wave]))]


def describe_rules_changed(change: RulesChangedSinceLoaded) -> list[str]:
    """What the current rules admit differently from the loaded ones, a plain line each, by question."""
    instrument = change.instrument
    was, now = _admitted(change.recorded), _admitted(inclusion_record(instrument))

    def answers(question: str, codes: set[str]) -> str:
        wording = {c.code: c.label.en for c in instrument.choices_of(instrument.question(question))} \
            if instrument.question(question) is not None else {}
        ordered = sorted(codes, key=code_order)
        return ", ".join(f'{c} "{wording[c]}"' if wording.get(c) else c for c in ordered)

    lines = []
    for question in sorted(was.keys() | now.keys()):
        before, after = was.get(question), now.get(question)
        if before is None:
            lines.append(f"{question}: new rule: only responses answering {answers(question, after)} are in scope "
                         f"(the loaded responses were not selected on {question})")
        elif after is None:
            lines.append(f"{question}: rule dropped: the loaded responses were kept only when answering "
                         f"{answers(question, before)}; the rules now keep every answer")
        else:
            if after - before:
                lines.append(f"{question}: now also admits answer {answers(question, after - before)}")
            if before - after:
                lines.append(f"{question}: no longer admits answer {answers(question, before - after)}")
    return lines


def rules_changed_message(changes: list[RulesChangedSinceLoaded], files: dict[int, list[tuple[str, bool]]],
                          folder: str) -> str:
    """Why the run stops (and status says it would): which wave, what changed, the two ways out.
    `files`: by wave, each loaded export's name and whether its raw file was purged since; `folder`:
    where the run reads the wave's exports (data/raw/<wave> or data/synthetic/<wave>)."""
    lines = []
    for change in changes:
        wave = change.instrument.wave
        where = change.instrument.source or f"surveys/{wave}/instrument.yaml"
        names = [name for name, _ in files.get(wave, [])]
        purged = [name for name, gone in files.get(wave, []) if gone]
        lines.append(f"{where}: the `inclusion:` rules changed since wave {wave}'s exports were loaded. What changed:")
        lines += [f"  {line}" for line in describe_rules_changed(change)]
        lines.append(f"The {wave} responses in the warehouse were kept or excluded under the old rules, and the "
                     "responses excluded then were not kept, so the figures cannot follow the new rules without reading "
                     "the exports again. Either put the old rules back in the instrument:")
        rules = json.loads(change.recorded)
        lines.append("  inclusion:" + ("" if rules else " {}"))
        lines += [f"    {r['rule']}: {{question: {r['question']}, in: [{', '.join(r['in'])}]}}" for r in rules]
        if purged:
            lines.append(f"  (loading the wave again is not possible: the raw export(s) {', '.join(purged)} were "
                         "deleted with `consult purge-raw`)")
        else:
            target = folder.replace("<wave>", str(wave))
            lines.append(f"or load the wave's exports again under the new rules: `consult run --reload {wave}` (reads "
                         f"{', '.join(names)} again from {target}/ and replaces what they brought, in one step; quote "
                         "decisions are kept; docs/runbook.md, \"Changing who is in scope after loading\").")
    return "\n".join(lines)

"""French text of the indicator catalogue (surveys/indicators.fr.yaml), checked against the English.

Indicator rules, codes and ids live in surveys/indicators.yaml only; the French file holds text,
keyed by the same ids. Group labels of a breakdown that groups by a question's answers come from
the instruments (every choice has a French label); labels written in indicators.yaml
(`labels`, `groups`, `more_than_one`) need a French twin under the same code. A wave's
`population_change:` (its rules.yaml) carries its French beside the English, as `note_fr:`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline.instrument import available_waves, instrument_path, load_instrument, parse_yaml

__all__ = ["FrenchText", "TranslationError", "french_catalogue", "french_path", "french_phrase", "missing_french",
           "report_strings"]


class TranslationError(ValueError):
    """A definition has no French text; the message names the file, the id and the field."""


def french_path(indicators_file: Path) -> Path:
    return indicators_file.with_name(indicators_file.stem + ".fr.yaml")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TranslationError(f"{path}: cannot read the French catalogue: {exc}") from None
    if not isinstance(data, dict):
        raise TranslationError(f"{path}: expected a mapping with `indicators` and `breakdowns`")
    return data


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def missing_french(indicators_file: Path, surveys_dir: Path) -> list[str]:
    """Every piece of French the report needs and does not have, one line each (empty: complete)."""
    english = _read(indicators_file)
    french_file = french_path(indicators_file)
    french = _read(french_file) if french_file.is_file() else {}
    where = french_file.name
    problems: list[str] = []
    fr_indicators = french.get("indicators") or {}
    for ind in english.get("indicators") or []:
        fr = fr_indicators.get(ind["id"]) or {}
        for key in ("title", "definition") + (("caveats",) if _text(ind.get("caveats")) else ()):
            if not _text(fr.get(key)):
                problems.append(f"{where}: indicator {ind['id']} has no French {key}")
        population = ind.get("population_text")
        if _text(population) and not _text((french.get("population_text") or {}).get(population.strip())):
            problems.append(f"{where}: population_text has no French for {population.strip()!r} (indicator {ind['id']})")
        notes = [c for c in ind.get("comparability") or [] if isinstance(c, dict) and _text(c.get("note"))]
        if len(fr.get("comparability") or []) != len(notes):
            problems.append(f"{where}: indicator {ind['id']} needs {len(notes)} French comparability note(s)")
    problems += [f"{where}: score {name} has no French {key}" for name in english.get("scores") or {}
                 for key in ("title", "definition")
                 if not _text(((french.get("scores") or {}).get(name) or {}).get(key))]
    fr_breakdowns = french.get("breakdowns") or {}
    for name, breakdown in (english.get("breakdowns") or {}).items():
        problems += _breakdown_problems(where, name, breakdown, fr_breakdowns.get(name) or {}, surveys_dir)
    return problems + _population_problems(surveys_dir)


def _population_problems(surveys_dir: Path) -> list[str]:
    """Each wave's `population_change:` note is shown on the report's pages: it needs its French."""
    from pipeline.population import population_statements
    from pipeline.wave_rules import RULES_FILE

    instruments = {w: load_instrument(instrument_path(surveys_dir, w)) for w in available_waves(surveys_dir)}
    return [f"{instrument_path(surveys_dir, wave).with_name(RULES_FILE)}: population_change has no French note: "
            f"add note_fr: beside its note ({stated.note.strip()!r})"
            for wave, stated in sorted(population_statements(instruments).items()) if not _text(stated.note_fr)]


def _breakdown_problems(where: str, name: str, english: dict, fr: dict, surveys_dir: Path) -> list[str]:
    problems = [f"{where}: breakdown {name} has no French {key}"
                for key in ("title", "definition") if not _text(fr.get(key))]
    written = {str(code) for code in (english.get("labels") or {})}
    written |= {str(group["code"]) for group in english.get("groups") or []}
    translated = {str(code) for code, label in {**(fr.get("labels") or {}), **(fr.get("groups") or {})}.items()
                  if _text(label)}
    problems += [f"{where}: breakdown {name} has no French label for group {code}"
                 for code in sorted(written - translated)]
    if english.get("more_than_one") and not _text(fr.get("more_than_one")):
        problems.append(f"{where}: breakdown {name} has no French label for its more_than_one group")
    if english.get("question") and not english.get("labels"):
        problems += _instrument_problems(name, str(english["question"]), surveys_dir)
    return problems


def _instrument_problems(name: str, question: str, surveys_dir: Path) -> list[str]:
    """Groups labelled from the questionnaire: every choice of every wave needs its French label."""
    problems = []
    for wave in available_waves(surveys_dir):
        path = instrument_path(surveys_dir, wave)
        instrument = load_instrument(path)
        if question not in {q.id for q in instrument.questions}:
            continue
        for choice in instrument.choices_of(instrument.question(question)):
            if not _text(choice.label.fr):
                problems.append(f"{path}: question {question} (breakdown {name}) has no French label "
                                f"for answer {choice.code}")
    return problems


def french_catalogue(indicators_file: Path, surveys_dir: Path) -> dict[str, Any]:
    """The French catalogue, or TranslationError listing everything missing."""
    problems = missing_french(indicators_file, surveys_dir)
    if problems:
        raise TranslationError("the French report cannot be rendered:\n  " + "\n  ".join(problems))
    return _read(french_path(indicators_file))


# --- the report's own words (surveys/report_strings.yaml) and the French overlay of warehouse text ---


def report_strings(path: Path) -> dict[str, Any]:
    """surveys/report_strings.yaml, checked: every string has English and French."""
    data = _read(path)
    problems = [f"{path.name}: {section}.{key} needs en and fr" for section in ("strings", "rule_words")
                for key, entry in (data.get(section) or {}).items()
                if not (isinstance(entry, dict) and _text(entry.get("en")) and _text(entry.get("fr")))]
    if problems:
        raise TranslationError("\n  ".join(problems))
    return data


def _phrase_pattern(template: str) -> re.Pattern[str]:
    # "the {wave} figure is suppressed" -> the (?P<wave>.+?) figure is suppressed
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>.+?)", re.escape(template)))


def french_phrase(text: str, phrases: dict[str, str]) -> str:
    """A phrase the pipeline stores in English (a suppression reason, a gap statement) in French;
    a phrase inside another (`{reason}`) is translated too. Unknown text is returned as it is."""
    for english, french in phrases.items():
        found = _phrase_pattern(english).fullmatch(text.strip())
        if found:
            values = {k: (french_phrase(v, phrases) if k == "reason" else v) for k, v in found.groupdict().items()}
            return french.format(**values)
    return text


class FrenchText:
    """The French of what the warehouse holds in English: indicator texts, group labels, notes."""

    def __init__(self, indicators_file: Path, surveys_dir: Path, choices_fr: dict[tuple[str, str], str]) -> None:
        from pipeline.indicators import load_catalogue, with_population_changes

        self.french = french_catalogue(indicators_file, surveys_dir)
        # with each wave's population_change (its note_fr checked by french_catalogue)
        self.english = with_population_changes(load_catalogue(indicators_file), surveys_dir)
        self.labels = self._group_labels(choices_fr)

    def _group_labels(self, choices_fr: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
        """(breakdown, group code) -> French label: the questionnaire's (and merged groups') label_fr,
        then the labels written in indicators.fr.yaml, as the English labels are made."""
        labels: dict[tuple[str, str], str] = {}
        for name, breakdown in self.english.breakdowns.items():
            labels.update({(name, code): text for (concept, code), text in choices_fr.items()
                           if concept == breakdown.question})
            fr = (self.french.get("breakdowns") or {}).get(name) or {}
            written = {**(fr.get("labels") or {}), **(fr.get("groups") or {})}
            labels.update({(name, str(code)): str(text) for code, text in written.items()})
            if breakdown.more_than_one is not None and _text(fr.get("more_than_one")):
                labels[(name, breakdown.more_than_one.code)] = fr["more_than_one"]
        return labels

    def indicator(self, info: dict[str, Any], comparability: Callable[[int, int, str], str],
                  population: Callable[[int, int, str], str] | None = None) -> dict[str, Any]:
        """One indicator_catalogue row with its texts in French; `comparability(before, after, status)`
        words one stated pair of waves, `population(...)` one change of who is in scope its figures span
        (as comparability_text does in English)."""
        from pipeline.indicators import population_spans

        ind = str(info["indicator_id"])
        fr = self.french["indicators"][ind]
        english = next(i for i in self.english.indicators if i.id == ind)
        notes = iter(fr.get("comparability") or [])
        stated = [comparability(c.waves[0], c.waves[1], c.status)
                  + (f" {next(notes).strip()}" if c.note.strip() else "") for c in english.comparability]
        waves = [int(w) for w in str(info.get("waves") or "").split(",") if w.strip().isdigit()]
        stated += [(population or comparability)(before, after, p.status) + f" {p.note_fr.strip()}"
                   for before, after, p in population_spans(self.english.population_changes, waves)]
        population = str(info.get("population") or "").strip()
        return {**info, "title": fr["title"].strip(), "definition": fr["definition"].strip(),
                "caveats": (fr.get("caveats") or "").strip(),
                "population": (self.french.get("population_text") or {}).get(population, population),
                "comparability": " ".join(stated)}

    def comparability_note(self, indicator_id: str, note: str) -> str:
        """A stored comparability note in French. It is the indicator's own note (indicators.yaml)
        and/or the population_change notes of the waves it crosses, joined by a space, in that order
        (indicators.comparability_of): each part is translated. Unknown text is returned as it is."""
        english = next((i for i in self.english.indicators if i.id == indicator_id), None)
        if english is None:
            return note
        stated = [c.note.strip() for c in english.comparability if c.note.strip()]
        french = [str(n).strip() for n in self.french["indicators"][indicator_id].get("comparability") or []]
        known = dict(zip(stated, french)) | {p.note.strip(): p.note_fr.strip()
                                             for p in self.english.population_changes.values()}
        return _translated_parts(note.strip(), known) or note

    def breakdown(self, name: str) -> dict[str, str]:
        return (self.french.get("breakdowns") or {}).get(name) or {}


def _translated_parts(text: str, known: dict[str, str]) -> str | None:
    """`text` made of known English notes joined by spaces, in French; None when a part is unknown."""
    if not text:
        return ""
    for english in sorted(known, key=len, reverse=True):  # the longest first: one note may begin another
        if english and (text == english or text.startswith(english + " ")):
            rest = _translated_parts(text[len(english):].strip(), known)
            if rest is not None:
                return " ".join(part for part in (known[english], rest) if part)
    return None

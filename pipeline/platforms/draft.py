"""Draft an instrument YAML from what a platform knows about its questionnaire: a responses export
(column names, question texts, the answers observed), an XLSForm, or a REDCap data dictionary.

The draft is a starting point for a new wave whose questionnaire was built in the platform: it
is always a valid instrument (it loads as it is), and says at the top what a person must check.
Platform identifier and metadata columns are left out (the platform adapter handles them);
questions that ask for a direct identifier are kept and marked `disclosure: direct`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pipeline.instrument import Instrument
from pipeline.platforms.answers import NOT_SELECTED, number_text
from pipeline.platforms.common import IDENTIFIER, QUESTION, Layout, SourceColumn, identifier_role, plain
from pipeline.platforms.detect import definition_kind, read_layout
from pipeline.platforms.reading import RawFile, ReadError, read_raw
from pipeline.platforms.xlsform import label_in, read_xlsform

MAX_CHOICES = 15  # more distinct answers than this (or long ones) make an open question
MAX_CODE = 20  # whole numbers up to this, few of them, are answer codes rather than amounts
MAX_LABEL = 80
ID_LENGTH = 40
TIMESTAMP_ROLES = ("started_at", "ended_at", "recorded_at", "submitted_at")


class _PlainDumper(yaml.SafeDumper):
    """Writes a shared choice list out in full each time: no YAML anchors in a file people edit."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass
class Draft:
    """An instrument as plain data, and what the person checking it should know."""

    source: str
    wave: int | None
    title: str
    sections: list[dict[str, Any]]
    window: tuple[dt.date, dt.date] | None = None
    languages: list[str] = field(default_factory=lambda: ["en"])
    choice_sets: dict[str, list[dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_yaml(self, wave: int | None) -> str:
        wave = wave or self.wave
        if wave is None:
            raise ReadError("the file has no dates to tell the wave from; give it with --wave (e.g. --wave 2026)")
        start, end = self.window or (dt.date(wave, 1, 1), dt.date(wave, 12, 31))
        data = {
            "wave": wave,
            "title": {"en": self.title, "fr": self.title},
            "languages": self.languages,
            "collection_window": {"start": start, "end": end},
            **({"choice_sets": self.choice_sets} if self.choice_sets else {}),
            "sections": self.sections,
        }
        Instrument.model_validate(data)  # a draft must load as it is
        header = [
            f"# Drafted by `consult instrument draft` from {self.source}.",
            "# Check before use: question types, choice codes and labels (French labels are copies of the",
            "# English ones unless the source had French), required flags, disclosure classes, skip logic,",
            "# and the inclusion rules (none are drafted).",
            *[f"# - {note}" for note in self.notes],
        ]
        body = yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=110)
        return "\n".join(header) + "\n" + body


def draft_instrument(path: Path, platform: str | None = None, reserved: frozenset[str] = frozenset()) -> Draft:
    """Read a responses export, an XLSForm or a REDCap data dictionary; ReadError when unusable.

    `reserved`: concept ids the project's instruments already use. A drafted question never takes
    one of them (that would claim it is the same question as in the other waves): it gets a
    suffix, and the draft's notes say so.
    """
    raw = read_raw(path)
    kind = definition_kind(raw) if platform is None else None
    if kind == "xlsform":
        draft = from_xlsform(raw, set(reserved))
    elif kind == "redcap data dictionary":
        draft = from_redcap_dictionary(raw, set(reserved))
    else:
        draft = from_export(read_layout(raw, platform), raw, set(reserved))
    renamed = sorted(q["id"] for s in draft.sections for q in s["questions"] if re.sub(r"_\d+$", "", q["id"]) in reserved)
    if renamed:
        draft.notes.append(
            "ids the project's instruments already use got a number (" + ", ".join(renamed) + "): give a "
            "question the existing id only if it is the same question, with the same codes"
        )
    return draft


# --- from a responses export ------------------------------------------------------------------


def from_export(layout: Layout, raw: RawFile, ids: set[str]) -> Draft:
    questions: list[dict] = []
    aliases: set[str] = set()
    for group in _question_groups(layout):
        question = _question_from(group, layout, ids)
        alias = question["aliases"][0]
        if alias.casefold() in aliases:
            question["aliases"] = []  # the same header twice: only the first can be matched by name
        aliases.add(alias.casefold())
        questions.append(question)
    if not questions:
        raise ReadError("no question columns were found to draft from")
    dates = _observed_dates(layout)
    window = (min(dates), max(dates)) if dates else None
    notes = [f"platform: {layout.platform} ({layout.variant}); {layout.size} responses read", *layout.notes]
    return Draft(f"{raw.path.name}", window[0].year if window else None, raw.path.stem.replace("_", " "),
                 [{"id": "responses", "title": {"en": "Questions", "fr": "Questions"}, "questions": questions}],
                 window, notes=notes)


def _question_groups(layout: Layout) -> list[list[SourceColumn]]:
    """Columns that make one question: one column, or the option columns of a multiple choice."""
    groups: list[list[SourceColumn]] = []
    by_parent: dict[str, list[SourceColumn]] = {}
    for column in layout.columns:
        if column.kind != QUESTION or not column.name.strip():
            continue
        if column.option is not None and column.option_of:
            siblings = by_parent.setdefault(column.option_of[0], [])
            if not siblings:
                groups.append(siblings)
            siblings.append(column)
        else:
            groups.append([column])
    result = []
    for group in groups:
        if len(group) > 1 and _ticks(group, layout):
            result.append(group)
        else:
            result.extend([c] for c in group)
    return result


def _ticks(group: list[SourceColumn], layout: Layout) -> bool:
    """Option columns hold ticks (1/0, Y, True/False, Checked, or the option's own text)."""
    if layout.platform == "redcap":
        return True  # field___code columns are always a checkbox field
    for column in group:
        for cell in layout.cells[column.index]:
            cell = cell.strip()
            if cell.casefold() in NOT_SELECTED or cell in layout.missing:
                continue
            if cell.casefold() not in {"1", "y", "yes", "true", "checked", "x"} and plain(cell) != plain(column.option or ""):
                return False
    return True


def _question_from(group: list[SourceColumn], layout: Layout, ids: set[str]) -> dict:
    first = group[0]
    if len(group) > 1:
        key = first.option_of[0]
        label = plain(first.option_of[-1] if layout.platform != "kobo" else key.split("/")[-1])
        options = [c.option or "" for c in group]
        choices = _choices(options, layout.values == "labels" and layout.platform == "surveymonkey")
        return _question(_concept_id(key, ids, layout), "multiple", label, key, choices)
    key = first.keys[0] if first.keys else first.name
    label = plain(first.text or first.name)
    values = layout.cells[first.index]
    values = [v.strip() for v in values if v.strip() and v.strip() not in layout.missing]
    role = identifier_role(first.text or first.name)
    concept = _concept_id(key, ids, layout)
    if role:
        return _question(concept, "text", label, key, None, direct=True)
    kind, choices = _infer(values, layout, first.open_text)
    return _question(concept, kind, label, key, choices)


def _question(concept: str, kind: str, label: str, alias: str, choices: list[dict] | None,
              direct: bool = False) -> dict:
    question: dict[str, Any] = {"id": concept, "type": kind, "label": {"en": label or concept, "fr": label or concept}}
    if choices:
        question["choices"] = choices
    question["disclosure"] = "direct" if direct else "none"
    question["aliases"] = [alias]
    return question


# An email address or a phone number among the answers: the question is open, whatever its size,
# and its answers are never written into the draft as choices.
PERSONAL = re.compile(r"@|\d{3}\D{0,2}\d{3}\D?\d{4}")


def _infer(values: list[str], layout: Layout, open_text: bool) -> tuple[str, list[dict] | None]:
    if open_text or not values or any(PERSONAL.search(v) for v in values):
        return "text", None
    numbers = [number_text(v) for v in values]
    if all(_is_number(n) for n in numbers):
        whole = all(re.fullmatch(r"-?\d+", n) for n in numbers)
        distinct = sorted(set(numbers), key=float)
        if layout.values == "codes" and whole and len(distinct) <= MAX_CHOICES and 0 <= float(distinct[0]) and float(distinct[-1]) <= MAX_CODE:
            return "single", _choices(distinct, labels=False)
        return "numeric", None
    if all(_is_date(v) for v in values):
        return "date", None
    distinct = list(dict.fromkeys(values))
    if layout.values == "codes":
        if layout.multi_separator == " " and all(re.fullmatch(r"[A-Za-z0-9_.-]+( [A-Za-z0-9_.-]+)*", v) for v in distinct):
            codes = sorted({p for v in distinct for p in v.split()})
            if any(" " in v for v in distinct):
                return "multiple", _choices(codes, labels=False)
        if all(re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", v) for v in distinct) and len(distinct) <= MAX_CHOICES:
            return "single", _choices(sorted(distinct), labels=False)
        return "text", None
    if len(distinct) > MAX_CHOICES or max(len(v) for v in distinct) > MAX_LABEL:
        return "text", None
    if len(values) >= 10 and len(distinct) > 0.6 * len(values):
        return "text", None
    if layout.multi_separator == ", " and _joined_choices(distinct):
        pieces = sorted({p for v in distinct for p in v.split(", ")}, key=str.casefold)
        return "multiple", _choices(pieces, labels=True)
    return "single", _choices(sorted(distinct, key=str.casefold), labels=True)


def _joined_choices(distinct: list[str]) -> bool:
    """Google Forms checkboxes: some answers are several others joined by ", "."""
    joined = [v for v in distinct if ", " in v]
    whole = set(distinct)
    return bool(joined) and all(all(p in whole for p in v.split(", ")) for v in joined)


def _choices(values: list[str], labels: bool) -> list[dict]:
    """Choices for observed answers: labels get codes 1..n, codes are their own labels."""
    if labels:
        return [{"code": str(i), "label": {"en": plain(v), "fr": plain(v)}} for i, v in enumerate(values, start=1)]
    return [{"code": v, "label": {"en": v, "fr": v}} for v in values]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?$|^\d{1,2}/\d{1,2}/\d{4}$")


def _is_date(text: str) -> bool:
    return bool(DATE.match(text))


def _concept_id(key: str, taken: set[str], layout: Layout) -> str:
    """A valid, unused concept id from a column name or question text."""
    text = plain(key)
    if layout.platform == "kobo":
        parts = [p for p in text.split("/") if p]
        candidates = ["_".join(parts[-n:]) for n in range(1, len(parts) + 1)]
    else:
        candidates = [text]
    for candidate in candidates:
        concept = _slug(candidate)
        if concept not in taken:
            taken.add(concept)
            return concept
    base, number = _slug(candidates[0]), 2
    while f"{base}_{number}"[:ID_LENGTH] in taken:
        number += 1
    taken.add(f"{base}_{number}"[:ID_LENGTH])
    return f"{base}_{number}"[:ID_LENGTH]


def _slug(text: str) -> str:
    """Lower-case words joined by `_`, whole words up to ID_LENGTH characters."""
    words = [w for w in re.sub(r"[^a-z0-9]+", "_", text.casefold().replace("'", "")).split("_") if w]
    if not words:
        return "question"
    if not words[0][0].isalpha():
        words.insert(0, "q")
    kept = [words[0][:ID_LENGTH]]
    for word in words[1:]:
        if len("_".join(kept + [word])) > ID_LENGTH:
            break
        kept.append(word)
    return "_".join(kept)


def _observed_dates(layout: Layout) -> list[dt.date]:
    """Days the responses were given, from the platform's timestamp columns (in memory only)."""
    positions = [c.index for c in layout.columns if c.kind == IDENTIFIER and c.role in TIMESTAMP_ROLES]
    cells = [cell.strip() for i in positions for cell in layout.cells[i] if cell.strip()]
    cells = [c for c in cells if not c.startswith("1980-01-01")]  # LimeSurvey's anonymised placeholder
    if not cells:
        return []
    day_first = any(re.match(r"^(1[3-9]|2\d|3[01])[/.]", c) for c in cells)
    parsed = pd.to_datetime(pd.Series(cells), errors="coerce", format="mixed", dayfirst=day_first, utc=True)
    return sorted({d.date() for d in parsed.dropna()})


# --- from an XLSForm --------------------------------------------------------------------------

SELECT = re.compile(r"^(select_one|select one from|select_multiple|select all that apply from)\s+(\S+)")
XLSFORM_TYPES = {
    "integer": "numeric", "int": "numeric", "decimal": "numeric", "range": "numeric",
    "text": "text", "string": "text", "barcode": "text",
    "date": "date", "datetime": "date", "datetime-local": "date", "dateTime": "date",
}
DIRECT_TYPES = {"geopoint", "geotrace", "geoshape"}
RELEVANT_PART = re.compile(r"^\s*(?:\$\{(?P<q>\w+)\}\s*=\s*'(?P<v>[^']*)'|selected\(\s*\$\{(?P<sq>\w+)\}\s*,\s*'(?P<sv>[^']*)'\s*\))\s*$")


def from_xlsform(raw: RawFile, ids: set[str]) -> Draft:
    form = read_xlsform(raw)
    languages = ["en", "fr"] if any(label_in(r, "fr") != label_in(r, "en") for r in form.survey) else ["en"]
    lists: dict[str, list[dict]] = {}
    for choice in form.choices:
        name = choice.get("list_name") or choice.get("list name", "")
        if name and choice.get("name"):
            lists.setdefault(name, []).append(
                {"code": choice["name"], "label": _bilingual(label_in(choice, "en"), label_in(choice, "fr"), choice["name"])}
            )
    sections: list[dict] = [{"id": "survey", "title": _bilingual("Questions", "", "Questions"), "questions": []}]
    id_of: dict[str, str] = {}  # the form's name -> the drafted id
    stack: list[tuple[str, str]] = []  # open groups and repeats: (kind, name)
    notes: list[str] = []
    skipped = 0
    for entry in form.survey:
        kind = entry.get("type", "").strip()
        name = entry.get("name", "").strip()
        words = kind.casefold().replace("_", " ").split()
        if words[:1] == ["begin"] and words[1:2] in (["group"], ["repeat"]):
            stack.append((words[1], name))
            if words[1] == "group" and not _in_repeat(stack):
                label = label_in(entry, "en") or name
                sections.append({"id": _unique(_slug(name or "group"), ids),
                                 "title": _bilingual(plain(label), plain(label_in(entry, "fr")), name), "questions": []})
            continue
        if words[:1] == ["end"] and words[1:2] in (["group"], ["repeat"]):
            stack = stack[:-1]
            continue
        if not name:
            continue
        if _in_repeat(stack):
            skipped += 1  # a repeat holds several answers per response: not a concept of one answer
            continue
        question = _xlsform_question(entry, kind, name, lists, [n for _, n in stack], ids, notes)
        if question is not None:
            id_of[name] = question["id"]
            sections[-1]["questions"].append(question)
    if skipped:
        notes.append(f"{skipped} question(s) inside repeat groups are left out (one answer per response only)")
    sections = [s for s in sections if s["questions"]]
    if not sections:
        raise ReadError("the XLSForm has no questions to draft from")
    _prune_conditions(sections, id_of, notes)
    title = form.settings.get("form_title") or raw.path.stem
    return Draft(raw.path.name, None, title, sections, languages=languages, notes=notes)


def _in_repeat(stack: list[tuple[str, str]]) -> bool:
    return any(kind == "repeat" for kind, _ in stack)


def _xlsform_question(entry: dict[str, str], kind: str, name: str, lists: dict[str, list[dict]],
                      groups: list[str], ids: set[str], notes: list[str]) -> dict | None:
    match = SELECT.match(kind)
    base = kind.split()[0] if kind else ""
    if match:
        multiple = match.group(1) in ("select_multiple", "select all that apply from")
        choices = lists.get(match.group(2))
        if not choices:
            notes.append(f"{name}: choice list {match.group(2)!r} is missing; left out")
            return None
        qtype, extra = ("multiple" if multiple else "single"), {"choices": choices}
    elif base in XLSFORM_TYPES:
        qtype, extra = XLSFORM_TYPES[base], {}
    elif base in DIRECT_TYPES:
        qtype, extra = "text", {}
    else:
        return None  # notes, calculations, media, and ODK metadata (start, end, deviceid, ...)
    question: dict[str, Any] = {
        "id": _unique(_slug(name), ids),
        "type": qtype,
        "label": _bilingual(plain(label_in(entry, "en")), plain(label_in(entry, "fr")), name),
        **extra,
    }
    if entry.get("required", "").strip().casefold() in ("yes", "true", "true()", "1"):
        question["required"] = True
    show_if = _relevant(entry.get("bind::relevant") or entry.get("relevant") or "")
    if show_if:
        question["show_if"] = show_if
    elif entry.get("bind::relevant") or entry.get("relevant"):
        notes.append(f"{name}: skip logic {entry.get('relevant') or entry.get('bind::relevant')!r} was not translated")
    direct = base in DIRECT_TYPES or identifier_role(name) is not None
    question["disclosure"] = "direct" if direct else "none"
    question["aliases"] = ["/".join([*[g for g in groups if g], name])] if groups else [name]
    return question


def _relevant(expression: str) -> dict | None:
    """`${q} = 'a' or selected(${q}, 'b')` on one question becomes `{question: q, in: [a, b]}`."""
    if not expression.strip():
        return None
    parts = re.split(r"\s+or\s+", expression.strip())
    found = [RELEVANT_PART.match(p) for p in parts]
    if not all(found):
        return None
    questions = {m["q"] or m["sq"] for m in found if m}
    if len(questions) != 1:
        return None
    return {"question": questions.pop(), "in": [m["v"] if m["q"] else m["sv"] for m in found if m]}


def _prune_conditions(sections: list[dict], id_of: dict[str, str], notes: list[str]) -> None:
    """Skip logic names the source's field; it gets the drafted id, or is dropped (with a note)
    when the draft has no such question or code."""
    questions = {q["id"]: q for s in sections for q in s["questions"]}
    for question in questions.values():
        condition = question.get("show_if")
        if not condition:
            continue
        condition["question"] = id_of.get(condition["question"], condition["question"])
        target = questions.get(condition["question"])
        codes = {c["code"] for c in target.get("choices", [])} if target else set()
        if target is None or (codes and not set(condition["in"]) <= codes):
            del question["show_if"]
            notes.append(f"{question['id']}: skip logic on {condition['question']} was dropped (no such question or code)")


def _bilingual(en: str, fr: str, fallback: str) -> dict[str, str]:
    en = en or fr or fallback
    return {"en": en, "fr": fr or en}


def _unique(concept: str, taken: set[str]) -> str:
    candidate, number = concept, 2
    while candidate in taken:
        candidate, number = f"{concept}_{number}", number + 1
    taken.add(candidate)
    return candidate


# --- from a REDCap data dictionary ------------------------------------------------------------

REDCAP_COLUMNS = ["field", "form", "section", "type", "label", "choices", "note", "validation", "min", "max",
                  "identifier", "branching", "required"]
VALIDATION_NUMERIC = re.compile(r"^(integer|number.*|float)$")
BRANCH_PART = re.compile(r"^\s*\[(?P<field>\w+)(?:\((?P<code>[^)]+)\))?\]\s*=\s*['\"]?(?P<value>[^'\"]*)['\"]?\s*$")


def from_redcap_dictionary(raw: RawFile, ids: set[str]) -> Draft:
    records = [r for r in raw.main.records[1:] if any(c.strip() for c in r)]
    fields = [dict(zip(REDCAP_COLUMNS, [c.strip() for c in r] + [""] * len(REDCAP_COLUMNS))) for r in records]
    if not fields:
        raise ReadError("the data dictionary lists no fields")
    sections: dict[str, dict] = {}
    id_of: dict[str, str] = {}
    notes = [f"{fields[0]['field']} is the record id: left out (the platform adapter reads it as the response id)"]
    for entry in fields[1:]:
        question = _redcap_question(entry, ids, notes)
        if question is None:
            continue
        id_of[entry["field"]] = question["id"]
        form = entry["form"] or "form"
        section = sections.setdefault(form, {"id": _slug(form), "title": _bilingual(form.replace("_", " ").capitalize(), "", form),
                                             "questions": []})
        section["questions"].append(question)
    _prune_conditions(list(sections.values()), id_of, notes)
    return Draft(raw.path.name, None, raw.path.stem.replace("_", " "), list(sections.values()), notes=notes)


def _redcap_question(entry: dict[str, str], ids: set[str], notes: list[str]) -> dict | None:
    kind, validation = entry["type"].casefold(), entry["validation"].casefold()
    extra: dict[str, Any] = {}
    if kind in ("radio", "dropdown", "checkbox"):
        qtype = "multiple" if kind == "checkbox" else "single"
        extra["choices"] = _redcap_choices(entry["choices"])
        if not extra["choices"]:
            notes.append(f"{entry['field']}: no choices could be read; left out")
            return None
    elif kind == "yesno":
        qtype, extra["choices"] = "single", [_choice("1", "Yes", "Oui"), _choice("0", "No", "Non")]
    elif kind == "truefalse":
        qtype, extra["choices"] = "single", [_choice("1", "True", "Vrai"), _choice("0", "False", "Faux")]
    elif kind in ("calc", "slider") or (kind == "text" and VALIDATION_NUMERIC.match(validation)):
        qtype = "numeric"
        low, high = (entry["min"], entry["max"]) if kind != "slider" else ("0", "100")
        if _is_number(low) and _is_number(high):
            extra["range"] = {"min": float(low), "max": float(high)}
    elif kind == "text" and validation.startswith(("date", "datetime")):
        qtype = "date"
    elif kind in ("text", "notes"):
        qtype = "text"
    else:
        return None  # descriptive text, file uploads, sql fields
    label = plain(entry["label"]) or entry["field"]
    question: dict[str, Any] = {"id": _unique(_slug(entry["field"]), ids), "type": qtype,
                                "label": {"en": label, "fr": label}, **extra}
    if entry["required"].casefold() == "y":
        question["required"] = True
    if entry["branching"]:
        condition = _branching(entry["branching"])
        if condition:
            question["show_if"] = condition
        else:
            notes.append(f"{entry['field']}: branching logic {entry['branching']!r} was not translated")
    direct = entry["identifier"].casefold() == "y" or validation in ("email", "phone")
    question["disclosure"] = "direct" if direct else "none"
    question["aliases"] = [entry["field"]]
    return question


def _redcap_choices(text: str) -> list[dict]:
    choices = []
    for part in text.split("|"):
        code, _, label = part.partition(",")
        if code.strip() and label.strip():
            choices.append(_choice(code.strip(), plain(label), plain(label)))
    return choices


def _choice(code: str, en: str, fr: str) -> dict:
    return {"code": code, "label": {"en": en, "fr": fr}}


def _branching(expression: str) -> dict | None:
    """`[sex] = '1' or [sex] = '2'` and `[race(2)] = '1'` (a ticked checkbox) on one field."""
    parts = re.split(r"\s+or\s+", expression.strip())
    found = [BRANCH_PART.match(p) for p in parts]
    if not all(found) or len({m["field"] for m in found if m}) != 1:
        return None
    codes = []
    for match in found:
        assert match is not None
        if match["code"]:
            if match["value"] != "1":
                return None
            codes.append(match["code"])
        else:
            codes.append(match["value"])
    return {"question": found[0]["field"], "in": codes}  # type: ignore[index]

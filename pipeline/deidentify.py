"""De-identify: the boundary between an export (identifiers and all) and the warehouse.

What crosses it: a random respondent key (new for every load, not derived from anything), the wave,
coded answers to questions whose disclosure class is not `direct`, and open answers after scrubbing.
What never crosses it: platform identifier columns (names, emails, IPs, coordinates, response ids,
exact timestamps), `direct` questions (e.g. a contact email), unknown columns.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml

from pipeline.ingest import Export
from pipeline.instrument import Disclosure, Instrument, QuestionType
from pipeline.validate import LOADED, Validation


@dataclass
class Deidentified:
    respondents: pd.DataFrame  # respondent_key, wave
    answers: pd.DataFrame  # respondent_key, wave, concept, value (one row per code for multiple)
    open_text: pd.DataFrame  # respondent_key, wave, concept, text, placeholders


def deidentify(export: Export, validation: Validation, instrument: Instrument, scrubber: "Scrubber") -> Deidentified:
    kept = validation.outcome[validation.outcome == LOADED].index
    keys = pd.Series([_new_key() for _ in kept], index=kept, dtype=object)
    respondents = pd.DataFrame({"respondent_key": keys.values, "wave": instrument.wave})
    coded, texts = [], []
    for question in instrument.questions:
        if question.disclosure is Disclosure.direct or question.id not in export.answers:
            continue
        values = export.answers.loc[kept, question.id]
        if question.type is QuestionType.text:
            texts.append(_scrubbed(values, keys, question.id, export, kept, scrubber))
        else:
            coded.append(_long(values, keys, question.id))
    answers = pd.concat(coded, ignore_index=True) if coded else _empty("concept", "value")
    answers.insert(1, "wave", instrument.wave)
    open_text = pd.concat(texts, ignore_index=True) if texts else _empty("concept", "text", "placeholders")
    open_text.insert(1, "wave", instrument.wave)
    return Deidentified(respondents, answers, open_text)


def _new_key() -> str:
    return secrets.token_hex(8)


def _empty(*columns: str) -> pd.DataFrame:
    return pd.DataFrame({"respondent_key": pd.Series(dtype=object), **{c: pd.Series(dtype=object) for c in columns}})


def _long(values: pd.Series, keys: pd.Series, concept: str) -> pd.DataFrame:
    exploded = values.explode().dropna()
    return pd.DataFrame(
        {"respondent_key": keys.loc[exploded.index].values, "concept": concept, "value": exploded.astype(str).values}
    )


def _scrubbed(
    values: pd.Series, keys: pd.Series, concept: str, export: Export, kept: pd.Index, scrubber: "Scrubber"
) -> pd.DataFrame:
    rows = []
    for index, text in values.dropna().items():
        own = _own_identifiers(export, index)
        clean, found = scrubber.scrub(str(text), extra=own)
        rows.append((keys.at[index], concept, clean, found))
    return pd.DataFrame(rows, columns=["respondent_key", "concept", "text", "placeholders"])


def _own_identifiers(export: Export, index: int) -> list[str]:
    """The row's own names and emails: scrubbed from its free text even when no pattern knows them."""
    values = []
    for column in ("first_name", "last_name", "email"):
        if column in export.identifiers and export.identifiers.at[index, column]:
            values.append(str(export.identifiers.at[index, column]))
    if "contact_email" in export.answers and export.answers.at[index, "contact_email"]:
        values.append(str(export.answers.at[index, "contact_email"]))
    return values


# --- free-text scrubbing ----------------------------------------------------------------------

PATTERNS: list[tuple[str, str]] = [
    ("EMAIL", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    ("URL", r"\b(?:https?://|www\.)\S+"),
    # Canadian phone numbers: optional +1, area code with or without brackets, any separators,
    # and an optional extension.
    # (Lenient on purpose: a mistyped number identifies as well as a valid one.)
    ("PHONE", r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)|\b\d{3})[\s.-]?\d{3}[\s.-]?\d{4}\b(?:\s*(?:x|ext\.?)\s*\d{1,5})?"),
    ("SIN", r"\b\d{3}[\s-]\d{3}[\s-]\d{3}\b"),
    ("POSTAL_CODE", r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ -]?\d[ABCEGHJ-NPRSTV-Z]\d\b"),
    # A street address: a civic number, one to three capitalised words ending in a street type,
    # then an optional unit. Street types come from `street_suffixes` below.
    ("ADDRESS", r"\b\d{1,6}\s+(?:[A-Z][\w'-]*\s+){0,2}[A-Z][\w'-]*\s+(?:{suffixes})\b\.?"
                r"(?:\s+(?:Suite|Unit|Apt\.?)\s*\w+)?"),
]


class Scrubber:
    """Replaces identifying content of free text with typed placeholders ([EMAIL], [NAME], ...)."""

    def __init__(self, organizations: Iterable[str], places: Iterable[str], first_names: Iterable[str]):
        # Street addresses need their capitals (to tell "12 Main Street" from "12 more days").
        suffixes = "|".join(re.escape(s) for s in street_suffixes())
        self.patterns = [
            (label, re.compile(rx.replace("{suffixes}", suffixes), 0 if label == "ADDRESS" else re.IGNORECASE))
            for label, rx in PATTERNS
        ]
        self.lists = [("ORGANIZATION", _names_regex(organizations)), ("PLACE", _names_regex(places))]
        self.first_names = {n.lower() for n in first_names}

    def scrub(self, text: str, extra: Iterable[str] = ()) -> tuple[str, int]:
        count = 0
        for value in sorted({e for e in extra if len(e) > 2}, key=len, reverse=True):
            text, n = re.subn(re.escape(value), "[NAME]" if "@" not in value else "[EMAIL]", text, flags=re.IGNORECASE)
            count += n
        for label, pattern in self.patterns + [item for item in self.lists if item[1] is not None]:
            text, n = pattern.subn(f"[{label}]", text)
            count += n
        text, n = self._names(text)
        return text, count + n

    def _names(self, text: str) -> tuple[str, int]:
        # A known first name starting a run of capitalised words is a person's name.
        pattern = re.compile(r"\b([A-Z][a-zà-ÿ'-]+)((?:\s+[A-Z][a-zà-ÿ'-]+){0,2})")
        count = 0

        def replace(match: re.Match) -> str:
            nonlocal count
            if match.group(1).lower() in self.first_names and (match.group(2) or self._after_title(text, match)):
                count += 1
                return "[NAME]"
            return match.group(0)

        return pattern.sub(replace, text), count

    @staticmethod
    def _after_title(text: str, match: re.Match) -> bool:
        before = text[max(0, match.start() - 12) : match.start()].lower()
        return any(word in before for word in ("manager ", "boss ", "supervisor ", "dr. ", "named "))


def _names_regex(names: Iterable[str]) -> re.Pattern | None:
    names = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)


@lru_cache(maxsize=4)
def load_scrubber(config_path: Path) -> Scrubber:
    config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    return Scrubber(
        config.get("organizations", []),
        config.get("places", []),
        [*_faker_first_names(), *config.get("extra_first_names", [])],
    )


@lru_cache(maxsize=1)
def street_suffixes() -> list[str]:
    """Street types, English and French, longest first (Faker's curated list plus Canadian ones)."""
    from faker.providers.address.en_US import Provider as English

    canadian = ["Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Drive", "Dr",
                "Crescent", "Cres", "Court", "Crt", "Line", "Concession", "Sideroad", "Highway", "Hwy",
                "Rue", "Chemin", "Montée", "Rang"]
    suffixes = {s.title() for s in getattr(English, "street_suffixes", ())} | set(canadian)
    return sorted(suffixes, key=len, reverse=True)


def _faker_first_names() -> list[str]:
    # Faker's person providers are curated given-name lists for English and French Canada.
    from faker.providers.person.en_US import Provider as English
    from faker.providers.person.fr_CA import Provider as French

    names = set(English.first_names) | set(getattr(French, "first_names", ()))
    # Words that are also ordinary capitalised words at a sentence start are not names here.
    return sorted(n for n in names if n.lower() not in {"will", "may", "june", "april", "hope", "faith", "grace", "joy", "august", "page"})

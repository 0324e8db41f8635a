"""De-identify: the boundary between an export (identifiers and all) and the warehouse.

What crosses it: a random respondent key (new for every load, not derived from anything), the wave,
coded answers to questions whose disclosure class is not `direct`, and open answers after scrubbing.
What never crosses it: platform identifier columns (names, emails, IPs, coordinates, response ids,
exact timestamps), `direct` questions (e.g. a contact email), unknown columns.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

import pandas as pd
import yaml

from pipeline.ingest import Export
from pipeline.instrument import Disclosure, Instrument, QuestionType
from pipeline.validate import LOADED, Validation

if TYPE_CHECKING:
    from pipeline.anonymity import NumericCoarsening


@dataclass
class Deidentified:
    respondents: pd.DataFrame  # respondent_key, wave
    answers: pd.DataFrame  # respondent_key, wave, concept, value (one row per code for multiple)
    open_text: pd.DataFrame  # respondent_key, wave, concept, text, placeholders
    # respondent_key, wave, flag, detail: data-quality flags of the loaded rows (no identifier)
    quality_flags: pd.DataFrame = field(default_factory=lambda: _empty("wave", "flag", "detail"))


def deidentify(export: Export, validation: Validation, instrument: Instrument, scrubber: "Scrubber",
               coarsening: Mapping[str, "NumericCoarsening"] | None = None) -> Deidentified:
    """`coarsening`: numeric quasi-identifiers rounded and top-coded before storage (surveys/privacy.yaml)."""
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
            rule = (coarsening or {}).get(question.id)
            coded.append(_long(values.map(rule.apply, na_action="ignore") if rule else values, keys, question.id))
    answers = pd.concat(coded, ignore_index=True) if coded else _empty("concept", "value")
    answers.insert(1, "wave", instrument.wave)
    open_text = pd.concat(texts, ignore_index=True) if texts else _empty("concept", "text", "placeholders")
    open_text.insert(1, "wave", instrument.wave)
    flags = validation.loaded_flags(keys)
    flags.insert(1, "wave", instrument.wave)
    return Deidentified(respondents, answers, open_text, flags)


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
    # Phone numbers are first found with Google's libphonenumber (`phonenumbers`, region CA); this
    # lenient pattern then catches what it does not accept: an optional +1, an area code with or
    # without brackets, any separators, an optional extension, or a 7-digit local number.
    # (Lenient on purpose: a mistyped number identifies as well as a valid one.)
    ("PHONE", r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)|\b\d{3})[\s.-]?\d{3}[\s.-]?\d{4}\b"
              r"(?:\s*(?:x|ext\.?|poste)\s*\d{1,5})?|\b\d{3}[.-]\d{4}\b"),
    ("SIN", r"\b\d{3}[\s-]\d{3}[\s-]\d{3}\b"),
    ("POSTAL_CODE", r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ -]?\d[ABCEGHJ-NPRSTV-Z]\d\b"),
    # A street address: a civic number, one to three capitalised words ending in a street type,
    # then an optional unit. Street types come from `street_suffixes` below.
    ("ADDRESS", r"\b\d{1,6}\s+(?:[A-Z][\w'-]*\s+){0,2}[A-Z][\w'-]*\s+(?:{suffixes})\b\.?"
                r"(?:\s+(?:Suite|Unit|Apt\.?)\s*\w+)?"),
]
# Named organizations and places that no list knows: capitalised words ending in a word that names
# an organization ("Maple Grove Hospital", "Northside Peer Collective"), or a place pattern
# ("Town of Cobalt", "Attawapiskat First Nation"). Case matters here: capitals mark a name.
ORGANIZATION_WORDS = (
    "Hospital", "Hospitals", "Health Centre", "Health Center", "Health Sciences", "Healthcare", "Health Care",
    "Medical Centre", "Clinic", "Centre", "Center", "Services", "Association", "Network", "Society",
    "Collective", "Agency", "Foundation", "Shelter", "Mission", "Alliance", "Coalition", "Institute",
    "Partners", "Council", "Corporation", "Inc", "Ltd", "Hôpital", "Clinique",
)
CAPITALISED = r"[A-ZÀ-Ý][\w'’.&-]*"
ORGANIZATION_PATTERN = (
    rf"\b(?:{CAPITALISED}\s+(?:(?:of|for|de|du|des|and|&)\s+)?){{1,4}}(?:{'|'.join(ORGANIZATION_WORDS)})\b"
)
PLACE_PATTERNS = (
    rf"\b(?:Town|City|Township|Municipality|County|District|Village|Ville|Canton) (?:of |de )?{CAPITALISED}(?:\s{CAPITALISED})?",
    rf"\b{CAPITALISED}(?:\s{CAPITALISED})? (?:First Nation|Reserve|Nation)\b",
)
# People's names: capitalised words are names when a title or a role comes first ("Dr. Patel",
# "my supervisor Kwame"), when a known given name starts them ("Sarah Thompson"), or when a known
# given name stands mid-sentence ("I told Sarah"). Given names and surnames come from the name lists
# of the `faker` package for the languages most spoken in Ontario; words that are also ordinary
# words (Faker's English and French word lists, months, days, identity terms) need a title or a
# surname to count.
TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sister", "father", "pastor", "rev", "m", "mme", "mlle"}
ROLES = {
    "manager", "boss", "supervisor", "director", "coordinator", "colleague", "coworker", "co-worker",
    "worker", "nurse", "doctor", "psychiatrist", "counsellor", "counselor", "lead", "ceo", "ed", "named",
    "called", "gestionnaire", "patron", "patronne", "superviseur", "superviseure", "directeur", "directrice",
    "coordonnateur", "coordonnatrice", "collègue", "infirmière", "infirmier", "médecin", "nommé", "nommée",
    "appelé", "appelée",
}
NAME_LOCALES = ("en_US", "en_GB", "en_IE", "fr_CA", "fr_FR", "es_MX", "es_ES", "pt_BR", "it_IT", "en_IN",
                "en_PK", "en_NG", "yo_NG", "tw_GH", "en_KE", "sw", "pl_PL", "nl_NL", "tr_TR", "ro_RO", "hr_HR",
                "de_DE")
ORDINARY_WORDS = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
    "novembre", "décembre", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
    "will", "hope", "faith", "grace", "joy", "page", "black", "white", "brown", "indigenous", "christian",
    "justice", "peer", "peers", "ontario", "canada", "god", "mercy", "trinity", "charity", "patience",
    "harmony", "destiny", "honor", "honour", "precious", "unique", "king", "sunny", "summer", "winter",
    "autumn", "spring", "dawn", "rose", "iris", "ivy", "lily", "violet", "jasmine", "amber", "crystal",
    "pearl", "ruby", "star", "sky", "rain", "storm", "river", "forest", "north", "south", "east", "west",
    "hospital", "clinic", "centre", "center", "housing", "mental", "health", "support", "staff", "team",
}
WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ]+(?:['’-][A-Za-zÀ-ÖØ-öø-ÿ]+)*")
SENTENCE_END = re.compile(r"[.!?:;\n\"“”«»()]")


class Scrubber:
    """Replaces identifying content of free text with typed placeholders ([EMAIL], [NAME], ...)."""

    def __init__(self, organizations: Iterable[str], places: Iterable[str], first_names: Iterable[str],
                 last_names: Iterable[str] = (), ordinary_words: Iterable[str] = ()):
        # Street addresses need their capitals (to tell "12 Main Street" from "12 more days").
        suffixes = "|".join(re.escape(s) for s in street_suffixes())
        self.patterns = [
            (label, re.compile(rx.replace("{suffixes}", suffixes), 0 if label == "ADDRESS" else re.IGNORECASE))
            for label, rx in PATTERNS
        ]
        self.lists = [("ORGANIZATION", _names_regex(organizations)), ("PLACE", _names_regex(places))]
        self.generic = [("ORGANIZATION", re.compile(ORGANIZATION_PATTERN)),
                        *[("PLACE", re.compile(rx)) for rx in PLACE_PATTERNS]]
        self.first_names = {n.lower() for n in first_names}
        self.last_names = {n.lower() for n in last_names}
        self.ordinary = {w.lower() for w in ordinary_words} | ORDINARY_WORDS

    def scrub(self, text: str, extra: Iterable[str] = ()) -> tuple[str, int]:
        count = 0
        for value in sorted({e for e in extra if len(e) > 2}, key=len, reverse=True):
            text, n = re.subn(re.escape(value), "[NAME]" if "@" not in value else "[EMAIL]", text, flags=re.IGNORECASE)
            count += n
        for label, pattern in self.patterns[:2]:  # emails and URLs hold digits a phone search would take
            text, n = pattern.subn(f"[{label}]", text)
            count += n
        text, n = _phones(text)
        count += n
        listed = [item for item in self.lists if item[1] is not None]
        for label, pattern in self.patterns[2:] + listed + self.generic:
            text, n = pattern.subn(f"[{label}]", text)
            count += n
        text, n = self._names(text)
        # "[PLACE] [PLACE]" (a listed town inside a longer place name) reads as one finding
        return re.sub(r"(\[([A-Z_]+)\])(?:\s+\[\2\])+", r"\1", text), count + n

    def _names(self, text: str) -> tuple[str, int]:
        tokens = list(WORD.finditer(text))
        named = [self._is_name(text, tokens, i) for i in range(len(tokens))]
        for i in range(1, len(tokens)):  # a surname (or any capitalised word) right after a name
            if named[i - 1] and not named[i] and text[tokens[i - 1].end():tokens[i].start()] == " " \
                    and _capitalised(tokens[i].group()) and self._plain(tokens[i].group()) not in self.ordinary:
                named[i] = True
        pieces, last, count, i = [], 0, 0, 0
        while i < len(tokens):
            if not named[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(tokens) and named[j + 1] and text[tokens[j].end():tokens[j + 1].start()] in (" ", "-"):
                j += 1
            word = tokens[j].group()
            possessive = word[-2:] if word[-2:] in ("'s", "’s") else ""
            pieces.append(text[last:tokens[i].start()] + "[NAME]" + possessive)
            last, count, i = tokens[j].end(), count + 1, j + 1
        return "".join(pieces) + text[last:], count

    def _is_name(self, text: str, tokens: list[re.Match], i: int) -> bool:
        word = self._plain(tokens[i].group())
        before = tokens[i - 1].group().lower() if i else ""
        gap = text[tokens[i - 1].end():tokens[i].start()] if i else ""
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        capital = _capitalised(tokens[i].group())
        given = self._given(word)
        known = given and word not in self.ordinary
        if known and capital and ("-" in word or re.search(r"['’]s$", tokens[i].group())):
            return True  # "Sarah's team", "Marie-Ève": names even at the start of a sentence
        if before in TITLES and gap.strip() in ("", ".") and capital:
            return True
        if before in ROLES and gap.strip() in ("", ",") and (known or (capital and word not in self.ordinary
                                                                         and (word in self.last_names or word in self.first_names))):
            return True
        if given and capital and nxt is not None and text[tokens[i].end():nxt.start()] == " " \
                and _capitalised(nxt.group()) and self._plain(nxt.group()) in self.last_names:
            return True
        sentence_start = i == 0 or bool(SENTENCE_END.search(gap))
        return known and capital and not sentence_start

    def _given(self, word: str) -> bool:
        """A known given name, or a compound of them (Jean-François, Marie-Ève)."""
        return word in self.first_names or ("-" in word and word.split("-")[0] in self.first_names)

    @staticmethod
    def _plain(word: str) -> str:
        return re.sub(r"['’]s$", "", word).lower()


def _capitalised(word: str) -> bool:
    return word[:1].isupper()


def _phones(text: str) -> tuple[str, int]:
    """Every phone number libphonenumber finds (Canadian rules, or international with a +)."""
    import phonenumbers

    spans = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, "CA", leniency=phonenumbers.Leniency.POSSIBLE)]
    for start, end in reversed(spans):
        text = text[:start] + "[PHONE]" + text[end:]
    # an extension libphonenumber leaves behind (French "poste", or "x" after a space)
    text = re.sub(r"\[PHONE\]\s*(?:x|ext\.?|extension|poste|p\.)\s*\d{1,6}\b", "[PHONE]", text, flags=re.IGNORECASE)
    return text, len(spans)


def _names_regex(names: Iterable[str]) -> re.Pattern | None:
    names = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)


@lru_cache(maxsize=4)
def load_scrubber(config_path: Path) -> Scrubber:
    config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    first, last = _faker_names()
    return Scrubber(
        [*config.get("organizations", []), *config.get("hospitals", [])],
        config.get("places", []),
        [*first, *config.get("extra_first_names", [])],
        last,
        _faker_ordinary_words(),
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


@lru_cache(maxsize=1)
def _faker_names() -> tuple[frozenset[str], frozenset[str]]:
    """Given names and surnames in the Latin alphabet from Faker's curated person lists."""
    import importlib

    latin = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿ'’-]{2,}$")
    first: set[str] = set()
    last: set[str] = set()
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        first |= {n for n in getattr(provider, "first_names", ()) if latin.match(n)}
        last |= {n for n in getattr(provider, "last_names", ()) if latin.match(n)}
    return frozenset(first), frozenset(last)


@lru_cache(maxsize=1)
def _faker_ordinary_words() -> frozenset[str]:
    from faker.providers.lorem.en_US import Provider as English
    from faker.providers.lorem.fr_FR import Provider as French

    return frozenset(w.lower() for w in (*English.word_list, *French.word_list))

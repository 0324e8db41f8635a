"""What every platform adapter shares: the layout an adapter produces, header clean-up, and how a
column name or question text is recognised as a direct identifier."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Protocol, TypeVar

import numpy as np
import pandas as pd

from pipeline.platforms.reading import RawFile, ReadError, Table, blank

T = TypeVar("T")
QUESTION, IDENTIFIER, METADATA, UNKNOWN = "question", "identifier", "metadata", "unknown"


@dataclass
class SourceColumn:
    """One column of an export, as its platform defines it."""

    index: int
    name: str  # the header as written (made unique when a name repeats)
    kind: str  # question | identifier | metadata | unknown
    role: str | None = None  # for identifiers and metadata: what it holds (email, finished, ...)
    keys: tuple[str, ...] = ()  # names an instrument may use for it, most specific first
    text: str | None = None  # the question text, where the file has it
    option: str | None = None  # one option of a multiple-choice question ...
    option_of: tuple[str, ...] = ()  # ... whose keys are these
    open_text: bool = False  # the platform says this column holds typed text


@dataclass
class Layout:
    """An export as its platform wrote it: classified columns and the data records, column by column."""

    platform: str
    variant: str
    header_rows: int
    columns: list[SourceColumn]
    cells: list[np.ndarray]  # cells[j]: column j of every data record ("" where a record was short)
    source_rows: np.ndarray  # each record's row number as a spreadsheet shows it (headers count)
    values: str = "codes"  # what choice cells hold: codes | labels
    multi_separator: str | None = ","  # how one cell lists several choices (None: one column per option)
    missing: frozenset[str] = frozenset()  # cells that mean "no answer" on this platform
    derived: dict[str, list[str | None]] = field(default_factory=dict)  # metadata the platform implies
    derived_identifiers: dict[str, list[str | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what `consult inspect` should tell a person
    # dates that are not ISO are written day first, as the platform says (a French Google Sheet):
    # read so even when no day is above 12, which alone would not tell 03/04 from 4 March
    day_first: bool = False

    @property
    def size(self) -> int:
        """How many responses (data records) the file holds."""
        return len(self.source_rows)


@dataclass
class Detection:
    platform: str
    score: float  # 0..1: how sure the adapter is that the file is its platform's
    variant: str = ""


class PlatformAdapter(Protocol):
    name: str  # as used by --platform and in the load ledger
    title: str  # as a person names it

    def detect(self, raw: RawFile) -> Detection | None:
        """How much the file looks like this platform's export; None when not at all."""

    def layout(self, raw: RawFile) -> Layout:
        """The file's columns and records; ReadError (with a hint) when it is not a valid export."""


# --- headers and records ----------------------------------------------------------------------


def data_records(table: Table, header_rows: int, width: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The data records' columns, padded to the header width, with their spreadsheet row numbers;
    blank records skipped.

    A record with more non-empty fields than the header is an error: the file was cut or a
    delimiter is unquoted, and guessing which column is which would load answers to the wrong question.
    A CSV record with fewer fields than the header ends in blanks: Excel saves a row without the
    empty cells after its last answer. Two cases are not blanks and are refused: a last record cut
    off mid-row (no line end after it), and the pieces of one response split over several rows by an
    answer's line break outside quotes (padding them would load half a response and a made-up one).
    """
    kept = _filled_records(table, header_rows)
    if table.lengths is not None:  # None: the fast reader found every record as wide as the first
        _refuse_truncated(table, kept, width)
        _refuse_wide(table, kept, width)
        _refuse_short(table, kept, width)
    everything = len(kept) == table.size - header_rows
    cells = [column[header_rows:] if everything else column[kept] for column in table.columns[:width]]
    cells += [np.full(len(kept), "", dtype=object) for _ in range(width - len(cells))]
    return cells, kept + 1  # an array: a list would hold an int object per row for the whole run


def each_distinct(cells: np.ndarray, convert: Callable[[str], T]) -> np.ndarray:
    """convert(cell) for every cell, as an object array, worked out once per distinct cell (a column
    holds few; pandas finds them in C)."""
    positions, distinct = pd.factorize(cells)
    converted = np.empty(len(distinct), dtype=object)
    for index, cell in enumerate(distinct):  # one by one: a converted value may be a list
        converted[index] = convert(cell)
    return converted[positions]


def filled(cells: np.ndarray) -> np.ndarray:
    """Which cells hold more than spaces (str.strip mapped in C, no Python loop)."""
    return np.fromiter(map(bool, map(str.strip, cells)), dtype=bool, count=len(cells))


def _filled_records(table: Table, header_rows: int) -> np.ndarray:
    """Positions of the records after the header rows that are not blank: a record is blank when
    every cell is, and the first columns rule out nearly all records."""
    body = np.arange(header_rows, table.size)
    maybe_blank = body
    for column in table.columns:
        if not len(maybe_blank):
            break
        maybe_blank = maybe_blank[~filled(column[maybe_blank])]
    return np.setdiff1d(body, maybe_blank, assume_unique=True) if len(maybe_blank) else body


def _refuse_truncated(table: Table, kept: np.ndarray, width: int) -> None:
    """A file cut off mid-row ends with a record shorter than all the others and no line end after
    it. A last record that ends with its line end is whole: its last answers were blank (Excel drops
    the empty cells at the end of a row). Not so a worksheet: a row may end at its last filled cell."""
    if table.sheet is not None or not len(kept) or table.ends_with_line_end:
        return
    lengths = table.lengths[kept]
    if lengths[-1] < width and (lengths[:-1] >= width).all():
        raise ReadError(
            f"row {kept[-1] + 1} has only {lengths[-1]} of the header's {width} fields while every other row is "
            "complete: the file looks truncated (cut off in the middle of a row); export it again"
        )


def _refuse_wide(table: Table, kept: np.ndarray, width: int) -> None:
    for position in kept[table.lengths[kept] > width]:
        if not blank([column[position] for column in table.columns[width:]]):
            raise ReadError(
                f"row {position + 1} has {table.lengths[position]} fields but the header has {width}; "
                "the file may be truncated or have an unquoted delimiter"
            )


def _refuse_short(table: Table, kept: np.ndarray, width: int) -> None:
    """Refuse a response split over two rows by an answer's line break outside quotes: a short row,
    then (blank lines aside) a row that starts with the rest of that answer, not with what the first
    column holds in the other rows (a date, a response id). A short row followed by a row that starts
    as the others do is whole: Excel drops the empty cells at the end of a row."""
    if table.sheet is not None or len(kept) < 2:
        return
    short = table.lengths[kept] < width
    after_short = kept[1:][short[:-1]]  # a record right after a short one (blank records are not kept)
    if not len(after_short):
        return
    others = np.setdiff1d(kept, after_short, assume_unique=True)
    usual = set(_shapes(table.columns[0][others[:SHAPE_SAMPLE]]))
    odd = np.flatnonzero([shape not in usual for shape in _shapes(table.columns[0][after_short])])
    if not len(odd):
        return
    position = int(kept[np.searchsorted(kept, after_short[odd[0]]) - 1])
    length = int(table.lengths[position])
    name = (table.head[0] + [""] * width)[max(length - 1, 0)].strip() if table.head else ""
    column = f"column {length} ({name})" if name else f"column {length}"
    raise ReadError(
        f"row {position + 1} (line {_line_of(table, position)} of the file) has only {length} of the header's "
        f"{width} fields, ending at {column}: an answer with a line break splits a response over two rows unless it "
        "is in quotes (the next row holds the rest of this response); put that answer in double quotes (\"...\") "
        "or export the file again"
    )


SHAPE_SAMPLE = 10_000  # first cells of ordinary rows looked at: enough to see every layout they have


def _shapes(cells: np.ndarray) -> list[str]:
    """Each cell's layout: numbers as 9, words (letters, maybe with digits) as a, spaces as one space,
    other characters kept ("2025-03-10 10:00" -> "9-9-9 9:9", "R_3kJx8P" -> "a_a", "and a real
    contract" -> "a a a a"), worked out once per distinct cell."""
    positions, distinct = pd.factorize(pd.Series(cells, dtype=object).fillna(""))
    shapes = (pd.Series(distinct, dtype="string").str.strip().str.replace(r"\d+", "9", regex=True)
              .str.replace(r"[^\W_]*[^\W\d_][^\W_]*", "a", regex=True).str.replace(r"\s+", " ", regex=True))
    return shapes.to_numpy(dtype=object)[positions].tolist()


def _line_of(table: Table, position: int) -> int:
    """The line of the file where record `position` (0-based) starts, as a text editor numbers lines:
    its row number plus the line breaks inside quoted answers before it."""
    breaks = 0
    for column in table.columns:
        text = "\0".join(column[:position])
        breaks += text.count("\n") + text.count("\r") - text.count("\r\n")
    return position + 1 + breaks


def header_width(table: Table, header_rows: int) -> int:
    """Columns that count: trailing columns with no header and no data (a trailing comma) are dropped."""
    width = max(len(r) for r in table.head[:header_rows])

    def used(index: int) -> bool:
        return index < len(table.columns) and any(map(str.strip, table.columns[index]))

    while width > 0 and not used(width - 1):
        width -= 1
    return width


def row(table: Table, number: int, width: int) -> list[str]:
    """Header row `number` (0-based), padded to `width`."""
    record = table.head[number] if number < len(table.head) else []
    return (record + [""] * width)[:width]


# --- text ------------------------------------------------------------------------------------

_BREAKS = re.compile(r"<br\s*/?>|</?(?:p|div|li|ul|ol|h\d)(?:\s[^>]*)?>", re.IGNORECASE)
_TAGS = re.compile(r"</?[A-Za-z][^>]*>")
_SPACES = re.compile(r"\s+")


def plain(text: str) -> str:
    """Header text without HTML tags and entities, with single spaces (SurveyMonkey writes HTML)."""
    return _SPACES.sub(" ", html.unescape(_TAGS.sub("", _BREAKS.sub(" ", text)))).strip()


# Word processors, phones and some survey editors write typographic apostrophes and quotes where
# the instrument has straight ones ("Don’t know", "D’accord", "l’âge"): the person comparing the
# two cannot see the difference, so the comparison ignores it. One character for one, so that
# positions in a folded text are positions in the original.
TYPOGRAPHIC = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "\u201b": "'",
                             "\u201c": '"', "\u201d": '"', "\u201f": '"', "\u2033": '"'})


def folded(text: str) -> str:
    """Case and typographic apostrophes and quotes ignored."""
    return text.translate(TYPOGRAPHIC).casefold()


# French typography puts a (no-break) space before ? ! : ; ("Avez-vous des congés payés ?"), English
# none: a form typed either way is the same question.
_BEFORE_PUNCTUATION = re.compile(r"\s+(?=[?!:;])")


def normalised(text: str) -> str:
    """For comparing a header or an answer with the instrument's wording: case, spacing (also before
    ? ! : ;) and typographic apostrophes and quotes ignored."""
    return folded(_BEFORE_PUNCTUATION.sub("", plain(text))).rstrip(" *:")


def compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


# --- direct identifiers by name ----------------------------------------------------------------

# Whole column names (compared without case, spaces or punctuation) and what they hold.
IDENTIFIER_NAMES = {
    **dict.fromkeys(["email", "emailaddress", "mail", "courriel", "adressecourriel", "emailadresse"], "email"),
    **dict.fromkeys(["firstname", "givenname", "prenom", "prénom", "fname", "namefirst", "vorname"], "first_name"),
    **dict.fromkeys(["lastname", "surname", "familyname", "nomdefamille", "lname", "namelast", "nachname"], "last_name"),
    **dict.fromkeys(["name", "fullname", "nom", "yourname", "respondentname", "participantname", "nomcomplet"], "name"),
    **dict.fromkeys(["phone", "phonenumber", "telephone", "telephonenumber", "tel", "mobile", "cellphone", "cell"], "phone"),
    **dict.fromkeys(["address", "streetaddress", "homeaddress", "mailingaddress", "adresse"], "address"),
    **dict.fromkeys(["postalcode", "postcode", "zip", "zipcode", "codepostal"], "postal_code"),
    **dict.fromkeys(["ip", "ipaddress", "ipaddr", "adresseip"], "ip_address"),
    **dict.fromkeys(["latitude", "lat", "locationlatitude"], "latitude"),
    **dict.fromkeys(["longitude", "lon", "lng", "locationlongitude"], "longitude"),
    **dict.fromkeys(["gps", "geolocation", "geopoint", "coordinates", "geolocalisation"], "location"),
    **dict.fromkeys(["dob", "dateofbirth", "birthdate", "birthday", "datedenaissance"], "birth_date"),
    **dict.fromkeys(["sin", "socialinsurancenumber", "healthcard", "healthcardnumber", "ohip"], "personal_number"),
}
# Parts of a short column name (a code such as name_first or RecipientEmail), matched as whole words
# of the name: "phone" in Q5_phone or HomePhone, never inside another word (francophone, anglophone).
IDENTIFIER_PARTS = [
    ("email", "email"), ("courriel", "email"), ("firstname", "first_name"), ("namefirst", "first_name"),
    ("lastname", "last_name"), ("namelast", "last_name"), ("surname", "last_name"), ("fullname", "name"),
    ("phone", "phone"), ("telephone", "phone"), ("ipaddr", "ip_address"), ("ipaddress", "ip_address"),
    ("latitude", "latitude"), ("longitude", "longitude"), ("dateofbirth", "birth_date"), ("birthdate", "birth_date"),
    ("postalcode", "postal_code"), ("zipcode", "postal_code"), ("streetaddress", "address"),
    ("homeaddress", "address"), ("mailingaddress", "address"),
]
# Phrases in a question text that ask for a direct identifier.
IDENTIFIER_PHRASES = [
    ("email address", "email"), ("e-mail", "email"), ("your email", "email"), ("courriel", "email"),
    ("your name", "name"), ("full name", "name"), ("first name", "first_name"), ("last name", "last_name"),
    ("phone number", "phone"), ("telephone number", "phone"), ("date of birth", "birth_date"),
    ("postal code", "postal_code"), ("home address", "address"), ("street address", "address"),
    ("votre nom", "name"), ("numéro de téléphone", "phone"), ("date de naissance", "birth_date"),
]
# A part may also be written as one word with one of these before or after it (homephone, useremail,
# phonenumber): names in lower case alone give no other sign of where a word ends.
PART_BEFORE = ("home", "work", "cell", "mobile", "contact", "day", "daytime", "evening", "alt", "alternate",
               "other", "personal", "business", "office", "user", "recipient", "respondent", "participant",
               "primary", "secondary", "your", "my")
PART_AFTER = ("number", "num", "no", "nr", "address", "addr", "s")
_LONGEST_QUALIFIERS = max(map(len, PART_BEFORE)) + max(map(len, PART_AFTER))
SHORT_NAME = 40


def identifier_role(header: str) -> str | None:
    """What direct identifier a column holds, judged by its name or question text; None if none."""
    text = plain(header)
    key = compact(text)
    if key in IDENTIFIER_NAMES:
        return IDENTIFIER_NAMES[key]
    if len(text) <= SHORT_NAME and " " not in text.strip():
        words = name_words(text)
        for part, role in IDENTIFIER_PARTS:
            if _has_part(words, part):
                return role
        return None
    lowered = text.casefold()
    for phrase, role in IDENTIFIER_PHRASES:
        if phrase in lowered:
            return role
    return None


def name_words(name: str) -> list[str]:
    """The words of a column name, lower case and without accents: split at anything not a letter
    and where case changes (RecipientEmail -> recipient, email; Q5_phone -> q, phone)."""
    spaced = re.sub(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", " ", name)
    spaced = re.sub(r"(?<=[a-zà-ÿ])(?=[A-ZÀ-Þ])|(?<=[A-ZÀ-Þ])(?=[A-ZÀ-Þ][a-zà-ÿ])", " ", spaced)
    folded = unicodedata.normalize("NFKD", spaced).encode("ascii", "ignore").decode().casefold()
    return [word for word in re.split(r"[^a-z]+", folded) if word]


@lru_cache(maxsize=None)
def _part_pattern(part: str) -> re.Pattern[str]:
    before, after = "|".join(PART_BEFORE), "|".join(PART_AFTER)
    return re.compile(rf"(?:{before})?{part}(?:{after})?")


def _has_part(words: list[str], part: str) -> bool:
    """Whether consecutive whole words of a name spell `part` (name_first: "name" + "first"), alone or
    written as one word with a qualifier (homephone, phonenumber)."""
    pattern = _part_pattern(part)
    for start in range(len(words)):
        joined = ""
        for word in words[start:]:
            joined += word
            if pattern.fullmatch(joined):
                return True
            if len(joined) > len(part) + _LONGEST_QUALIFIERS:
                break
    return False

"""What every platform adapter shares: the layout an adapter produces, header clean-up, and how a
column name or question text is recognised as a direct identifier."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.platforms.reading import RawFile, ReadError

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
    """An export as its platform wrote it: classified columns and the data records."""

    platform: str
    variant: str
    header_rows: int
    columns: list[SourceColumn]
    rows: list[list[str]]  # data records, each as wide as the header
    source_rows: list[int]  # each record's row number as a spreadsheet shows it (headers count)
    values: str = "codes"  # what choice cells hold: codes | labels
    multi_separator: str | None = ","  # how one cell lists several choices (None: one column per option)
    missing: frozenset[str] = frozenset()  # cells that mean "no answer" on this platform
    derived: dict[str, list[str | None]] = field(default_factory=dict)  # metadata the platform implies
    derived_identifiers: dict[str, list[str | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what `consult inspect` should tell a person


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


def data_records(records: list[list[str]], header_rows: int, width: int) -> tuple[list[list[str]], list[int]]:
    """Data records padded to the header width, with their spreadsheet row numbers; blank ones skipped.

    A record with more non-empty fields than the header is an error: the file was cut or a
    delimiter is unquoted, and guessing which column is which would load answers to the wrong question.
    """
    rows, numbers = [], []
    _refuse_truncated(records[header_rows:], header_rows, width)
    for number, record in enumerate(records[header_rows:], start=header_rows + 1):
        if _blank(record):
            continue
        if len(record) > width and not _blank(record[width:]):
            raise ReadError(
                f"row {number} has {len(record)} fields but the header has {width}; "
                "the file may be truncated or have an unquoted delimiter"
            )
        rows.append(record if len(record) == width else (record + [""] * width)[:width])
        numbers.append(number)
    return rows, numbers


def _blank(cells: list[str]) -> bool:
    """No cell holds anything but spaces (one join in C instead of a strip per cell)."""
    return not "".join(cells).strip()


def _refuse_truncated(body: list[list[str]], header_rows: int, width: int) -> None:
    """A file cut off mid-row ends with a record shorter than all the others: platforms write every
    field of every row, so a short last record means the rest of it was lost, not left empty."""
    filled = [number for number, record in enumerate(body) if not _blank(record)]
    if not filled:
        return
    last = body[filled[-1]]
    number = filled[-1] + header_rows + 1
    if len(last) < width and all(len(body[i]) >= width for i in filled[:-1]):
        raise ReadError(
            f"row {number} has only {len(last)} of the header's {width} fields while every other row is "
            "complete: the file looks truncated (cut off in the middle of a row); export it again"
        )


def header_width(records: list[list[str]], header_rows: int) -> int:
    """Columns that count: trailing columns with no header and no data (a trailing comma) are dropped."""
    width = max(len(r) for r in records[:header_rows])

    def used(index: int) -> bool:
        return any(index < len(r) and r[index].strip() for r in records)

    while width > 0 and not used(width - 1):
        width -= 1
    return width


def row(records: list[list[str]], number: int, width: int) -> list[str]:
    """Header row `number` (0-based), padded to `width`."""
    record = records[number] if number < len(records) else []
    return (record + [""] * width)[:width]


# --- text ------------------------------------------------------------------------------------

_BREAKS = re.compile(r"<br\s*/?>|</?(?:p|div|li|ul|ol|h\d)(?:\s[^>]*)?>", re.IGNORECASE)
_TAGS = re.compile(r"</?[A-Za-z][^>]*>")
_SPACES = re.compile(r"\s+")


def plain(text: str) -> str:
    """Header text without HTML tags and entities, with single spaces (SurveyMonkey writes HTML)."""
    return _SPACES.sub(" ", html.unescape(_TAGS.sub("", _BREAKS.sub(" ", text)))).strip()


def normalised(text: str) -> str:
    """For comparing a header or an answer with the instrument's wording: case and spacing ignored."""
    return plain(text).casefold().rstrip(" *:")


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
# Parts of a short column name (a code such as name_first or RecipientEmail).
IDENTIFIER_PARTS = [
    ("email", "email"), ("courriel", "email"), ("firstname", "first_name"), ("namefirst", "first_name"),
    ("lastname", "last_name"), ("namelast", "last_name"), ("surname", "last_name"), ("fullname", "name"),
    ("phone", "phone"), ("telephone", "phone"), ("ipaddr", "ip_address"), ("latitude", "latitude"),
    ("longitude", "longitude"), ("dateofbirth", "birth_date"), ("birthdate", "birth_date"),
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
SHORT_NAME = 40


def identifier_role(header: str) -> str | None:
    """What direct identifier a column holds, judged by its name or question text; None if none."""
    text = plain(header)
    key = compact(text)
    if key in IDENTIFIER_NAMES:
        return IDENTIFIER_NAMES[key]
    if len(text) <= SHORT_NAME and " " not in text.strip():
        for part, role in IDENTIFIER_PARTS:
            if part in key:
                return role
        return None
    lowered = text.casefold()
    for phrase, role in IDENTIFIER_PHRASES:
        if phrase in lowered:
            return role
    return None

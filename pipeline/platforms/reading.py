"""Turn an export file (CSV/TSV text in any common encoding, or an Excel workbook) into rows of text.

Everything a platform adapter sees is a `Table`: the records of one sheet as lists of strings, with
how the file was written (encoding, delimiter, line ends) kept for `consult inspect`. Nothing here
knows about survey platforms.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

DELIMITERS = (",", ";", "\t", "|")
SNIFF_RECORDS = 60

# Single-byte encodings that spreadsheet programs and survey tools write in Canada and Europe,
# in the order preferred when two decode a file equally well.
WESTERN_ENCODINGS = ("cp1252", "iso-8859-15", "mac_roman", "cp850", "cp1250")
# Letters and punctuation that French, English, German and Spanish text uses outside ASCII.
COMMON_WESTERN = set("àâäçéèêëîïôöûùüÿœæÀÂÄÇÉÈÊËÎÏÔÖÛÙÜŸŒÆßñÑáíóúÁÍÓÚãõ’‘“”–—…«»°€£¿¡·")


class ReadError(ValueError):
    """The file cannot be read as a table; the message says what is wrong (the caller adds the file)."""


@dataclass
class Table:
    """One sheet of an export: every record as text, headers included."""

    records: list[list[str]]
    sheet: str | None = None  # the worksheet name, for Excel files


@dataclass
class RawFile:
    path: Path
    tables: list[Table]  # the CSV's only table, or every worksheet in workbook order
    file_format: str  # csv | xlsx
    encoding: str | None = None
    delimiter: str | None = None
    line_ends: str | None = None  # LF | CRLF | CR | none
    notes: list[str] = field(default_factory=list)

    @property
    def main(self) -> Table:
        return self.tables[0]


def read_raw(path: Path) -> RawFile:
    """Read any supported file; raise ReadError saying what is wrong with it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read the file ({exc.strerror})") from exc
    if not data.strip():
        raise ReadError("the file is empty (no header row, no responses)")
    kind = _binary_kind(data)
    if kind == "xlsx":
        return _read_xlsx(path, data)
    if kind is not None:
        raise ReadError(f"this is {kind}, not a CSV or .xlsx export; {BINARY_HINTS[kind]}")
    text, encoding = decode(data)
    del data  # a large export is held once, as text, while it is parsed
    delimiter = sniff_delimiter(text)
    records = parse_csv(text, delimiter)
    return RawFile(path, [Table(records)], "csv", encoding, delimiter, _line_ends(text))


BINARY_HINTS = {
    "an Excel 97-2003 workbook (.xls)": "open it in Excel and save it as .xlsx or CSV UTF-8",
    "an SPSS data file (.sav)": "export the responses as CSV or .xlsx instead",
    "a ZIP archive": "unzip it and give the CSV or .xlsx inside",
    "a PDF document": "export the responses as CSV or .xlsx instead",
    "a binary file": "export the responses as CSV or .xlsx instead",
}


def _binary_kind(data: bytes) -> str | None:
    if data.startswith(b"PK\x03\x04"):
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile:
            return "a ZIP archive"
        return "xlsx" if "xl/workbook.xml" in names else "a ZIP archive"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return "an Excel 97-2003 workbook (.xls)"
    if data.startswith(b"$FL2") or data.startswith(b"$FL3"):
        return "an SPSS data file (.sav)"
    if data.startswith(b"%PDF"):
        return "a PDF document"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None  # UTF-16 text with its byte order mark
    if b"\x00" in data[:4096]:
        return "a binary file"
    return None


# --- text ------------------------------------------------------------------------------------


def decode(data: bytes) -> tuple[str, str]:
    """The text and the name of its encoding: BOMs first, then UTF-8, then the likeliest legacy one."""
    for bom, name in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(name.replace("-sig", "")), name
            except UnicodeDecodeError as exc:
                raise ReadError(f"the file starts with a {name} byte order mark but is not {name} (byte {exc.start})") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    candidates = [name for name in WESTERN_ENCODINGS if _decodes(data, name)]
    guess = _charset_guess(data)
    if guess and guess not in candidates:
        candidates.append(guess)
    if not candidates:
        raise ReadError("the text encoding could not be recognised; save the export as CSV UTF-8 and try again")
    best = max(candidates, key=lambda name: (_plausibility(data.decode(name)), -candidates.index(name)))
    return data.decode(best), best


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _charset_guess(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    return best.encoding if best is not None else None


def _plausibility(text: str) -> float:
    """How much the non-ASCII characters look like real words rather than mis-decoded bytes.

    Letters of a Western language sit between ASCII letters ("Montréal"); mis-decoded text gives
    symbols, control characters and runs of unrelated accented letters ("MontrĂŠal").
    """
    score = 0.0
    for i, char in enumerate(text):
        if char.isascii():
            continue
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        category = unicodedata.category(char)
        if char in COMMON_WESTERN:
            score += 2 if (before.isascii() or after.isascii()) else 0.5
        elif category.startswith("L"):
            same_script = _script(char)
            neighbours = [c for c in (before, after) if not c.isascii() and unicodedata.category(c).startswith("L")]
            score += 1.5 if neighbours and all(_script(c) == same_script for c in neighbours) else 0.5
        elif category.startswith("Z"):
            score += 0.5
        else:
            score -= 3  # symbols, control characters, private use
    return score


def _script(char: str) -> str:
    return unicodedata.name(char, "UNKNOWN").split(" ")[0]


def sniff_delimiter(text: str) -> str:
    """The delimiter that gives the most consistent records (more than one field) in the first lines."""
    sample = _sample(text)
    best, best_score = ",", (-1.0, 0)
    for delimiter in DELIMITERS:
        try:
            records = list(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter))
        except csv.Error:
            continue
        records = [r for r in records if any(cell.strip() for cell in r)]
        if not records or len(records[0]) < 2:
            continue
        widths = [len(r) for r in records]
        consistent = sum(w == widths[0] for w in widths) / len(widths)
        score = (consistent, widths[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _sample(text: str) -> str:
    """The first records of the text, cut at a line end (a cut record would skew the counts)."""
    return "".join(text.splitlines(keepends=True)[: SNIFF_RECORDS * 4])


def parse_csv(text: str, delimiter: str) -> list[list[str]]:
    try:
        records = list(csv.reader(_lines(text), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise ReadError(f"not a readable CSV file ({exc})") from None
    return records


_LINE_END = re.compile(r"\r\n|\r|\n")


def _lines(text: str) -> Iterator[str]:
    """The lines of the text with their ends, as io.StringIO(text, newline="") gives them, without
    its copy of the whole text at four bytes a character (over a gigabyte for a large export)."""
    start = 0
    for end in _LINE_END.finditer(text):
        yield text[start:end.end()]
        start = end.end()
    if start < len(text):
        yield text[start:]


def _line_ends(text: str) -> str:
    """How records end: the first line end outside a quoted field (which may hold other ones)."""
    quoted = False
    for position, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "\n":
            return "LF"
        elif not quoted and char == "\r":
            return "CRLF" if text[position + 1:position + 2] == "\n" else "CR"
    return "none"


# --- Excel -----------------------------------------------------------------------------------


def _read_xlsx(path: Path, data: bytes) -> RawFile:
    import warnings

    from openpyxl import load_workbook

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about styles it does not know
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for damaged workbooks
        raise ReadError(f"not a readable .xlsx workbook ({exc})") from None
    tables = []
    for sheet in book.worksheets:
        records = [[cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        tables.append(Table(_trim_empty_rows(records), sheet.title))
    book.close()
    tables = [t for t in tables if t.records] or [Table([], None)]
    if not tables[0].records:
        raise ReadError("the workbook has no data on any sheet")
    return RawFile(path, tables, "xlsx")


def cell_text(value: object) -> str:
    """A workbook cell as the CSV export would have written it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _trim_empty_rows(records: list[list[str]]) -> list[list[str]]:
    while records and not any(cell.strip() for cell in records[-1]):
        records.pop()
    return records

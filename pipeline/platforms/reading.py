"""Turn an export file (CSV/TSV text in any common encoding, or an Excel workbook) into rows of text.

Everything a platform adapter sees is a `Table`: the cells of one sheet column by column, and its
first records as lists of strings, with how the file was written (encoding, delimiter, line ends)
kept for `consult inspect`. Nothing here knows about survey platforms.

A CSV is read by pandas' C parser when that gives exactly what the strict `csv` module gives (plain
quoting, no record wider than the first, no field over csv's size limit), and by the `csv` module
otherwise, so that a damaged file gets the same error naming its row. The C parser pads a short
record with empty fields, so the fields of every record are counted from the bytes as well
(`_record_lengths`): the adapters read a record shorter than the header as ending in blanks (as
Excel saves a row whose last cells are empty), but refuse a last record cut off mid-row and
records that are the pieces of one response split by an answer's line break not in quotes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

DELIMITERS = (",", ";", "\t", "|")
SNIFF_RECORDS = 60
HEAD_RECORDS = 64  # records kept as written: enough for any header and for detection

# Single-byte encodings that spreadsheet programs and survey tools write in Canada and Europe,
# in the order preferred when two decode a file equally well.
WESTERN_ENCODINGS = ("cp1252", "iso-8859-15", "mac_roman", "cp850", "cp1250")
# Letters and punctuation that French, English, German and Spanish text uses outside ASCII.
COMMON_WESTERN = set("àâäçéèêëîïôöûùüÿœæÀÂÄÇÉÈÊËÎÏÔÖÛÙÜŸŒÆßñÑáíóúÁÍÓÚãõ’‘“”–—…«»°€£¿¡·")


class ReadError(ValueError):
    """The file cannot be read as a table; the message says what is wrong (the caller adds the file)."""


@dataclass
class Table:
    """One sheet of an export, column by column: a large export has tens of millions of cells, held
    as one array per column (each distinct text once) rather than one list per record."""

    columns: list[np.ndarray]  # field j of every record, "" where a record has fewer fields
    head: list[list[str]]  # the first records exactly as written: what detection and header rows read
    size: int  # records, blank ones included
    lengths: np.ndarray | None = None  # each record's field count (0 for an empty line); None: every
    # record that is not an empty line has the first record's width (the fast reader counts them)
    sheet: str | None = None  # the worksheet name, for Excel files
    ends_with_line_end: bool = True  # a CSV whose last record ends with a line end: not cut off mid-row

    @classmethod
    def from_records(cls, records: list[list[str]], sheet: str | None = None) -> "Table":
        width = max(map(len, records), default=0)
        padded = [r if len(r) == width else r + [""] * (width - len(r)) for r in records]
        columns = [_object_array(cells) for cells in zip(*padded)]
        lengths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
        return cls(columns, records[:HEAD_RECORDS], len(records), lengths, sheet)

    def record(self, number: int) -> list[str]:
        """Record `number` (0-based) as written."""
        if number < len(self.head):
            return self.head[number]
        length = len(self.columns) if self.lengths is None else int(self.lengths[number])
        return [column[number] for column in self.columns[:length]]

    @property
    def records(self) -> list[list[str]]:
        """Every record as a list: for the small files that are read record by record
        (questionnaire definitions), never for responses."""
        return [self.record(number) for number in range(self.size)]


def _object_array(cells) -> np.ndarray:
    array = np.empty(len(cells), dtype=object)
    array[:] = cells
    return array


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
    # a byte-order mark alone (what some editors save for an empty file) is empty too
    if not data.removeprefix(_BOM).removeprefix(b"\xff\xfe").removeprefix(b"\xfe\xff").strip():
        raise ReadError("the file is empty (no header row, no responses)")
    kind = _binary_kind(data)
    if kind == "xlsx":
        return _read_xlsx(path, data)
    if kind is not None:
        raise ReadError(f"this is {kind}, not a CSV or .xlsx export; {BINARY_HINTS[kind]}")
    text, encoding = decode(data)
    delimiter, line_ends = sniff_delimiter(text), _line_ends(text)
    # From here on the file is held once, as UTF-8 bytes (a third of the text's size when accented).
    payload = data if encoding in ("utf-8", "utf-8-sig") else text.encode("utf-8")
    del data, text
    codec = "utf-8-sig" if encoding == "utf-8-sig" else "utf-8"
    table = _fast_table(payload, codec, delimiter) or Table.from_records(parse_csv(payload.decode(codec), delimiter))
    table.ends_with_line_end = payload.endswith((b"\n", b"\r"))
    return RawFile(path, [table], "csv", encoding, delimiter, line_ends)


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
    if b"\x00" in data[:4096] and _utf16_without_bom(data) is None:
        return "a binary file"
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    """utf-16-le or utf-16-be when the file looks like UTF-16 text saved without a byte order mark.

    Text in a Latin script has a zero high byte in nearly every character: zeros at every other
    byte of the start (odd positions for little-endian) and hardly any at the others, which then
    read as text without NULs or other control characters (but tab and line ends). Only the start
    is looked at; `decode` reads the whole file."""
    sample = data[:4096]
    if len(data) % 2 or len(sample) < 4:
        return None
    pairs = len(sample) // 2
    zeros = {"utf-16-le": sample[1::2].count(0), "utf-16-be": sample[0::2].count(0)}
    for name, other in (("utf-16-le", "utf-16-be"), ("utf-16-be", "utf-16-le")):
        if zeros[name] >= pairs / 2 and zeros[other] <= pairs / 20:
            return None if _CONTROL.search(sample.decode(name, errors="replace")) else name
    return None


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# --- text ------------------------------------------------------------------------------------


def decode(data: bytes) -> tuple[str, str]:
    """The text and the name of its encoding: BOMs first, then UTF-16 without one, then UTF-8, then
    the likeliest legacy one."""
    for bom, name in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(name.replace("-sig", "")), name
            except UnicodeDecodeError as exc:
                raise ReadError(f"the file starts with a {name} byte order mark but is not {name} (byte {exc.start})") from None
    if b"\x00" in data[:4096] and (name := _utf16_without_bom(data)):  # before UTF-8: ASCII in UTF-16 is UTF-8 too
        try:
            return data.decode(name), name
        except UnicodeDecodeError as exc:
            raise ReadError(f"the file looks like {name} text without a byte order mark but is not {name} "
                            f"(byte {exc.start}); save the export as CSV UTF-8 and try again") from None
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
    """The first records of the text, cut at a line end (a cut record would skew the counts); the
    lines are split from a growing prefix, not from the whole (large) text."""
    wanted, size = SNIFF_RECORDS * 4, 1 << 16
    while len(lines := text[:size].splitlines(keepends=True)) <= wanted and size < len(text):
        size *= 4
    return "".join(lines[:wanted])


def parse_csv(text: str, delimiter: str) -> list[list[str]]:
    reader = csv.reader(_lines(text), delimiter=delimiter, strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        # line_num: the lines read so far, the last one where the problem is (as a text editor numbers them)
        hint = (" A quote inside an answer must be doubled (\"\"), or the whole answer quoted"
                if "expected after" in str(exc) else "")
        raise ReadError(f"not a readable CSV file: line {reader.line_num}: {exc}.{hint}") from None
    return records


_LINE_END = re.compile(r"\r\n|\r|\n")
_LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")


def _lines(text: str | bytes, start: int = 0) -> Iterator[str | bytes]:
    """The lines of the text with their ends, as io.StringIO(text, newline="") gives them, without
    its copy of the whole text at four bytes a character (over a gigabyte for a large export)."""
    for end in (_LINE_END_BYTES if isinstance(text, bytes) else _LINE_END).finditer(text, start):
        yield text[start:end.end()]
        start = end.end()
    if start < len(text):
        yield text[start:]


# --- the fast path: pandas' C parser, column by column ------------------------------------------

_BOM = b"\xef\xbb\xbf"


def _fast_table(payload: bytes, codec: str, delimiter: str) -> Table | None:
    """The table read by pandas' C parser (columns of shared strings: a few seconds and a fraction of
    the memory for a million records), or None when only the strict record-by-record reader gives
    the same records and errors: a quote it refuses or reads otherwise, a record wider than the
    first, or a field beyond its size limit. The C parser pads a short record, so each record's
    fields are counted from the bytes too: kept as the table's lengths when some record is short."""
    start = len(_BOM) if codec == "utf-8-sig" else 0
    head = _head(payload, start, delimiter)
    if (head is None or not _plain_quoting(payload, start, delimiter)
            or _longest_field_bound(payload) > csv.field_size_limit()):
        return None
    try:
        frame = pd.read_csv(io.BytesIO(payload), sep=delimiter, header=None, dtype=object, na_filter=False,
                            skip_blank_lines=False, encoding=codec, engine="c", quoting=csv.QUOTE_MINIMAL)
    except (pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    columns = [frame[name].to_numpy() for name in frame.columns]
    del frame
    table = Table(columns, head, len(columns[0]) if columns else 0)
    lengths = _record_lengths(payload, start, delimiter)
    if not _agrees(table) or len(lengths) != table.size:
        return None
    if not ((lengths == len(columns)) | (lengths == 0)).all():
        table.lengths = lengths
    return table


def _plain_quoting(payload: bytes, start: int, delimiter: str) -> bool:
    """Every quote opens a field, closes it right before a delimiter or line end, or is doubled
    inside it: then the C parser reads the same fields, and quote parity tells records apart."""
    d = re.escape(delimiter).encode()
    field_start = rb"(?<![^" + d + rb"\r\n])"
    pattern = re.compile(rb'(?:[^"]++|' + field_start + rb'"(?:[^"]++|"")*+"(?=[' + d + rb'\r\n]|\Z))*+')
    return pattern.match(memoryview(payload)[start:]).end() == len(payload) - start


def _longest_field_bound(payload: bytes, block: int = 1 << 25) -> int:
    """Bytes in the longest physical line or quoted field (a field is no longer than either), found
    with array operations over blocks of the file, so that no array is as large as the file."""
    data = np.frombuffer(payload, dtype=np.uint8)
    longest, previous, quotes = 0, -1, []
    carriage_returns = b"\r" in payload
    for offset in range(0, len(data), block):
        chunk = data[offset:offset + block]
        ends = np.flatnonzero((chunk == 10) | (chunk == 13) if carriage_returns else chunk == 10) + offset
        quotes.append(np.flatnonzero(chunk == 34) + offset)
        if len(ends):
            longest = max(longest, int(ends[0] - previous), int(np.diff(ends).max(initial=0)))
            previous = int(ends[-1])
    longest = max(longest, len(data) - previous)
    # Quotes pair up (plain quoting): each pair is a quoted stretch, and a doubled quote joins two.
    quotes = np.concatenate(quotes) if quotes else np.empty(0, dtype=np.int64)
    opens, closes = quotes[0::2], quotes[1::2]
    if len(opens) != len(closes):
        return len(data)
    if not len(opens):
        return longest
    separate = np.append(closes[:-1] + 1 != opens[1:], True)
    firsts, lasts = opens[np.insert(separate[:-1], 0, True)], closes[separate]
    return max(longest, int((lasts - firsts).max(initial=0)))


def _head(payload: bytes, start: int, delimiter: str) -> list[list[str]] | None:
    """The first records as the strict reader gives them (None if it refuses them)."""
    lines = (line.decode("utf-8") for line in _lines(payload, start))
    try:
        return list(itertools.islice(csv.reader(lines, delimiter=delimiter, strict=True), HEAD_RECORDS))
    except csv.Error:
        return None


def _agrees(table: Table) -> bool:
    """The C parser's first records are the strict reader's, padded to the first record's width."""
    width = len(table.columns)
    return (0 < len(table.head) <= table.size and len(table.head[0]) == width
            and all(len(r) <= width for r in table.head)
            and all([c[i] for c in table.columns] == r + [""] * (width - len(r)) for i, r in enumerate(table.head)))


def _record_lengths(payload: bytes, start: int, delimiter: str, block: int = 1 << 24) -> np.ndarray:
    """The fields of every record as the strict reader counts them (0 for an empty line), from the
    bytes: the delimiters outside quoted fields between two line ends outside quoted fields. Plain
    quoting (checked first) makes a byte quoted when an odd number of quotes comes before it; that
    parity is worked out 64 bytes to a machine word, so the count costs a fraction of the parse.
    The file is taken in blocks, so that no array is as large as the file."""
    data = np.frombuffer(payload, dtype=np.uint8)
    code, quoted, carriage_returns = ord(delimiter), b'"' in payload, b"\r" in payload
    ends, before_ends = [], []  # each record's line end, and the delimiters before it
    inside, total = False, 0
    for offset in range(start, len(data), block):
        chunk = data[offset:offset + block]
        at = np.flatnonzero(chunk == 10)
        if carriage_returns:  # a CR ends a line unless an LF follows it (CRLF ends at the LF)
            cr = np.flatnonzero(chunk == 13)
            following = np.minimum(cr + offset + 1, len(data) - 1)
            lone = cr[(data[following] != 10) | (cr + offset + 1 == len(data))]
            if len(lone):
                at = np.sort(np.concatenate((at, lone)))
        delimiters = _words(chunk == code)
        if quoted:
            quotes, inside = _parity(_words(chunk == 34), inside)
            delimiters &= ~quotes
            at = at[_bit(quotes, at) == 0]
        counts = np.bitwise_count(delimiters)
        words_before = np.cumsum(counts, dtype=np.int64) - counts
        partial = np.bitwise_count(delimiters[at >> 6] & ((np.uint64(1) << (at & 63).astype(np.uint64)) - np.uint64(1)))
        ends.append(at + offset)
        before_ends.append(total + words_before[at >> 6] + partial)
        total += int(counts.sum(dtype=np.int64))
    ends = np.concatenate(ends) if ends else np.empty(0, dtype=np.int64)
    before = np.concatenate(before_ends) if before_ends else np.empty(0, dtype=np.int64)
    if (ends[-1] if len(ends) else start - 1) < len(data) - 1:  # a last record without a line end
        ends, before = np.append(ends, len(data)), np.append(before, total)
    lengths = np.diff(before, prepend=0) + 1
    # An empty line: nothing between the previous line end (or the start) and this one, or a CR alone.
    previous = np.insert(ends[:-1], 0, start - 1)
    gap = ends - previous
    crlf = np.zeros(len(ends), dtype=bool)
    inner = ends < len(data)
    crlf[inner] = (data[ends[inner]] == 10) & (data[np.maximum(ends[inner] - 1, 0)] == 13)
    lengths[(gap == 1) | ((gap == 2) & crlf)] = 0
    return lengths


def _words(mask: np.ndarray) -> np.ndarray:
    """A boolean array as 64-bit words: element i is bit i % 64 of word i // 64 (the rest zero)."""
    packed = np.packbits(mask, bitorder="little")
    if len(packed) % 8:
        packed = np.append(packed, np.zeros(8 - len(packed) % 8, dtype=np.uint8))
    return packed.view("<u8")


def _bit(words: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return (words[positions >> 6] >> (positions & 63).astype(np.uint64)) & np.uint64(1)


def _parity(quotes: np.ndarray, inside: bool) -> tuple[np.ndarray, bool]:
    """Bit i set when an odd number of quotes (bits of `quotes`) comes up to byte i, counting a
    block that starts inside a quoted field (`inside`) as one; and whether the next block does."""
    parity = quotes.copy()
    for shift in (1, 2, 4, 8, 16, 32):  # a running xor within each word ...
        parity ^= parity << np.uint64(shift)
    odd = np.bitwise_xor.accumulate((parity >> np.uint64(63)).astype(bool))  # ... and across words
    flip = np.empty(len(parity), dtype=bool)
    if len(flip):
        flip[0], flip[1:] = inside, odd[:-1] ^ inside
        np.invert(parity, out=parity, where=flip)
    return parity, bool(odd[-1] ^ inside) if len(odd) else inside


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
        tables.append(Table.from_records(_trim_empty_rows(records), sheet.title))
    book.close()
    tables = [t for t in tables if t.size] or [Table.from_records([], None)]
    if not tables[0].size:
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


def blank(cells: list[str]) -> bool:
    """No cell holds anything but spaces (one join in C instead of a strip per cell)."""
    return not "".join(cells).strip()


def _trim_empty_rows(records: list[list[str]]) -> list[list[str]]:
    while records and not any(cell.strip() for cell in records[-1]):
        records.pop()
    return records

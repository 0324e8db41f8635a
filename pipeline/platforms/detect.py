"""Which platform wrote a file: every adapter scores it, the clear winner reads it."""

from __future__ import annotations

from pipeline.platforms import ADAPTERS, PLATFORMS
from pipeline.platforms.common import Detection, Layout, PlatformAdapter
from pipeline.platforms.reading import RawFile, ReadError
from pipeline.platforms.xlsform import is_xlsform

SURE = 0.8  # two adapters at least this sure, and this close, make the file ambiguous
TIE = 0.05
DEFINITIONS = {"xlsform": "an XLSForm (a KoboToolbox / ODK questionnaire)",
               "redcap data dictionary": "a REDCap data dictionary (the project's questionnaire)"}


def adapter_for(name: str) -> PlatformAdapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ReadError(f"unknown platform {name!r}; known: {', '.join(PLATFORMS)}") from None


def detect(raw: RawFile) -> Detection:
    """The platform and variant of a responses file; ReadError when two platforms fit as well."""
    found = sorted(
        (d for d in (a.detect(raw) for a in ADAPTERS.values()) if d is not None),
        key=lambda d: -d.score,
    )
    best = found[0]
    if len(found) > 1 and found[1].score >= SURE and best.score - found[1].score < TIE:
        raise ReadError(
            f"the file looks like both a {ADAPTERS[best.platform].title} and a "
            f"{ADAPTERS[found[1].platform].title} export; name the platform with --platform"
        )
    return best


def definition_kind(raw: RawFile) -> str | None:
    """'xlsform' or 'redcap data dictionary' when the file is a questionnaire, not responses."""
    if is_xlsform(raw):
        return "xlsform"
    detection = ADAPTERS["redcap"].detect(raw)
    if detection is not None and detection.variant == "data dictionary":
        return "redcap data dictionary"
    return None


def read_layout(raw: RawFile, platform: str | None = None) -> Layout:
    """The file's layout, by the named platform's rules or the detected one's."""
    kind = definition_kind(raw) if platform is None else None
    if kind is not None:
        raise ReadError(
            f"this is {DEFINITIONS[kind]}, not survey responses; use it with "
            "`consult instrument draft` to start an instrument"
        )
    adapter = adapter_for(platform) if platform else ADAPTERS[detect(raw).platform]
    if not raw.main.head or not any(c.strip() for c in raw.main.head[0]):
        raise ReadError("the first row is empty: an export starts with its header row")
    layout = adapter.layout(raw)
    if raw.file_format == "xlsx" and len(raw.tables) > 1 and adapter.name != "kobo":  # Kobo names its own sheets
        layout.notes.append(first_sheet_note(raw))
    return layout


def first_sheet_note(raw: RawFile) -> str:
    """For a workbook of several sheets: only the first is read (a sheet of notes or a pivot table
    put in front of the export is read instead of it)."""
    others = ", ".join(f"{t.sheet!r} ({t.size} rows)" for t in raw.tables[1:])  # as the spreadsheet counts them
    return (f"only the first sheet, {raw.main.sheet!r}, is read; the workbook's other sheets are not: {others} "
            "(the responses must be on the first sheet)")

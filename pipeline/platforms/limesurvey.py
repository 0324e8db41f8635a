"""LimeSurvey: Responses → Export → CSV (or Excel), any heading style, any separator.

Heading styles: question code (`Q1`, `Q2[SQ001]`, LimeSurvey 2's `Q2_SQ001`), SGQA ids
(`123456X12X34`, `123456X12X34SQ001`), abbreviated or full question text (`Text [Subquestion]`),
and "question code & question text" (`Q1. Text`). The response metadata (`id`, `submitdate`,
`lastpage`, `startlanguage`, `seed`, `startdate`, `datestamp`, `ipaddr`, `refurl`, ...) are
written as codes or as names in the survey's language. An empty `submitdate` is a response that
was never submitted; anonymised surveys without date stamps write 1980-01-01 00:00:00 in every
date column. Multiple choice is one column per subquestion, `Y` (or the answer text) when ticked.
"""

from __future__ import annotations

import re

from pipeline.platforms.common import (
    IDENTIFIER,
    METADATA,
    QUESTION,
    Detection,
    Layout,
    SourceColumn,
    compact,
    data_records,
    header_width,
    normalised,
    row,
)
from pipeline.platforms.reading import RawFile

ANONYMISED_DATE = "1980-01-01"
SUBMITTED = "submitted_at"

# Response metadata by code, and by the names LimeSurvey writes in English, French, German and
# Spanish when headings are question texts.
METADATA_NAMES: dict[str, tuple[str, str]] = {}
for role_kind, names in {
    (IDENTIFIER, "response_id"): ["id", "response id", "id de la réponse", "antwort id", "id de respuesta"],
    (IDENTIFIER, SUBMITTED): ["submitdate", "date submitted", "date de soumission", "date d'envoi",
                              "datum abgeschickt", "fecha de envío"],
    (METADATA, "last_page"): ["lastpage", "last page", "dernière page", "letzte seite", "última página"],
    (METADATA, "language"): ["startlanguage", "start language", "langue de départ", "start-sprache",
                             "lenguaje inicial", "idioma inicial"],
    (METADATA, "seed"): ["seed", "graine", "zufallsstartwert", "semilla"],
    (IDENTIFIER, "started_at"): ["startdate", "date started", "date de début", "datum gestartet", "fecha de inicio"],
    (IDENTIFIER, "recorded_at"): ["datestamp", "date last action", "date de la dernière action",
                                  "datum letzte aktivität", "fecha de la última acción"],
    (IDENTIFIER, "ip_address"): ["ipaddr", "ip address", "adresse ip", "ip-adresse", "dirección ip"],
    (IDENTIFIER, "url"): ["refurl", "referrer url", "url de provenance", "referrer-url", "url de referencia"],
    (IDENTIFIER, "token"): ["token", "access code", "code d'accès", "zugangsschlüssel", "código de acceso"],
    (IDENTIFIER, "first_name"): ["firstname", "first name", "prénom", "vorname", "nombre"],
    (IDENTIFIER, "last_name"): ["lastname", "last name", "nom", "nom de famille", "nachname", "apellido"],
    (IDENTIFIER, "email"): ["email", "email address", "adresse courriel", "adresse e-mail", "e-mail-adresse",
                            "correo electrónico"],
    (METADATA, "duration_s"): ["interviewtime", "total time", "temps total", "gesamtzeit", "tiempo total"],
}.items():
    for name in names:
        METADATA_NAMES[normalised(name)] = role_kind

SGQA = re.compile(r"^(?P<base>\d+X\d+X\d+)(?P<sub>[A-Za-z0-9_#]*)$")
CODE_SUB = re.compile(r"^(?P<base>[A-Za-z][A-Za-z0-9_]*)\[(?P<sub>[^\]]+)\]$")
CODE_AND_TEXT = re.compile(r"^(?P<code>[A-Za-z][A-Za-z0-9_]*(?:\[[^\]]+\])*)\.\s+(?P<text>.+)$", re.DOTALL)
TIMING = re.compile(r"^(?:\d+X\d+(?:X\d+)?time|grouptime\d+)$|^(group|question) time:", re.IGNORECASE)
OPEN_SUBS = {"other", "comment"}


class LimeSurvey:
    name = "limesurvey"
    title = "LimeSurvey"

    def detect(self, raw: RawFile) -> Detection | None:
        header = [h.strip() for h in raw.main.head[0] if h.strip()]
        if not header:
            return None
        known = {METADATA_NAMES[normalised(h)][1] for h in header if normalised(h) in METADATA_NAMES}
        style = _heading_style(header)
        if {SUBMITTED, "last_page", "language"} <= known:
            return Detection(self.name, 1.0, style)
        if style == "SGQA":
            return Detection(self.name, 0.95, style)
        if style in ("question code", "question code & text") and (known & {SUBMITTED, "last_page", "seed"}):
            return Detection(self.name, 0.95, style)
        share = sum(bool(CODE_SUB.match(h) or CODE_AND_TEXT.match(h)) for h in header) / len(header)
        if share >= 0.3:
            return Detection(self.name, 0.75, style)
        return None

    def layout(self, raw: RawFile) -> Layout:
        width = header_width(raw.main, 1)
        header = row(raw.main, 0, width)
        columns = [_column(i, name) for i, name in enumerate(header)]
        cells, numbers = data_records(raw.main, 1, width)
        style = _heading_style([h for h in header if h.strip()])
        fmt = "Excel" if raw.file_format == "xlsx" else f"CSV, '{raw.delimiter}'-separated"
        layout = Layout(self.name, f"{style} headings, {fmt}", 1, columns, cells, numbers, multi_separator=None)
        submitted = [c.index for c in columns if c.role == SUBMITTED]
        if submitted:
            dates = [cell.strip() for cell in cells[submitted[0]]]
            layout.derived["finished"] = ["1" if date else "0" for date in dates]
            if any(date.startswith(ANONYMISED_DATE) for date in dates):
                _drop_placeholder_dates(layout)
                layout.notes.append(
                    "dates are LimeSurvey's 1980-01-01 placeholder (an anonymised survey): a response "
                    "counts as submitted when the date is there, and no real time is known"
                )
        return layout


def _drop_placeholder_dates(layout: Layout) -> None:
    """The placeholder is no time at all: the timestamp identifiers are left empty, so that no
    check (e.g. the collection window) reads 1980 as when someone answered."""
    for column in layout.columns:
        if column.kind == IDENTIFIER and column.role in ("started_at", "recorded_at", SUBMITTED):
            cells = layout.cells[column.index]
            if any(cell.strip().startswith(ANONYMISED_DATE) for cell in cells):
                layout.derived_identifiers.setdefault(column.role, [
                    None if cell.strip().startswith(ANONYMISED_DATE) or not cell.strip() else cell for cell in cells
                ])


def _heading_style(header: list[str]) -> str:
    questions = [h for h in header if normalised(h) not in METADATA_NAMES and not TIMING.match(h)]
    if not questions:
        return "question code"
    counts = {
        "SGQA": sum(bool(SGQA.match(h)) for h in questions),
        "question code & text": sum(bool(CODE_AND_TEXT.match(h)) for h in questions),
        "question code": sum(bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(\[[^\]]+\])*", h)) for h in questions),
    }
    style, count = max(counts.items(), key=lambda kv: kv[1])
    return style if count >= len(questions) / 2 else "question text"


def _column(index: int, name: str) -> SourceColumn:
    text = name.strip()
    known = METADATA_NAMES.get(normalised(text))
    if known:
        return SourceColumn(index, name, known[0], known[1], (text,))
    if TIMING.match(text):
        return SourceColumn(index, name, METADATA, "timing", (text,))
    if match := SGQA.match(text):
        return _sub_column(index, name, text, match["base"], match["sub"], None)
    if match := CODE_AND_TEXT.match(text):
        code, wording = match["code"], match["text"].strip()
        sub = CODE_SUB.match(code)
        base_text = re.sub(r"\s*\[[^\]]+\]$", "", wording)
        if sub:
            return _sub_column(index, name, code, sub["base"], sub["sub"], base_text)
        return SourceColumn(index, name, QUESTION, None, (code, wording), wording)
    if match := CODE_SUB.match(text):
        return _sub_column(index, name, text, match["base"], match["sub"], None)
    return SourceColumn(index, name, QUESTION, None, (text,), text)


def _sub_column(index: int, name: str, code: str, base: str, sub: str, base_text: str | None) -> SourceColumn:
    """A subquestion column: an option of a multiple-choice question, an array row, or the
    text typed for "other" or a comment."""
    if not sub:
        return SourceColumn(index, name, QUESTION, None, (code,), base_text)
    bases = (base, base_text) if base_text else (base,)
    if compact(sub) in OPEN_SUBS or compact(sub).endswith("comment"):
        return SourceColumn(index, name, QUESTION, None, (code,), None, open_text=True)
    return SourceColumn(index, name, QUESTION, None, (code,), None, option=sub, option_of=bases)

"""Google Forms: Responses → Download responses (.csv), or the linked Google Sheet downloaded as
CSV or .xlsx.

One header row: `Timestamp` (named in the form owner's language, written in the sheet's locale,
e.g. `1/14/2026 14:54:44` or `14/01/2026 14:54:44`), `Email Address` when the form collects
emails, `Score` for quizzes, then each question's text. Answers are the choice labels; checkbox
answers are the ticked labels joined by ", " (a label may itself contain a comma, so they are
split with the instrument's choice list). Grid rows are `Question [Row]`. Google Forms records
only submitted responses.
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
    data_records,
    header_width,
    normalised,
    row,
)
from pipeline.platforms.reading import RawFile

TIMESTAMP_NAMES = {"timestamp", "horodateur", "horodatage", "marca temporal", "zeitstempel",
                   "carimbo de data/hora", "informazioni cronologiche", "tijdstempel", "sygnatura czasowa"}
OWN_COLUMNS = {
    **dict.fromkeys(TIMESTAMP_NAMES, (IDENTIFIER, "recorded_at")),
    **dict.fromkeys(["email address", "adresse e-mail", "adresse courriel", "e-mail-adresse",
                     "dirección de correo electrónico", "endereço de e-mail", "indirizzo email"], (IDENTIFIER, "email")),
    **dict.fromkeys(["username", "nom d'utilisateur", "nutzername"], (IDENTIFIER, "username")),
    **dict.fromkeys(["score", "total score", "note", "punktzahl", "puntuación"], (METADATA, "score")),
}
# The timestamp's name in a French form, whose sheet writes dates day first (14/03/2025 10:00:00).
# An English "Timestamp" may be either (month first in the US, day first in Canada or the UK).
DAY_FIRST_TIMESTAMP_NAMES = {"horodateur", "horodatage"}
TIMESTAMP_VALUE = re.compile(r"^\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}[ T,]+\d{1,2}:\d{2}(:\d{2})?")


class GoogleForms:
    name = "googleforms"
    title = "Google Forms"

    def detect(self, raw: RawFile) -> Detection | None:
        records = raw.main.head
        first = normalised(records[0][0]) if records[0] else ""
        if first not in TIMESTAMP_NAMES:
            return None
        values = [r[0].strip() for r in records[1:20] if r and r[0].strip()]
        looks_right = all(TIMESTAMP_VALUE.match(v) for v in values)
        fmt = "Excel" if raw.file_format == "xlsx" else "CSV"
        return Detection(self.name, 0.9 if looks_right else 0.5, f"responses {fmt}")

    def layout(self, raw: RawFile) -> Layout:
        width = header_width(raw.main, 1)
        columns = []
        for index, name in enumerate(row(raw.main, 0, width)):
            known = OWN_COLUMNS.get(normalised(name)) if index <= 2 else None
            if known:
                columns.append(SourceColumn(index, name, known[0], known[1], (name,)))
            else:
                columns.append(SourceColumn(index, name, QUESTION, None, (name,), name.strip()))
        cells, numbers = data_records(raw.main, 1, width)
        detection = self.detect(raw)
        variant = detection.variant if detection else "responses CSV"
        layout = Layout(self.name, variant, 1, columns, cells, numbers, values="labels", multi_separator=", ",
                        day_first=bool(columns) and normalised(columns[0].name) in DAY_FIRST_TIMESTAMP_NAMES)
        layout.derived["finished"] = ["1"] * layout.size  # a Google Form keeps submitted responses only
        return layout

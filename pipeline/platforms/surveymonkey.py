"""SurveyMonkey: Analyze results → Save as → Export file → All responses data → CSV or XLSX.

Two header rows: the question text (HTML allowed), then what each column holds: `Response`,
`Open-Ended Response`, or, under one question, an option (multiple choice: one column per
option, the cell holds the option text when ticked) or a matrix row (the cell holds the chosen
column). A blank cell in the first row continues the question to its left. Answers are the
choice texts as the respondent saw them.
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
    plain,
    row,
)
from pipeline.platforms.reading import RawFile, ReadError

METADATA_COLUMNS = {
    "respondentid": (IDENTIFIER, "response_id"),
    "collectorid": (METADATA, "collector"),
    "startdate": (IDENTIFIER, "started_at"),
    "enddate": (IDENTIFIER, "ended_at"),
    "ipaddress": (IDENTIFIER, "ip_address"),
    "emailaddress": (IDENTIFIER, "email"),
    "firstname": (IDENTIFIER, "first_name"),
    "lastname": (IDENTIFIER, "last_name"),
    "customdata": (IDENTIFIER, "custom_data"),
}
# What the second header row says for a one-column question, in the languages SurveyMonkey exports.
RESPONSE = {"response", "réponse", "antwort", "respuesta", "resposta", "risposta"}
OPEN_ENDED = {"open-ended response", "réponse ouverte", "offene antwort", "respuesta abierta", "resposta aberta",
              "risposta aperta"}
OTHER_SPECIFY = re.compile(r"please specify|autre.*pr[ée]ciser|bitte angeben|especifique", re.IGNORECASE)


class SurveyMonkey:
    name = "surveymonkey"
    title = "SurveyMonkey"

    def detect(self, raw: RawFile) -> Detection | None:
        records = raw.main.head
        header = {compact(h) for h in records[0]}
        second = [c.strip().casefold() for c in records[1]] if len(records) > 1 else []
        answer_row = sum(c in RESPONSE or c in OPEN_ENDED for c in second)
        has_ids = bool({"respondentid", "collectorid"} & header)
        fmt = ", Excel" if raw.file_format == "xlsx" else " CSV"
        if answer_row and (has_ids or answer_row >= max(2, len(second) // 4)):
            return Detection(self.name, 0.95 if has_ids else 0.8, "2-header-row" + fmt)
        if {"respondentid", "collectorid"} <= header and _second_row_is_data(records):
            return Detection(self.name, 0.7, "second header row missing")
        return None

    def layout(self, raw: RawFile) -> Layout:
        table = raw.main
        detection = self.detect(raw)
        if detection is None or detection.variant == "second header row missing":
            raise ReadError(
                "looks like a SurveyMonkey export with its second header row removed (the row saying "
                "Response / Open-Ended Response or the option of each column); export the responses "
                "again from SurveyMonkey and use the file as downloaded"
            )
        width = header_width(table, 2)
        questions, subs = row(table, 0, width), row(table, 1, width)
        columns, current = [], ""
        for index in range(width):
            top, sub = plain(questions[index]), plain(subs[index])
            known = METADATA_COLUMNS.get(re.sub(r"\d+$", "", compact(top))) if top else None
            if known and not sub:
                columns.append(SourceColumn(index, questions[index], known[0], known[1], (top,)))
                current = ""
                continue
            current = top or current
            columns.append(_question_column(index, current, sub))
        cells, numbers = data_records(table, 2, width)
        return Layout(self.name, detection.variant, 2, columns, cells, numbers, values="labels", multi_separator=None)


def _question_column(index: int, question: str, sub: str) -> SourceColumn:
    """Named "question | option" when the column is one option or matrix row of the question."""
    folded = sub.casefold()
    if not sub or folded in RESPONSE:
        return SourceColumn(index, question, QUESTION, None, (question,), question)
    if folded in OPEN_ENDED:
        return SourceColumn(index, question, QUESTION, None, (question,), question, open_text=True)
    key = name = f"{question} | {sub}"
    if OTHER_SPECIFY.search(sub):
        return SourceColumn(index, name, QUESTION, None, (key,), None, open_text=True)
    return SourceColumn(index, name, QUESTION, None, (key,), None, option=sub, option_of=(question,))


def _second_row_is_data(records: list[list[str]]) -> bool:
    return len(records) > 1 and bool(records[1]) and records[1][0].strip().isdigit()

"""Any other table: a CSV or .xlsx someone assembled, one header row, one row per response.

Columns map to the instrument by its aliases (the column mapping: `aliases`, or
`platform_aliases: {csv: [...]}`), concept ids or question wording. Cells hold answer codes or
choice labels; several choices in one cell are separated by commas or semicolons. A column named
like `finished` / `completed` says whether the response was completed; columns named like an
identifier (email, name, phone, IP address, response id, timestamps) are kept apart.
"""

from __future__ import annotations

from pipeline.platforms.common import (
    IDENTIFIER,
    METADATA,
    QUESTION,
    Detection,
    Layout,
    SourceColumn,
    compact,
    data_records,
    each_distinct,
    header_width,
    row,
)
from pipeline.platforms.reading import RawFile

OWN_COLUMNS = {
    **dict.fromkeys(["finished", "completed", "complete", "iscomplete", "submitted"], (METADATA, "finished")),
    **dict.fromkeys(["progress", "percentcomplete"], (METADATA, "progress")),
    **dict.fromkeys(["duration", "durations", "durationseconds", "durationinseconds"], (METADATA, "duration_s")),
    **dict.fromkeys(["language", "lang", "langue"], (METADATA, "language")),
    **dict.fromkeys(["responseid", "respondentid", "recordid", "submissionid", "participantid"],
                    (IDENTIFIER, "response_id")),
    **dict.fromkeys(["timestamp", "submittedat", "submissiontime", "datesubmitted", "recordeddate"],
                    (IDENTIFIER, "recorded_at")),
    **dict.fromkeys(["startedat", "starttime", "startdate"], (IDENTIFIER, "started_at")),
    **dict.fromkeys(["endedat", "endtime", "enddate"], (IDENTIFIER, "ended_at")),
}
TRUE = {"1", "true", "yes", "y", "oui", "complete", "completed", "finished"}
FALSE = {"0", "false", "no", "n", "non", "incomplete", "partial"}


class GenericTable:
    name = "csv"
    title = "CSV / Excel table"

    def detect(self, raw: RawFile) -> Detection | None:
        return Detection(self.name, 0.1, _variant(raw))

    def layout(self, raw: RawFile) -> Layout:
        width = header_width(raw.main, 1)
        columns = []
        for index, name in enumerate(row(raw.main, 0, width)):
            known = OWN_COLUMNS.get(compact(name))
            if known:
                columns.append(SourceColumn(index, name, known[0], known[1], (name.strip(),)))
            else:
                columns.append(SourceColumn(index, name, QUESTION, None, (name.strip(),), name.strip()))
        cells, numbers = data_records(raw.main, 1, width)
        layout = Layout(self.name, _variant(raw), 1, columns, cells, numbers)
        flags = [c.index for c in columns if c.role == "finished"]
        if flags:
            layout.derived["finished"] = each_distinct(cells[flags[0]], _flag)
        return layout


def _variant(raw: RawFile) -> str:
    if raw.file_format == "xlsx":
        return "one header row, Excel"
    return f"one header row, '{raw.delimiter}'-separated"


def _flag(value: str) -> str | None:
    folded = value.strip().casefold()
    return "1" if folded in TRUE else "0" if folded in FALSE else None

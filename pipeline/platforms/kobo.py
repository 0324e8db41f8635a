"""KoboToolbox and ODK: Data → Downloads → CSV (";"-separated, every value quoted) or XLS(X);
ODK Central's CSV download.

One header row of XML names, with group paths (`group/question`; ODK Central joins them with
`-`), or of labels when exported with labels. A select-multiple question is one column of the
chosen codes separated by spaces and, when "Include data from all versions / split select
multiples" is on, one column per option (`group/question/option`, 1/0 or True/False). `n/a` marks
a question that was not relevant. Kobo's own columns start with `_` (`_uuid`, `_submission_time`,
`_index`, ...), ODK's metadata are `start`, `end`, `today`, `deviceid`, `username`, `email`,
`meta/instanceID`. A repeat group is flattened into `group[1]/question` columns (CSV) or written
to its own sheet (Excel): one row per response is read from the main sheet.
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
    row,
)
from pipeline.platforms.reading import RawFile

OWN_COLUMNS = {
    # Kobo / onadata
    "_id": (IDENTIFIER, "submission_id"),
    "_uuid": (IDENTIFIER, "response_id"),
    "_submission_time": (IDENTIFIER, "recorded_at"),
    "_submitted_by": (IDENTIFIER, "username"),
    "_geolocation": (IDENTIFIER, "location"),
    "_attachments": (IDENTIFIER, "attachments"),
    "_index": (METADATA, "index"),
    "_parent_index": (METADATA, "parent_index"),
    "_parent_table_name": (METADATA, "parent_table"),
    "_validation_status": (METADATA, "validation_status"),
    "_status": (METADATA, "status"),
    "_notes": (METADATA, "notes"),
    "_tags": (METADATA, "tags"),
    "_version": (METADATA, "form_version"),
    "__version__": (METADATA, "form_version"),
    "_xform_id_string": (METADATA, "form_id"),
    "_duration": (METADATA, "duration_s"),
    "_media_all_received": (METADATA, "media_received"),
    "_total_media": (METADATA, "media_total"),
    # ODK metadata questions (XLSForm types) and paths
    "start": (IDENTIFIER, "started_at"),
    "end": (IDENTIFIER, "ended_at"),
    "today": (IDENTIFIER, "date"),
    "deviceid": (IDENTIFIER, "device_id"),
    "subscriberid": (IDENTIFIER, "device_id"),
    "simserial": (IDENTIFIER, "device_id"),
    "phonenumber": (IDENTIFIER, "phone"),
    "username": (IDENTIFIER, "username"),
    "email": (IDENTIFIER, "email"),
    "audit": (METADATA, "audit"),
    "meta/instanceid": (IDENTIFIER, "instance_id"),
    "meta/deprecatedid": (IDENTIFIER, "instance_id"),
    "meta/rootuuid": (IDENTIFIER, "instance_id"),
    "meta/instancename": (METADATA, "instance_name"),
    "formhub/uuid": (METADATA, "form_id"),
}
CENTRAL_COLUMNS = {
    "submissiondate": (IDENTIFIER, "recorded_at"),
    "meta-instanceid": (IDENTIFIER, "response_id"),
    "key": (IDENTIFIER, "response_id"),
    "submitterid": (IDENTIFIER, "username"),
    "submittername": (IDENTIFIER, "username"),
    "attachmentspresent": (METADATA, "media_received"),
    "attachmentsexpected": (METADATA, "media_total"),
    "reviewstate": (METADATA, "validation_status"),
    "edits": (METADATA, "edits"),
    "formversion": (METADATA, "form_version"),
}
KOBO_MARKERS = {"_uuid", "_submission_time", "_index", "meta/instanceid", "formhub/uuid", "_xform_id_string"}
CENTRAL_MARKERS = {"submissiondate", "meta-instanceid", "key"}
GEO_PART = re.compile(r"^_(?P<field>.+)_(?P<part>latitude|longitude|altitude|precision)$")
MISSING = frozenset({"n/a"})


class Kobo:
    name = "kobo"
    title = "KoboToolbox / ODK"

    def detect(self, raw: RawFile) -> Detection | None:
        header = {h.strip().casefold() for h in raw.main.head[0]}
        if header & KOBO_MARKERS:
            return Detection(self.name, 1.0, _variant(raw, "KoboToolbox"))
        if len(header & CENTRAL_MARKERS) >= 2:
            return Detection(self.name, 0.95, _variant(raw, "ODK Central"))
        return None

    def layout(self, raw: RawFile) -> Layout:
        width = header_width(raw.main, 1)
        header = row(raw.main, 0, width)
        central = len({h.strip().casefold() for h in header} & CENTRAL_MARKERS) >= 2
        columns = [_column(i, name, "-" if central else "/", central) for i, name in enumerate(header)]
        cells, numbers = data_records(raw.main, 1, width)
        variant = _variant(raw, "ODK Central" if central else "KoboToolbox")
        layout = Layout(self.name, variant, 1, columns, cells, numbers, multi_separator=" ", missing=MISSING)
        layout.derived["finished"] = ["1"] * layout.size  # only finalised submissions are exported
        for table in raw.tables[1:]:
            data = max(0, table.size - 1)
            layout.notes.append(f"sheet {table.sheet!r} (a repeat group, {data} rows) is not read: "
                                "one row per response comes from the first sheet")
        return layout


def _variant(raw: RawFile, tool: str) -> str:
    if raw.file_format == "xlsx":
        return f"{tool} Excel ({len(raw.tables)} sheet{'s' if len(raw.tables) > 1 else ''})"
    return f"{tool} CSV, '{raw.delimiter}'-separated"


def _column(index: int, name: str, separator: str, central: bool) -> SourceColumn:
    path = name.strip()
    segments = path.split(separator)
    own = {**OWN_COLUMNS, **CENTRAL_COLUMNS} if central else OWN_COLUMNS
    known = own.get(path.casefold())
    if known is None and len(segments) > 1 and segments[0].casefold() == "meta":
        known = own.get(f"meta/{segments[-1]}".casefold())
    if known:
        return SourceColumn(index, name, known[0], known[1], (path,))
    if match := GEO_PART.match(path):
        role = match["part"] if match["part"] in ("latitude", "longitude") else "location"
        return SourceColumn(index, name, IDENTIFIER, role, (path,))
    if len(segments) == 1:
        return SourceColumn(index, name, QUESTION, None, (path,), None)
    if "[" in path:  # a flattened repeat group: only an alias naming the whole path maps it
        return SourceColumn(index, name, QUESTION, None, (path,), None)
    # A question inside a group, or one option of the select-multiple question `parent`.
    parent = separator.join(segments[:-1])
    return SourceColumn(index, name, QUESTION, None, (path, segments[-1]), None,
                        option=segments[-1], option_of=(parent, segments[-2]))

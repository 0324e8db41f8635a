"""REDCap: Data Exports → CSV / Microsoft Excel (raw data or labels), and the data dictionary.

One header row: the record id field first (`record_id` by default), then `redcap_event_name`
(longitudinal projects), `redcap_repeat_instrument` and `redcap_repeat_instance` (repeating
instruments: one row per instance, blank on the record's own row), `redcap_data_access_group`,
`redcap_survey_identifier` and `<form>_timestamp` (with survey fields), the fields, and
`<form>_complete` (0 Incomplete, 1 Unverified, 2 Complete). A checkbox field is one column per
choice, `field___code` holding 1 or 0; an unticked box is only a "no" once its form is complete.
The labels export writes field labels, `Field (choice=Label)` columns, `Checked`/`Unchecked`
and `Complete`/`Incomplete`. The data dictionary (`Variable / Field Name`, `Form Name`, ...) is
the project's questionnaire: `consult instrument draft` reads it.
"""

from __future__ import annotations

import re

import numpy as np

from pipeline.platforms.common import (
    IDENTIFIER,
    METADATA,
    QUESTION,
    Detection,
    Layout,
    SourceColumn,
    compact,
    data_records,
    filled,
    header_width,
    row,
)
from pipeline.platforms.reading import RawFile, ReadError

OWN_COLUMNS = {
    "redcapeventname": (METADATA, "event"),
    "eventname": (METADATA, "event"),
    "redcaprepeatinstrument": (METADATA, "repeat_instrument"),
    "repeatinstrument": (METADATA, "repeat_instrument"),
    "redcaprepeatinstance": (METADATA, "repeat_instance"),
    "repeatinstance": (METADATA, "repeat_instance"),
    "redcapdataaccessgroup": (METADATA, "data_access_group"),
    "dataaccessgroup": (METADATA, "data_access_group"),
    "redcapsurveyidentifier": (IDENTIFIER, "survey_identifier"),
    "surveyidentifier": (IDENTIFIER, "survey_identifier"),
    "surveytimestamp": (IDENTIFIER, "recorded_at"),
}
CHECKBOX = re.compile(r"^(?P<field>[a-z][a-z0-9_]*?)___(?P<code>[A-Za-z0-9_.-]+)$")
CHECKBOX_LABEL = re.compile(r"^(?P<label>.+?)\s*\(choice=(?P<option>.+)\)$", re.DOTALL)
FORM_STATUS = re.compile(r"^(?P<form>[a-z][a-z0-9_]*)_complete$")
DICTIONARY_HEADER = ("variable / field name", "form name")
FILLED = {"1", "2", "complete", "unverified"}  # a form whose data entry is done (2) or awaiting checks (1)


class REDCap:
    name = "redcap"
    title = "REDCap"

    def detect(self, raw: RawFile) -> Detection | None:
        header = [h.strip() for h in raw.main.head[0]]
        folded = [h.casefold() for h in header]
        if tuple(folded[:2]) == DICTIONARY_HEADER:
            return Detection(self.name, 0.99, "data dictionary")
        compacted = {compact(h) for h in header}
        raw_style = "record_id" in folded[:1] or bool({"redcapeventname", "redcaprepeatinstrument"} & compacted)
        forms = [h for h in header if FORM_STATUS.match(h)]
        checkboxes = [h for h in header if CHECKBOX.match(h)]
        labels_style = folded[:1] == ["record id"] and any(h.endswith("complete?") for h in folded)
        if raw_style or labels_style:
            return Detection(self.name, 1.0, _variant(raw, labels_style))
        if forms and (checkboxes or len(forms) >= 2):
            return Detection(self.name, 0.85, _variant(raw, False))
        if forms:
            return Detection(self.name, 0.6, _variant(raw, False))
        return None

    def layout(self, raw: RawFile) -> Layout:
        table = raw.main
        detection = self.detect(raw)
        if detection is not None and detection.variant == "data dictionary":
            raise ReadError(
                "this is a REDCap data dictionary (the questionnaire), not a records export; "
                "use it with `consult instrument draft`, and export the records as CSV (raw data)"
            )
        width = header_width(table, 1)
        header = row(table, 0, width)
        columns = [_column(i, name) for i, name in enumerate(header)]
        cells, numbers = data_records(table, 1, width)
        roles = {c.role: c.index for c in reversed(columns) if c.role}
        repeat = roles.get("repeat_instrument")
        instance = filled(cells[repeat]) if repeat is not None else np.zeros(len(numbers), dtype=bool)
        kept = np.flatnonzero(~instance)
        layout = Layout(self.name, detection.variant if detection else _variant(raw, False), 1, columns,
                        [column[kept] for column in cells], numbers[kept], multi_separator=None)
        if instance.any():
            forms = sorted({cell.strip() for cell in cells[repeat][instance]})
            layout.notes.append(
                f"{int(instance.sum())} rows are instances of repeating instruments ({', '.join(forms)}) "
                "and are not read: one row per record (and event) is one response, so the answers in those rows "
                "are not loaded"
            )
        statuses = [c.index for c in columns if c.role and c.role.startswith("form_status")]
        if statuses:
            layout.derived["finished"] = [_finished(s) for s in zip(*(layout.cells[i] for i in statuses))]
        if "recorded_at" in roles:  # the collection window reads it: REDCap's placeholder is no time
            stamps = layout.cells[roles["recorded_at"]]
            layout.derived_identifiers["recorded_at"] = np.where(filled(stamps) & (stamps != NOT_COMPLETED), stamps, None)
        if "event" in roles:  # longitudinal: the same record answers once per event
            layout.derived_identifiers["response_id"] = [
                f"{record}|{event}" for record, event in zip(layout.cells[0], layout.cells[roles["event"]])]
        return layout


# A survey's `_timestamp` when it was not submitted through the survey link (entered by staff).
NOT_COMPLETED = "[not completed]"


def _finished(statuses: tuple[str, ...]) -> str:
    """Complete when every form of the row is; a blank status is a form not on this row (a
    repeating instrument, or a form of another event)."""
    given = [s.strip().casefold() for s in statuses if s.strip()]
    return "1" if given and all(s in FILLED for s in given) else "0"


def _variant(raw: RawFile, labels: bool) -> str:
    fmt = "Excel" if raw.file_format == "xlsx" else "CSV"
    return f"records {fmt}, {'labels' if labels else 'raw data'}"


def _column(index: int, name: str) -> SourceColumn:
    text = name.strip()
    if index == 0:  # REDCap always writes the record id field first
        return SourceColumn(index, name, IDENTIFIER, "response_id", (text,))
    known = OWN_COLUMNS.get(compact(text))
    if known:
        return SourceColumn(index, name, known[0], known[1], (text,))
    if match := FORM_STATUS.match(text):
        return SourceColumn(index, name, METADATA, f"form_status:{match['form']}", (text,))
    if text.casefold().endswith("complete?"):
        return SourceColumn(index, name, METADATA, f"form_status:{text[:-9].strip()}", (text,))
    if text.endswith("_timestamp"):
        return SourceColumn(index, name, IDENTIFIER, "recorded_at", (text,))
    if match := CHECKBOX.match(text):
        return SourceColumn(index, name, QUESTION, None, (text,), None, option=match["code"], option_of=(match["field"],))
    if match := CHECKBOX_LABEL.match(text):
        return SourceColumn(index, name, QUESTION, None, (text,), None, option=match["option"].strip(),
                            option_of=(match["label"].strip(),))
    return SourceColumn(index, name, QUESTION, None, (text,), text)

"""Direct identifiers of an export: a platform's own identifier column and a question asking for the
same identifier (the contact email) are both kept, so that duplicates, scrubbing and the audit see
each of them. Expected values are the cells written below."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from builders import response, write_export
from conftest import REPO
from pipeline.ingest import read_export
from pipeline.instrument import Instrument, load_instrument

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")


def test_a_platform_email_column_is_not_replaced_by_the_contact_question(tmp_path: Path) -> None:
    rows = [response(1, {"contact_email": "home@example.org"}, RecipientEmail="work@agency.example"),
            response(2, {"contact_email": "only@example.org"}),
            response(3, RecipientEmail="link@agency.example"),
            response(4)]
    export = read_export(write_export(tmp_path / "2025" / "export.csv", INSTRUMENT, rows), INSTRUMENT)
    assert export.identifiers["email"].tolist() == ["work@agency.example", None, "link@agency.example", None]
    assert export.identifier_questions == {"email": "contact_email"}
    assert export.answers["contact_email"].tolist() == ["home@example.org", "only@example.org", None, None]


def test_a_question_fills_an_identifier_the_platform_has_no_column_for(tmp_path: Path) -> None:
    instrument = Instrument.model_validate({
        "wave": 2025, "title": {"en": "Test", "fr": "Test"}, "languages": ["en"],
        "collection_window": {"start": "2025-01-01", "end": "2025-12-31"},
        "sections": [{"id": "main", "title": {"en": "Main", "fr": "Principal"}, "questions": [
            {"id": "consent", "type": "single", "label": {"en": "Do you agree?", "fr": "Acceptez-vous?"},
             "choices": [{"code": 1, "label": {"en": "Yes", "fr": "Oui"}}]},
            {"id": "contact_email", "type": "text", "disclosure": "direct", "aliases": ["email"],
             "label": {"en": "Your email address", "fr": "Votre courriel"}},
        ]}],
    })
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(
        [["record_id", "consent", "email", "survey_complete"], ["1", "1", "a@example.org", "2"], ["2", "1", "", "2"]])
    path = tmp_path / "export.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    export = read_export(path, instrument)
    assert export.platform == "redcap"
    assert export.identifiers["email"].tolist() == ["a@example.org", None]
    assert export.identifier_questions == {"email": "contact_email"}

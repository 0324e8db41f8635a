"""The disclosure audit's identifier pattern scan: what the scrubber's precise detectors find (emails,
phone numbers, ...) in any warehouse text column or output file fails the audit, naming where and
what kind, never showing the value; it need never have been in an identifier column (a phone number
typed into a number question, stored unscrubbed). The figures, dates, codes and page markup of a
legitimate report are no finding."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

import pipeline.deidentify
from builders import response, write_export
from conftest import REPO, make_project
from pipeline.audit import run_audit
from pipeline.config import Paths
from pipeline.instrument import load_instrument
from pipeline.report import build_qa_report
from pipeline.run import run_load
from test_audit import clean, consult  # noqa: F401 (clean: the fixture of a small clean run)

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
PATTERN_CHECK = "no identifier pattern in any output"
PHONE = "613-555-0142"
EMAIL = "kwame.b.peer@example.org"
# What a legitimate report holds: figures, ranges, dates, times, versions, ids and hashes, the page's
# stylesheet, placeholders of scrubbed quotes, the project's own contact and URL (surveys/release.yaml).
LEGITIMATE = """<html><head><style>:root { --border: #b8b8b8; --link: #0b4fa8; }
@media (max-width: 40rem) { body { font-size: 1rem; } } @media print { nav { display: none; } }</style></head>
<body><p>2,465 respondents in 2023-2025 (2 465 en français); 45.6% (95% CI 12.3–45.6), 0.4720982125;
1,234,567,890 hours; rendered 2025-06-30 10:30:45 by pipeline 1.2.3 (2025.1); quote Q-1546955326,
file sha256 9595091258c0ffee4165550123deadbeef; wave 2025 of 2,833 rows, 1311 loaded.</p>
<blockquote>My manager [NAME] at [ORGANIZATION] gave me [PHONE] and [EMAIL], see [URL] or [HANDLE].</blockquote>
<p>Contact research@peerworks.ca; https://peerworks.ca/consultation/2025#PREC-01 and
<a href="https://www.ontariolivingwage.ca/rates">rates</a>.</p></body></html>"""


def plant(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def pattern_finds(paths: Paths) -> list[dict]:
    report = json.loads((paths.warehouse_dir / "audit.json").read_text(encoding="utf-8"))
    return next(c for c in report["checks"] if c["name"] == PATTERN_CHECK)["details"]


def test_a_phone_number_and_an_email_in_the_report_fail_the_audit_without_showing_them(clean: Paths) -> None:
    plant(clean.site / "index.html", LEGITIMATE)
    passed = consult(clean)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert pattern_finds(clean) == []
    plant(clean.site / "index.html", LEGITIMATE.replace("</body>", f"<p>Call {PHONE} or write to {EMAIL}.</p></body>"))
    failed = consult(clean)
    assert failed.returncode == 1
    assert pattern_finds(clean) == [
        {"where": "reports/_site/index.html", "identifier": "email", "occurrences": 1, "example": "kw…"},
        {"where": "reports/_site/index.html", "identifier": "phone", "occurrences": 1, "example": "61…"}]
    assert "[FAIL] no identifier pattern in any output" in failed.stdout
    shown = failed.stdout + failed.stderr + (clean.warehouse_dir / "audit.json").read_text(encoding="utf-8")
    for value in (PHONE, "555-0142", EMAIL, "kwame"):
        assert value not in shown


@pytest.mark.parametrize("spelled, kind", [
    ("(416) 555-0199 ext. 12", "phone"), ("+1 905 555 0177", "phone"), ("4165550123", "phone"),
    ("kwame dot b at gmail dot com", "email"), ("www.facebook.com/kwame.b.peer", "url"),
    ("kwamepeer.wordpress.com", "url"), ("linkedin.com/in/kwame-b-peer", "url"),
    ("@kwame_peer", "handle"), ("198.51.100.23", "ip_address"), ("K1A 0B1", "postal_code"),
    ("12 Maple Grove Crescent", "street_address"), ("046 454 286", "social_insurance_number"),
])
def test_each_precise_detector_of_the_scrubber_is_searched_for(clean: Paths, spelled: str, kind: str) -> None:
    plant(clean.site / "methods.html", LEGITIMATE.replace("</body>", f"<p>Reach me: {spelled}</p></body>"))
    report = run_audit(clean)
    assert not report.passed
    assert [(d["where"], d["identifier"]) for d in pattern_finds(clean)] == [("reports/_site/methods.html", kind)]


@pytest.mark.parametrize("record", ["data/warehouse/qa/index.html", "data/warehouse/runs/{run}/summary.json"])
def test_a_phone_number_in_the_qa_report_or_a_run_record_fails_the_audit(clean: Paths, record: str) -> None:
    run = next(clean.runs.iterdir()).name
    path = clean.root / record.format(run=run)
    if path.suffix == ".json":  # a failing value as a run record would hold it, unscrubbed
        summary = json.loads(path.read_text(encoding="utf-8"))
        summary["failing_value"] = f"22 (ask Maria {PHONE})"
        plant(path, json.dumps(summary, indent=2))
    else:
        plant(path, f"<table><tr><td>hourly_wage</td><td>22 (ask Maria {PHONE})</td></tr></table>")
    report = run_audit(clean)
    assert not report.passed
    assert pattern_finds(clean) == [{"where": record.format(run=run), "identifier": "phone", "occurrences": 1,
                                     "example": "61…"}]
    assert PHONE not in (clean.warehouse_dir / "audit.json").read_text(encoding="utf-8")


def test_an_email_in_a_warehouse_text_column_fails_the_audit(clean: Paths) -> None:
    con = duckdb.connect(str(clean.warehouse))
    key = con.execute("SELECT min(respondent_key) FROM respondents").fetchall()[0][0]
    con.execute("INSERT INTO open_text VALUES (?, 2025, 'comments_other', ?, 0)",
                [key, f"Write to me at {EMAIL}, or [PHONE] after 5"])
    con.close()
    report = run_audit(clean)
    assert not report.passed
    assert pattern_finds(clean) == [{"where": "warehouse open_text.text", "identifier": "email", "occurrences": 1,
                                     "example": "kw…"}]
    assert EMAIL not in report.to_json()


def test_hashes_in_the_warehouse_are_no_finding_but_a_bare_phone_number_is(clean: Paths) -> None:
    """Single words of 12 characters or more (hashes, response keys) are not even read; a value that
    is a phone number alone, 10 digits, is."""
    con = duckdb.connect(str(clean.warehouse))
    con.execute("UPDATE load_ledger SET file_sha256 = ?", ["4165550123" * 6 + "cafe"])
    con.close()
    assert run_audit(clean).passed
    con = duckdb.connect(str(clean.warehouse))
    key = con.execute("SELECT min(respondent_key) FROM respondents").fetchall()[0][0]
    con.execute("INSERT INTO open_text VALUES (?, 2025, 'comments_other', '6135550142', 0)", [key])
    con.close()
    assert not run_audit(clean).passed
    assert pattern_finds(clean) == [{"where": "warehouse open_text.text", "identifier": "phone", "occurrences": 1,
                                     "example": "61…"}]


def test_a_failing_value_stored_unscrubbed_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path that once leaked: a phone number typed as the hourly wage fails validation and is
    kept for staff (quarantine, QA report). Scrubbed, the audit passes; were it stored as typed
    (scrubbing skipped), the audit fails on every place it reached, although it was never in an
    identifier column."""
    def load(project: Path) -> Paths:
        paths = make_project(project)
        rows = [response(i, {"paid_sick_days": "1" if i <= 15 else "2"}) for i in range(1, 31)]
        # no words (those are never shown: validate.shown_value), so only scrubbing stands in its way
        rows[4]["answers"]["hourly_wage"] = f"22 / {PHONE}"
        write_export(paths.raw / "2025" / "export.csv", INSTRUMENT, rows)
        run_load(paths)
        build_qa_report(paths, engine="offline")
        return paths

    scrubbed = load(tmp_path / "scrubbed")
    assert run_audit(scrubbed).passed
    monkeypatch.setattr(pipeline.deidentify, "scrub_texts", lambda texts, *_args: texts)
    unscrubbed = load(tmp_path / "unscrubbed")
    report = run_audit(unscrubbed)
    assert not report.passed
    finds = pattern_finds(unscrubbed)
    assert {"where": "warehouse quarantine_issues.value", "identifier": "phone", "occurrences": 1,
            "example": "61…"} in finds
    assert {"where": "data/warehouse/qa/index.html", "identifier": "phone", "occurrences": 1, "example": "61…"} in finds
    assert {d["identifier"] for d in finds} == {"phone"}
    assert PHONE not in report.to_json()

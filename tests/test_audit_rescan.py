"""The disclosure audit's identifier scan: identifier values that share their first token are each
found and counted, and the audit after rendering scans the new files again while reusing the
warehouse checks of the audit made just before (same command, same warehouse)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pipeline.audit
from builders import response, write_export
from conftest import REPO, make_project
from pipeline.audit import run_audit
from pipeline.config import Paths
from pipeline.instrument import load_instrument
from pipeline.run import run_load

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
# Every response of builders.response is located at latitude 43.6500; respondent 7 also answers
# from an IP address that starts with the same "43".
SHARED_FIRST_TOKEN_IP = "43.65.0.7"


@pytest.fixture
def clean(tmp_path: Path) -> Paths:
    """30 respondents alike in everything but a few answers: every check passes."""
    paths = make_project(tmp_path / "project")
    rows = [response(i, {"paid_sick_days": "1" if i <= 15 else "2", "discrimination_any": "1" if i <= 12 else "2",
                         "health_benefits": "1" if i % 2 else "2"},
                     **({"IPAddress": SHARED_FIRST_TOKEN_IP} if i == 7 else {})) for i in range(1, 31)]
    write_export(paths.raw / "2025" / "export.csv", INSTRUMENT, rows)
    run_load(paths)
    return paths


def write_page(paths: Paths, text: str) -> None:
    page = paths.site / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text, encoding="utf-8")


SCANS = ("no identifier in any output", "no identifier pattern in any output")  # the checks of the files


def identifier_check(report) -> dict:
    return next(c for c in json.loads(report.to_json())["checks"] if c["name"] == "no identifier in any output")


def pattern_check(report) -> dict:
    return next(c for c in json.loads(report.to_json())["checks"] if c["name"] == "no identifier pattern in any output")


def test_identifiers_sharing_their_first_token_are_each_found_and_counted(clean: Paths) -> None:
    # "43 6500" (the latitude) twice, "43 65 0 7" (the IP) once; "43 65" alone is no identifier.
    write_page(clean, "<p>Seen at 43.6500, again at 43.6500; the visitor 43.65.0.7 left. 43 65 is a room.</p>")
    check = identifier_check(run_audit(clean))
    assert check["details"] == [
        {"where": "reports/_site/index.html", "identifier": "ip_address", "occurrences": 1},
        {"where": "reports/_site/index.html", "identifier": "latitude", "occurrences": 2},
    ]


def test_the_audit_after_rendering_scans_the_new_files_and_reuses_the_warehouse_checks(
        clean: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    before = run_audit(clean)
    assert before.passed
    write_page(clean, f"<p>Figures for the respondent at {SHARED_FIRST_TOKEN_IP}</p>")  # rendered since

    def run_again(*_args, **_kwargs):
        raise AssertionError("a warehouse check ran again although the warehouse did not change")

    for name in ("check_k_anonymity", "check_l_diversity", "check_published_cells", "check_derivability",
                 "warehouse_digest",  # the warehouse is not even hashed again for the audit's key
                 "_warehouse_texts", "_warehouse_free_texts"):  # nor are its texts scanned again
        monkeypatch.setattr(pipeline.audit, name, run_again)
    after = run_audit(clean, reuse=before)
    monkeypatch.undo()
    assert after.key == pipeline.audit.audit_key(clean)  # the key a fresh audit would have

    assert not after.passed
    assert identifier_check(after)["details"] == [
        {"where": "reports/_site/index.html", "identifier": "ip_address", "occurrences": 1}]
    assert pattern_check(after)["details"] == [  # an IP address whatever its value
        {"where": "reports/_site/index.html", "identifier": "ip_address", "occurrences": 1, "example": "43…"}]
    assert [c for c in after.checks if c.name not in SCANS] == [c for c in before.checks if c.name not in SCANS]
    assert [c.name for c in after.checks] == [c.name for c in before.checks]  # same checks, same order
    written = json.loads((clean.warehouse_dir / "audit.json").read_text(encoding="utf-8"))
    assert written["passed"] is False


def _no_check_may_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("the audit ran its checks again although nothing it reads changed")
    for name in ("check_k_anonymity", "check_l_diversity", "check_published_cells", "check_derivability",
                 "check_identifiers", "identifier_values"):
        monkeypatch.setattr(pipeline.audit, name, refuse)


def test_a_passed_audit_is_not_repeated_when_nothing_it_reads_changed(
        clean: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    write_page(clean, "<p>An ordinary page.</p>")
    first = run_audit(clean)
    assert first.passed
    _no_check_may_run(monkeypatch)
    again = run_audit(clean)
    assert again.to_json() == first.to_json()


def test_a_changed_output_file_is_audited_again(clean: Paths) -> None:
    write_page(clean, "<p>An ordinary page.</p>")
    assert run_audit(clean).passed
    write_page(clean, f"<p>The visitor {SHARED_FIRST_TOKEN_IP} left.</p>")
    report = run_audit(clean)
    assert not report.passed
    assert identifier_check(report)["details"][0]["identifier"] == "ip_address"


def test_a_changed_warehouse_table_is_audited_again(clean: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    assert run_audit(clean).passed
    con = duckdb.connect(str(clean.warehouse))
    con.execute("UPDATE load_ledger SET file_name = ?", [SHARED_FIRST_TOKEN_IP])  # an identifier lands in a table
    con.close()
    report = run_audit(clean)
    assert not report.passed
    assert any(d["identifier"] == "ip_address" for d in identifier_check(report)["details"])


def test_an_identifier_inside_a_pdf_is_found(clean: Paths, tmp_path: Path) -> None:
    import typst

    source = tmp_path / "page.typ"
    source.write_text(f"= Report\n\nThe visitor {SHARED_FIRST_TOKEN_IP} left.\n", encoding="utf-8")
    clean.site.mkdir(parents=True, exist_ok=True)
    pdf = clean.site / "report.pdf"
    typst.compile(str(source), output=str(pdf))
    assert SHARED_FIRST_TOKEN_IP.encode() not in pdf.read_bytes()  # compressed: a byte search finds nothing
    details = identifier_check(run_audit(clean))["details"]
    assert {"where": "reports/_site/report.pdf", "identifier": "ip_address", "occurrences": 1} in details


def test_the_release_is_scanned_and_a_rerun_with_nothing_new_audits_nothing_again(
        loaded: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.audit import audit_file
    from pipeline.cli import _release

    assert _release(loaded, run_audit(loaded))
    scanned = json.loads(audit_file(loaded).read_text(encoding="utf-8"))
    release_files = sorted((loaded.site / "data").glob("*.csv"))
    assert release_files
    summary = next(c["summary"] for c in scanned["checks"] if c["name"] == "no identifier in any output")
    assert f"and {len(pipeline.audit.output_files(loaded))} output files" in summary  # release included
    _no_check_may_run(monkeypatch)
    assert run_audit(loaded).passed

"""Quote review without editing YAML: one quote at a time, or a CSV round-trip; decisions dated."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
import yaml

from pipeline.anonymity import QuoteRules
from pipeline.config import Paths
from pipeline.cli import main
from pipeline.quotes import (
    Quote,
    QuoteReviewError,
    candidates,
    export_csv,
    import_csv,
    published_quotes,
    refresh_review_files,
    review_file,
    review_interactively,
    wave_review,
    write_review,
)

DAY = dt.date(2026, 5, 4)
TEXTS = ["My manager asks me to chart in medical language every single day now.",
         "=HYPERLINK(\"http://example.org\") is what someone typed as an answer here, oddly.",
         "We are never paid for the training we are told to attend after our shifts.",
         "I drive clients to appointments and make the coffee more than I do peer work."]


@pytest.fixture
def reviewed(empty_project: Paths) -> Paths:
    """A wave 2025 review file with four pending quotes, as `consult run` writes it."""
    write_review(review_file(empty_project, 2025), 2025,
                 [Quote(f"Q-000000000{n}", 2025, "open_drift", text) for n, text in enumerate(TEXTS)])
    return empty_project


def entries(paths: Paths, wave: int = 2025) -> dict[str, dict]:
    return {e["id"]: e for e in yaml.safe_load(review_file(paths, wave).read_text(encoding="utf-8"))["quotes"]}


def row(quote_id: str, wave: str, text: str, decision: str, note: str = "") -> dict[str, str]:
    return {"id": quote_id, "wave": wave, "question": "open_drift", "text": text, "decision": decision, "note": note}


def read_sheet(sheet: Path) -> list[dict[str, str]]:
    with sheet.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def write_sheet(sheet: Path, rows: list[dict[str, str]]) -> None:
    """As a spreadsheet saves CSV: Windows line ends (the csv module's default)."""
    with sheet.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def answers(*typed: str):
    """input() fed from a list; the end of the list is the end of input (Ctrl-D)."""
    queue = list(typed)

    def ask(_prompt: str) -> str:
        if not queue:
            raise EOFError
        return queue.pop(0)
    return ask


def test_each_answer_is_recorded_with_date_and_reviewer_and_skips_stay_pending(reviewed: Paths) -> None:
    shown: list[str] = []
    quotes = wave_review(reviewed, 2025)
    tally = review_interactively(reviewed, quotes, ask=answers("a", "maybe", "R", "s"), show=shown.append,
                                 reviewer="Sam", today=DAY)
    saved = entries(reviewed)
    assert saved["Q-0000000000"] == {"id": "Q-0000000000", "question": "open_drift", "status": "approved",
                                         "text": TEXTS[0], "decided": "2026-05-04", "reviewer": "Sam"}
    assert saved["Q-0000000001"]["status"] == "rejected" and saved["Q-0000000001"]["decided"] == "2026-05-04"
    assert saved["Q-0000000002"]["status"] == "pending" and "decided" not in saved["Q-0000000002"]
    assert saved["Q-0000000003"]["status"] == "pending"  # input ended before it
    assert (tally["approved"], tally["rejected"], tally["skip"], tally["not reached"]) == (1, 1, 1, 1)
    assert any("'maybe' is not one of the answers" in s for s in shown)
    assert any(TEXTS[0] in s and "Q-0000000000" in s for s in shown)  # the reviewer sees id and words


def test_stopping_keeps_the_decisions_made_before(reviewed: Paths) -> None:
    review_interactively(reviewed, wave_review(reviewed, 2025), ask=answers("r", "q", "a"), show=lambda _s: None,
                         today=DAY)
    assert [e["status"] for e in entries(reviewed).values()] == ["rejected", "pending", "pending", "pending"]


def test_the_csv_round_trip_records_only_changed_decisions(reviewed: Paths, tmp_path: Path) -> None:
    sheet = tmp_path / "quotes-2025.csv"
    assert export_csv(reviewed, 2025, sheet) == 4
    raw = sheet.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel opens it as UTF-8
    with sheet.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "wave", "question", "text", "decision", "note"]
    assert rows[1]["text"] == "'" + TEXTS[1]  # a spreadsheet shows it, never runs it
    assert [r["decision"] for r in rows] == ["", "", "", ""]
    rows[0]["decision"], rows[2]["decision"], rows[2]["note"] = "approve", "Reject", "names the employer's town"
    with sheet.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert import_csv(reviewed, sheet, reviewer="Ana", today=DAY) == {2025: {"approved": 1, "rejected": 1}}
    saved = entries(reviewed)
    assert (saved["Q-0000000000"]["status"], saved["Q-0000000000"]["reviewer"]) == ("approved", "Ana")
    assert saved["Q-0000000002"] == {"id": "Q-0000000002", "question": "open_drift", "status": "rejected",
                                         "text": TEXTS[2], "decided": "2026-05-04", "reviewer": "Ana",
                                         "note": "names the employer's town"}
    assert saved["Q-0000000001"]["text"] == TEXTS[1]  # the published words are never taken from the sheet
    # exported again and imported unchanged a day later: nothing is re-dated
    again = tmp_path / "again.csv"
    export_csv(reviewed, 2025, again)
    assert import_csv(reviewed, again, reviewer="Bo", today=DAY + dt.timedelta(days=1)) == {2025: {}}
    assert entries(reviewed)["Q-0000000000"]["decided"] == "2026-05-04"
    assert entries(reviewed)["Q-0000000000"]["reviewer"] == "Ana"


def test_export_never_replaces_a_file(reviewed: Paths, tmp_path: Path) -> None:
    sheet = tmp_path / "quotes.csv"
    sheet.write_text("half-reviewed work", encoding="utf-8")
    with pytest.raises(QuoteReviewError, match="already exists"):
        export_csv(reviewed, 2025, sheet)
    assert sheet.read_text(encoding="utf-8") == "half-reviewed work"


def test_a_bad_row_names_the_row_and_column_and_nothing_changes(reviewed: Paths, tmp_path: Path) -> None:
    before = review_file(reviewed, 2025).read_bytes()
    sheet = tmp_path / "bad.csv"
    # each row's text as exported (quote text is not edited in the sheet)
    write_sheet(sheet, [row("Q-0000000000", "2025", TEXTS[0], "approve"),  # row 2: fine
                        row("Q-0000000001", "2025", TEXTS[1], "aprove"),   # row 3: misspelt decision
                        row("Q-9999999999", "2025", "x", "reject"),        # row 4: unknown id
                        row("Q-0000000002", "25", TEXTS[2], "reject"),     # row 5: not a wave
                        row("Q-0000000003", "2024", TEXTS[3], "reject"),   # row 6: a wave with no review file
                        row("Q-0000000000", "2025", TEXTS[0], "reject")])  # row 7: the same quote twice
    with pytest.raises(QuoteReviewError) as error:
        import_csv(reviewed, sheet, today=DAY)
    message = str(error.value)
    assert "nothing was changed" in message and str(sheet) in message
    assert "row 3, column decision" in message and "'aprove'" in message
    assert "row 4, column id" in message and "Q-9999999999" in message
    assert "row 5, column wave" in message and "row 6, column wave" in message
    assert "row 7, column id" in message and "twice" in message
    assert "row 2" not in message
    assert review_file(reviewed, 2025).read_bytes() == before


def test_a_csv_without_the_columns_is_refused(reviewed: Paths, tmp_path: Path) -> None:
    sheet = tmp_path / "other.csv"
    sheet.write_text("name,comment\nx,y\n", encoding="utf-8")
    with pytest.raises(QuoteReviewError, match="missing: id, wave, decision"):
        import_csv(reviewed, sheet)


def test_a_rebuild_keeps_the_date_reviewer_and_note_of_each_decision(loaded: Paths) -> None:
    rules = QuoteRules(min_words=8, max_words=80)
    refresh_review_files(loaded, rules)
    first = wave_review(loaded, 2024)[0]
    review_interactively(loaded, [first], ask=answers("a"), show=lambda _s: None, reviewer="Sam", today=DAY)
    refresh_review_files(loaded, rules)
    kept = entries(loaded, 2024)[first.id]
    assert (kept["status"], kept["decided"], kept["reviewer"]) == ("approved", "2026-05-04", "Sam")


def test_a_sheet_saved_by_a_french_locale_spreadsheet_is_read(reviewed: Paths, tmp_path: Path) -> None:
    # Excel in a French locale saves "CSV" with ";" between cells and Windows-1252 text ("é").
    sheet = tmp_path / "quotes-2025.csv"
    export_csv(reviewed, 2025, sheet)
    with sheet.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["decision"], rows[0]["note"] = "reject", "nomme la ville de l'employeur, déjà dit"
    with sheet.open("w", encoding="cp1252", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    assert import_csv(reviewed, sheet, reviewer="Ana", today=DAY) == {2025: {"rejected": 1}}
    assert entries(reviewed)["Q-0000000000"]["note"] == "nomme la ville de l'employeur, déjà dit"


def test_review_files_say_their_source_and_practice_ones_go_once_real_answers_are_loaded(
        loaded: Paths, tmp_path: Path) -> None:
    from builders import response, write_export
    from conftest import make_project
    from pipeline.anonymity import load_privacy_rules
    from pipeline.instrument import load_instrument
    from pipeline.run import run_load

    empty_project = make_project(tmp_path / "real")

    rules = load_privacy_rules(loaded.surveys / "privacy.yaml").quotes
    refresh_review_files(loaded, rules)  # the synthetic consultation
    practice = review_file(loaded, 2025)
    assert yaml.safe_load(practice.read_text(encoding="utf-8"))["source"] == "synthetic"
    assert "SYNTHETIC consultation" in practice.read_text(encoding="utf-8")

    # Real exports into a new warehouse, with the practice files left behind (and one written before
    # files said their source, which is kept: it may hold real decisions).
    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    write_export(empty_project.raw / "2025" / "export.csv", instrument, [response(i) for i in range(1, 4)])
    run_load(empty_project)
    left = review_file(empty_project, 2023)
    left.parent.mkdir(parents=True)
    left.write_bytes(practice.read_bytes())
    old = review_file(empty_project, 2024)
    old.parent.mkdir(parents=True)
    old.write_text("quotes:\n- {id: Q-0000000001, question: open_drift, status: approved, text: Kept.}\n",
                   encoding="utf-8")
    refresh_review_files(empty_project, rules)
    assert not left.exists() and old.exists()


def test_approving_a_quote_whose_text_was_edited_is_refused_and_nothing_is_published(
        loaded: Paths, tmp_path: Path, capsys) -> None:
    # A reviewer removes words (a name, say) from a quote's text in the sheet and approves it: the
    # report would publish the stored words, so the whole import is refused.
    root = ["--root", str(loaded.root)]
    sheet = tmp_path / "quotes-2025.csv"
    assert main([*root, "quotes"]) == 0
    assert main([*root, "quotes", "export", "--wave", "2025", str(sheet)]) == 0
    rows = read_sheet(sheet)
    original = rows[1]["text"]
    rows[1]["text"], rows[1]["decision"] = " ".join(original.split()[1:]), "approve"
    rows[0]["decision"] = "approve"  # text untouched: fine on its own
    write_sheet(sheet, rows)
    before = review_file(loaded, 2025).read_bytes()
    capsys.readouterr()
    assert main([*root, "quotes", "import", str(sheet)]) == 2
    message = capsys.readouterr().err
    assert f"{sheet}: nothing was changed" in message
    assert f"row 3, column text: the text of quote {rows[1]['id']} was changed" in message
    assert "quote text cannot be edited in the spreadsheet" in message and "row 2" not in message
    assert "write reject" in message and "surveys/deidentification.yaml" in message
    assert "scrubbed from every stored answer" in message and "come back for review" in message
    assert review_file(loaded, 2025).read_bytes() == before
    assert published_quotes(loaded) == []  # neither the original words nor the edit


def test_text_as_a_spreadsheet_gives_it_back_is_not_an_edit(reviewed: Paths, tmp_path: Path) -> None:
    sheet = tmp_path / "quotes-2025.csv"
    export_csv(reviewed, 2025, sheet)
    rows = read_sheet(sheet)
    assert rows[1]["text"].startswith("'=")  # the export's guard against formulas...
    rows[1]["text"] = rows[1]["text"][1:]  # ...which a spreadsheet drops when it saves
    rows[0]["text"] = "  " + TEXTS[0].replace(" ", "\r\n", 1).replace(" chart ", " chart   ") + " \r\n"
    for r in rows:
        r["decision"] = "approve"
    write_sheet(sheet, rows)
    assert import_csv(reviewed, sheet, today=DAY) == {2025: {"approved": 4}}
    assert [e["text"] for e in entries(reviewed).values()] == TEXTS


def test_edited_text_in_a_rejected_or_pending_row_is_not_used_and_the_reviewer_is_told(
        reviewed: Paths, tmp_path: Path) -> None:
    sheet = tmp_path / "quotes-2025.csv"
    export_csv(reviewed, 2025, sheet)
    rows = read_sheet(sheet)
    rows[0]["text"], rows[0]["decision"] = "My manager asks me to chart.", "reject"
    rows[2]["text"] = "We are never paid for the training."  # decision left blank: pending
    rows[3]["decision"] = "approve"
    write_sheet(sheet, rows)
    shown: list[str] = []
    assert import_csv(reviewed, sheet, today=DAY, show=shown.append) == {2025: {"rejected": 1, "approved": 1}}
    saved = entries(reviewed)
    assert (saved["Q-0000000000"]["status"], saved["Q-0000000000"]["text"]) == ("rejected", TEXTS[0])
    assert (saved["Q-0000000002"]["status"], saved["Q-0000000002"]["text"]) == ("pending", TEXTS[2])
    (note,) = shown
    assert str(sheet) in note and "quote text cannot be edited in the spreadsheet" in note
    assert "row 2, quote Q-0000000000: recorded as rejected (not published)" in note
    assert "row 4, quote Q-0000000002: left pending (not published" in note
    assert "row 5" not in note and "surveys/deidentification.yaml" in note


def test_a_quote_approved_with_its_text_edited_in_the_review_file_is_refused(loaded: Paths, capsys) -> None:
    # The same mistake in data/review/<wave>/quotes.yaml itself: the words edited, status approved.
    root = ["--root", str(loaded.root)]
    assert main([*root, "quotes"]) == 0
    path = review_file(loaded, 2025)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    first, second = data["quotes"][0], data["quotes"][1]
    first["status"] = "approved"  # untouched words: fine
    second["status"], second["text"] = "approved", " ".join(second["text"].split()[1:])
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(QuoteReviewError, match=f"quote\\(s\\) {second['id']} are approved but their `text` was edited"):
        published_quotes(loaded)
    capsys.readouterr()
    assert main([*root, "quotes"]) == 2  # refreshing the files refuses too, and keeps the file as it is
    message = capsys.readouterr().err
    assert second["id"] in message and first["id"] not in message and "status: rejected" in message
    assert path.read_bytes() == before
    # the words put back as stored: the approval counts
    stored = {q.id: q.text for found in candidates(loaded, QuoteRules()).values() for q in found}
    second["text"] = stored[second["id"]]
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    assert {q.id for q in published_quotes(loaded)} == {first["id"], second["id"]}


def test_a_wave_with_no_open_text_question_has_no_quotes_to_review_and_status_moves_on(tmp_path: Path, capsys) -> None:
    """A questionnaire with no open-text question (here drafted from a Google Forms export): its quotes
    are done once loaded, instead of `status` sending staff to `consult quotes`, which wrote nothing and
    sent them to `consult quotes review`, which said to run `consult quotes`."""
    import json
    import shutil

    from conftest import SHARED_FIXTURES, make_project
    from pipeline.platforms.draft import draft_instrument
    from pipeline.run import run_load

    paths = make_project(tmp_path / "project")
    export = SHARED_FIXTURES / "googleforms" / "googleforms-responses.csv"
    (paths.surveys / "2026").mkdir()
    (paths.surveys / "2026" / "instrument.yaml").write_text(draft_instrument(export).as_yaml(2026), encoding="utf-8")
    rates = paths.surveys / "reference" / "living_wage.yaml"
    rates.write_text(rates.read_text(encoding="utf-8").rstrip("\n") + "\n  2026: {year: 2024}\n", encoding="utf-8")
    (paths.raw / "2026").mkdir()
    shutil.copy(export, paths.raw / "2026" / "form.csv")
    run_load(paths)
    root = ["--root", str(paths.root)]

    assert main([*root, "quotes"]) == 0
    said = capsys.readouterr()
    assert "no quotes to review for wave 2026 (it has no open-text question)" in said.out
    assert "No quote is waiting for review." in said.err and "consult quotes review" not in said.err

    assert main([*root, "quotes", "review", "--wave", "2026"]) == 0
    assert "No quotes to review for wave 2026 (it has no open-text question)." in capsys.readouterr().out

    assert main([*root, "status", "2026", "--json"]) == 0
    step = json.loads(capsys.readouterr().out)["next"]
    assert "quotes" not in (step["command"] or "") and "quotes" not in step["why"]

"""A whole yearly cycle on the synthetic consultation, by the runbook's own commands, with
`consult status --json` checked after every step: right state, right next command."""

from __future__ import annotations

import csv
import io
import json
import shlex

import pytest

from pipeline.cli import main
from pipeline.config import Paths

# The runbook's command lines this test runs, as written in docs/runbook.md (test_runbook checks
# that every runbook command is here or run elsewhere, and this test that each is in the runbook).
CYCLE_LINES = [
    "consult status",
    "consult status 2025",
    "consult wave new 2026 --from 2025",
    "consult run",
    "consult quarantine",
    'consult quotes review --wave 2025 --reviewer "Sam Lee"',
    "consult quotes export --wave 2025 quotes-2025.csv",
    'consult quotes import quotes-2025.csv --reviewer "Sam Lee"',
    "consult audit",
    "consult report",
    "consult release",
    "consult mark-published",
    "consult purge-raw 2025 --dry-run",
    "consult purge-raw 2025",
]


@pytest.fixture
def cycle(project: Paths, monkeypatch: pytest.MonkeyPatch):
    """Run a runbook line (or the same command for another wave) in the project folder."""
    from test_runbook import runbook_commands

    monkeypatch.chdir(project.root)
    written = set(runbook_commands())

    def consult(line: str, stdin: str = "", from_runbook: bool = True) -> int:
        assert not from_runbook or (line in written and line in CYCLE_LINES), line
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return main(["--root", str(project.root), *shlex.split(line)[1:]])
    return consult


def status(project: Paths, capsys, wave: int | None = None) -> dict:
    capsys.readouterr()
    assert main(["--root", str(project.root), "status", *([str(wave)] if wave else []), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def by_wave(state: dict) -> dict[int, dict]:
    return {s["wave"]: s for s in state["waves"]}


def decide_in_spreadsheet(path, decision: str) -> None:
    """What a reviewer does in a spreadsheet: fill every blank decision."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["decision"] = row["decision"] or decision
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_whole_cycle(project: Paths, cycle, capsys) -> None:
    # Before anything: the synthetic exports are there, not loaded.
    assert cycle("consult status") == 0 and cycle("consult status 2025") == 0
    state = status(project, capsys)
    assert state["source"] == "synthetic" and state["next"]["command"] == "consult run"
    assert [e["loaded"] for s in state["waves"] for e in s["exports"]] == [False, False, False]

    # 1. Next year's questionnaire.
    assert cycle("consult wave new 2026 --from 2025") == 0
    new = by_wave(status(project, capsys))[2026]
    assert new["instrument"] == "surveys/2026/instrument.yaml" and new["data"] is None
    assert new["next"]["command"] is None and "data/raw/2026/" in new["next"]["why"]

    # 2-3. Load (and render; quotes are not reviewed yet, so none is published).
    assert cycle("consult run") == 0
    state = status(project, capsys)
    waves = by_wave(state)
    assert all(e["loaded"] for w in (2023, 2024, 2025) for e in waves[w]["exports"])
    for w in (2023, 2024, 2025):
        rows = waves[w]["rows"]
        assert rows["read"] == rows["loaded"] + rows["quarantined"] + rows["excluded"] + rows["duplicates"] > 0
        assert waves[w]["quotes"]["pending"] > 0 and waves[w]["quotes"]["approved"] == 0
    assert state["next"]["command"] == "consult quotes review --wave 2023"

    # 4. The quarantine list.
    assert cycle("consult quarantine") == 0

    # 5. Quotes: one at a time (approve one, reject one, then input ends), then the spreadsheet.
    assert cycle('consult quotes review --wave 2025 --reviewer "Sam Lee"', stdin="a\nr\n") == 0
    quotes = by_wave(status(project, capsys))[2025]["quotes"]
    assert (quotes["approved"], quotes["rejected"]) == (1, 1) and quotes["pending"] > 0
    assert cycle("consult quotes export --wave 2025 quotes-2025.csv") == 0
    decide_in_spreadsheet(project.root / "quotes-2025.csv", "reject")
    assert cycle('consult quotes import quotes-2025.csv --reviewer "Sam Lee"') == 0
    for w in (2023, 2024):  # the same commands, for the older waves
        assert cycle(f"consult quotes export --wave {w} quotes-{w}.csv", from_runbook=False) == 0
        decide_in_spreadsheet(project.root / f"quotes-{w}.csv", "reject")
        assert cycle(f"consult quotes import quotes-{w}.csv", from_runbook=False) == 0
    state = status(project, capsys)
    assert all(s["quotes"]["pending"] == 0 for s in state["waves"] if s["wave"] < 2026)
    assert by_wave(state)[2025]["quotes"]["approved"] == 1
    assert state["audit"]["state"] == "out of date" and state["next"]["command"] == "consult audit"

    # 6. Disclosure audit.
    assert cycle("consult audit") == 0
    state = status(project, capsys)
    assert state["audit"]["state"] == "passed"
    assert state["report"]["state"] == "out of date" and state["next"]["command"] == "consult report"

    # 7. Report (with the release), and the release alone.
    assert cycle("consult report") == 0
    state = status(project, capsys)
    assert state["report"]["state"] == "built" and state["release"]["state"] == "built"
    assert state["release"]["waves"] == [2023, 2024, 2025]
    assert state["next"]["command"] == "consult mark-published" and state["release"]["published"] == {}
    assert cycle("consult release") == 0
    assert status(project, capsys, 2025)["next"]["command"] == "consult mark-published"

    # 8. Publish (copying reports/_site/ is not the pipeline's part), then record it.
    assert cycle("consult mark-published") == 0
    state = status(project, capsys)
    assert list(state["release"]["published"]) == [state["release"]["version"]]
    assert state["release"]["version_taken"] is None
    assert status(project, capsys, 2025)["next"]["command"] == "consult purge-raw 2025"

    # 9. Purge 2025's raw exports: first a dry run, then for real.
    assert cycle("consult purge-raw 2025 --dry-run") == 0
    assert (project.synthetic / "2025" / "qualtrics-2025.csv").exists()
    assert cycle("consult purge-raw 2025") == 0
    assert not (project.synthetic / "2025" / "qualtrics-2025.csv").exists()
    state = status(project, capsys)
    done = by_wave(state)[2025]
    assert done["raw_exports"]["state"] == "purged" and done["raw_exports"]["missing"] == []
    assert done["files_loaded"] == 1 and done["rows"]["read"] > 0  # the warehouse still holds what it brought
    assert done["next"]["command"] is None and "done" in done["next"]["why"]
    assert state["report"]["state"] == "built" and state["release"]["state"] == "built"
    assert state["next"]["command"] == "consult purge-raw 2023"
    # on the screen a finished wave is one line (ten waves would otherwise fill several screens)
    assert main(["--root", str(project.root), "status"]) == 0
    screen = capsys.readouterr().out.splitlines()
    assert f"{done['next']['why']} Details: `consult status 2025`." in screen
    assert not any(line.startswith("Wave 2025 (") for line in screen)
    assert any(line.startswith("Wave 2024 (") for line in screen)  # not finished: in full
    assert main(["--root", str(project.root), "status", "2025"]) == 0
    assert "Wave 2025 (" in capsys.readouterr().out

"""docs/runbook.md: every command in it is a real command, and a test runs it."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from pipeline.cli import build_parser, main
from pipeline.config import Paths
from test_cycle import CYCLE_LINES

RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"
# Runbook commands the cycle test does not run, and the test here that runs them.
RUN_HERE = {"consult inspect data/raw/2025/export.csv"}


def runbook_commands() -> list[str]:
    """Every `consult ...` line inside a fenced code block."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", RUNBOOK.read_text(encoding="utf-8"), flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("consult ")]


def test_the_runbook_has_the_whole_cycle() -> None:
    commands = runbook_commands()
    for step in ("wave new", "run", "quarantine", "quotes review", "quotes export", "quotes import", "audit",
                 "report", "release", "mark-published", "purge-raw", "status"):
        assert any(c.startswith(f"consult {step}") for c in commands), step


@pytest.mark.parametrize("line", runbook_commands())
def test_each_command_parses_and_is_run_by_a_test(line: str) -> None:
    args = build_parser().parse_args(shlex.split(line)[1:])  # argparse exits on anything it does not know
    assert args.handler is not None, f"{line}: names no command that does something"
    assert line in CYCLE_LINES or line in RUN_HERE, f"{line}: no test runs it"


def test_the_inspect_example_runs_on_an_export_where_the_runbook_puts_it(empty_project: Paths,
                                                                          synthetic_exports: Path, capsys,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = RUN_HERE
    target = empty_project.root / shlex.split(line)[-1]
    target.parent.mkdir(parents=True)
    shutil.copyfile(synthetic_exports / "2025" / "qualtrics-2025.csv", target)
    monkeypatch.chdir(empty_project.root)
    assert main(["--root", str(empty_project.root), *shlex.split(line)[1:]]) == 0
    assert "Qualtrics" in capsys.readouterr().out

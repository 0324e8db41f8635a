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
INSPECT = "consult inspect data/raw/2025/export.csv"
UNLOAD = ["consult unload export.csv", "consult unload export.csv --yes"]
RUN_HERE = {INSPECT, *UNLOAD}


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
    line = INSPECT
    target = empty_project.root / shlex.split(line)[-1]
    target.parent.mkdir(parents=True)
    shutil.copyfile(synthetic_exports / "2025" / "qualtrics-2025.csv", target)
    monkeypatch.chdir(empty_project.root)
    assert main(["--root", str(empty_project.root), *shlex.split(line)[1:]]) == 0
    assert "Qualtrics" in capsys.readouterr().out


def test_the_unload_example_takes_back_an_export_moved_out_of_the_raw_folder(empty_project: Paths, capsys) -> None:
    """The runbook's two lines: the first shows and changes nothing, the second removes the file."""
    from builders import response, warehouse_rows, write_export
    from pipeline.instrument import load_instrument
    from pipeline.run import run_load

    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    export = write_export(empty_project.raw / "2025" / "export.csv", instrument, [response(i) for i in range(12)])
    run_load(empty_project)
    export.rename(empty_project.root / "export.csv")  # moved out first, as the runbook says
    ledger = "SELECT count(*) FROM load_ledger"
    dry, confirm = UNLOAD
    assert main(["--root", str(empty_project.root), *shlex.split(dry)[1:]]) == 0
    assert "Would remove export.csv" in capsys.readouterr().out
    assert warehouse_rows(empty_project, ledger) == [(1,)]
    assert main(["--root", str(empty_project.root), *shlex.split(confirm)[1:]]) == 0
    assert "Removed export.csv" in capsys.readouterr().out
    assert warehouse_rows(empty_project, ledger) == [(0,)]

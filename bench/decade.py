"""A decade of yearly waves, as staff would run them: time `consult run` after each wave is added.

A fresh project (the repository's surveys/ and reports/), then for each year from 2023: `consult wave
new YEAR --from YEAR-1` where the wave does not exist yet (with its living-wage rate year, runbook step
1), a synthetic Qualtrics export inside the wave's collection window (pipeline/synth.py) in
data/raw/YEAR/, and a full `consult run`. Ends with a run that has nothing new. Prints one JSON line
per run (wall time, seconds); each run's output, with the time of every line, goes to RUN-YEAR.log
beside the project. Compare runs with each other: absolute times depend on the machine's load.

    .venv/bin/python bench/decade.py WORKDIR [--last 2032] [--responses 800]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import Paths  # noqa: E402
from pipeline.instrument import instrument_path, load_instrument, parse_yaml  # noqa: E402
from pipeline.synth import WaveGenerator, qualtrics_csv  # noqa: E402

FIRST = 2023
RATE_YEAR = 2024  # the latest rates in surveys/reference/living_wage.yaml; later waves reuse them


def consult(project: Path, *args: str, log: Path | None = None) -> tuple[int, float]:
    started, lines = time.monotonic(), []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--root", str(project), *args], cwd=project,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
        for line in child.stdout:
            lines.append(f"{time.monotonic() - started:7.1f} {line.rstrip()}")
    if log is not None:
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if child.returncode and log is None:
        print("\n".join(lines[-20:]), file=sys.stderr)
    return child.returncode, time.monotonic() - started


def fresh_project(project: Path) -> None:
    project.mkdir(parents=True)
    shutil.copytree(ROOT / "surveys", project / "surveys")
    shutil.copytree(ROOT / "reports", project / "reports", ignore=shutil.ignore_patterns("_site", ".quarto", "_freeze"))
    for folder in ("data/raw", "data/warehouse"):
        (project / folder).mkdir(parents=True)


def new_wave(project: Path, wave: int) -> None:
    """Runbook step 1: the questionnaire from last year's, and the living-wage rate year it uses."""
    code, _ = consult(project, "wave", "new", str(wave), "--from", str(wave - 1))
    if code:
        raise SystemExit(f"consult wave new {wave} failed")
    rates = project / "surveys" / "reference" / "living_wage.yaml"
    rates.write_text(rates.read_text(encoding="utf-8").rstrip("\n") + f"\n  {wave}: {{year: {RATE_YEAR}}}\n",
                     encoding="utf-8")


def write_export(project: Path, wave: int, responses: int) -> None:
    paths = Paths(project)
    spec = parse_yaml(paths.synth_file.read_text(encoding="utf-8"))
    living_wage = parse_yaml(paths.living_wage_file.read_text(encoding="utf-8"))
    instrument = load_instrument(instrument_path(paths.surveys, wave))
    rows = WaveGenerator(instrument, spec, living_wage, seed=int(spec["seed"]) + wave).export_rows(responses)
    target = paths.raw / str(wave) / f"export-{wave}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(qualtrics_csv(instrument, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="an empty or missing folder")
    parser.add_argument("--last", type=int, default=2032, help="the last wave (default 2032: ten waves)")
    parser.add_argument("--responses", type=int, default=800, help="responses per wave, before defects")
    args = parser.parse_args(argv)
    project = args.workdir / "project"
    fresh_project(project)
    for wave in range(FIRST, args.last + 1):
        if not (project / "surveys" / str(wave)).exists():
            new_wave(project, wave)
        write_export(project, wave, args.responses)
        code, seconds = consult(project, "run", log=args.workdir / f"run-{wave}.log")
        print(json.dumps({"wave": wave, "waves_loaded": wave - FIRST + 1, "exit": code, "seconds": round(seconds, 1)}),
              flush=True)
        if code:
            return code
    code, seconds = consult(project, "run", log=args.workdir / "run-nothing-new.log")
    print(json.dumps({"wave": None, "nothing_new": True, "exit": code, "seconds": round(seconds, 1)}), flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks: `make bench` (or `.venv/bin/python bench/run.py`).

Stage measured so far: validation of a large synthetic Qualtrics export (ingest + validate, as a
load runs them), against loading the same file into a table with DuckDB's read_csv. Each stage runs
in its own Python process so its peak memory (max resident set size) is its own; times exclude
starting Python and importing the libraries. Results: bench/results/validation.json and a table.

Add a stage: write `stage_<name>(path) -> dict` (what it did, e.g. row counts) and list it in
STAGES; `measure` times it and records its memory.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.instrument import Condition, Instrument, Question, QuestionType, ShowIf, load_instrument  # noqa: E402
from pipeline.synth import QUALTRICS_METADATA, qualtrics_csv  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WAVE = 2025
ROWS = 1_000_000
SEED = 20251126
# Shares of rows with the defects validation has to find (the rest are valid, complete responses).
DEFECTS = {"refused_consent": 0.02, "ineligible": 0.02, "partial": 0.05, "out_of_range": 0.005,
           "repeated_row": 0.01, "resubmitted": 0.01}
COMMENTS = ["More paid hours and a real contract instead of casual shifts.",
            "Peer supervision from someone who has lived experience.",
            "A living wage, benefits and paid sick days."]


def instrument() -> Instrument:
    return load_instrument(ROOT / "surveys" / str(WAVE) / "instrument.yaml")


# --- a large synthetic export, vectorised ---------------------------------------------------------


def generate(path: Path, rows: int, seed: int = SEED) -> Path:
    """Write `rows` responses as a Qualtrics CSV (the synthetic consultation's header, numpy answers)."""
    inst = instrument()
    rng = np.random.default_rng(seed)
    base = rows - round(rows * DEFECTS["repeated_row"]) - round(rows * DEFECTS["resubmitted"])
    frame = _responses(inst, rng, base)
    frame = _with_copies(frame, rng, rows - base, rows * DEFECTS["resubmitted"] / max(1, rows - base))
    columns = [m[0] for m in QUALTRICS_METADATA] + [q.aliases[0] for q in inst.questions]
    path.parent.mkdir(parents=True, exist_ok=True)
    body = path.with_suffix(".body.csv")
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.register("responses", frame[columns])
    con.execute(f"COPY responses TO '{body}' (HEADER false, DELIMITER ',')")
    con.close()
    with path.open("wb") as out, body.open("rb") as rest:
        out.write(qualtrics_csv(inst, []))  # BOM and the three header lines
        shutil.copyfileobj(rest, out, 1 << 24)
    body.unlink()
    return path


def _responses(inst: Instrument, rng: np.random.Generator, n: int) -> pd.DataFrame:
    answers: dict[str, pd.Series] = {}
    chosen: dict[str, np.ndarray] = {}  # concept -> code index per row (-1: not answered), for skip logic
    shown_all = np.ones(n, dtype=bool)
    for question in inst.questions:
        shown = shown_all & _holds(question.show_if, chosen, inst, n)
        answers[question.aliases[0]], chosen[question.id] = _answer(question, inst, rng, shown)
    frame = pd.DataFrame(answers)
    frame = _defects(frame, inst, rng, n)
    return pd.concat([_metadata(rng, n, inst), frame], axis=1)


def _holds(show_if: ShowIf | None, chosen: dict[str, np.ndarray], inst: Instrument, n: int) -> np.ndarray:
    if show_if is None:
        return np.ones(n, dtype=bool)
    if isinstance(show_if, Condition):
        codes = [c.code for c in inst.choices_of(inst.question(show_if.question))]
        wanted = [codes.index(c) for c in show_if.in_ if c in codes]
        return np.isin(chosen.get(show_if.question, np.full(n, -1)), wanted)
    parts = [_holds(p, chosen, inst, n) for p in (show_if.all if hasattr(show_if, "all") else show_if.any)]
    return np.logical_and.reduce(parts) if hasattr(show_if, "all") else np.logical_or.reduce(parts)


def _answer(question: Question, inst: Instrument, rng: np.random.Generator, shown: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    n = len(shown)
    codes = [c.code for c in inst.choices_of(question)]
    if question.id == "consent":
        index = np.where(rng.random(n) < DEFECTS["refused_consent"], 1, 0)
    elif question.id == "eligible_role":
        index = rng.choice(3, size=n, p=[0.85 - DEFECTS["ineligible"], 0.15, DEFECTS["ineligible"]])
    elif codes and question.type is not QuestionType.multiple:
        index = rng.integers(0, len(codes), size=n)
    else:
        index = np.full(n, -1)
    index = np.where(shown, index, -1)
    if question.type is QuestionType.multiple:
        real = [c.code for c in inst.choices_of(question) if not c.missing]
        bits = (rng.random((n, len(real))) < 0.3) @ (1 << np.arange(len(real)))
        bits = np.where(bits == 0, 1 << (len(real) - 1), bits)  # nothing ticked: the last option ("none of these")
        combos = [",".join(c for k, c in enumerate(real) if mask >> k & 1) or "-" for mask in range(1 << len(real))]
        return pd.Series(pd.Categorical.from_codes(np.where(shown, bits, -1), combos)), index
    if question.type is QuestionType.numeric:
        wage = question.id == "hourly_wage"
        values = rng.normal(24, 4, n).clip(16.55, 60).round(2) if wage else (rng.normal(28, 9, n).clip(1, 60) * 2).round() / 2
        return pd.Series(np.where(shown, values, np.nan)), index
    if question.type is QuestionType.text:  # comments; direct identifiers (an email, an employer) left blank
        wanted = shown & (rng.random(n) < 0.3) & (question.disclosure.value != "direct")
        return pd.Series(pd.Categorical.from_codes(np.where(wanted, rng.integers(0, len(COMMENTS), n), -1), COMMENTS)), index
    return pd.Series(pd.Categorical.from_codes(index, codes)), index


def _defects(frame: pd.DataFrame, inst: Instrument, rng: np.random.Generator, n: int) -> pd.DataFrame:
    wage = inst.question("hourly_wage").aliases[0]
    broken = rng.random(n) < DEFECTS["out_of_range"]
    frame[wage] = frame[wage].where(~broken, frame[wage] * 100)  # typed without the decimal point
    return frame


def _metadata(rng: np.random.Generator, n: int, inst: Instrument) -> pd.DataFrame:
    window = inst.collection_window
    seconds = int((window.end - window.start).days * 86400)
    start = pd.Timestamp(window.start) + pd.to_timedelta(rng.integers(0, seconds - 7200, n), unit="s")
    duration = rng.lognormal(np.log(900), 0.45, n).astype(int)
    finished = rng.random(n) >= DEFECTS["partial"]
    ids = pd.Series(np.arange(n)).map(lambda i: f"R_{i:015d}")
    emails = pd.Series(np.arange(n)).map(lambda i: f"person{i}@example.org").where(rng.random(n) < 0.25, None)
    ips = pd.Series(rng.integers(1, 2**32 - 1, n, dtype=np.uint64)).map(
        lambda v: f"{v >> 24 & 255}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}")
    return pd.DataFrame({
        "StartDate": start, "EndDate": start + pd.to_timedelta(duration, unit="s"), "Status": "0", "IPAddress": ips,
        "Progress": np.where(finished, 100, 40), "Duration (in seconds)": duration,
        "Finished": np.where(finished, "1", "0"), "RecordedDate": start + pd.to_timedelta(duration, unit="s"),
        "ResponseId": ids, "RecipientLastName": None, "RecipientFirstName": None, "RecipientEmail": emails,
        "ExternalReference": None, "LocationLatitude": rng.uniform(42, 50, n).round(4),
        "LocationLongitude": rng.uniform(-94, -75, n).round(4), "DistributionChannel": "anonymous", "UserLanguage": "EN",
    })


def _with_copies(frame: pd.DataFrame, rng: np.random.Generator, copies: int, resubmitted_share: float) -> pd.DataFrame:
    """Append repeated rows (same response id) and resubmissions (new id, same answers, days later)."""
    extra = frame.iloc[rng.integers(0, len(frame), copies)].copy()
    again = rng.random(copies) < resubmitted_share
    later = pd.to_timedelta(rng.integers(1, 20, copies), unit="D")
    extra["ResponseId"] = extra["ResponseId"].where(~again, extra["ResponseId"] + "b")
    for column in ("StartDate", "EndDate", "RecordedDate"):
        extra[column] = extra[column].where(~again, extra[column] + later)
    return pd.concat([frame, extra], ignore_index=True)


# --- stages: one function each, run in a process of their own -----------------------------------


def stage_duckdb_read_csv(path: Path) -> dict:
    """The baseline: DuckDB reads the same file into a table (types detected, header rows skipped)."""
    import duckdb

    header = next(csv.reader([qualtrics_csv(instrument(), []).decode("utf-8-sig").splitlines()[0]]))
    con = duckdb.connect()
    started = time.perf_counter()
    con.execute("CREATE TABLE responses AS SELECT * FROM read_csv(?, skip=3, header=false, names=?, delim=',', "
                "quote='\"', escape='\"')", [str(path), header])
    seconds = time.perf_counter() - started
    rows = con.execute("SELECT count(*) FROM responses").fetchall()[0][0]
    return {"seconds": seconds, "rows": rows}


def stage_validation(path: Path) -> dict:
    """What a load does before de-identification: ingest the export, then validate every row."""
    import great_expectations  # noqa: F401  (imported before the clock starts, as in a long run)

    from pipeline.ingest import read_export
    from pipeline.validate import OUTCOMES, validate

    inst = instrument()
    started = time.perf_counter()
    export = read_export(path, inst)
    read = time.perf_counter()
    result = validate(export, inst, b"bench-secret: not a real key")
    done = time.perf_counter()
    return {"seconds": done - started, "ingest_seconds": read - started, "validate_seconds": done - read,
            "rows": export.rows, "outcomes": {o: result.count(o) for o in OUTCOMES},
            "flags": result.flag_counts()}


STAGES: dict[str, Callable[[Path], dict]] = {
    "duckdb_read_csv": stage_duckdb_read_csv,
    "validation": stage_validation,
}


def measure(stage: str, path: Path) -> dict:
    """Run one stage in a fresh Python; return its result with its peak memory."""
    command = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--file", str(path)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench stage {stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_stage(stage: str, path: Path) -> None:
    result = STAGES[stage](path)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps(result, default=str))


# --- the benchmark ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help=f"responses in the synthetic export (default {ROWS:,})")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        _run_stage(args.stage, args.file)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"qualtrics-{args.rows}.csv"
    started = time.perf_counter()
    generate(path, args.rows)
    generated = time.perf_counter() - started
    print(f"generated {args.rows:,} responses ({path.stat().st_size / 1e6:,.0f} MB) in {generated:.1f} s",
          file=sys.stderr)
    stages = {}
    for stage in STAGES:
        print(f"measuring {stage} ...", file=sys.stderr)
        stages[stage] = measure(stage, path)
    size = path.stat().st_size
    path.unlink()
    ratio = stages["validation"]["seconds"] / stages["duckdb_read_csv"]["seconds"]
    report = {
        "what": "validation (ingest + validate) of a synthetic Qualtrics export vs DuckDB read_csv of the same file",
        "rows": args.rows, "file_mb": round(size / 1e6, 1),
        "generate_seconds": round(generated, 2), "stages": stages, "validation_vs_read_csv": round(ratio, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": dt.date.today().isoformat(),
    }
    (RESULTS / "validation.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    print(f"\nValidation benchmark: {report['rows']:,} synthetic responses (bench/results/validation.json)")
    print(f"  {'stage':<28} {'seconds':>9} {'peak memory (MB)':>17}")
    for name, stage in report["stages"].items():
        print(f"  {name:<28} {stage['seconds']:>9.1f} {stage['peak_rss_mb']:>17,.0f}")
        if "ingest_seconds" in stage:
            print(f"    {'ingest':<26} {stage['ingest_seconds']:>9.1f}")
            print(f"    {'validate':<26} {stage['validate_seconds']:>9.1f}")
    print(f"  validation takes {report['validation_vs_read_csv']}x the time of DuckDB read_csv")
    outcomes = report["stages"]["validation"]["outcomes"]
    print("  outcomes: " + ", ".join(f"{k} {v:,}" for k, v in outcomes.items()))


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the pipeline: `make bench` (or `.venv/bin/python bench/run.py [--sizes 10000,100000]`).

For each size (default 10,000, 100,000 and 1,000,000 responses) a synthetic Qualtrics export with
the full 2025 instrument is generated (bench/large_export.py, vectorised) and measured three ways,
each in a fresh Python process of its own:

- baseline: DuckDB loads the same file into a table with read_csv. Every pipeline time is also
  given as a ratio to it, measured in the same run, so the figures hold on a loaded machine;
- stages: ingest, validate, de-identify, load, k-anonymity, indicators and commit, called one
  after the other as pipeline/run.py calls them, in one process (each stage needs the previous
  one's result). Wall time (perf_counter) and CPU time (getrusage, every thread) per stage; memory
  is the process's peak resident set while the stage ran, sampled every 10 ms from /proc, so it
  includes what earlier stages still hold (the process's own peak is `peak_rss_mb`). Times exclude
  starting Python and importing the libraries;
- `consult run`: the whole command, as a user runs it, on a temporary project folder with the
  export in data/raw/2025/ (read, validate, load, indicators, audit, quotes, report, QA report).
  Wall time includes starting Python; CPU time and peak memory come from wait4() (the command and
  every process it waited for; peak = the largest single process).

Also measured: `make report` on a fresh project folder (`consult run` on the built-in synthetic
consultation, which it generates; the virtual environment already built) and the same command
again with nothing new (no-op). Results: bench/results/<timestamp>.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
CONSULT = Path(sys.executable).parent / "consult"
SIZES = (10_000, 100_000, 1_000_000)
WAVE = 2025
STAGES = ("ingest", "validate", "deidentify", "load", "k_anonymity", "indicators", "commit")
# The targets of issue 8.
TARGET_RATIO = 5.0  # whole pipeline at 1,000,000 responses: at most 5x DuckDB read_csv
TARGET_PEAK_MB = 4096
TARGET_REPORT_S = 30.0
TARGET_NOOP_S = 2.0
# Linear: the cost per response at a size is at most this much above the cost at the size below
# (fixed costs make small sizes dearer per response, which is fine).
LINEAR_SLACK = 1.25
TARGET_SIZE = 1_000_000
BUDGET_MINUTES = 19.0  # `make bench` must finish within 20 minutes


# --- workers: each runs in a fresh Python and prints one JSON line ------------------------------


class PeakSampler:
    """The process's resident memory, sampled in a thread; `peak()` since the last `reset()`."""

    def __init__(self, interval: float = 0.01):
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._interval = interval
        self._peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> int:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self.current())

    def reset(self) -> None:
        self._peak = self.current()

    def peak(self) -> int:
        return max(self._peak, self.current())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _own_peak_mb() -> float:
    """VmHWM: this process's own peak resident set (not inherited from the parent at start)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_generate(path: Path, rows: int) -> dict:
    from large_export import generate

    started = time.perf_counter()
    generate(path, rows)
    return {"seconds": time.perf_counter() - started, "file_mb": path.stat().st_size / 1e6}


def worker_baseline(path: Path) -> dict:
    """DuckDB reads the same file into a table (types detected, the three header rows skipped)."""
    import csv

    import duckdb

    header = next(csv.reader([path.open(encoding="utf-8-sig").readline()]))
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    sampler = PeakSampler()
    cpu, started = _cpu_seconds(), time.perf_counter()
    con.execute("CREATE TABLE responses AS SELECT * FROM read_csv(?, skip=3, header=false, names=?, delim=',', "
                "quote='\"', escape='\"')", [str(path), header])
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    rows = con.execute("SELECT count(*) FROM responses").fetchall()[0][0]
    sampler.stop()
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": sampler.peak() / 2**20, "rows": rows}


def worker_stages(path: Path, root: Path) -> dict:
    """Every stage of a load, called as pipeline/run.py calls them, on a fresh warehouse under `root`."""
    import great_expectations  # noqa: F401  (slow to import: before the clock starts, as in a long run)

    from pipeline.anonymity import load_checked_privacy_rules, load_privacy_rules, privacy_path, protect_microdata
    from pipeline.config import Paths
    from pipeline.deidentify import (deidentify, derived_path, load_derivations, load_scrubber,
                                     only_what_deidentify_reads)
    from pipeline.disclosure import load_rules
    from pipeline.indicators import compute, load_checked_catalogue, merged_code_labels
    from pipeline.ingest import read_export
    from pipeline.load import FileLoad, connect, ensure_schema, write_run
    from pipeline.run import return_freed_memory, instrument_for, without_raw_frames
    from pipeline.validate import OUTCOMES, secret_key, validate

    paths = Paths(root)
    instrument = instrument_for(paths, path, WAVE)
    catalogue = load_checked_catalogue(paths.indicators_file, paths.surveys)
    privacy = load_checked_privacy_rules(privacy_path(paths), paths.surveys)
    coarsening = load_privacy_rules(privacy_path(paths)).microdata.numeric_quasi_identifiers
    scrubber = load_scrubber(paths.deid_file)
    derivations = load_derivations(derived_path(paths.surveys))
    disclosure = load_rules(paths.disclosure_file)
    secret = secret_key()
    stages: dict[str, dict] = {}
    sampler = PeakSampler()

    def timed(name: str, work):
        sampler.reset()
        cpu, started = _cpu_seconds(), time.perf_counter()
        value = work()
        stages[name] = {"wall_s": time.perf_counter() - started, "cpu_s": _cpu_seconds() - cpu,
                        "peak_mb": sampler.peak() / 2**20}
        print(json.dumps({"stage": name, **stages[name]}), flush=True)  # kept if the bench runs out of time
        return value

    export = timed("ingest", lambda: read_export(path, instrument))
    validation = timed("validate", lambda: validate(export, instrument, secret, set(), scrubber=scrubber))
    export = only_what_deidentify_reads(export)  # as run.py does from here on
    data = timed("deidentify", lambda: deidentify(export, validation, instrument, scrubber, coarsening, derivations,
                                                    held=privacy.microdata.key_quasi_identifiers))
    item = FileLoad(without_raw_frames(export), instrument, validation, data, True)
    del export, data
    return_freed_memory()
    with connect(paths.warehouse) as con:
        ensure_schema(con)

        def load() -> None:
            con.execute("BEGIN TRANSACTION")
            write_run(con, [item], "bench", paths.living_wage_file)
            return_freed_memory()

        timed("load", load)
        timed("k_anonymity", lambda: protect_microdata(con, privacy))
        timed("indicators", lambda: compute(con, catalogue, disclosure, merged_code_labels(privacy)))
        timed("commit", lambda: con.execute("COMMIT"))
    sampler.stop()
    return {"stages": stages, "rows": item.export.rows, "outcomes": {o: validation.count(o) for o in OUTCOMES},
            "peak_rss_mb": _own_peak_mb()}


class Unfinished(Exception):
    """A measured command that did not finish; `stdout` is what it printed so far."""

    def __init__(self, why: str, stdout: str):
        super().__init__(why)
        self.why = why
        self.stdout = stdout


class OutOfTime(Unfinished):
    """Stopped at the bench's deadline."""


def run_worker(kind: str, *args: str, deadline: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, *args]
    done = run_measured(command, deadline=deadline)
    return {**json.loads(done["stdout"].strip().splitlines()[-1]), "process_peak_mb": done["peak_mb"]}


def run_measured(command: list[str], deadline: float, cwd: Path | None = None) -> dict:
    """Run a command; its wall time, and from wait4() its CPU time and peak memory (largest
    single process among it and the children it waited for). Stops the bench if it fails; raises
    OutOfTime (after stopping it and its children) when it is still running at `deadline`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd, env=_child_env(), start_new_session=True)
        while True:  # Popen.wait() would not give the child's resource usage
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(child.pid, signal.SIGKILL)  # its own session: the command and what it started
                os.wait4(child.pid, 0)
                out.seek(0)
                raise OutOfTime("out of time", out.read().decode(errors="replace"))
            time.sleep(0.05)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if child.returncode != 0:  # the pipeline's own error (its last line), reported in the table
        last = (stderr.strip().splitlines() or [f"exit {child.returncode}"])[-1]
        raise Unfinished(f"failed: {last[:300]}", stdout)
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
            "stdout": stdout}


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CONSULT_HOME"}
    env["TQDM_DISABLE"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


# --- the benchmark ----------------------------------------------------------------------------


def project_folder(root: Path) -> Path:
    """A project folder like a fresh checkout: the repository's surveys/ and reports/ sources, the
    pipeline, empty data/ folders (the same layout as tests/conftest.py's make_project)."""
    root.mkdir(parents=True)
    shutil.copytree(ROOT / "surveys", root / "surveys")
    (root / "pipeline").symlink_to(ROOT / "pipeline")
    shutil.copytree(ROOT / "reports", root / "reports", ignore=shutil.ignore_patterns("_site", ".quarto", "_freeze"))
    for folder in ("data/raw", "data/warehouse"):
        (root / folder).mkdir(parents=True)
    return root


def consult_run(root: Path, deadline: float) -> dict:
    done = run_measured([str(CONSULT), "--root", str(root), "run"], deadline, cwd=root)
    return {k: v for k, v in done.items() if k != "stdout"}


def bench_size(rows: int, work: Path, say, deadline: float) -> dict:
    """One size: generate, baseline, stages, the whole command. Whatever is still running at the
    deadline is stopped and reported as not finished."""
    folder = work / f"size-{rows}"
    export = folder / "export.csv"
    try:
        made = run_worker("generate", "--file", str(export), "--rows", str(rows), deadline=deadline)
        say(f"{rows:,} responses: generated ({made['file_mb']:,.0f} MB) in {made['seconds']:.1f} s; DuckDB baseline")
        baseline = run_worker("baseline", "--file", str(export), deadline=deadline)
    except Unfinished as stopped:
        shutil.rmtree(folder, ignore_errors=True)
        if not isinstance(stopped, OutOfTime):
            raise SystemExit(f"bench: generating or reading the export {stopped.why}") from None
        return {"responses": rows, "unfinished": "out of time before the baseline was measured"}
    say(f"{rows:,} responses: stages, one after the other")
    try:
        stages = run_worker("stages", "--file", str(export), "--root", str(project_folder(folder / "stages")),
                            deadline=deadline)
    except Unfinished as stopped:
        done = [json.loads(line) for line in stopped.stdout.splitlines() if line.startswith('{"stage"')]
        stages = {"stages": {d.pop("stage"): d for d in done}, "outcomes": {}, "peak_rss_mb": None}
        say(f"{rows:,} responses: the stages did not finish ({stopped.why})")
        if isinstance(stopped, OutOfTime):
            shutil.rmtree(folder, ignore_errors=True)
            return _size_result(rows, made, baseline, stages, None, "out of time during the stages")
        unfinished = f"the stages {stopped.why}"
    else:
        unfinished = None
    say(f"{rows:,} responses: the whole `consult run`")
    project = project_folder(folder / "run")
    (project / "data" / "raw" / str(WAVE)).mkdir()
    os.link(export, project / "data" / "raw" / str(WAVE) / "export.csv")
    try:
        whole = consult_run(project, deadline)
    except Unfinished as stopped:
        whole = None
        unfinished = "; ".join(filter(None, [unfinished, f"`consult run` {stopped.why}"]))
        say(f"{rows:,} responses: `consult run` did not finish ({stopped.why})")
    shutil.rmtree(folder, ignore_errors=True)
    return _size_result(rows, made, baseline, stages, whole, unfinished)


def _size_result(rows: int, made: dict, baseline: dict, stages: dict, whole: dict | None,
                 unfinished: str | None = None) -> dict:
    base = baseline["wall_s"]

    def row(m: dict) -> dict:
        return {"wall_s": round(m["wall_s"], 3), "cpu_s": round(m["cpu_s"], 3),
                "peak_mb": None if m["peak_mb"] is None else round(m["peak_mb"], 1),
                "responses_per_s": round(rows / m["wall_s"]) if m["wall_s"] else None,
                "ratio_to_baseline": round(m["wall_s"] / base, 2)}

    result = {
        "responses": rows, "file_mb": round(made["file_mb"], 1), "generate_s": round(made["seconds"], 2),
        "outcomes": stages["outcomes"],
        "baseline_duckdb_read_csv": {**row(baseline), "rows": baseline["rows"]},
        "stages": {name: row(m) for name, m in stages["stages"].items()},
    }
    if unfinished:
        result["unfinished"] = unfinished
    if list(stages["stages"]) == list(STAGES):
        total = {"wall_s": sum(s["wall_s"] for s in stages["stages"].values()),
                 "cpu_s": sum(s["cpu_s"] for s in stages["stages"].values()), "peak_mb": stages["peak_rss_mb"]}
        result["stages_total"] = {**row(total), "us_per_response": round(total["wall_s"] / rows * 1e6, 1)}
    if whole is not None:
        result["consult_run"] = {**row(whole), "us_per_response": round(whole["wall_s"] / rows * 1e6, 1)}
    return result


def bench_make_report(work: Path, say, deadline: float) -> dict:
    project = project_folder(work / "make-report")
    say("`make report` on a fresh project folder (synthetic consultation)")
    result: dict[str, dict | None] = {"make_report": None, "noop_rerun": None}
    try:
        result["make_report"] = consult_run(project, deadline)
        say("the same again, nothing new (no-op)")
        result["noop_rerun"] = consult_run(project, deadline)
    except Unfinished as stopped:
        say(f"`make report` did not finish ({stopped.why})")
    shutil.rmtree(project, ignore_errors=True)
    return {k: v and {m: round(x, 2) for m, x in v.items()} for k, v in result.items()}


def targets(sizes: list[dict], report: dict) -> list[dict]:
    """Each target of issue 8 with its measured value: met, not met, or not measured (a size not
    asked for, or a step the bench ran out of time for)."""
    at_target = next((s for s in sizes if s["responses"] == TARGET_SIZE), None)
    whole = at_target.get("consult_run") if at_target else None
    why = ("not asked for (--sizes)" if at_target is None else f"not measured: {at_target.get('unfinished')}")
    ordered = [s for s in sorted(sizes, key=lambda s: s["responses"]) if "stages_total" in s]
    per = [s["stages_total"]["us_per_response"] for s in ordered]
    linear = all(b <= a * LINEAR_SLACK for a, b in zip(per, per[1:]))

    def verdict(ok: bool) -> str:
        return "met" if ok else "not met"

    def timed(name: str, limit: float) -> tuple[str, str]:
        m = report.get(name)
        missing = "skipped (--skip-make-report)" if report.get("skipped") else "out of time"
        return (f"{m['wall_s']:.2f} s", verdict(m["wall_s"] < limit)) if m else (missing, "not measured")

    rows = [
        (f"whole pipeline (`consult run`) at {TARGET_SIZE:,} responses within {TARGET_RATIO:g}x the DuckDB read_csv "
         "baseline",
         (f"{whole['ratio_to_baseline']:.1f}x ({whole['wall_s']:.1f} s against "
          f"{at_target['baseline_duckdb_read_csv']['wall_s']:.2f} s)", verdict(whole["ratio_to_baseline"] <= TARGET_RATIO))
         if whole else (why, "not measured")),
        (f"peak memory of `consult run` at {TARGET_SIZE:,} responses under {TARGET_PEAK_MB / 1024:g} GB",
         (f"{whole['peak_mb'] / 1024:.2f} GB", verdict(whole["peak_mb"] < TARGET_PEAK_MB)) if whole else (why, "not measured")),
        (f"cost linear in responses: time of all stages per response grows at most {LINEAR_SLACK:g}x from one size "
         "to the next",
         (", ".join(f"{s['responses']:,}: {p:,.0f} µs" for s, p in zip(ordered, per)),
          verdict(linear) if len(per) > 1 else "not measured")),
        (f"`make report` on the synthetic consultation, after set-up, under {TARGET_REPORT_S:g} s",
         timed("make_report", TARGET_REPORT_S)),
        (f"re-run with nothing new under {TARGET_NOOP_S:g} s", timed("noop_rerun", TARGET_NOOP_S)),
    ]
    return [{"target": target, "measured": measured, "status": status} for target, (measured, status) in rows]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    release = Path("/etc/os-release")
    system = next((line.split("=", 1)[1].strip('"') for line in release.read_text().splitlines()
                   if line.startswith("PRETTY_NAME=")), "") if release.exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(memory / 2**20, 1),
            "os": f"{system} ({platform.system()} {platform.release()})".strip(),
            "python": platform.python_version(), "duckdb": version("duckdb"), "pandas": version("pandas"),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


# --- output -------------------------------------------------------------------------------------


STAGE_NAMES = {"ingest": "ingest (read the export)", "validate": "validate (every row, Great Expectations)",
               "deidentify": "de-identify (keys, scrubbing)", "load": "load (write the warehouse tables)",
               "k_anonymity": "k-anonymity (generalise, suppress)", "indicators": "indicators (compute, disclosure)",
               "commit": "commit (to disk)"}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py); do not edit by hand. Raw figures: "
        "`bench/results/<timestamp>.json` (not in git).",
        "",
        f"Run on {result['date']}: {m['cpu']}, {m['cores']} cores, {m['ram_gb']:g} GB RAM, {m['os']}; "
        f"Python {m['python']}, DuckDB {m['duckdb']}, pandas {m['pandas']}. Load average when the bench "
        f"started: {', '.join(str(x) for x in m['load_average_at_start'])}. The machine may be shared (other "
        "work running at the same time slows every figure); the ratios to the DuckDB baseline, measured "
        "in the same run, are the figures to compare across runs. The whole bench took "
        f"{result['bench_minutes']:.1f} minutes.",
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
        *(f"| {t['target']} | {t['measured']} | **{t['status']}** |" for t in result["targets"]),
        "",
    ]
    for size in result["sizes"]:
        lines += _size_table(size)
    lines += [
        "## `make report` and a no-op re-run",
        "",
        "| what | wall (s) | CPU (s) | peak memory (MB) |",
        "|---|---:|---:|---:|",
        *(_report_row(name, result["make_report"].get(key)) for key, name in (
            ("make_report", "`make report` on a fresh project folder (synthetic consultation)"),
            ("noop_rerun", "the same again, nothing new"))),
        "",
        "## How it is measured",
        "",
        *_method(),
    ]
    return "\n".join(lines) + "\n"


def _size_table(size: dict) -> list[str]:
    lines = [f"## {size['responses']:,} responses", ""]
    if "baseline_duckdb_read_csv" not in size:
        return lines + [f"Not measured: {size['unfinished']}.", ""]
    outcomes = ", ".join(f"{k} {v:,}" for k, v in size["outcomes"].items()) or "not known (validation not finished)"
    lines += [
        f"Synthetic Qualtrics export of {size['file_mb']:,.1f} MB; outcomes: {outcomes}.",
        "",
        "| what | wall (s) | CPU (s) | peak memory (MB) | responses/s | × baseline |",
        "|---|---:|---:|---:|---:|---:|",
        _row("DuckDB `read_csv` into a table (baseline)", size["baseline_duckdb_read_csv"]),
        *(_row(STAGE_NAMES[name], size["stages"][name]) if name in size["stages"] else
          f"| {STAGE_NAMES[name]} | not finished | | | | |" for name in STAGES),
    ]
    if "stages_total" in size:
        lines.append(_row(f"**all stages** ({size['stages_total']['us_per_response']:,.0f} µs per response)",
                          size["stages_total"]))
    whole = "**`consult run`**, the whole command with the reports"
    if "consult_run" in size:
        lines.append(_row(f"{whole} ({size['consult_run']['us_per_response']:,.0f} µs per response)",
                          size["consult_run"]))
    else:
        lines.append(f"| {whole} | not run | | | | |")
    if size.get("unfinished"):
        lines += ["", f"Not finished: {size['unfinished']}; what did not finish is not measured."]
    return lines + [""]


def _report_row(name: str, m: dict | None) -> str:
    if m is None:
        return f"| {name} | not measured | | |"
    return f"| {name} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | {m['peak_mb']:,.0f} |"


def _row(name: str, m: dict) -> str:
    rate = f"{m['responses_per_s']:,}" if m.get("responses_per_s") else ""
    peak = "" if m["peak_mb"] is None else f"{m['peak_mb']:,.0f}"
    return (f"| {name} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | {peak} | {rate} | "
            f"{m['ratio_to_baseline']:.1f} |")


def _method() -> list[str]:
    return [
        "- Exports: bench/large_export.py draws every answer of the full 2025 instrument at once (numpy), with its",
        "  skip logic, under the Qualtrics header the synthetic consultation uses; each response has its own",
        "  response id, and a few percent carry the defects validation must find. The files validate like real exports.",
        "- Baseline: DuckDB `read_csv` of the same file into an in-memory table, in a fresh process, timed without",
        "  starting Python. `× baseline` is wall time divided by the baseline's wall time at the same size.",
        "- Stages: one fresh process per size runs ingest, validate, de-identify, load, k-anonymity, indicators and",
        "  commit as pipeline/run.py calls them, on an empty warehouse. Times exclude starting Python and imports.",
        "  CPU time counts every thread (DuckDB runs in parallel, so CPU can exceed wall). A stage's peak memory is",
        "  the process's resident memory sampled every 10 ms while the stage ran: it includes what earlier stages",
        "  still hold.",
        "- `consult run`: the whole command in a fresh process, on a temporary project folder with the export in",
        "  data/raw/2025/, including the audit, quotes, the report and the QA report. Wall time includes starting",
        "  Python; CPU and peak memory come from wait4() (the largest single process, kernel processes included).",
        "- `make report`: `consult run` on a fresh project folder with no export (it generates the synthetic",
        "  consultation, loads it and renders both reports), once the virtual environment exists; then again with",
        "  nothing new, which must do no work.",
    ]


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the pipeline against DuckDB read_csv (bench/run.py).")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES),
                        help="comma-separated numbers of responses (default: 10000,100000,1000000)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON results (default bench/results/)")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the Markdown table to write (default docs/benchmarks.md)")
    parser.add_argument("--workdir", type=Path, help="where the exports and project folders go (default: a temp folder)")
    parser.add_argument("--skip-make-report", action="store_true",
                        help="measure only the sizes, not `make report` and the no-op re-run (a quick check)")
    parser.add_argument("--budget-minutes", type=float, default=BUDGET_MINUTES,
                        help=f"stop whatever is still running after this long and report it as not measured "
                             f"(default {BUDGET_MINUTES:g})")
    parser.add_argument("--worker", choices=["generate", "baseline", "stages"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        sys.path.insert(0, str(ROOT))
        work = {"generate": lambda: worker_generate(args.file, args.rows), "baseline": lambda: worker_baseline(args.file),
                "stages": lambda: worker_stages(args.file, args.root)}[args.worker]
        print(json.dumps(work()))
        return 0
    try:
        sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes: expected numbers of responses separated by commas, got {args.sizes!r}")
    if not sizes or min(sizes) < 100:
        parser.error("--sizes: each size must be at least 100 responses")
    run(sizes, args.results, args.docs, args.workdir, args.budget_minutes, args.skip_make_report)
    return 0


def run(sizes: list[int], results: Path, docs: Path, workdir: Path | None, budget_minutes: float,
        skip_make_report: bool = False) -> dict:
    started = time.perf_counter()
    deadline = time.monotonic() + budget_minutes * 60 - 20  # time left to write the results
    now = dt.datetime.now().astimezone()
    say = lambda message: print(f"[{time.perf_counter() - started:6.0f} s] {message}", file=sys.stderr, flush=True)  # noqa: E731
    info = machine()
    with tempfile.TemporaryDirectory(prefix="consult-bench-", dir=workdir) as temp:
        work = Path(temp)
        os.environ["CONSULT_SECRET_FILE"] = str(work / "secret.key")  # never the user's own key
        # The small, fixed measurements first: a large size that runs out of time cannot take them along.
        report = {"skipped": True} if skip_make_report else bench_make_report(work, say, deadline)
        measured = []
        for rows in sizes:
            if measured and "out of time" in measured[-1].get("unfinished", ""):
                measured.append({"responses": rows, "unfinished": "not started: a smaller size ran out of time"})
            else:
                measured.append(bench_size(rows, work, say, deadline))
    result = {"date": now.date().isoformat(), "machine": info, "sizes": measured, "make_report": report,
              "bench_minutes": round((time.perf_counter() - started) / 60, 2)}
    result["targets"] = targets(measured, report)
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"{now.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(markdown(result), encoding="utf-8")
    say(f"results: {out}; table: {docs}")
    for target in result["targets"]:
        print(f"  {target['status']:>12}  {target['target']}: {target['measured']}")
    return result


if __name__ == "__main__":
    sys.exit(main())

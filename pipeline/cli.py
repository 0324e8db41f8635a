"""`consult`: the command line for the PeerWorks consultation pipeline.

Each stage has its own subcommand; `consult run` does them all. Errors are printed as one plain
message (file, row, column, what was expected) and the command exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # Great Expectations' progress bars clutter the summary

from pipeline.config import Paths, project_paths

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    paths = project_paths(Path(args.root) if args.root else None)
    try:
        return args.handler(args, paths) or 0
    except KeyboardInterrupt:
        say("interrupted: nothing was written to the warehouse")
        return 130
    except Exception as exc:  # one clear message, not a traceback, for every known failure
        known = _known_errors()
        if isinstance(exc, known):
            say(f"error: {exc}")
            return EXIT_BAD_INPUT
        raise


def _known_errors() -> tuple[type[BaseException], ...]:
    from pipeline.indicators import IndicatorError
    from pipeline.ingest import ExportError
    from pipeline.instrument import InstrumentError
    from pipeline.load import WarehouseError
    from pipeline.render import RenderError
    from pipeline.run import RunError
    from pipeline.validate import StructuralError

    return (ExportError, InstrumentError, StructuralError, WarehouseError, RunError, IndicatorError, RenderError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consult",
        description=(
            "The PeerWorks consultation pipeline: survey exports in, a public report out. "
            "Stages: synth, ingest, validate, load, indicators, report; `consult run` does them all."
        ),
    )
    parser.add_argument("--root", help="project folder (default: the checkout you are in)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("synth", cmd_synth, "Write the built-in synthetic consultation: invented survey exports "
                "(Qualtrics format) for waves 2023-2025, with the identifiers and defects real exports have.")
    p.add_argument("--out", help="folder to write to (default: data/synthetic/)")
    p.add_argument("--wave", type=int, action="append", help="only this wave (repeatable)")

    p = command("ingest", cmd_ingest, "Read one export and describe it: platform, rows, and what each column "
                "is (question, identifier, metadata, unknown). Changes nothing.")
    _file_args(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = command("validate", cmd_validate, "Check one export against its instrument and say what would happen "
                "to every row (loaded, quarantined and why, excluded, duplicate). Changes nothing.")
    _file_args(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = command("deidentify", cmd_deidentify, "Show what the de-identification of one export would keep and "
                "remove (columns dropped, free-text findings replaced). Prints no identifier. Changes nothing.")
    _file_args(p)

    p = command("load", cmd_load, "Validate, de-identify and load exports into the warehouse, then recompute "
                "the indicators. Files already loaded (same content) are skipped. All or nothing.")
    p.add_argument("files", nargs="*", help="export files (default: everything in data/raw/, or the synthetic "
                   "consultation when data/raw/ holds no export)")
    p.add_argument("--wave", type=int, help="wave of files that are not in a folder named after their wave")

    p = command("indicators", cmd_indicators, "Recompute every indicator from the warehouse, or list the "
                "indicator catalogue with --list.")
    p.add_argument("--list", action="store_true", help="print the catalogue (id, domain, title, definition)")

    p = command("report", cmd_report, "Render the public report (reports/_site/index.html) from the warehouse, "
                "with Quarto when installed, otherwise with the offline engine.")
    p.add_argument("--engine", choices=["auto", "quarto", "offline"], default="auto")
    p.add_argument("--force", action="store_true", help="render even when nothing changed since the last time")

    p = command("run", cmd_run, "The whole pipeline: load new exports (or the synthetic consultation), "
                "recompute indicators, render the report, and print a summary.")
    p.add_argument("--engine", choices=["auto", "quarto", "offline"], default="auto")
    p.add_argument("--no-report", action="store_true", help="stop after the indicators")
    return parser


def _file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a survey export (CSV)")
    p.add_argument("--wave", type=int, help="the wave (default: the folder name, e.g. data/raw/2025/)")


# --- handlers ---------------------------------------------------------------------------------


def cmd_synth(args, paths: Paths) -> int:
    from pipeline.synth import write_synthetic_consultation

    out = Path(args.out) if args.out else None
    files = write_synthetic_consultation(paths, out_dir=out, waves=args.wave, progress=say)
    for f in files:
        print(f)
    say(f"wrote {len(files)} synthetic export(s). Next: `consult run`")
    return 0


def _read(args, paths: Paths):
    from pipeline.ingest import read_export
    from pipeline.instrument import instrument_path, load_instrument
    from pipeline.run import wave_of

    path = Path(args.file)
    wave = wave_of(path.resolve(), args.wave)
    instrument = load_instrument(instrument_path(paths.surveys, wave))
    return read_export(path, instrument), instrument


def cmd_ingest(args, paths: Paths) -> int:
    from pipeline.ingest import describe_columns

    export, instrument = _read(args, paths)
    info = {
        "file": str(export.path), "platform": export.platform, "wave": instrument.wave,
        "header_rows": export.header_rows, "rows": export.rows, "columns": describe_columns(export),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{export.path}: {export.platform} export, wave {instrument.wave}, {export.rows} responses, "
          f"{len(export.columns)} columns")
    for kind in ("question", "identifier", "metadata", "unknown"):
        names = [c.name + (f" -> {c.maps_to}" if c.maps_to and c.maps_to != c.name else "")
                 for c in export.columns if c.kind == kind]
        if names:
            print(f"  {kind} ({len(names)}): " + ", ".join(names))
    missing = [q.id for q in instrument.questions if q.id not in export.answers]
    if missing:
        print(f"  instrument questions not in this file ({len(missing)}): " + ", ".join(missing))
    return 0


def cmd_validate(args, paths: Paths) -> int:
    from pipeline.validate import secret_key, validate

    export, instrument = _read(args, paths)
    result = validate(export, instrument, secret_key())
    counts = {o: result.count(o) for o in ("loaded", "quarantined", "excluded", "duplicate")}
    issues = [
        {"row": i.source_row, "rule": i.rule, "question": i.concept, "value": i.value} for i in result.issues
    ]
    if args.json:
        print(json.dumps({"file": str(export.path), "rows": export.rows, **counts, "issues": issues}, indent=2))
        return 0
    print(f"{export.path}: {export.rows} rows read")
    for outcome, n in counts.items():
        reasons = result.reason[result.outcome == outcome].value_counts()
        detail = ", ".join(f"{r}: {c}" for r, c in reasons.items())
        print(f"  {outcome:<12} {n:>6}" + (f"   ({detail})" if detail else ""))
    for i in issues[:50]:
        value = "" if i["value"] is None else f" (value {i['value']!r})"
        print(f"  row {i['row']}, question {i['question']}: {i['rule']}{value}")
    if len(issues) > 50:
        print(f"  ... and {len(issues) - 50} more; use --json for all")
    return 0


def cmd_deidentify(args, paths: Paths) -> int:
    from pipeline.deidentify import deidentify, load_scrubber
    from pipeline.instrument import Disclosure
    from pipeline.validate import secret_key, validate

    export, instrument = _read(args, paths)
    result = validate(export, instrument, secret_key())
    data = deidentify(export, result, instrument, load_scrubber(paths.deid_file))
    dropped = [c.name for c in export.columns if c.kind in ("identifier", "unknown")]
    direct = [q.id for q in instrument.by_disclosure(Disclosure.direct)]
    print(f"{export.path}: {len(data.respondents)} respondents would be stored under new random keys")
    print(f"  platform columns dropped ({len(dropped)}): " + ", ".join(dropped))
    print(f"  direct-identifier questions dropped ({len(direct)}): " + ", ".join(direct))
    print(f"  coded answers kept: {len(data.answers)}; open answers kept: {len(data.open_text)}, "
          f"with {int(data.open_text['placeholders'].sum()) if len(data.open_text) else 0} findings replaced")
    return 0


def cmd_load(args, paths: Paths) -> int:
    from pipeline.run import run_load

    files = [Path(f) for f in args.files] or None
    summary = run_load(paths, files=files, synthetic=False if files else None, progress=say, wave=args.wave)
    print_summary(summary)
    return 0


def cmd_indicators(args, paths: Paths) -> int:
    from pipeline.indicators import load_checked_catalogue
    from pipeline.run import rebuild_indicators

    if args.list:
        catalogue = load_checked_catalogue(paths.indicators_file, paths.surveys)
        for i in catalogue.indicators:
            print(f"{i.id:<9} {i.domain:<11} {i.title}\n          {i.definition.strip()}")
        return 0
    cells = rebuild_indicators(paths)
    say(f"computed {cells} indicator cells. Next: `consult report`")
    return 0


def cmd_report(args, paths: Paths) -> int:
    from pipeline.report import build_report

    result = build_report(paths, engine=args.engine, progress=say, force=args.force)
    say(f"report rendered by {result.engine}: {result.output_dir / 'index.html'}")
    return 0


def cmd_run(args, paths: Paths) -> int:
    from pipeline.report import build_report
    from pipeline.run import run_load

    started = time.monotonic()
    summary = run_load(paths, progress=say)
    if not args.no_report:
        result = build_report(paths, engine=args.engine, progress=say)
        say(f"report rendered by {result.engine}: {result.output_dir / 'index.html'}")
    print_summary(summary)
    say(f"done in {time.monotonic() - started:.1f} s")
    return 0


def print_summary(summary) -> None:
    print(f"\nRun {summary.run_id} ({summary.source})")
    print(f"  {'file':<28} {'wave':>4} {'read':>7} {'loaded':>7} {'quarant.':>8} {'excluded':>8} {'dupl.':>6}")
    for f in summary.files:
        if f.status == "already loaded":
            print(f"  {f.file:<28} {f.wave:>4}   already loaded (same content): skipped")
        else:
            print(f"  {f.file:<28} {f.wave:>4} {f.read:>7} {f.loaded:>7} {f.quarantined:>8} {f.excluded:>8} {f.duplicates:>6}")
    t = summary.totals()
    print(f"  {'total':<28} {'':>4} {t['read']:>7} {t['loaded']:>7} {t['quarantined']:>8} {t['excluded']:>8} {t['duplicates']:>6}")
    print(f"  files read: {sum(f.status == 'loaded' for f in summary.files)}, skipped: "
          f"{sum(f.status != 'loaded' for f in summary.files)}; indicators "
          f"{'recomputed' if summary.indicators_rebuilt else 'unchanged'}")


if __name__ == "__main__":
    sys.exit(main())

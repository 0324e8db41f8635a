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
    from pipeline.anonymity import PrivacyError
    from pipeline.quotes import QuoteReviewError

    return (ExportError, InstrumentError, StructuralError, WarehouseError, RunError, IndicatorError, RenderError,
            PrivacyError, QuoteReviewError, OSError)


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
    p.add_argument("--platform", default="qualtrics", help="the export format: qualtrics (default), surveymonkey, "
                   "limesurvey, googleforms, kobo, redcap, csv, qualtrics-xlsx, surveymonkey-xlsx, or all (each "
                   "platform in its own folder under data/synthetic-platforms/, to load one at a time)")

    p = command("ingest", cmd_ingest, "Read one export and describe it: platform, rows, and what each column "
                "is (question, identifier, metadata, unknown). Changes nothing.")
    _file_args(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = command("inspect", cmd_inspect, "Name the platform and variant of an export (or questionnaire file), its "
                "encoding, delimiter, rows and columns, and classify every column: direct identifier, platform "
                "metadata, question, unknown. Needs no instrument. Changes nothing.")
    p.add_argument("file", help="a survey export, an XLSForm or a REDCap data dictionary")
    _platform_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = command("instrument", None, "Work with instrument files (surveys/<wave>/instrument.yaml).")
    drafting = p.add_subparsers(title="instrument commands", metavar="ACTION")
    p = drafting.add_parser("draft", help="Write a starting instrument from an export, an XLSForm or a REDCap "
                            "data dictionary", description="Write a starting instrument YAML from a survey export "
                            "(question ids and texts, observed choices, identifier questions marked direct), an "
                            "XLSForm (survey/choices sheets) or a REDCap data dictionary. Check it before use.")
    p.set_defaults(handler=cmd_instrument_draft)
    p.add_argument("file", help="a survey export, an XLSForm or a REDCap data dictionary")
    _platform_arg(p)
    p.add_argument("--wave", type=int, help="the wave (default: the year of the responses' dates)")
    p.add_argument("--out", help="write the YAML here (refuses to replace a file) instead of printing it")

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
    p.add_argument("--list", action="store_true", help="print the catalogue: every indicator's definition, domain, "
                   "unit, population, rules, breakdowns, minimum n and comparability across waves, then the breakdowns")

    p = command("report", cmd_report, "Render the public report (reports/_site/index.html) from the warehouse, "
                "with Quarto when installed, otherwise with the offline engine.")
    p.add_argument("--engine", choices=["auto", "quarto", "offline"], default="auto")
    p.add_argument("--force", action="store_true", help="render even when nothing changed since the last time")

    p = command("qa", cmd_qa, "Render the internal QA report (data/warehouse/qa/index.html, never published): "
                "the load ledger, validation rules and failures, quarantine, exclusions, duplicates, data-quality flags.")
    p.add_argument("--engine", choices=["auto", "quarto", "offline"], default="auto")
    p.add_argument("--force", action="store_true", help="render even when nothing changed since the last time")

    p = command("quarantine", cmd_quarantine, "List the quarantined rows still waiting for a fix at the source: "
                "file, row number, failed rules, columns and (non-identifying) values. To release a row, fix the "
                "response on the survey platform, export again into data/raw/<wave>/ and run `consult run`.")
    p.add_argument("--file", help="only this export (file name as in the load ledger)")
    p.add_argument("--all", action="store_true", help="also rows already released or quarantined again later")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = command("audit", cmd_audit, "Check a finished run for disclosure risk: k-anonymity and l-diversity of the "
                "stored microdata, published figures under the thresholds, hidden figures that can be worked out "
                "from published ones, and any identifier value of the raw exports in any output. Writes "
                "data/warehouse/audit.json; exits non-zero when a check fails.")
    p.add_argument("--json", action="store_true", help="print the JSON report")

    p = command("quotes", cmd_quotes, "Write the quote review files (data/review/<wave>/quotes.yaml): every "
                "candidate quote, scrubbed, with its status. Set a quote's status to approved to publish it.")

    p = command("run", cmd_run, "The whole pipeline: load new exports (or the synthetic consultation), "
                "recompute indicators, render the report and the internal QA report, and print a summary.")
    p.add_argument("--engine", choices=["auto", "quarto", "offline"], default="auto")
    p.add_argument("--no-report", action="store_true", help="stop after the indicators (no report, no QA report)")
    return parser


def _file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a survey export (CSV or .xlsx, from any supported platform)")
    p.add_argument("--wave", type=int, help="the wave (default: the folder name, e.g. data/raw/2025/)")
    _platform_arg(p)


def _platform_arg(p: argparse.ArgumentParser) -> None:
    from pipeline.platforms import PLATFORMS

    p.add_argument("--platform", choices=PLATFORMS, help="read the file by this platform's rules instead of "
                   "the detected one (csv: any table with one header row)")


# --- handlers ---------------------------------------------------------------------------------


def cmd_synth(args, paths: Paths) -> int:
    from pipeline.synth import write_synthetic_consultation

    out = Path(args.out) if args.out else None
    try:
        files = write_synthetic_consultation(paths, out_dir=out, waves=args.wave, progress=say, platform=args.platform)
    except ValueError as exc:  # an unknown --platform: say which ones exist
        say(f"error: {exc}")
        return EXIT_BAD_INPUT
    for f in files:
        print(f)
    say(f"wrote {len(files)} synthetic export(s). Next: `consult run`")
    return 0


def _read(args, paths: Paths):
    from pipeline.ingest import read_export
    from pipeline.run import instrument_for, wave_of

    path = Path(args.file)
    instrument = instrument_for(paths, path, wave_of(path.resolve(), args.wave))
    return read_export(path, instrument, platform=args.platform), instrument


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


def cmd_inspect(args, paths: Paths) -> int:
    from pipeline.ingest import inspect_file

    info = inspect_file(Path(args.file), platform=args.platform)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2, ensure_ascii=False))
        return 0
    where = f"{info.encoding}, '{info.delimiter}'-separated, {info.line_ends} line ends" if info.file_format == "csv" \
        else "Excel workbook"
    print(f"{info.path}: {info.title} ({info.variant}); {where}")
    print(f"  {info.header_rows} header row(s), {info.rows} rows, {len(info.columns)} columns")
    for kind, name in (("identifier", "direct identifier"), ("metadata", "platform metadata"),
                       ("question", "question"), ("unknown", "unknown")):
        names = [c.name + (f" ({c.maps_to})" if c.maps_to else "") for c in info.columns if c.kind == kind]
        if names:
            print(f"  {name} ({len(names)}): " + ", ".join(" ".join(n.split())[:80] for n in names))
    for note in info.notes:
        print(f"  note: {note}")
    return 0


def cmd_instrument_draft(args, paths: Paths) -> int:
    from pipeline.ingest import ExportError
    from pipeline.platforms.draft import draft_instrument
    from pipeline.platforms.reading import ReadError

    path = Path(args.file)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        raise ExportError(f"{out}: already exists; the draft never replaces an instrument (choose another --out)")
    try:
        text = draft_instrument(path, args.platform, _concept_ids(paths)).as_yaml(args.wave)
    except ReadError as exc:
        raise ExportError(f"{path}: {exc}") from None
    if out is None:
        print(text, end="")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    say(f"wrote {out}. Check it, then save it as surveys/<wave>/instrument.yaml")
    return 0


def _concept_ids(paths: Paths) -> frozenset[str]:
    from pipeline.instrument import available_waves, instrument_path, load_instrument

    return frozenset(q.id for wave in available_waves(paths.surveys)
                     for q in load_instrument(instrument_path(paths.surveys, wave)).questions)


def cmd_validate(args, paths: Paths) -> int:
    from pipeline.validate import secret_key, validate

    export, instrument = _read(args, paths)
    result = validate(export, instrument, secret_key())
    counts = {o: result.count(o) for o in ("loaded", "quarantined", "excluded", "duplicate")}
    issues = [
        {"row": i.source_row, "rule": i.rule, "question": i.concept, "column": i.column, "value": i.value}
        for i in result.issues
    ]
    flags = result.flag_counts()
    if args.json:
        print(json.dumps({"file": str(export.path), "rows": export.rows, **counts, "issues": issues, "flags": flags},
                         indent=2))
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
    if flags:
        print("  data-quality flags among the rows that would load: " + ", ".join(f"{k} {v}" for k, v in flags.items()))
    return 0


def cmd_deidentify(args, paths: Paths) -> int:
    from pipeline.anonymity import load_privacy_rules, privacy_path
    from pipeline.deidentify import deidentify, load_scrubber
    from pipeline.instrument import Disclosure
    from pipeline.validate import secret_key, validate

    export, instrument = _read(args, paths)
    result = validate(export, instrument, secret_key())
    micro = load_privacy_rules(privacy_path(paths)).microdata
    data = deidentify(export, result, instrument, load_scrubber(paths.deid_file), micro.numeric_quasi_identifiers)
    dropped = [c.name for c in export.columns if c.kind in ("identifier", "unknown")]
    direct = [q.id for q in instrument.by_disclosure(Disclosure.direct)]
    print(f"{export.path}: {len(data.respondents)} respondents would be stored under new random keys")
    print(f"  platform columns dropped ({len(dropped)}): " + ", ".join(dropped))
    print(f"  direct-identifier questions dropped ({len(direct)}): " + ", ".join(direct))
    print(f"  coded answers kept: {len(data.answers)}; open answers kept: {len(data.open_text)}, "
          f"with {int(data.open_text['placeholders'].sum()) if len(data.open_text) else 0} findings replaced")
    for concept, rule in micro.numeric_quasi_identifiers.items():
        print(f"  {concept}: {rule.describe()}")
    print("  key quasi-identifiers are generalised for k-anonymity when loaded (surveys/privacy.yaml)")
    return 0


def cmd_load(args, paths: Paths) -> int:
    from pipeline.run import run_load

    files = [Path(f) for f in args.files] or None
    summary = run_load(paths, files=files, synthetic=False if files else None, progress=say, wave=args.wave)
    print_summary(summary)
    return 0


def cmd_indicators(args, paths: Paths) -> int:
    from pipeline.indicators import catalogue_listing, load_checked_catalogue
    from pipeline.run import rebuild_indicators

    if args.list:
        catalogue = load_checked_catalogue(paths.indicators_file, paths.surveys)
        print(catalogue_listing(catalogue, paths.surveys))
        return 0
    cells = rebuild_indicators(paths)
    say(f"computed {cells} indicator cells. Next: `consult report`")
    return 0


def cmd_report(args, paths: Paths) -> int:
    from pipeline.report import build_report

    if not _audit_passes(paths):
        return EXIT_FAILED
    result = build_report(paths, engine=args.engine, progress=say, force=args.force)
    say(f"report rendered by {result.engine}: {result.output_dir / 'index.html'}")
    return 0 if _audit_passes(paths, rendered=True) else EXIT_FAILED


def _audit_passes(paths: Paths, rendered: bool = False) -> bool:
    """The disclosure audit gate: no public report from a run that fails it. After rendering, the
    pages are checked too, and removed if they hold anything they must not."""
    import shutil

    from pipeline.audit import audit_file, run_audit

    report = run_audit(paths)
    for line in report.lines():
        say(line)
    if report.passed:
        return True
    if rendered:
        shutil.rmtree(paths.site, ignore_errors=True)
        say(f"the rendered report failed the disclosure audit and was removed ({audit_file(paths)})")
    else:
        say(f"the disclosure audit failed: the public report is not rendered ({audit_file(paths)})")
    return False


def cmd_audit(args, paths: Paths) -> int:
    from pipeline.audit import run_audit

    report = run_audit(paths)
    if args.json:
        print(report.to_json(), end="")
    else:
        print("\n".join(report.lines()))
    return 0 if report.passed else EXIT_FAILED


def cmd_quotes(args, paths: Paths) -> int:
    from pipeline.anonymity import load_privacy_rules, privacy_path
    from pipeline.quotes import refresh_review_files, review_file

    for wave, tally in refresh_review_files(paths, load_privacy_rules(privacy_path(paths)).quotes).items():
        counts = ", ".join(f"{tally.get(s, 0)} {s}" for s in ("approved", "pending", "rejected"))
        print(f"{review_file(paths, wave)}: {counts}")
    return 0


def cmd_run(args, paths: Paths) -> int:
    from pipeline.report import build_qa_report, build_report
    from pipeline.run import run_load

    started = time.monotonic()
    summary = run_load(paths, progress=say)
    cmd_quotes(args, paths)
    if not _audit_passes(paths):
        print_summary(summary)
        return EXIT_FAILED
    if not args.no_report:
        result = build_report(paths, engine=args.engine, progress=say)
        say(f"report rendered by {result.engine}: {result.output_dir / 'index.html'}")
        qa = build_qa_report(paths, engine=args.engine, progress=say)
        say(f"internal QA report (never publish it): {qa.output_dir / 'index.html'}")
        if not _audit_passes(paths, rendered=True):
            print_summary(summary)
            return EXIT_FAILED
    print_summary(summary)
    say(f"done in {time.monotonic() - started:.1f} s")
    return 0


def cmd_qa(args, paths: Paths) -> int:
    from pipeline.report import build_qa_report

    result = build_qa_report(paths, engine=args.engine, progress=say, force=args.force)
    say(f"internal QA report (never publish it) rendered by {result.engine}: {result.output_dir / 'index.html'}")
    return 0


def cmd_quarantine(args, paths: Paths) -> int:
    from dataclasses import asdict

    from pipeline.load import connect
    from pipeline.qa import problem_text, quarantined_rows

    with connect(paths.warehouse, read_only=True):  # a clear error when there is no warehouse yet
        pass
    rows = [r for r in quarantined_rows(paths.warehouse, args.file) if args.all or r.status == "waiting"]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("No quarantined row" + (" in " + args.file if args.file else "") + " is waiting for a fix.")
        return 0
    for name in dict.fromkeys(r.file for r in rows):
        mine = [r for r in rows if r.file == name]
        print(f"{name} (wave {mine[0].wave}): {len(mine)} quarantined row(s)")
        for r in mine:
            status = "" if r.status == "waiting" else f" [{r.status}: {r.note}]"
            print(f"  row {r.row}{status}: " + "; ".join(problem_text(p) for p in r.problems))
    print("Fix each response on the survey platform, export again into data/raw/<wave>/ and run `consult run`: "
          "the fixed rows load, the rows loaded before count as duplicates.")
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
    read = [f for f in summary.files if f.status == "loaded"]
    broken = [f.file for f in read if f.read != f.loaded + f.quarantined + f.excluded + f.duplicates]
    if read:
        print("  read = loaded + quarantined + excluded + duplicates: "
              + (f"DOES NOT HOLD for {', '.join(broken)}" if broken else "holds for every file"))
    flagged = [f for f in read if f.flags]
    if flagged:
        print("  data-quality flags among loaded respondents (reported, not set aside):")
        for f in flagged:
            print(f"    {f.file}: " + ", ".join(f"{name} {n}" for name, n in f.flags.items()))
    if any(f.quarantined for f in read):
        print("  quarantined rows: `consult quarantine` lists them with what to fix; details in the QA report")


if __name__ == "__main__":
    sys.exit(main())

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
    # One write per line: the report and the QA report render side by side, and print() writes the
    # line and its end separately, so two threads' lines could run together.
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):  # `consult`, or `consult wave` without an action: its own help
        getattr(args, "help_parser", parser).print_help()
        return 0
    paths = project_paths(Path(args.root) if args.root else None)
    try:
        return args.handler(args, paths) or 0
    except KeyboardInterrupt:
        say("interrupted: nothing was written to the warehouse")
        return 130
    except BrokenPipeError:  # the output went to `head` or a pager that closed: not an error of the run
        _quiet_stdout()
        return 0
    except Exception as exc:  # one clear message, not a traceback, for every known failure
        known = _known_errors()
        if isinstance(exc, known):
            say(f"error: {exc}")
            return EXIT_BAD_INPUT
        raise


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so that Python's own flush at exit does not fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _known_errors() -> tuple[type[BaseException], ...]:
    from pipeline.deidentify import DerivationError
    from pipeline.indicators import IndicatorError
    from pipeline.ingest import ExportError
    from pipeline.instrument import DefinitionError, InstrumentError
    from pipeline.load import WarehouseError
    from pipeline.render import RenderError
    from pipeline.run import RunError
    from pipeline.validate import RuleCountError, StructuralError
    from pipeline.anonymity import PrivacyError
    from pipeline.quotes import QuoteReviewError
    from pipeline.retention import RetentionError
    from pipeline.wave import WaveError
    from pipeline.release import ReleaseError
    from pipeline.translations import TranslationError  # `consult report --lang fr` after a new indicator
    from pipeline.unload import UnloadError

    return (ExportError, InstrumentError, StructuralError, WarehouseError, RunError, IndicatorError, RenderError,
            PrivacyError, QuoteReviewError, RetentionError, WaveError, ReleaseError, DerivationError, OSError,
            RuleCountError, TranslationError, UnloadError, DefinitionError)


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
        p.set_defaults(handler=handler, help_parser=p)
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
    p.add_argument("--engine", choices=["auto", "quarto", "offline"], default="auto",
                   help="how to render: Quarto, the built-in offline engine, or auto (Quarto when installed)")
    p.add_argument("--force", action="store_true", help="render even when nothing changed since the last time")
    p.add_argument("--pdf", action="store_true", help="also the printable PDF, reports/_site/peer-support-"
                   "consultation.pdf (static charts; it runs every page again, so it takes about as long as the site)")
    p.add_argument("--lang", choices=["en", "fr"], default="en", help="fr: also the French report, "
                   "reports/_site/fr/index.html (same figure ids; French text from surveys/indicators.fr.yaml)")
    _verbose_arg(p)

    p = command("qa", cmd_qa, "Render the internal QA report (data/warehouse/qa/index.html, never published): "
                "the load ledger, validation rules and failures, quarantine, exclusions, duplicates, data-quality flags.")
    p.add_argument("--engine", choices=["auto", "quarto", "offline"], default="auto",
                   help="how to render: Quarto, the built-in offline engine, or auto (Quarto when installed)")
    p.add_argument("--force", action="store_true", help="render even when nothing changed since the last time")
    _verbose_arg(p)

    p = command("quarantine", cmd_quarantine, "List the quarantined rows still waiting for a fix at the source: "
                "file, row number, failed rules, columns and (non-identifying) values. To release a row, fix the "
                "response on the survey platform, export again into data/raw/<wave>/ and run `consult run`.")
    p.add_argument("--file", help="only this export: its name (e.g. export.csv) or its path as `consult status` "
                   "shows it (e.g. data/raw/2025/export.csv)")
    p.add_argument("--all", action="store_true", help="also rows already released or quarantined again later")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = command("audit", cmd_audit, "Check a finished run for disclosure risk: k-anonymity and l-diversity of the "
                "stored microdata, published figures under the thresholds, hidden figures that can be worked out "
                "from published ones, and any identifier value of the raw exports in any output. Writes "
                "data/warehouse/audit.json; exits non-zero when a check fails.")
    p.add_argument("--json", action="store_true", help="print the JSON report")

    p = command("quotes", _quotes_next, "Write the quote review files (data/review/<wave>/quotes.yaml): every "
                "candidate quote, scrubbed, with its status. Set a quote's status to approved to publish it.")
    reviewing = p.add_subparsers(title="quote review commands", metavar="ACTION")
    p = reviewing.add_parser("review", help="Approve or reject the quotes waiting for review, one at a time",
                             description="Show each quote waiting for review (already scrubbed) with its id, and ask: "
                             "approve, reject, skip or stop. Each decision is saved at once, with the date.")
    p.set_defaults(handler=cmd_quotes_review)
    p.add_argument("--wave", type=int, help="only this wave (default: every wave)")
    p.add_argument("--reviewer", default="", help="your name, recorded with each decision")
    p = reviewing.add_parser("export", help="Write one wave's quotes to a CSV file for a spreadsheet",
                             description="Write one wave's quotes to a CSV file (columns id, wave, question, text, "
                             "decision, note). Fill in `decision` (approve or reject; blank = not decided) and "
                             "`note`, save as CSV UTF-8, then `consult quotes import FILE.csv`. Do not edit `text`: "
                             "the report publishes the stored words; to remove a name, reject the quote or add the "
                             "name to surveys/deidentification.yaml.")
    p.set_defaults(handler=cmd_quotes_export)
    p.add_argument("--wave", type=int, required=True, help="the wave")
    p.add_argument("file", help="the CSV file to write (never replaces an existing file)")
    p = reviewing.add_parser("import", help="Record the decisions of a reviewed quotes CSV",
                             description="Record the decisions of a CSV written by `consult quotes export`. Every "
                             "row is checked first: if one row is wrong (unknown id, wave or decision, or a quote "
                             "approved whose text was edited: the report would publish the stored words, not the "
                             "edit), the error names it and nothing changes. Edited text in a rejected or pending "
                             "row is not used, and the import says so.")
    p.set_defaults(handler=cmd_quotes_import)
    p.add_argument("file", help="the reviewed CSV file")
    p.add_argument("--reviewer", default="", help="your name, recorded with each decision")

    p = command("release", cmd_release, "Write the open data release (reports/_site/data/): one CSV per indicator, "
                "gaps and changes tables, datapackage.json, CITATION.cff, README.md, SHA256SUMS and release.json, "
                "from the published (disclosure-controlled) figures only, with the settings of surveys/release.yaml. "
                "Refuses, changing nothing, when the disclosure audit fails.")

    p = command("run", cmd_run, "The whole pipeline: load new exports (or the synthetic consultation), "
                "recompute indicators, render the report, the open data release and the internal QA report, and "
                "print a summary.")
    p.add_argument("--engine", choices=["auto", "quarto", "offline"], default="auto",
                   help="how to render: Quarto, the built-in offline engine, or auto (Quarto when installed)")
    p.add_argument("--no-report", action="store_true", help="stop after the indicators (no report, no QA report)")
    p.add_argument("--reload", type=int, action="append", default=[], metavar="WAVE",
                   help="read this wave's loaded exports again and replace what they brought, in the same step "
                        "(after its instrument's `inclusion:` rules changed); they must still be in its folder")
    _verbose_arg(p)

    p = command("status", cmd_status, "Where each wave stands: exports found and loaded, rows quarantined and why, "
                "quotes waiting for review, disclosure audit, report and release built or out of date, raw exports "
                "kept or purged, and the next command to run. Changes nothing.")
    p.add_argument("wave", nargs="?", type=int, help="only this wave")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = command("wave", None, "Start and manage survey waves (surveys/<wave>/).")
    waves = p.add_subparsers(title="wave commands", metavar="ACTION")
    p = waves.add_parser("new", help="Start a new wave from a previous wave's questionnaire",
                         description="Copy surveys/<from>/ to surveys/<wave>/ with the wave number, title year and "
                         "collection window moved to the new year (question ids kept, so indicators stay "
                         "comparable), check that it loads, and list what to review.")
    p.set_defaults(handler=cmd_wave_new)
    p.add_argument("wave", type=int, help="the new wave, e.g. 2026")
    p.add_argument("--from", dest="source", type=int, required=True, help="the wave to start from, e.g. 2025")

    command("mark-published", cmd_mark_published, "Record that the release in reports/_site/ has been published "
            "(step 8 of docs/runbook.md): its version, date and the hash of its figures go into the warehouse. From "
            "then on a report or release with other figures under the same version is refused, so a citation of "
            "that version always names the same numbers. Refuses when the release was not built from the current "
            "data, or a file of it changed.")

    p = command("purge-raw", cmd_purge_raw, "Delete a wave's raw exports (they hold identifiers) once its release "
                "is published, recording each file's name, hash and size in the warehouse. Refuses before.")
    p.add_argument("wave", type=int, help="the wave whose exports to delete")
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")

    p = command("unload", cmd_unload, "Take back an export loaded by mistake (wrong wave folder, a test export, "
                "a file from another consultation): without --yes, only show what would be removed; with --yes, "
                "remove its rows and its respondents' answers from the warehouse in one step and recompute "
                "k-anonymity and the indicators. Move the file out of data/raw/<wave>/ first.")
    p.add_argument("file", help="the export's name as `consult status` or `consult quarantine` show it (e.g. "
                   "export.csv), or the start of its content hash (at least 6 characters)")
    p.add_argument("--wave", type=int, help="the wave, when exports of several waves have that name")
    p.add_argument("--yes", action="store_true", help="really remove it (without: only show what would go)")
    return parser


def _file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a survey export (CSV or .xlsx, from any supported platform)")
    p.add_argument("--wave", type=int, help="the wave (default: the folder name, e.g. data/raw/2025/)")
    _platform_arg(p)


def _verbose_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true", help="while rendering, also name each code cell as it runs "
                   "(to find a slow or stuck one) and the render engine's own messages")


def _render_progress(args) -> Callable[[str], None]:
    """What rendering prints: one line per page, and the cell-by-cell detail only with --verbose."""
    from pipeline.render import Detail

    verbose = getattr(args, "verbose", False)
    return lambda message: None if isinstance(message, Detail) and not verbose else say(message)


def _rendered(what: str, result) -> str:
    """The line naming a rendered report, or saying it is unchanged (nothing changed since it was rendered)."""
    where = result.output_dir / "index.html"
    if not result.rendered:
        return f"{what} unchanged (same data, definitions and report sources): {where}"
    return f"{what} rendered by {result.engine}: {where}"


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


def _read(args, paths: Paths, command: str):
    from pipeline.ingest import read_export
    from pipeline.run import RunError, instrument_for, wave_of

    path = Path(args.file)
    # --wave, when given, wins over the folder name (the help says the folder is the default)
    try:
        wave = args.wave if args.wave is not None else wave_of(path.resolve())
    except RunError:
        raise RunError(f"{path}: cannot tell the wave; give it with --wave (e.g. `consult {command} --wave 2025 "
                       f"{args.file}`), or put the file in a folder named after it, e.g. data/raw/2025/") from None
    instrument = instrument_for(paths, path, wave)
    return read_export(path, instrument, platform=args.platform), instrument


def cmd_ingest(args, paths: Paths) -> int:
    from pipeline.ingest import describe_columns

    export, instrument = _read(args, paths, "ingest")
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
    print(f"  {info.header_rows} header row(s), {info.rows} row(s), {len(info.columns)} columns")
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
    wave_folder = out.resolve().parent
    if out.name == "instrument.yaml" and wave_folder.parent == paths.surveys.resolve() and wave_folder.name.isdigit():
        say(f"wrote {out}. Check it (question types, disclosure, inclusion rules), then run "
            f"`consult status {wave_folder.name}`.")
    else:
        say(f"wrote {out}. Check it, then save it as surveys/<wave>/instrument.yaml")
    return 0


def _concept_ids(paths: Paths) -> frozenset[str]:
    from pipeline.instrument import available_waves, instrument_path, load_instrument

    return frozenset(q.id for wave in available_waves(paths.surveys)
                     for q in load_instrument(instrument_path(paths.surveys, wave)).questions)


def _loaded_before(paths: Paths, wave: int) -> tuple[set[str], dict[str, int], dict[str, list[str]]]:
    """The responses the warehouse already holds (keyed ids, content keys of rows without an id, and
    of the wave's rows with one), so that validate predicts what a run would do: a response loaded
    before is a duplicate, not a row to load."""
    import duckdb

    from pipeline.load import connect, seen_content_keys, seen_id_content_keys, seen_response_keys

    if not paths.warehouse.exists():
        return set(), {}, {}
    with connect(paths.warehouse, read_only=True) as con:
        try:
            keys = seen_response_keys(con)
        except duckdb.CatalogException:  # a warehouse file without the schema holds no response
            return set(), {}, {}
        try:
            return keys, seen_content_keys(con), seen_id_content_keys(con, wave)
        except duckdb.BinderException:  # a warehouse made before content keys (the next run adds the column)
            return keys, {}, {}


def _already_loaded(paths: Paths, path: Path):
    """The loaded export with this file's content (a run skips it), or None."""
    import duckdb

    from pipeline.ingest import file_sha256
    from pipeline.load import connect
    from pipeline.unload import loaded_files

    if not paths.warehouse.exists():
        return None
    sha = file_sha256(path)
    with connect(paths.warehouse, read_only=True) as con:
        try:
            return next((f for f in loaded_files(con) if f.sha256 == sha), None)
        except duckdb.CatalogException:  # a warehouse file without the schema holds no load
            return None


def cmd_validate(args, paths: Paths) -> int:
    from pipeline.deidentify import load_scrubber
    from pipeline.validate import secret_key, unknown_columns, validate, value_text

    export, instrument = _read(args, paths, "validate")
    seen, contents, with_ids = _loaded_before(paths, instrument.wave)
    result = validate(export, instrument, secret_key(), seen, scrubber=load_scrubber(paths.deid_file),
                      seen_contents=contents, seen_id_contents=with_ids, checking_only=True)
    counts = {o: result.count(o) for o in ("loaded", "quarantined", "excluded", "duplicate")}
    issues = [
        {"row": i.source_row, "rule": i.rule, "question": i.concept, "column": i.column, "value": i.value}
        for i in result.issues
    ]
    flags = result.flag_counts()
    loaded = _already_loaded(paths, Path(args.file))
    if args.json:
        print(json.dumps({"file": str(export.path), "rows": export.rows, **counts, "issues": issues, "flags": flags,
                          "not_stored": unknown_columns(export), "already_loaded": loaded is not None}, indent=2))
        return 0
    if loaded is not None:
        from pipeline.load import LOAD_TIME

        print(f"{export.path}: already loaded (same content as {loaded.name}, wave {loaded.wave}, loaded "
              f"{loaded.loaded_at.strftime(LOAD_TIME)}): `consult run` skips it, so it would load nothing. "
              "Below: what was checked in it.")
    print(f"{export.path}: {export.rows} rows read")
    for outcome, n in counts.items():
        reasons = result.reason[result.outcome == outcome].value_counts()
        detail = ", ".join(f"{r}: {c}" for r, c in reasons.items())
        print(f"  {outcome:<12} {n:>6}" + (f"   ({detail})" if detail else ""))
    for i in issues[:50]:
        value = "" if i["value"] is None else f" (value {value_text(i['value'])})"
        print(f"  row {i['row']}, question {i['question']}: {i['rule']}{value}")
    if len(issues) > 50:
        print(f"  ... and {len(issues) - 50} more; use --json for all")
    if flags:
        print("  data-quality flags among the rows that would load: " + ", ".join(f"{k} {v}" for k, v in flags.items()))
    if unknown := unknown_columns(export):
        print(f"  {_not_stored_note(unknown, instrument.wave)}")
    return 0


def cmd_deidentify(args, paths: Paths) -> int:
    from pipeline.anonymity import load_privacy_rules, privacy_path
    from pipeline.deidentify import deidentify, load_scrubber
    from pipeline.instrument import Disclosure
    from pipeline.validate import secret_key, validate

    export, instrument = _read(args, paths, "deidentify")
    scrubber = load_scrubber(paths.deid_file)
    result = validate(export, instrument, secret_key(), scrubber=scrubber, checking_only=True)
    micro = load_privacy_rules(privacy_path(paths)).microdata
    data = deidentify(export, result, instrument, scrubber, micro.numeric_quasi_identifiers)
    dropped = [c.name for c in export.columns if c.kind in ("identifier", "unknown")]
    direct = [q.id for q in instrument.by_disclosure(Disclosure.direct)]
    print(f"{export.path}: {len(data.respondents)} respondents would be stored under new random keys")
    print(f"  platform columns dropped ({len(dropped)}): " + ", ".join(dropped))
    print(f"  direct-identifier questions dropped ({len(direct)}): " + ", ".join(direct))
    print(f"  coded answers kept: {len(data.answers)}; open answers kept: {len(data.open_text)}, "
          f"with {int(data.open_text['placeholders'].sum()) if len(data.open_text) else 0} findings replaced")
    asked = {q.id for q in instrument.questions}
    for concept, rule in micro.numeric_quasi_identifiers.items():
        if concept in asked:  # only the rules that apply to this wave's questionnaire
            print(f"  {concept}: {rule.describe()}")
    print("  key quasi-identifiers are generalised for k-anonymity when loaded (surveys/privacy.yaml)")
    return 0


def cmd_load(args, paths: Paths) -> int:
    from pipeline.run import run_load

    files = [Path(f) for f in args.files] or None
    summary = run_load(paths, files=files, synthetic=False if files else None, progress=say, wave=args.wave)
    print_summary(summary, paths.warehouse)
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
    from pipeline.release import check_version
    from pipeline.report import build_report

    check_version(paths)  # a published version keeps its figures: refused before anything is rendered
    before = _audit_passes(paths)
    if before is None:
        return EXIT_FAILED
    progress = _render_progress(args)
    result = build_report(paths, engine=args.engine, progress=progress, force=args.force,
                          french=args.lang == "fr", pdf=args.pdf)
    say(_rendered("report", result))
    if args.pdf:
        from pipeline.report import build_pdf_report

        pdf = build_pdf_report(paths, engine=args.engine, progress=progress, force=args.force)
        say(f"PDF rendered by {pdf.engine}: {pdf.path}")
    audit = _audit_passes(paths, rendered=True, earlier=before, quiet=True)  # said once, after the release
    if audit is None or not _report_labelled(paths):
        return EXIT_FAILED
    if not _release(paths, audit):  # rendering replaces the whole site, release included
        return EXIT_FAILED
    say("Next: open reports/_site/index.html and check it; publish the reports/_site/ folder (docs/runbook.md); "
        "`consult status` says what is left.")
    return 0


def _audit_passes(paths: Paths, rendered: bool = False, earlier=None, quiet: bool = False):
    """The disclosure audit gate: no public report from a run that fails it. After rendering, the
    pages are checked too, and removed if they hold anything they must not (`earlier`: the audit
    before rendering, whose warehouse checks are reused). Returns the audit report when it
    passes, None when it fails. `quiet`: say nothing when it passes (the release's audit, next,
    says it for both)."""
    import shutil

    from pipeline.audit import AuditReport, audit_file, run_audit

    report = run_audit(paths, reuse=earlier)
    # In full the first time in a command; the later passes (the rendered report, the release) say
    # one line when they pass again, so the checks are not listed three times over the summary.
    if earlier is None:
        shown = list(report.lines())
    elif report.passed:
        shown = [] if quiet else [f"Disclosure audit of the rendered report and release: {report.verdict}, same checks"]
    else:
        failing = AuditReport([c for c in report.checks if not c.passed])
        shown = ["Disclosure audit of the rendered report and release: FAILED", *list(failing.lines())[1:]]
    for line in shown:
        say(line)
    if report.passed:
        return report
    if rendered:
        shutil.rmtree(paths.site, ignore_errors=True)
        say(f"the rendered report failed the disclosure audit and was removed ({audit_file(paths)})")
    else:
        say(f"the disclosure audit failed: the public report is not rendered ({audit_file(paths)})")
    return None


def _report_labelled(paths: Paths) -> bool:
    """The synthetic-data gate: a report of the synthetic consultation says so on every page, or it
    is removed (never published as if it were real results)."""
    import shutil

    from pipeline.load import connect, holds_synthetic
    from pipeline.release import SYNTHETIC_MARK

    with connect(paths.warehouse, read_only=True) as con:
        synthetic = holds_synthetic(con)
    pages = sorted(paths.site.rglob("*.html")) if synthetic else []  # French pages (fr/) too
    marks = (SYNTHETIC_MARK, "SYNTHÉTIQUE")
    unlabelled = [str(p.relative_to(paths.site)) for p in pages
                  if not any(mark in p.read_text(encoding="utf-8") for mark in marks)]
    if not unlabelled:
        return True
    shutil.rmtree(paths.site, ignore_errors=True)
    say(f"the data are synthetic but {', '.join(unlabelled)} do not say {SYNTHETIC_MARK}: the report was removed "
        "and nothing is published. Check that every page of reports/ starts with the banner (reports/_banner.qmd), "
        "then run `consult report` again.")
    return False


def _release(paths: Paths, audit=None) -> bool:
    """Write the open data release; with `audit` (the one just made after rendering), scan the
    release's files too, which also puts them in the audit's key: a re-run with nothing new then
    repeats no check. False when that scan fails (the site, release included, is removed)."""
    from pipeline.release import NothingToRelease, build_release

    try:
        build_release(paths, audit=audit, progress=say)
    except NothingToRelease as exc:
        if audit is None:  # `consult release` itself: say so and fail
            raise
        say(f"no open data release: {exc}")
        say(f"Disclosure audit of the rendered report: {audit.verdict}, same checks")  # the one before was quiet
        return True
    return audit is None or _audit_passes(paths, rendered=True, earlier=audit) is not None


def _version_free(paths: Paths) -> bool:
    """The release's version was not published with other figures (else say why, render nothing)."""
    from pipeline.release import VersionPublished, check_version

    try:
        check_version(paths)
    except VersionPublished as exc:
        say(f"error: {exc}")
        return False
    return True


def cmd_mark_published(args, paths: Paths) -> int:
    from pipeline.release import mark_published

    done = mark_published(paths)
    practice = " (the synthetic consultation: practice only, never publish it)" if done.synthetic else ""
    if done.already:
        print(f"Release {done.version} ({done.release_date}) was already recorded as published on "
              f"{done.published_on}, with these same figures{practice}. Nothing changed.")
    else:
        print(f"Recorded: release {done.version} ({done.release_date}) published on {done.published_on}{practice}. "
              f"A report or release with other figures now needs a new version in surveys/release.yaml.")
    if undecided := _undecided_quotes(paths):
        print(f"Note: {undecided} never decided: the published report has none of them (only approved quotes are "
              "published). Deciding them now only matters for a new version.")
    print("Next: `consult status` (then `consult purge-raw WAVE` to delete the raw exports this release holds).")
    return 0


def _undecided_quotes(paths: Paths) -> str:
    """'12 quote(s) of wave 2025' (and of other waves) still pending in the review files, or ''."""
    from pipeline.quotes import review_waves, wave_review

    pending = {wave: sum(q.status == "pending" for q in wave_review(paths, wave)) for wave in review_waves(paths)}
    return " and ".join(f"{n} quote(s) of wave {wave}" for wave, n in sorted(pending.items()) if n)


def cmd_release(args, paths: Paths) -> int:
    _release(paths)
    return 0


def cmd_audit(args, paths: Paths) -> int:
    from pipeline.audit import run_audit

    report = run_audit(paths)
    if args.json:
        print(report.to_json(), end="")
    else:
        print("\n".join(report.lines()))
    say("Next: `consult report` (it renders the report and the release)." if report.passed else
        "Nothing may be published until the audit passes. Next: fix what failed (docs/runbook.md, \"When something "
        "goes wrong\"), then `consult audit` again.")
    return 0 if report.passed else EXIT_FAILED


def cmd_quotes(args, paths: Paths) -> int:
    from pipeline.anonymity import load_privacy_rules, privacy_path
    from pipeline.quotes import refresh_review_files, review_file

    from pipeline.quotes import why_no_quotes

    tallies = refresh_review_files(paths, load_privacy_rules(privacy_path(paths)).quotes)
    for wave, tally in tallies.items():
        if not sum(tally.values()):
            print(f"{review_file(paths, wave)}: no quotes to review for wave {wave} ({why_no_quotes(paths, wave)})")
            continue
        counts = ", ".join(f"{tally.get(s, 0)} {s}" for s in ("approved", "pending", "rejected"))
        print(f"{review_file(paths, wave)}: {counts}")
    return 0


def _quotes_next(args, paths: Paths) -> int:
    """`consult quotes` on its own: write the review files, then say what to do with them."""
    from pipeline.quotes import review_waves, wave_review

    cmd_quotes(args, paths)
    if not any(q.status == "pending" for wave in review_waves(paths) for q in wave_review(paths, wave)):
        say("No quote is waiting for review. Next: `consult status` says what is left.")
        return 0
    say("Next: `consult quotes review` (one quote at a time), or `consult quotes export --wave WAVE FILE.csv` to "
        "review them in a spreadsheet.")
    return 0


def cmd_run(args, paths: Paths) -> int:
    from pipeline.report import build_reports
    from pipeline.run import run_load

    started = time.monotonic()
    summary = run_load(paths, progress=say, reload=args.reload)
    try:
        return _after_load(args, paths, summary, started, build_reports)
    except KeyboardInterrupt:  # the load is committed: "nothing was written" would be wrong here
        print_summary(summary, paths.warehouse)
        done = "the warehouse holds this run's load" if summary.indicators_rebuilt else "the warehouse was not changed"
        say(f"interrupted after the load: {done}; the report, QA report and release may be out of date. "
            "Run `consult run` again to finish them (files already loaded are skipped).")
        return 130


def _after_load(args, paths: Paths, summary, started: float, build_reports) -> int:
    cmd_quotes(args, paths)
    before = _audit_passes(paths)
    if before is None:
        print_summary(summary, paths.warehouse)
        return EXIT_FAILED
    if not args.no_report:
        if not _version_free(paths):
            print_summary(summary, paths.warehouse)
            return EXIT_FAILED
        result, qa = build_reports(paths, engine=args.engine, progress=_render_progress(args))
        say(_rendered("report", result))
        say(_rendered("internal QA report (never publish it)", qa))
        audit = _audit_passes(paths, rendered=True, earlier=before, quiet=True)  # said once, after the release
        if audit is None or not _report_labelled(paths):
            print_summary(summary, paths.warehouse)
            return EXIT_FAILED
        if not _release(paths, audit):
            print_summary(summary, paths.warehouse)
            return EXIT_FAILED
    print_summary(summary, paths.warehouse)
    if stale := _stale_release_settings(paths):  # last, where it is read: before anything is published
        say(f"note: {stale}")
    say(f"done in {time.monotonic() - started:.1f} s")
    return 0


def _stale_release_settings(paths: Paths) -> str | None:
    """`consult status`'s reminder that surveys/release.yaml still names last year's release."""
    from pipeline.load import connect
    from pipeline.status import stale_release_settings

    with connect(paths.warehouse, read_only=True) as con:
        waves = [w for (w,) in con.execute("SELECT DISTINCT wave FROM load_ledger").fetchall()]
    return stale_release_settings(paths, waves)


def cmd_qa(args, paths: Paths) -> int:
    from pipeline.report import build_qa_report

    result = build_qa_report(paths, engine=args.engine, progress=_render_progress(args), force=args.force)
    say(_rendered("internal QA report (never publish it)", result))
    return 0


def cmd_quarantine(args, paths: Paths) -> int:
    from dataclasses import asdict

    from pipeline.load import connect
    from pipeline.qa import by_export, explained_problem, problem_meaning, quarantined_rows, wave_definitions

    from pipeline.unload import loaded_files

    with connect(paths.warehouse, read_only=True) as con:  # a clear error when there is no warehouse yet
        files = loaded_files(con)
    # the ledger names files without their folder: `--file data/raw/2025/export.csv` (as status shows it) works too
    name = Path(args.file).name if args.file else None
    if name is not None and name not in {f.name for f in files}:
        listed = "\n".join("  " + f.line() for f in files) or "  (none: nothing is loaded)"
        say(f"error: {args.file}: no loaded export has this name. Loaded exports:\n{listed}\n"
            "Next: `consult quarantine --file NAME` with one of these names, or `consult quarantine` for every export.")
        return EXIT_BAD_INPUT
    rows = [r for r in quarantined_rows(paths.warehouse, name) if args.all or r.status == "waiting"]
    definitions = wave_definitions(paths.surveys)
    for r in rows:  # what each failed check means, from the wave's own instrument and rules.yaml
        for p in r.problems:
            p["message"] = problem_meaning(p, definitions.get(r.wave))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("No quarantined row" + (" in " + name if name else "") + " is waiting for a fix.")
        return 0
    for heading, mine in by_export(rows):
        print(f"{heading}: {len(mine)} quarantined row(s)")
        for r in mine:
            status = "" if r.status == "waiting" else f" [{r.status}: {r.note}]"
            # one line per problem: a rules.yaml message may itself hold a "; "
            for p in r.problems or [None]:
                print(f"  row {r.row}{status}: " + (explained_problem(p) if p else "no reason recorded"))
    print("Fix each response on the survey platform, export again into data/raw/<wave>/ and run `consult run`: "
          "the fixed rows load, the rows loaded before count as duplicates (recognised by their response id, or, "
          "on platforms without one such as Google Forms, by their unchanged submission time and answers). "
          "Without response ids a fixed row is matched to the row set aside by its submission time (to the "
          "second), email and every other answer: change nothing else in the response. When several rows fit, "
          "none is matched and the run says so.")
    return 0


def cmd_status(args, paths: Paths) -> int:
    from pipeline.status import project_status, status_lines

    status = project_status(paths)
    if args.wave is not None and args.wave not in [s["wave"] for s in status["waves"]]:
        say(f"error: wave {args.wave} is unknown here (no instrument, export or load); waves: "
            + (", ".join(str(s["wave"]) for s in status["waves"]) or "none"))
        return EXIT_BAD_INPUT
    if args.json:
        shown = [s for s in status["waves"] if args.wave is None or s["wave"] == args.wave]
        nxt = shown[0]["next"] if args.wave is not None else status["next"]
        print(json.dumps({**status, "waves": shown, "next": nxt}, indent=2, default=str))
        return 0
    print("\n".join(status_lines(status, args.wave)))
    return 0


def cmd_wave_new(args, paths: Paths) -> int:
    from pipeline.wave import new_wave

    created = new_wave(paths, args.wave, args.source)
    print(f"Started wave {created.wave} from wave {created.source}: "
          + ", ".join(str(f.relative_to(paths.root)) for f in created.files)
          + " (question ids kept; the instrument loads and every definition accepts it).")
    print("Before the survey opens, check:")
    print("\n".join(f"  {n}. {item}" for n, item in enumerate(created.checklist, start=1)))
    print(f"Next: make these changes, then run `consult status {created.wave}`.")
    return 0


def cmd_quotes_review(args, paths: Paths) -> int:
    from pipeline.quotes import review_interactively, review_waves, wave_review

    from pipeline.quotes import why_no_quotes

    cmd_quotes(args, paths)  # candidates from the latest load first
    waves = [args.wave] if args.wave else review_waves(paths)
    if args.wave and not wave_review(paths, args.wave):
        print(f"No quotes to review for wave {args.wave} ({why_no_quotes(paths, args.wave)}). Next: `consult status "
              f"{args.wave}` says what is left.")
        return 0
    waiting = [q for wave in waves for q in wave_review(paths, wave) if q.status == "pending"]
    if not waiting:
        print("No quote is waiting for review. Next: `consult audit`.")
        return 0
    print(f"{len(waiting)} quote(s) wait for review. Before approving, ask: could someone who knows this person, "
          "or their workplace, recognise them from these words? If so, reject it.")
    tally = review_interactively(paths, waiting, reviewer=args.reviewer)
    print(f"\nRecorded: {tally['approved']} approved, {tally['rejected']} rejected; {tally['skip']} skipped"
          + (f", {tally['not reached']} not reached" if tally["not reached"] else "") + ".")
    left = tally["skip"] + tally["not reached"]
    print("Next: " + ("`consult quotes review` again for the ones left, then `consult audit`." if left
                      else "`consult audit`, then `consult report`."))
    return 0


def cmd_quotes_export(args, paths: Paths) -> int:
    from pipeline.quotes import export_csv

    rows = export_csv(paths, args.wave, Path(args.file))
    print(f"Wrote {rows} quote(s) of wave {args.wave} to {args.file}. Next: open it in a spreadsheet, write approve "
          "or reject in the `decision` column (blank = not decided yet), save as CSV UTF-8, then "
          f"`consult quotes import {args.file}`. Do not edit the `text` column: a quote whose text was edited "
          "cannot be approved (reject it, or add the name to surveys/deidentification.yaml).")
    return 0


def cmd_quotes_import(args, paths: Paths) -> int:
    from pipeline.quotes import import_csv

    applied = import_csv(paths, Path(args.file), reviewer=args.reviewer)
    for wave, tally in sorted(applied.items()):
        print(f"Wave {wave}: {tally['approved']} approved, {tally['rejected']} rejected, "
              f"{tally['pending']} put back to pending (rows with an unchanged decision keep their date).")
    print("Next: `consult status` to see what is still waiting, then `consult audit`.")
    return 0


def cmd_purge_raw(args, paths: Paths) -> int:
    from pipeline.retention import purge_raw

    purge = purge_raw(paths, args.wave, dry_run=args.dry_run)
    listed = "\n".join(f"  {f.path.relative_to(paths.root)} ({f.bytes} bytes, sha256 {f.sha256[:12]}...)"
                        for f in purge.files)
    if not purge.files:
        print(f"No raw export of wave {args.wave} is left to delete. Next: `consult status`.")
    elif args.dry_run:
        print(f"Would delete {len(purge.files)} raw export(s) of wave {args.wave} (release {purge.release_version} "
              f"holds them):\n{listed}\nNothing was deleted. Next: `consult purge-raw {args.wave}`.")
    else:
        print(f"Deleted {len(purge.files)} raw export(s) of wave {args.wave}, recorded in the warehouse (name, hash, "
              f"size, date; release {purge.release_version}):\n{listed}\nNext: `consult status`.")
    return 0


def cmd_unload(args, paths: Paths) -> int:
    from pipeline.load import LOAD_TIME
    from pipeline.unload import unload

    done = unload(paths, args.file, wave=args.wave, confirm=args.yes, progress=say)
    f = done.file
    verb = "Removed" if done.removed else "Would remove"
    print(f"{verb} {f.name} (wave {f.wave}, loaded {f.loaded_at.strftime(LOAD_TIME)}, sha256 {f.sha256[:12]}...):")
    print(f"  responses loaded: {f.loaded}, with all their answers and data-quality flags")
    print(f"  rows quarantined: {f.quarantined}, excluded: {f.excluded}, duplicates: {f.duplicates} "
          f"(of {f.read} rows read)")
    print(f"  open-text answers: {done.open_text}; candidate quotes: {done.quotes} "
          f"({done.quotes_decided} already approved or rejected: their review entries go too)")
    print(f"  then k-anonymity and the indicators are worked out again without it"
          + (f"; wave {f.wave} has no other export, so its copy of the questionnaire goes too"
             if done.last_of_wave else ""))
    if not done.removed:
        again = f"consult unload {args.file}" + (f" --wave {args.wave}" if args.wave is not None else "")
        print(f"Nothing was changed. To remove it: `{again} --yes`.")
        return 0
    print("Next: `consult run` renders the report, the QA report and the release again without it.")
    return 0


def _not_stored_note(columns: list[str], wave: int) -> str:
    shown = ", ".join(columns[:10]) + (f" and {len(columns) - 10} more" if len(columns) > 10 else "")
    return (f"{len(columns)} column(s) match no question of the {wave} instrument and were NOT stored: {shown}. "
            f"If one is a question renamed on the platform, add its column name to the question's aliases in "
            f"surveys/{wave}/instrument.yaml and run again (`consult ingest FILE` shows every column).")


def print_summary(summary, warehouse: Path | None = None) -> None:
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
    for f in read:
        if f.not_stored:
            print(f"  {f.file}: {_not_stored_note(f.not_stored, f.wave)}")
        for note in f.notes:
            print(f"  {note}")
    if any(f.quarantined for f in read):
        print("  quarantined rows: `consult quarantine` lists them with what to fix; details in the QA report")
    for line in _responses_lines(warehouse, {f.wave for f in read}):  # the waves whose rows are counted above
        print(line)
    print("Next: `consult status` says what is left for each wave (quotes to review, audit, report, release).")


def _responses_lines(warehouse: Path | None, waves: set[int]) -> list[str]:
    """The rows above count a response once per file that holds it; the report's methods page counts
    each response once. Its figures for the waves of the files read, read by the function the methods page
    uses (charts.load_summary) and worded with its column headings, so the two can be set side by side."""
    if warehouse is None or not waves or not warehouse.exists():
        return []
    from pipeline import charts

    counted = charts.load_summary(warehouse)
    counted = counted[counted["wave"].isin(waves)]
    if counted.empty:
        return []
    _, _, received, loaded, excluded, duplicates, set_aside = charts.ui("load_head").split("|")
    lines = ["  responses, each counted once, as the report's methods page counts them (rows above count it once "
             "per file):"]
    for r in counted.itertuples():
        lines.append(f"    {int(r.wave)}: {received.lower()} {int(r.read)} = {loaded.lower()} {int(r.loaded)} + "
                     f"{excluded.lower()} {int(r.excluded)} + {duplicates.lower()} {int(r.duplicates)} + "
                     f"{set_aside.lower()} {int(r.quarantined)}")
    return lines


if __name__ == "__main__":
    sys.exit(main())

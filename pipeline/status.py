"""`consult status`: where each wave stands in the yearly cycle, and the next command to run.

The cycle, in order: an instrument for the wave, its exports loaded, quotes reviewed, the
disclosure audit passed, the report and the release built from the current data, the raw exports
purged. Each wave's status names the first step not done, with the command that does it; the
project's next step is the earliest unfinished step over all waves (older waves first).
Nothing here writes anything.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

from pipeline.config import Paths
from pipeline.deidentify import DerivationError, Derivations, derived_concepts, derived_path, load_derivations
from pipeline.instrument import Instrument, InstrumentError, available_waves, instrument_path, load_instrument
from pipeline.load import connect
from pipeline.retention import RawFile, purged_files, raw_exports
from pipeline.wave_rules import RULES_FILE, RulesError, load_wave_rules

ROW_KEYS = ("read", "loaded", "quarantined", "excluded", "duplicates")
DONE = 9  # the stage of a wave whose cycle is done


def project_status(paths: Paths, today: dt.date | None = None) -> dict:
    """Every wave's status and the project's next step, as plain data (what `--json` prints)."""
    from pipeline.anonymity import load_privacy_rules, privacy_path

    today = today or dt.date.today()
    exports, synthetic = raw_exports(paths)
    facts = _warehouse_facts(paths)
    outputs = {"audit": audit_state(paths, facts), "report": report_state(paths, facts),
               "release": release_state(paths, facts)}
    retention = load_privacy_rules(privacy_path(paths)).raw_retention_days
    derivations = _load_derivations(paths)
    waves = sorted(set(available_waves(paths.surveys)) | {f["wave"] for f in facts["ledger"]}
                   | {f.wave for f in exports if f.wave is not None})
    unstated = _unstated_comparability(paths, facts, exports, derivations)
    statuses = [_wave_status(paths, wave, exports, synthetic, facts, outputs, retention, today, derivations,
                             unstated) for wave in waves]
    conflict = _mixing_conflict(facts, synthetic, exports)
    unplaced = [str(f.path.relative_to(paths.root)) for f in exports if f.wave is None]
    ranked = sorted(statuses, key=lambda s: (s["next"]["stage"], s["wave"]))
    overall = (conflict or _unplaced_step(unplaced) or _practice_step(facts, exports)
               or (ranked[0]["next"] if ranked else _first_wave_step(paths)))
    return {
        "source": "synthetic" if synthetic else "data/raw",
        "warehouse": {"exists": facts["exists"], "holds": facts["holds"]},
        "retention_days": retention,
        "exports_without_wave": unplaced,
        **outputs,
        "waves": statuses,
        "next": overall,
    }


def _unplaced_step(unplaced: list[str]) -> dict | None:
    """An export outside a wave folder stops `consult run`: moving it comes first."""
    if not unplaced:
        return None
    return _step(2, None, f"Move {', '.join(unplaced)} into the folder of its wave (e.g. data/raw/2025/), then run "
                 "`consult run`: the run stops at an export whose wave it cannot tell.",
                 todo="move the export into data/raw/<wave>/ (the folder named after its wave)")


def _practice_step(facts: dict, exports: list[RawFile]) -> dict | None:
    """A new project (no warehouse, no export): the runbook starts with a practice run on the
    built-in synthetic consultation, not with next year's survey."""
    if facts["exists"] or exports:
        return None
    return _step(0, "consult run", "Nothing is loaded yet. To practise, `consult run` loads the built-in synthetic "
                 "consultation (invented people; every page then says SYNTHETIC) and renders its report. For real "
                 "data, put a survey's export in data/raw/<wave>/ first (docs/runbook.md, step 2).")


def _first_wave_step(paths: Paths) -> dict:
    year = dt.date.today().year
    return _step(1, None, f"No wave has an instrument yet: save one as surveys/{year}/instrument.yaml "
                 "(`consult instrument draft` writes a starting one from an export).",
                 todo=f"write the wave's questionnaire as surveys/{year}/instrument.yaml")


def _step(stage: int, command: str | None, why: str, todo: str | None = None) -> dict:
    """`todo`: for a step no command does, what to do, for the `Next:` line. Every such step has one:
    `Next:` must never leave staff without an action."""
    if command is None and not todo:
        raise ValueError(f"a status step without a command needs a todo (stage {stage}: {why[:60]})")
    return {"stage": stage, "command": command, "why": why, **({"todo": todo} if todo else {})}


# --- facts ------------------------------------------------------------------------------------


def _warehouse_facts(paths: Paths) -> dict:
    facts: dict = {"exists": paths.warehouse.exists(), "holds": None, "ledger": [], "purged": {}, "unrecorded": set(),
                   "before_inclusion": set(), "inclusion_changed": {},
                   "quarantine": {}, "waiting": Counter(), "excluded": {}, "changed_at": None, "responses": {}}
    if not facts["exists"]:
        return facts
    from pipeline.load import RESPONSES_BY_WAVE, data_source, unrecorded_waves, waves_before_inclusion_check
    from pipeline.qa import quarantined_rows

    with connect(paths.warehouse, read_only=True) as con:
        facts["holds"] = data_source(con)
        columns = ["sha256", "file", "wave", "loaded_at", *ROW_KEYS]
        facts["ledger"] = [dict(zip(columns, row)) for row in con.execute(
            "SELECT file_sha256, file_name, wave, loaded_at, rows_read, rows_loaded, rows_quarantined, rows_excluded, "
            "rows_duplicate FROM load_ledger ORDER BY wave, loaded_at, file_name").fetchall()]
        facts["purged"] = purged_files(con)
        facts["unrecorded"] = unrecorded_waves(con)
        facts["before_inclusion"] = waves_before_inclusion_check(con)
        facts["inclusion_changed"] = _inclusion_changed(con, paths, facts["holds"] == "synthetic")
        facts["responses"] = {int(r[0]): dict(zip(ROW_KEYS, map(int, r[2:]))) for r in con.execute(
            f"SELECT wave, synthetic, read, loaded, quarantined, excluded, duplicates FROM ({RESPONSES_BY_WAVE})"
        ).fetchall()}
        facts["excluded"] = _reasons(con, "SELECT l.wave, o.reason, count(*) FROM row_outcomes o JOIN load_ledger l "
                                          "USING (file_sha256) WHERE o.outcome = 'excluded' GROUP BY ALL ORDER BY 1, 3 DESC, 2")
    waiting = [r for r in quarantined_rows(paths.warehouse) if r.status == "waiting"]
    facts["waiting"] = Counter(r.wave for r in waiting)
    facts["quarantine"] = _waiting_reasons(waiting)
    stamps = [f["loaded_at"] for f in facts["ledger"]]
    facts["changed_at"] = max(stamps).replace(tzinfo=dt.timezone.utc).timestamp() if stamps else None
    return facts


def _inclusion_changed(con, paths: Paths, synthetic: bool) -> dict[int, str]:
    """By loaded wave: its `inclusion:` rules changed since its exports were loaded (the run stops).
    A broken instrument is reported as itself."""
    from pipeline.run import changed_inclusion_messages

    try:
        return changed_inclusion_messages(con, paths, synthetic)
    except InstrumentError:
        return {}


def _waiting_reasons(rows: list) -> dict[int, dict[str, int]]:
    """Per wave, the rows still waiting for a fix with each reason (a row may have several), most
    frequent first: rows a corrected export loaded since are no longer counted."""
    counts: dict[int, Counter] = {}
    for row in rows:
        counts.setdefault(row.wave, Counter()).update({p["rule"] for p in row.problems} or {"unspecified"})
    return {wave: dict(sorted(c.items(), key=lambda item: (-item[1], item[0]))) for wave, c in sorted(counts.items())}


def _reasons(con, sql: str) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {}
    for wave, reason, count in con.execute(sql).fetchall():
        found.setdefault(wave, {})[reason or "unspecified"] = int(count)
    return found


def audit_state(paths: Paths, facts: dict) -> dict:
    """The last `consult audit` (data/warehouse/audit.json): passed, failed, out of date (data,
    definitions or quote decisions changed since), or not run."""
    from pipeline.audit import audit_file

    path = audit_file(paths)
    shown = str(path.relative_to(paths.root))
    if not path.exists() or not facts["exists"]:
        return {"state": "not run", "file": shown}
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
        passed = bool(written["passed"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"state": "not run", "file": shown}
    # passed, but a check could not be run (the identifier check of a wave whose raw exports were
    # purged): said beside "passed", which it does not change (pipeline/audit.py)
    verdict = str(written.get("verdict") or "")
    exception = verdict.split(", except ", 1)[1] if passed and ", except " in verdict else ""
    inputs = [*paths.surveys.rglob("*.yaml"), *(paths.root / "data" / "review").rglob("*.yaml")]
    changed = max([p.stat().st_mtime for p in inputs] + [facts["changed_at"] or 0])
    if path.stat().st_mtime < changed:
        return {"state": "out of date", "file": shown, "passed": passed}
    return {"state": "passed" if passed else "failed", "file": shown,
            **({"except": exception} if exception else {})}


def report_state(paths: Paths, facts: dict) -> dict:
    """The public report: built from the current inputs, out of date, or not built."""
    from pipeline.report import MANIFEST

    shown = str((paths.site / "index.html").relative_to(paths.root))
    try:
        manifest = json.loads((paths.site / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"state": "not built", "file": shown}
    if not facts["exists"] or not (paths.site / "index.html").exists():
        return {"state": "not built", "file": shown}
    from pipeline.report import inputs_key

    engine = "quarto" if str(manifest.get("engine", "")).lower().startswith("quarto") else "offline"
    current = manifest.get("inputs_key") == inputs_key(paths, engine)
    return {"state": "built" if current else "out of date", "file": shown,
            "waves": sorted({int(i["wave"]) for i in manifest.get("inputs", [])})}


def release_state(paths: Paths, facts: dict) -> dict:
    """The open data release: built from what is loaded now, out of date, or not built."""
    from pipeline.release import read_release, release_key

    release = read_release(paths)
    published = {**_published(paths, facts), "settings_stale": _stale_settings(paths, facts)}
    if release is None or not facts["exists"]:
        return {"state": "not built", **published}
    released = {(i["sha256"], int(i["wave"])) for i in release.get("inputs", [])}
    loaded = {(f["sha256"], f["wave"]) for f in facts["ledger"]}
    current = released == loaded and release.get("inputs_key") == release_key(paths)
    return {"state": "built" if current else "out of date", "version": str(release.get("version", "")),
            "date": str(release.get("date", "")), "waves": sorted(int(w) for w in release.get("waves", [])),
            **published}


def _stale_settings(paths: Paths, facts: dict) -> str | None:
    return stale_release_settings(paths, [f["wave"] for f in facts["ledger"]] if facts["exists"] else [])


def stale_release_settings(paths: Paths, waves: list[int]) -> str | None:
    """Why surveys/release.yaml still describes an earlier year's release (dated before the latest
    of the `waves` loaded), or None: the report and its open data would go out, and be cited, under
    last year's version, date and address."""
    from pipeline.release import ReleaseError, release_settings, settings_file

    try:
        settings = release_settings(paths)
    except ReleaseError:  # unreadable settings: the report and release commands say what is wrong
        return None
    if not waves or settings.date.year >= max(waves):
        return None
    latest = max(waves)
    return (f"{settings_file(paths).relative_to(paths.root)} still describes an earlier release (version "
            f"{settings.version}, dated {settings.date.isoformat()}) but the warehouse holds wave {latest}: set this "
            f'release\'s version (e.g. "{latest}.1"), its publication date and its url there, then run '
            "`consult report`. The report and its open data are cited by them.")


def _published(paths: Paths, facts: dict) -> dict:
    """The versions recorded as published (`consult mark-published`) and when, and whether the version
    in surveys/release.yaml is one of them with other figures than the warehouse's now (then no
    report or release can be built before it changes): the refusal's text, or None."""
    from pipeline.release import ReleaseError, VersionPublished, check_version, publications

    if not facts["exists"]:
        return {"published": {}, "version_taken": None}
    try:
        check_version(paths)
    except VersionPublished as exc:
        taken = (f"Release version {exc.version} was published on {exc.published_on} with other figures than the "
                 f"warehouse holds now: set a new version in surveys/release.yaml ({exc.suggestion}) and its date, "
                 "then run `consult report`, so citations of each version keep their numbers.")
    except ReleaseError:  # unreadable settings: the report and release commands say what is wrong
        taken = None
    else:
        taken = None
    return {"published": {v: p["published_on"] for v, p in publications(paths).items()}, "version_taken": taken}


def _mixing_conflict(facts: dict, synthetic: bool, exports: list[RawFile]) -> dict | None:
    if facts["holds"] == "synthetic" and not synthetic and exports:
        return _step(0, "make clean-warehouse", "data/raw/ now holds real exports but the warehouse holds the "
                     "synthetic consultation (never mixed): remove the synthetic warehouse, then run `consult run`.")
    return None


# --- one wave ---------------------------------------------------------------------------------


def _wave_status(paths: Paths, wave: int, exports: list[RawFile], synthetic: bool, facts: dict, outputs: dict,
                 retention: int, today: dt.date, derivations: Derivations | str, unstated: dict[int, str]) -> dict:
    from pipeline.quotes import read_review, review_file, review_source

    ledger = [f for f in facts["ledger"] if f["wave"] == wave]
    loaded_shas = {f["sha256"] for f in ledger}
    mine = [f for f in exports if f.wave == wave]
    present = {f.sha256 for f in mine}
    purged = [{"sha256": sha, **p} for sha, p in facts["purged"].items() if p["wave"] == wave and sha not in present]
    gone = loaded_shas - present - {p["sha256"] for p in purged}
    review = review_file(paths, wave)
    quotes = Counter(q.status for q in read_review(review).values()) if review.exists() else None
    kept = [f["loaded_at"].date() for f in ledger if f["sha256"] in present]
    days = (today - min(kept)).days if kept else None
    instrument, broken = _load_wave_instrument(paths, wave)
    rules = instrument_path(paths.surveys, wave).with_name(RULES_FILE)
    status = {
        "wave": wave,
        "instrument": str(instrument_path(paths.surveys, wave).relative_to(paths.root))
        if instrument_path(paths.surveys, wave).exists() else None,
        "instrument_error": broken,
        "rules": str(rules.relative_to(paths.root)) if rules.exists() else None,
        "rules_error": _rules_error(instrument),
        "derived_error": _derived_error(instrument, derivations) or _rate_year_error(paths, instrument),
        # which file the derived answers' error is in (the living-wage table's missing year, or derived.yaml)
        "derived_todo": _derived_todo(paths, wave, instrument, derivations),
        "comparability_error": unstated.get(wave, (None, None))[0],
        "comparability_todo": unstated.get(wave, (None, None))[1],
        "inclusion_changed": facts["inclusion_changed"].get(wave),
        "exports": [{"file": str(f.path.relative_to(paths.root)), "sha256": f.sha256, "bytes": f.bytes,
                     "loaded": f.sha256 in loaded_shas} for f in mine],
        "files_loaded": len(ledger),
        "rows": {k: sum(f[k] for f in ledger) for k in ROW_KEYS},
        # each response once, however many exports held it (the rows above count it once per file)
        "responses": facts["responses"].get(wave, dict.fromkeys(ROW_KEYS, 0)),
        "quarantine_reasons": facts["quarantine"].get(wave, {}),
        "quarantine_waiting": facts["waiting"].get(wave, 0),
        "exclusion_reasons": facts["excluded"].get(wave, {}),
        "quotes": None if quotes is None else {s: quotes.get(s, 0) for s in ("pending", "approved", "rejected")},
        # the practice run's quotes, still there while no real export is loaded (the first real run removes them)
        "quotes_from_practice": quotes is not None and not synthetic and review_source(review) == "synthetic",
        "raw_exports": {"state": "kept" if mine else ("purged" if purged else "none"), "purged": purged,
                        "missing": sorted(f["file"] for f in ledger if f["sha256"] in gone),
                        "days_since_loaded": days,
                        # invented answers hold no identifier: the retention period is for real exports
                        "past_retention": days is not None and days > retention and not (mine and synthetic)},
        "data": ("synthetic" if synthetic else "real") if mine else (facts["holds"] if ledger else None),
    }
    status["published_in"] = _published_in(wave, outputs["release"])
    status["warnings"] = _warnings(status, retention)
    status["next"] = _next_step(paths, status, outputs)
    return status


def _published_in(wave: int, release: dict) -> str | None:
    """The version of surveys/release.yaml when it is recorded as published and holds this wave: its
    figures are out, so what was left undecided (quotes, quarantined rows) stayed out of them."""
    version = release.get("version")
    return version if version in release.get("published", {}) and wave in release.get("waves", []) else None


def _load_wave_instrument(paths: Paths, wave: int) -> tuple[Instrument | None, str | None]:
    """The wave's instrument loaded as `consult run` loads it, or the run's error text (file, place,
    problem) when it does not load: a run stops at it, so status must not send staff to run first."""
    path = instrument_path(paths.surveys, wave)
    if not path.exists():
        return None, None
    try:
        return load_instrument(path), None
    except InstrumentError as exc:
        return None, str(exc)


def _rules_error(instrument: Instrument | None) -> str | None:
    """The run's error text when the wave's rules.yaml does not load (YAML syntax, an invalid rule,
    a rule naming a question or code the instrument lacks), checked as validation loads it: the run
    stops at the wave's next export. None when it loads, is absent or the instrument is broken."""
    if instrument is None:
        return None
    try:
        load_wave_rules(instrument)
    except RulesError as exc:
        return str(exc)
    return None


def _load_derivations(paths: Paths) -> Derivations | str:
    """surveys/derived.yaml and its reference tables (the living wage), or why they do not load."""
    try:
        return load_derivations(derived_path(paths.surveys))
    except DerivationError as exc:
        return str(exc)


def _derived_error(instrument: Instrument | None, derivations: Derivations | str) -> str | None:
    """Why the run could not work out this wave's derived answers (e.g. no living-wage rate year
    set for it), by the run's own check (`derived_concepts`), which reads no export; else None."""
    if instrument is None:
        return None
    if isinstance(derivations, str):
        return derivations
    try:
        derived_concepts(instrument, derivations)
    except DerivationError as exc:
        return str(exc)
    return None


def _derived_todo(paths: Paths, wave: int, instrument: Instrument | None,
                  derivations: Derivations | str) -> str | None:
    """What to edit, in plain words, when the wave's derived answers cannot be worked out: the
    living-wage year the wave needs (runbook step 1), else the definitions that do not load."""
    if isinstance(derivations, str) or _rate_year_error(paths, instrument) is None:
        if _derived_error(instrument, derivations) is None:
            return None
        return (f"fix {derived_path(paths.surveys).relative_to(paths.root)} or the reference table the error "
                f"below names, then run `consult status {wave}` again")
    table = paths.living_wage_file
    where = table.relative_to(paths.root) if table.is_relative_to(paths.root) else table
    return (f"in {where}, add `{wave}: {{year: YEAR}}` under `rate_year_for_wave:` (the year of the Ontario "
            f"Living Wage Network rates in force while wave {wave} was collected; add those rates under `rates:` "
            f"first if they are missing{_rates_source(table)})")


def _rates_source(table) -> str:
    """Where the rates come from, as the table itself cites it (its `source_url:`)."""
    import yaml

    try:
        url = (yaml.safe_load(table.read_text(encoding="utf-8")) or {}).get("source_url")
    except (OSError, yaml.YAMLError, AttributeError):
        return ""
    return f": {url}" if url else ""


def _rate_year_error(paths: Paths, instrument: Instrument | None) -> str | None:
    """The run's check that the living-wage table names the rates a wave is compared with: every loaded
    wave needs it (the warehouse keeps each wave's rates), whether the wave was started with
    `consult wave new` or `consult instrument draft`, and whether or not it asks the wage."""
    from pipeline.deidentify import load_reference_table

    if instrument is None:
        return None
    try:
        load_reference_table(paths.living_wage_file).year_for(instrument.wave)
    except DerivationError as exc:
        return str(exc)
    return None


def _unstated_comparability(paths: Paths, facts: dict, exports: list[RawFile],
                            derivations: Derivations | str) -> dict[int, tuple[str, str]]:
    """By wave: a change of who is in scope with no `population_change:` statement, and the
    indicators' missing `comparability:` statements, between it and the wave before, which stop `consult run` (foreseen from the questionnaires, as the run checks before reading an
    export). The waves counted: those loaded or with an export, and any started after them.
    Each with what to do in plain words (which file, which key), for status's `Next:` line."""
    from pipeline.indicators import IndicatorError, foreseen_unstated, load_checked_catalogue, unstated_message
    from pipeline.population import population_message, unstated_population_changes

    if isinstance(derivations, str):
        return {}  # its own message says what to fix first
    loaded = {f["wave"] for f in facts["ledger"]} | {f.wave for f in exports if f.wave is not None}
    latest = max(loaded, default=0)
    waves = sorted(loaded | {w for w in available_waves(paths.surveys) if w > latest})
    try:
        catalogue = load_checked_catalogue(paths.indicators_file, paths.surveys)
        instruments = {w: load_instrument(instrument_path(paths.surveys, w)) for w in waves
                       if instrument_path(paths.surveys, w).exists()}
        unstated, signatures = foreseen_unstated(catalogue, instruments, derivations, facts.get("unrecorded", set()))
        populations = unstated_population_changes(instruments, facts.get("before_inclusion", set()))
    except (IndicatorError, InstrumentError, DerivationError):
        return {}  # a broken definition is reported as itself
    said: dict[int, list[str]] = {}  # as `consult run` says it: who is in scope first, then the questions
    todo: dict[int, list[str]] = {}
    for before, after in populations:
        said.setdefault(after.wave, []).append(population_message([(before, after)]))
        todo.setdefault(after.wave, []).append(
            f"add `population_change:` to surveys/{after.wave}/rules.yaml (whether the {before.wave} and "
            f"{after.wave} figures still compare, as below)")
    indicators = paths.indicators_file.relative_to(paths.root)
    for wave in sorted({after for _, _, after in unstated}):
        said.setdefault(wave, []).append(unstated_message([u for u in unstated if u[2] == wave], catalogue, signatures))
        todo.setdefault(wave, []).append(f"add the `comparability:` statements named below to {indicators}")
    return {wave: ("\n".join(lines), "; then ".join(todo[wave])) for wave, lines in sorted(said.items())}


def _warnings(status: dict, retention: int) -> list[str]:
    wave, raw = status["wave"], status["raw_exports"]
    notes = []
    if raw["past_retention"]:
        notes.append(f"The raw exports of wave {wave} were loaded {raw['days_since_loaded']} days ago, longer than "
                     f"the retention period ({retention} days, surveys/privacy.yaml raw_retention_days): publish "
                     f"the release and run `consult purge-raw {wave}`.")
    if raw["missing"]:
        notes.append(f"Loaded but no longer in the exports folder, and not purged with `consult purge-raw`: "
                     f"{', '.join(raw['missing'])}. The warehouse keeps what they brought; nothing to do unless "
                     "they were removed by mistake.")
    published, quotes = status["published_in"], status["quotes"]
    if status["quarantine_waiting"] and published:
        notes.append(f"{status['quarantine_waiting']} quarantined row(s) were never fixed: release {published}, "
                     "published, does not count them. Loading them now would change its figures (a new version, "
                     "docs/runbook.md step 8); `consult quarantine` lists them.")
    elif status["quarantine_waiting"]:
        notes.append(f"{status['quarantine_waiting']} quarantined row(s) still wait for a fix at the source: "
                     "`consult quarantine` lists them.")
    if published and quotes and quotes["pending"]:
        notes.append(f"{quotes['pending']} quote(s) of wave {wave} were never decided: release {published} was "
                     "published without them (only approved quotes are published). Decide them only for a new "
                     f"version: `consult quotes review --wave {wave}`.")
    return notes


def _next_step(paths: Paths, status: dict, outputs: dict) -> dict:
    """The first step of the cycle this wave has not done."""
    wave = status["wave"]
    waiting = [e for e in status["exports"] if not e["loaded"]]
    quotes = status["quotes"]
    audit, report, release = outputs["audit"], outputs["report"], outputs["release"]
    if status["instrument"] is None:
        source = max((w for w in available_waves(paths.surveys) if w < wave), default=None)
        return _step(1, f"consult wave new {wave} --from {source}" if source else None,
                     f"Wave {wave} has no instrument (surveys/{wave}/instrument.yaml): start it from the previous "
                     "wave's, then check it.", todo=f"write wave {wave}'s questionnaire as surveys/{wave}/"
                     "instrument.yaml (`consult instrument draft` writes a starting one from an export)")
    if status["instrument_error"]:
        return _step(1, None, f"{status['instrument']} does not load, so `consult run` would stop. Fix it, then "
                     f"run `consult status {wave}` again. The error:\n{status['instrument_error']}",
                     todo=f"fix {status['instrument']} where the error below says")
    if status["rules_error"]:
        return _step(1, None, f"{status['rules']} does not load, so `consult run` would stop at the wave's next "
                     f"export. Fix it, then run `consult status {wave}` again. The error:\n{status['rules_error']}",
                     todo=f"fix {status['rules']} where the error below says")
    if status["inclusion_changed"]:
        reload = f"consult run --reload {wave}"  # offered unless the wave's raw exports were purged
        return _step(1, reload if f"`{reload}`" in status["inclusion_changed"] else None,
                     f"`consult run` would stop: {status['inclusion_changed']}",
                     todo="put the wave's old `inclusion:` rules back (see above)")
    if status["derived_error"] and (waiting or not status["files_loaded"]):
        # a load of this wave stops there: before its export (stage 8), or first when one waits (a run stops)
        then = "" if waiting else f". Then, when the survey closes, export the responses into data/raw/{wave}/"
        return _step(1 if waiting else 8, None, f"Wave {wave}'s export cannot be loaded yet: "
                     f"{status['derived_error']}{then}.", todo=status["derived_todo"])
    if status["comparability_error"]:
        # the run stops before reading an export: first when one waits or figures are recomputed
        now = waiting or status["files_loaded"]
        then = "" if now else f"\nThen, when the survey closes, export the responses into data/raw/{wave}/."
        return _step(1 if now else 8, None, f"`consult run` would stop: {status['comparability_error']}{then}",
                     todo=status["comparability_todo"])
    if waiting:
        return _step(2, "consult run", f"{len(waiting)} export(s) of wave {wave} not loaded yet: "
                     + ", ".join(e["file"] for e in waiting))
    if not status["files_loaded"]:
        return _step(8, None, f"Wave {wave} has no export yet. When the survey closes, export the responses "
                     f"(docs/runbook.md explains the settings for each platform) into data/raw/{wave}/, then run "
                     "`consult run`.", todo=f"when the survey closes, put its export in data/raw/{wave}/")
    if quotes is None:
        return _step(3, "consult quotes", f"Wave {wave}'s quotes have no review file yet: write it.")
    if quotes["pending"] and not status["published_in"]:  # once published, a warning says it (see _warnings)
        return _step(3, f"consult quotes review --wave {wave}", f"{quotes['pending']} quote(s) of wave {wave} wait "
                     "for a decision (or use `consult quotes export` to review them in a spreadsheet).")
    if audit["state"] != "passed":
        why = {"failed": "The last disclosure audit FAILED: fix what it names (see " + audit["file"] + "), then "
                         "run it again.",
               "out of date": "Data, definitions or quote decisions changed since the last disclosure audit.",
               "not run": "The disclosure audit has not been run on these data."}[audit["state"]]
        return _step(4, "consult audit", why)
    if release["version_taken"]:
        return _step(5, None, release["version_taken"], todo="set a new version and its date in surveys/release.yaml")
    if release["settings_stale"]:
        return _step(5, None, release["settings_stale"],
                     todo="set this release's version, publication date and url in surveys/release.yaml")
    if report["state"] != "built" or wave not in report.get("waves", []):
        return _step(5, "consult report", f"The public report is {report['state']}"
                     + ("" if report["state"] != "built" else f" but does not include wave {wave}") + ".")
    if release["state"] != "built" or wave not in release["waves"]:
        return _step(6, "consult release", f"The open data release is {release['state']}"
                     + ("" if release["state"] != "built" else f" but does not include wave {wave}") + ".")
    if release["version"] not in release["published"]:
        return _step(7, "consult mark-published", f"Release {release['version']} includes wave {wave}. Publish "
                     "reports/_site/ (copy the whole folder to the website), then record it as published: its "
                     "version then keeps these figures, so citations of it stay true.")
    if status["exports"]:
        return _step(7, f"consult purge-raw {wave}", f"Release {release['version']} includes wave {wave}. Once "
                     "reports/_site/ is published, delete the raw exports (they hold identifiers).")
    later = any(w > wave for w in available_waves(paths.surveys))
    return _step(DONE, None if later else f"consult wave new {wave + 1} --from {wave}",
                 f"Wave {wave} is done: published" + (" and its raw exports purged." if status["raw_exports"]["purged"]
                                                      else ".")
                 + ("" if later else " Next year, start the new wave from this one."),
                 todo=f"nothing: wave {wave} is done")


# --- text -------------------------------------------------------------------------------------


def status_lines(status: dict, wave: int | None = None) -> list[str]:
    """One screen per wave (or the one asked for), then the next command."""
    shown = [s for s in status["waves"] if wave is None or s["wave"] == wave]
    lines: list[str] = []
    for s in shown:
        if wave is None and _finished(s):  # a decade of waves: the finished ones in a line each
            lines += [f"{s['next']['why']} Details: `consult status {s['wave']}`.", ""]
            continue
        lines += _wave_lines(s, status)
        lines.append("")
    if status["exports_without_wave"]:
        lines.append("Exports not in a folder named after their wave (move them, e.g. to data/raw/2025/): "
                     + ", ".join(status["exports_without_wave"]))
    step = shown[0]["next"] if wave is not None and shown else status["next"]
    lines.append("Next: " + (f"`{step['command']}`" if step["command"] else step["todo"]))
    lines.append(_indented("      ", step["why"]))
    return lines


def _finished(s: dict) -> bool:
    """A wave whose cycle is done: published, its raw exports purged (what is left to say about it,
    e.g. quarantined rows never fixed, no longer calls for anything)."""
    return s["next"]["stage"] == DONE


def _wave_lines(s: dict, status: dict) -> list[str]:
    rows, raw = s["rows"], s["raw_exports"]
    source = {"synthetic": "synthetic consultation", "real": "real exports", None: "no data yet"}[s["data"]]
    lines = [f"Wave {s['wave']} ({source})",
             f"  Instrument:   {s['instrument'] or 'missing'}" + (" (DOES NOT LOAD)" if s["instrument_error"] else "")]
    if s["rules"]:
        lines.append(f"  Rules:        {s['rules']}" + (" (DOES NOT LOAD)" if s["rules_error"] else ""))
    loaded = sum(e["loaded"] for e in s["exports"])
    if s["exports"]:
        lines.append(f"  Exports:      {len(s['exports'])} found, {loaded} loaded: "
                     + ", ".join(e["file"] + ("" if e["loaded"] else " (NOT LOADED)") for e in s["exports"]))
    elif raw["state"] == "purged":
        lines.append(f"  Exports:      purged on {raw['purged'][-1]['purged_on']} ({len(raw['purged'])} file(s), "
                     f"hashes kept in the warehouse); {s['files_loaded']} file(s) loaded")
    else:
        lines.append(f"  Exports:      none found; {s['files_loaded']} file(s) loaded")
    if s["files_loaded"]:
        lines.append(f"  Rows:         read {rows['read']} = loaded {rows['loaded']} + quarantined {rows['quarantined']}"
                     f" + excluded {rows['excluded']} + duplicates {rows['duplicates']}")
        got = s["responses"]
        lines.append(f"  Responses:    {got['read']} received, each counted once however many exports held it = loaded "
                     f"{got['loaded']} + set aside {got['quarantined']} + excluded {got['excluded']} + duplicates "
                     f"{got['duplicates']} (as the public report counts them)")
    if s["quarantine_reasons"]:
        lines.append(f"  Quarantine:   {s['quarantine_waiting']} row(s) waiting for a fix; reasons (rows): "
                     + ", ".join(f"{k} {v}" for k, v in s["quarantine_reasons"].items()))
    if s["exclusion_reasons"]:
        lines.append("  Excluded:     " + ", ".join(f"{k} {v}" for k, v in s["exclusion_reasons"].items()))
    if s["quotes"] is not None:
        q = s["quotes"]
        counts = f"{q['pending']} waiting for review, {q['approved']} approved, {q['rejected']} rejected"
        lines.append(f"  Quotes:       from the practice run (synthetic answers: {counts}); removed by the first "
                     "run on real exports" if s["quotes_from_practice"] else f"  Quotes:       {counts}")
    if s["files_loaded"]:
        audit, report, release = status["audit"], status["report"], status["release"]
        except_ = f", except {audit['except']}" if audit.get("except") else ""
        lines.append(f"  Audit:        {audit['state']}{except_} ({audit['file']})")
        lines.append(f"  Report:       {report['state']} ({report['file']})")
        lines.append(f"  Release:      {release['state']}" + (f", version {release['version']} ({release['date']}), "
                                                              f"waves {', '.join(map(str, release['waves']))}"
                                                              if release["state"] != "not built" else "")
                     + (f"; published {release['published'][release['version']]}"
                        if release.get("version") in release["published"] else ""))
    if raw["days_since_loaded"] is not None and s["data"] == "synthetic":
        lines.append("  Raw exports:  the synthetic consultation's (invented answers, data/synthetic/): no retention "
                     "period")
    elif raw["days_since_loaded"] is not None:
        lines.append(f"  Raw exports:  kept {raw['days_since_loaded']} day(s) since loaded (retention "
                     f"{status['retention_days']} days)")
    lines += [f"  ! {w}" for w in s["warnings"]]
    lines.append(_indented("  Next:         ", (f"`{s['next']['command']}`: " if s["next"]["command"] else "")
                           + s["next"]["why"]))
    return lines


def _indented(lead: str, text: str) -> str:
    """`lead` + text, its later lines (e.g. an instrument's errors) aligned under the first."""
    return lead + text.replace("\n", "\n" + " " * len(lead))

"""The whole load, file by file, then one atomic write: ingest -> validate -> de-identify -> load
-> indicators. Nothing reaches the warehouse unless every file of the run could be read."""

from __future__ import annotations

import ctypes
import datetime as dt
import gc
import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import duckdb

from pipeline.anonymity import load_checked_privacy_rules, load_privacy_rules, privacy_path, protect_microdata
from pipeline.config import Paths, export_files
from pipeline.deidentify import (deidentify, derived_path, load_derivations, load_scrubber, only_what_deidentify_reads,
                                 rescrub_stored, scrub_lists_sha256)
from pipeline.disclosure import load_rules, rules_sha256
from pipeline.indicators import (IndicatorError, compute, load_checked_catalogue, merged_code_labels, population_sha256,
                                 unstated_comparability)
from pipeline.ingest import Export, ExportError, file_sha256, read_export
from pipeline.instrument import Instrument, available_waves, instrument_path, load_instrument
from pipeline.load import (
    DERIVED,
    FileLoad,
    GroupCodes,
    WarehouseError,
    connect,
    content_keyed_files,
    ensure_schema,
    holds_synthetic,
    loaded_hashes,
    ROW_OUTCOMES,
    questionnaire_changed,
    mark_rewrite_pending,
    record_known_inclusion,
    recorded_inclusion,
    refresh_questionnaire,
    rewrite_pending,
    rewrite_warehouse,
    seen_content_keys,
    seen_id_content_keys,
    seen_response_keys,
    unkeyed_loaded_files,
    unrecorded_waves,
    waiting_rows,
    waves_before_inclusion_check,
    write_error,
    write_run,
)
from pipeline.unload import LoadedFile, dependants, loaded_files, remove_file
from pipeline.population import (inclusion_changed_since_loaded, population_message, rules_changed_message,
                                 unstated_population_changes)
from pipeline.validate import (OTHER_KIND, SAME_CONTENT, SHOWN_VALUES_VERSION, Validation, WaitingRow,
                               mask_stored_values, secret_key, unknown_columns, validate)

Progress = Callable[[str], None]


class RunError(RuntimeError):
    """A run that stopped before writing anything; the message says which file and why."""


@dataclass
class FileSummary:
    file: str
    wave: int
    status: str  # loaded | already loaded
    platform: str = ""
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    excluded: int = 0
    duplicates: int = 0
    flags: dict[str, int] = field(default_factory=dict)  # loaded respondents with each data-quality flag
    # columns matching no question of the instrument: not stored (a renamed question would be lost)
    not_stored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the analyst should know about the file


@dataclass
class RunSummary:
    run_id: str
    source: str  # "data/raw" or "synthetic"
    files: list[FileSummary] = field(default_factory=list)
    indicators_rebuilt: bool = False

    def totals(self) -> dict[str, int]:
        keys = ("read", "loaded", "quarantined", "excluded", "duplicates")
        return {k: sum(getattr(f, k) for f in self.files) for k in keys}


def wave_of(path: Path, default: int | None = None) -> int:
    """Exports live in a folder named after their wave: data/raw/2025/export.csv."""
    for part in reversed(path.parent.parts):
        if part.isdigit() and len(part) == 4:
            return int(part)
    if default is not None:
        return default
    raise RunError(f"{path}: cannot tell the wave; put the file in a folder named after it, e.g. data/raw/2025/")


def choose_source(paths: Paths) -> tuple[list[Path], bool]:
    """Real exports from data/raw when there are any, or when the warehouse holds real data (whose
    exports may have been purged: never fall back to the synthetic consultation then); otherwise
    the synthetic consultation."""
    real = export_files(paths.raw)
    if real or _holds_real_data(paths):
        return real, False
    return export_files(paths.synthetic), True


def _holds_real_data(paths: Paths) -> bool:
    if not paths.warehouse.exists():
        return False
    with connect(paths.warehouse, read_only=True) as con:
        try:
            return holds_synthetic(con) is False
        except duckdb.CatalogException:  # a warehouse file without the schema holds no data
            return False


def run_load(
    paths: Paths,
    files: list[Path] | None = None,
    synthetic: bool | None = None,
    progress: Progress = lambda _m: None,
    wave: int | None = None,
    reload: Sequence[int] = (),
) -> RunSummary:
    """Load the exports not loaded yet and recompute everything, in one transaction. `reload`: waves
    whose loaded exports are read again (after a change that applies when answers are read, such as
    the instrument's `inclusion:` rules), replacing what they brought in the same transaction."""
    if files is None:
        files, synthetic = choose_source(paths)
        if synthetic and not files:
            from pipeline.synth import write_synthetic_consultation

            progress("no export in data/raw/: generating the built-in synthetic consultation")
            write_synthetic_consultation(paths, progress=progress)
            files = export_files(paths.synthetic)
    synthetic = bool(synthetic)
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    summary = RunSummary(run_id, "synthetic" if synthetic else "data/raw")
    catalogue = load_checked_catalogue(paths.indicators_file, paths.surveys)
    privacy = load_checked_privacy_rules(privacy_path(paths), paths.surveys)
    load_rules(paths.disclosure_file), scrub_lists_sha256(paths.deid_file)  # read later: a typo stops us now
    created = not paths.warehouse.exists()
    try:
        with connect(paths.warehouse) as con:
            ensure_schema(con)
            _refuse_mixing(con, synthetic, paths)
            _refuse_stale_derivations(con, paths)
            changed = changed_inclusion_messages(con, paths, synthetic)
            if stopping := [message for w, message in changed.items() if w not in reload]:
                raise RunError("\n".join(stopping) + "\nNothing was loaded.")
            reloading = _reload_plan(con, paths, files, set(reload), wave)
            if reloading:  # taken out inside the transaction that loads them again: all or nothing (a
                # failure before its commit closes the connection, which rolls the removal back)
                con.execute("BEGIN TRANSACTION")
                for target in reloading:
                    remove_file(con, target)
                files = _in_load_order(files, reloading, wave)
                progress(f"loading again: {', '.join(t.name for t in reloading)} (--reload)")
            loads = _prepare_new_files(con, paths, files, synthetic, summary, progress, wave)
            groups = {concept: set(rule.group_codes()) for concept, rule in privacy.microdata.key_quasi_identifiers.items()}
            reworded = _changed_questionnaires(con, paths, {item.instrument.wave for item in loads}, groups, progress)
            stored = dict(con.execute(
                "SELECT key, value FROM warehouse_meta WHERE key IN "
                "('indicators_sha256', 'privacy_sha256', 'disclosure_sha256', 'population_sha256')").fetchall())
            current = {"indicators_sha256": catalogue.sha256, "privacy_sha256": privacy.sha256,
                       "disclosure_sha256": rules_sha256(load_rules(paths.disclosure_file))}
            if catalogue.population_changes:  # a wave's population_change: stated, or changed since
                current["population_sha256"] = population_sha256(catalogue)
            rescrub = _scrub_lists_changed(con, paths)
            remask = _shown_values_outdated(con)
            pending = rewrite_pending(con)  # an earlier removal whose rewrite did not happen
            if not loads and not reworded and not rescrub and not remask and stored == current \
                    and _scores_described(con, catalogue):
                if pending:
                    rewrite_warehouse(con, paths.warehouse, progress)
                progress("nothing new to load; indicators are up to date")
                return summary
            removed = _write_atomically(con, paths, loads, run_id, catalogue, privacy, progress, reworded, groups,
                                        rescrub, remask, began=bool(reloading))
            summary.indicators_rebuilt = True
            if removed or pending or reloading:  # stored text was removed: its old bytes leave the file too
                rewrite_warehouse(con, paths.warehouse, progress)
    except BaseException as exc:
        if created:  # a first run that failed leaves no empty warehouse behind
            for leftover in (paths.warehouse, paths.warehouse.with_name(paths.warehouse.name + ".wal")):
                leftover.unlink(missing_ok=True)
        if (told := write_error(paths.warehouse, exc, "Nothing was loaded.")) is not None:
            raise told from None
        raise
    _keep_run_record(paths, summary, loads)
    return summary


def _scores_described(con, catalogue) -> bool:
    """indicator_scores holds the catalogue's scores: a warehouse made before that table existed
    has it empty, and gets it from one indicator run (the figures come out the same)."""
    return not catalogue.scores or con.execute("SELECT count(*) FROM indicator_scores").fetchall()[0][0] > 0


def _prepare_new_files(con, paths: Paths, files: list[Path], synthetic: bool, summary: RunSummary,
                       progress: Progress, wave: int | None) -> list[FileLoad]:
    """Read, validate and de-identify every file not loaded before; nothing is written yet."""
    done = loaded_hashes(con)
    seen = seen_response_keys(con)
    contents = seen_content_keys(con)
    with_ids: dict[int, dict[str, list[str]]] = {}  # by wave: content keys of rows loaded with response ids
    waiting: dict[int, list[WaitingRow]] = {}  # by wave: rows set aside without response ids, not fixed
    keyed_in_run: dict[int, list[str]] = {}  # files of this run whose rows were keyed by content, by wave
    hashes = {path: file_sha256(path) for path in files}
    new_waves = {wave_of(path, wave) for path, sha in hashes.items() if sha not in done}
    if new_waves:  # before any export is read: a large one takes minutes to read and check
        _refuse_unstated_comparability(con, paths, new_waves)
        _refuse_missing_rate_years(paths, new_waves)
    loads: list[FileLoad] = []
    for number, path in enumerate(files, start=1):
        progress(f"[{number}/{len(files)}] {path.name}")
        file_wave = wave_of(path, wave)
        sha = hashes[path]
        if sha in done:  # loaded before, or the same content under another name in this run
            summary.files.append(FileSummary(path.name, file_wave, "already loaded"))
            continue
        done.add(sha)
        if file_wave not in with_ids:
            with_ids[file_wave] = seen_id_content_keys(con, file_wave)
            waiting[file_wave] = waiting_rows(con, file_wave)
        item = _prepare(paths, path, file_wave, synthetic, seen, progress, contents, with_ids[file_wave],
                        waiting[file_wave])
        return_freed_memory()  # the file's raw frames
        validation = item.validation
        without_ids = validation.without_ids()
        keyed = bool(without_ids.any())
        _refuse_unkeyed_rows(con, path, file_wave, keyed, bool((~without_ids).any()))
        # Later files see the responses this file loads (not the ones it set aside or excluded:
        # those load when a corrected export brings them again), and the rows it set aside.
        seen |= set(validation.keys_of("loaded"))
        for key in validation.contents_of("loaded"):
            contents[key] = contents.get(key, 0) + 1
        for key, response in validation.id_contents_of("loaded"):
            with_ids[file_wave].setdefault(key, []).append(response)
        waiting[file_wave] = _still_waiting(waiting[file_wave], item)
        loads.append(item)
        summary.files.append(_file_summary(item))
        if note := fixes_note(path.name, validation):
            summary.files[-1].notes.append(note)
            progress(f"    {note}")
        if keyed:
            earlier = content_keyed_files(con, file_wave) + keyed_in_run.get(file_wave, [])
            if note := content_note(path.name, item.export.platform, item.validation, earlier):
                summary.files[-1].notes.append(note)
                progress(f"    {note}")
            keyed_in_run.setdefault(file_wave, []).append(path.name)
    return loads


def _refuse_missing_rate_years(paths: Paths, new_waves: set[int]) -> None:
    """Every loaded wave is stored with the living-wage rates it is compared with (load.write_run):
    a wave the table names no rate year for stops the run here, before its exports are read, rather
    than after. A wave without an instrument is left to its export's own error (start it with
    `consult wave new`), which says what to do first."""
    from pipeline.deidentify import load_reference_table

    table = load_reference_table(paths.living_wage_file)
    for wave in sorted(w for w in new_waves if instrument_path(paths.surveys, w).exists()):
        table.year_for(wave)  # DerivationError: says what to add to surveys/reference/living_wage.yaml


def _still_waiting(waiting: list[WaitingRow], item: FileLoad) -> list[WaitingRow]:
    """The rows set aside without response ids still waiting after `item`: less those it fixed, plus
    those it set aside."""
    fixed = {(sha, row) for _, sha, row in item.validation.fixes}
    kept = [w for w in waiting if (w.file_sha256, w.source_row) not in fixed]
    validation = item.validation
    if validation.fix_keys is None:
        return kept
    held = validation.fix_keys.dropna()
    rows = item.export.source_rows_of(held.index.to_numpy())
    return kept + [WaitingRow(item.export.sha256, int(row), key, validation.fix_left_out.at[index])
                   for row, key, index in zip(rows.tolist(), held.tolist(), held.index.tolist())]


def fixes_note(name: str, validation: Validation) -> str | None:
    """What to tell the analyst about rows set aside earlier without a response id that this export
    may hold fixed, but could not be matched to one row."""
    if not validation.ambiguous_fixes:
        return None
    return (f"{name}: {validation.ambiguous_fixes} row(s) set aside in earlier exports may be fixed in this export, "
            "but without a response id several of its rows fit each (people who answered alike at the same time), so "
            "none was matched: two people are never counted as one. Every row of this export that passed the checks "
            "is loaded; those rows set aside still show as waiting for a fix in `consult quarantine` and `consult "
            "status`. If they were fixed on the platform, nothing more is needed (docs/runbook.md, \"Exports without "
            "response ids\").")


def _refuse_unkeyed_rows(con, path: Path, wave: int, without_ids: bool, with_ids: bool) -> None:
    """An export with rows without response ids, in a wave that loaded rows (with response ids or
    without) before the pipeline kept their content; or an export with response ids, in a wave that
    loaded rows without response ids before then: those rows cannot be matched, and every one this
    export repeats would be loaded a second time."""
    unkeyed = []
    if without_ids:
        unkeyed += unkeyed_loaded_files(con, wave) + unkeyed_loaded_files(con, wave, with_ids=True)
    elif with_ids:
        unkeyed += unkeyed_loaded_files(con, wave)
    if not unkeyed:
        return
    named = ", ".join(f"{name} ({n} response(s))" for name, n in unkeyed)
    kind = ("has no response ids, so its responses are recognised by their content (submission time, email, "
            "answers)" if without_ids else "has response ids, but responses without one are recognised by their "
            "content (submission time, email, answers)")
    raise RunError(
        f"{path}: this export {kind}; but wave {wave} holds responses loaded before the pipeline kept that content: "
        f"{named}. Responses of theirs repeated here would be counted twice. Nothing was loaded. "
        "Take those exports back and load them again, so their content is kept: move each out of "
        f"data/raw/{wave}/, `consult unload <file> --yes`, put it back, then `consult run` (docs/runbook.md, "
        "\"Taking back an export loaded by mistake\"). If this export replaces them (a later download of the same "
        "responses), leave them out of data/raw/ instead. Or rebuild the warehouse: `make clean-warehouse`, then "
        "`consult run`.")


def content_note(name: str, platform: str, validation: Validation, earlier: list[str]) -> str | None:
    """What to tell the analyst when an export without response ids repeats rows loaded before and
    brings other rows: those are new responses, or responses edited on the platform since (their old
    version stays loaded), which nothing can tell apart without a response id."""
    keyed = validation.content_keys.notna() & validation.without_ids()
    matched = int(validation.reason.isin([SAME_CONTENT, OTHER_KIND]).sum())
    fresh = int((keyed & validation.outcome.isin(["loaded", "quarantined"])).sum())
    files = ", ".join(earlier) if earlier else "an earlier export"
    if matched and validation.content_answers_only:
        return (f"{name}: this export has no response id, submission time or email, so {matched} row(s) were "
                f"recognised as rows loaded before from {files} by their answers alone (counted as duplicates), "
                f"{fresh} row(s) are new or changed. Two people who answered alike look the same: if this export "
                "holds only responses not loaded before, those rows were set aside wrongly. Export with the response "
                "id column (LimeSurvey: id; Kobo: _uuid) or the submission time when the platform has one (docs/"
                "runbook.md, \"Exports without response ids\").")
    if not matched or not fresh:
        return None
    return (f"{name}: {platform} exports have no response ids, so responses are recognised by their content "
            f"(submission time, email, answers): {matched} row(s) match rows loaded before from {files} (counted "
            f"as duplicates), {fresh} row(s) are new or changed. A response edited on the platform since the "
            "earlier export cannot be told from a new one: it is loaded again and its old version stays loaded. "
            "If the form lets respondents edit their responses, replace the earlier export(s) with this one "
            f"instead: move them and this file out of data/raw/, `consult unload {name} --yes`, then `consult "
            f"unload <file> --yes` for each earlier one, put only this file back and run `consult run` (docs/"
            "runbook.md, \"Exports without response ids\").")


def _refuse_unstated_comparability(con, paths: Paths, new_waves: set[int]) -> None:
    """Stop before reading the exports when the indicators would stop the run anyway: a question
    asked differently in two waves with figures, and no `comparability:` statement saying whether they
    compare (the same message as the indicators stage gives, foreseen from the questionnaires); and
    likewise when who is in scope changed between two waves with no `population_change:` statement."""
    waves = new_waves | {w for (w,) in con.execute("SELECT DISTINCT wave FROM load_ledger").fetchall()}
    instruments = {w: load_instrument(instrument_path(paths.surveys, w)) for w in sorted(waves)
                   if instrument_path(paths.surveys, w).exists()}  # a missing one stops at its export
    catalogue = load_checked_catalogue(paths.indicators_file, paths.surveys)
    messages = [population_message(unstated) for unstated in
                [unstated_population_changes(instruments, waves_before_inclusion_check(con))] if unstated]
    messages += filter(None, [unstated_comparability(catalogue, instruments, load_derivations(derived_path(paths.surveys)),
                                                     unrecorded_waves(con))])
    if messages:
        raise IndicatorError("\n".join(messages)
                             + "\nNothing was loaded: add the statements, then run `consult run` again.")


def _refuse_mixing(con, synthetic: bool, paths: Paths) -> None:
    holds = holds_synthetic(con)
    if holds is None or holds == synthetic:
        return
    what = "the synthetic consultation" if holds else "real exports"
    raise RunError(
        f"{paths.warehouse}: the warehouse already holds {what}; real and synthetic data are never "
        "mixed. Remove the warehouse first (`make clean-warehouse`), then run again."
    )


def derivations_sha256(paths: Paths) -> str:
    """surveys/derived.yaml and the whole of the reference tables it names: what warehouses built
    before the per-wave fingerprint (derived_inputs_sha256) recorded."""
    path = derived_path(paths.surveys)
    digest = hashlib.sha256(path.read_bytes())
    for name in sorted(load_derivations(path).references):
        digest.update((path.parent / name).read_bytes())
    return digest.hexdigest()


def derived_inputs_sha256(paths: Paths, waves: Iterable[int]) -> str:
    """What the derived answers stored for `waves` were computed from: surveys/derived.yaml and, of
    each reference table it names, only what those waves read (their rate year and its caveat, that
    year's rates, the source). Why not the whole table: every new wave needs a new year of rates and
    its own `rate_year_for_wave` line (runbook step 1), which changes nothing stored; counting them
    would demand a rebuild from exports every year, and the raw exports of published waves are deleted."""
    path = derived_path(paths.surveys)
    digest = hashlib.sha256(path.read_bytes())
    for name, table in sorted(load_derivations(path).references.items()):
        for wave in sorted(waves):
            chosen = table.rate_year_for_wave.get(wave)  # none: the line was removed, which counts as a change
            rates = table.rates.get(chosen.year) if chosen else None
            used = [name, wave, table.cited(), chosen.model_dump() if chosen else None, rates]
            digest.update(json.dumps(used, sort_keys=True).encode())
    return digest.hexdigest()


def _loaded_waves(con) -> list[int]:
    return [w for (w,) in con.execute("SELECT DISTINCT wave FROM load_ledger ORDER BY wave").fetchall()]


def _changed_questionnaires(con, paths: Paths, loading: set[int], groups: GroupCodes,
                            progress: Progress) -> list[Instrument]:
    """The loaded waves (not being loaded again now) whose questionnaire changed since: wording, scores,
    codes that mean no answer are read from the warehouse's copy when figures are computed, so the
    copy is rewritten (as loading another export of the wave does) and the indicators recomputed.
    What only applies when answers are read (column names, checks) applies to the next export."""
    changed = []
    for (wave,) in con.execute("SELECT DISTINCT wave FROM load_ledger ORDER BY wave").fetchall():
        path = instrument_path(paths.surveys, wave)
        if wave in loading or not path.exists():
            continue
        instrument = load_instrument(path)
        if not questionnaire_changed(con, instrument, groups):
            continue
        if _unfilled(con, wave):
            progress(f"wave {wave} was loaded before the warehouse kept who is asked each question and the units: "
                     f"they are filled in from {path.relative_to(paths.root)} (waves loaded before are not compared on them "
                     "with each other, a new wave is)")
        else:
            progress(f"{path.relative_to(paths.root)}: the questionnaire changed since wave {wave} was loaded "
                     "(wording, scores, answer codes, who is asked or units): the warehouse's copy is updated and "
                     "the indicators recomputed")
        changed.append(instrument)
    return changed


def _unfilled(con, wave: int) -> bool:
    """Whether the wave's copy has no who-is-asked yet (stored before the warehouse kept it)."""
    return con.execute("SELECT count(*) FROM concepts WHERE wave = ? AND section <> ? AND show_if IS NULL",
                       [wave, DERIVED]).fetchall()[0][0] > 0


def _shown_values_outdated(con) -> bool:
    """Whether failing values were stored under an older rule of what may be shown (a name typed as
    a wage was stored as typed before validate.shown_value): they are judged again."""
    stored = con.execute("SELECT value FROM warehouse_meta WHERE key = 'shown_values'").fetchall()
    if stored and stored[0][0] == SHOWN_VALUES_VERSION:
        return False
    return con.execute("SELECT count(*) FROM quarantine_issues WHERE value IS NOT NULL").fetchall()[0][0] > 0


def _scrub_lists_changed(con, paths: Paths) -> str | None:
    """Why the stored texts must be scrubbed again: they were scrubbed with other lists than
    surveys/deidentification.yaml's now, or with lists not recorded (warehouses from before this
    was kept). None when they need not."""
    stored = con.execute("SELECT value FROM warehouse_meta WHERE key = 'scrub_lists_sha256'").fetchall()
    name = paths.deid_file.relative_to(paths.root)
    if stored:
        return f"{name} changed since the open answers were stored" if stored[0][0] != scrub_lists_sha256(
            paths.deid_file) else None
    if con.execute("SELECT count(*) FROM load_ledger").fetchall()[0][0]:
        return f"{name}: the lists the open answers were stored with were not recorded"
    return None


def _reload_plan(con, paths: Paths, files: list[Path], waves: set[int], wave: int | None) -> list[LoadedFile]:
    """The loaded exports of `waves`, oldest first, once each is known to be readable again: still in
    the folder the run reads, byte for byte, and holding no response another wave's export repeats."""
    from pipeline.retention import purged_files

    if not waves:
        return []
    loaded = [f for f in loaded_files(con) if f.wave in waves]
    present = {file_sha256(path) for path in files if wave_of(path, wave) in waves}
    purged = purged_files(con)
    folder = "data/synthetic" if holds_synthetic(con) else "data/raw"
    for asked in sorted(waves - {f.wave for f in loaded}):
        raise RunError(f"--reload {asked}: wave {asked} has no loaded export to load again (loaded waves: "
                       f"{', '.join(str(w) for w in _loaded_waves(con)) or 'none'}). Nothing was loaded.")
    for target in loaded:
        where = f"{folder}/{target.wave}/"
        if target.sha256 in purged:
            raise RunError(f"--reload {target.wave}: {target.name} was deleted with `consult purge-raw`, so wave "
                           f"{target.wave} cannot be read again. Nothing was loaded.")
        if target.sha256 not in present:
            raise RunError(f"--reload {target.wave}: {target.name} (sha256 {target.sha256[:12]}...) is not in {where} "
                           "as it was loaded (moved, renamed to another folder, or changed since). Put the very file "
                           f"back in {where} and run again. Nothing was loaded.")
    if others := dependants(con, loaded):  # read again under other rules, a response may not load
        named = ", ".join(f"{name} (wave {w}: {n} row(s))" for name, w, n in others)
        raise RunError(f"--reload: exports of other waves hold rows counted as duplicates of responses these exports "
                       f"loaded: {named}. Reading them again alone could lose those responses: add those waves to "
                       "--reload. Nothing was loaded.")
    return loaded


def _in_load_order(files: list[Path], targets: list[LoadedFile], wave: int | None) -> list[Path]:
    """The exports loaded again first, in the order they were loaded (which of two copies of a
    response loads follows that order), then the others as given."""
    order = {(t.wave, t.sha256): n for n, t in enumerate(targets)}
    keyed = [(order.get((wave_of(path, wave), file_sha256(path)), len(order)), n, path) for n, path in enumerate(files)]
    return [path for _, _, path in sorted(keyed)]


def _loaded_instruments(con, paths: Paths) -> dict[int, Instrument]:
    """The current instrument of every loaded wave that has one."""
    return {wave: load_instrument(instrument_path(paths.surveys, wave)) for wave in _loaded_waves(con)
            if instrument_path(paths.surveys, wave).exists()}


def changed_inclusion_messages(con, paths: Paths, synthetic: bool) -> dict[int, str]:
    """By loaded wave whose `inclusion:` rules changed since its exports were loaded: what changed and
    the ways out (the run stops before reading anything; `consult status` says it would)."""
    from pipeline.retention import purged_files

    changes = inclusion_changed_since_loaded(recorded_inclusion(con), _loaded_instruments(con, paths))
    if not changes:
        return {}
    purged = purged_files(con)
    files: dict[int, list[tuple[str, bool]]] = {}
    for sha, name, wave in con.execute(
            "SELECT file_sha256, file_name, wave FROM load_ledger ORDER BY loaded_at, file_name").fetchall():
        files.setdefault(wave, []).append((name, sha in purged))
    folder = "data/synthetic/<wave>" if synthetic else "data/raw/<wave>"
    return {change.instrument.wave: rules_changed_message([change], files, folder) for change in changes}


def _refuse_stale_derivations(con, paths: Paths) -> None:
    """Derived answers (below_living_wage) are computed from the raw answers at load and the raw
    values are not kept: after their definitions change, the stored ones are stale, and only a
    rebuild from the exports can compute them again."""
    stored = dict(con.execute("SELECT key, value FROM warehouse_meta WHERE key IN "
                              "('derived_inputs_sha256', 'derived_sha256')").fetchall())
    if "derived_inputs_sha256" in stored:
        if stored["derived_inputs_sha256"] == derived_inputs_sha256(paths, _loaded_waves(con)):
            return
    elif stored.get("derived_sha256", derivations_sha256(paths)) == derivations_sha256(paths):
        # nothing recorded yet, or a warehouse from before the per-wave fingerprint and nothing changed
        # since: record the per-wave one now, so that next year's rates added later are not a change
        if stored:
            con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES ('derived_inputs_sha256', ?)",
                        [derived_inputs_sha256(paths, _loaded_waves(con))])
        return
    raise RunError(
        f"{derived_path(paths.surveys)}: this file or a reference table it names (e.g. the living-wage rates or "
        "rate year of a wave already loaded) "
        "changed since the warehouse was built, so the derived answers it stores (such as below_living_wage) "
        "were computed with the old definitions. Nothing was loaded. Rebuild the warehouse from the exports: "
        "`make clean-warehouse`, then `consult run` (every export loaded so far must still be in data/raw/); "
        "or put the old definitions back." + ("" if "derived_inputs_sha256" in stored else UPGRADED_HINT)
    )


# A warehouse built before the per-wave record holds one checksum of the whole files: a new year's
# rates added before its first run on this version cannot be told from a revised rate, once.
UPGRADED_HINT = (" This warehouse was built by an earlier version of the pipeline, which recorded the whole "
                 "rates file: if you only added a new year's rates or a new wave's rate year, take those lines "
                 "out again, run `consult run` once, then add them back (from then on they are not a change).")


def instrument_for(paths: Paths, path: Path, wave: int) -> Instrument:
    """The instrument of the wave an export belongs to; a clear error when there is none."""
    instrument_file = instrument_path(paths.surveys, wave)
    if not instrument_file.exists():
        known = ", ".join(str(w) for w in available_waves(paths.surveys)) or "none"
        latest = max(available_waves(paths.surveys), default=None)
        start = (f"If {wave} is a new wave, start it with `consult wave new {wave} --from {latest}`; otherwise move "
                 "the file into the folder of its wave." if latest is not None and wave > latest else
                 "Move the file into the folder of its wave.")
        raise RunError(f"{path}: no instrument for wave {wave} ({instrument_file} is missing; "
                       f"waves with an instrument: {known}). {start}")
    return load_instrument(instrument_file)


def _prepare(paths: Paths, path: Path, wave: int, synthetic: bool, seen: set[str], progress: Progress,
             contents: dict[str, int] | None = None, with_ids: dict[str, list[str]] | None = None,
             waiting: Sequence[WaitingRow] = ()) -> FileLoad:
    instrument = instrument_for(paths, path, wave)
    export = read_export(path, instrument)
    progress(f"    read {export.rows} rows ({export.platform}); validating")
    scrubber = load_scrubber(paths.deid_file)  # failing values are scrubbed as open answers are
    validation = validate(export, instrument, secret_key(), seen, scrubber=scrubber, seen_contents=contents,
                          seen_id_contents=with_ids, waiting=waiting)
    export = only_what_deidentify_reads(export)
    progress("    de-identifying")
    microdata = load_privacy_rules(privacy_path(paths)).microdata
    derivations = load_derivations(derived_path(paths.surveys))
    # the key quasi-identifiers' answers are held apart, for protect_microdata, which replaces them
    data = deidentify(export, validation, instrument, scrubber,
                      microdata.numeric_quasi_identifiers, derivations, held=microdata.key_quasi_identifiers)
    return FileLoad(without_raw_frames(export), instrument, validation, data, synthetic)


def without_raw_frames(export: Export) -> Export:
    """The export without its raw answers and identifiers, which are not needed once de-identified
    (what is written keeps the file's name, hash, platform and row numbers): a large export would
    otherwise stay in memory until the end of the run, and raw identifiers longer than needed."""
    return replace(export, answers=export.answers.iloc[:, :0], metadata=export.metadata.iloc[:, :0],
                   identifiers=export.identifiers.iloc[:, :0])


def return_freed_memory() -> None:
    """Hand the heap that freed frames leave behind back to the system (glibc keeps it for this
    process's own mallocs, which DuckDB's allocator does not use), before the next memory peak."""
    gc.collect()
    if _GLIBC is not None:
        _GLIBC.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None  # musl and others have none


_GLIBC = _glibc()


def _file_summary(item: FileLoad) -> FileSummary:
    v = item.validation
    return FileSummary(
        item.export.path.name, item.instrument.wave, "loaded", item.export.platform, item.export.rows,
        v.count("loaded"), v.count("quarantined"), v.count("excluded"), v.count("duplicate"), v.flag_counts(),
        unknown_columns(item.export),
    )


def _write_atomically(con, paths: Paths, loads: list[FileLoad], run_id: str, catalogue, privacy, progress: Progress,
                      reworded: Sequence[Instrument] = (), groups: GroupCodes | None = None,
                      rescrub: str | None = None, remask: bool = False, began: bool = False) -> bool:
    """Returns whether stored text was removed or replaced (scrubbed again, masked, or the answers of a
    question now marked a direct identifier): then the caller rewrites the warehouse file. `began`: the
    caller's transaction is open already (exports loaded again were taken out in it)."""
    progress(f"writing {len(loads)} file(s) to the warehouse and computing indicators")
    removed = 0
    if not began:
        con.execute("BEGIN TRANSACTION")
    try:
        for instrument in reworded:
            removed += refresh_questionnaire(con, instrument, groups or {})
        if rescrub:  # before the new files: they were scrubbed with the current lists already
            changed = rescrub_stored(con, load_scrubber(paths.deid_file))
            removed += changed
            progress(f"{rescrub}: the open answers stored were scrubbed again with its lists ({changed} stored "
                     "text(s) changed; the quotes among them wait for review again)")
        con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES ('scrub_lists_sha256', ?)",
                    [scrub_lists_sha256(paths.deid_file)])
        if remask:  # values stored before shown_value decided what of a failing value is kept
            masked = mask_stored_values(con, paths.surveys)
            removed += masked
            progress(f"failing values stored under an older rule judged again: {masked} replaced by "
                     "\"(text of N characters, not shown)\" (they held words that could be a name)")
        con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES ('shown_values', ?)", [SHOWN_VALUES_VERSION])
        record_known_inclusion(con, _loaded_instruments(con, paths))
        removed += write_run(con, loads, run_id, paths.living_wage_file)
        return_freed_memory()  # the de-identified frames, now in the warehouse
        if loads:
            con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES ('derived_inputs_sha256', ?)",
                        [derived_inputs_sha256(paths, _loaded_waves(con))])
        # k-anonymity over every wave's stored respondents, old and new, before anything is computed
        protect_microdata(con, privacy)
        compute(con, catalogue, load_rules(paths.disclosure_file), merged_code_labels(privacy))
        if removed:
            mark_rewrite_pending(con)
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise
    return removed > 0


def _rollback(con) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # a transaction the database already aborted has nothing left to roll back


def _keep_run_record(paths: Paths, summary: RunSummary, loads: list[FileLoad]) -> None:
    """Validation results (Great Expectations JSON) and the run summary, beside the warehouse."""
    folder = paths.runs / summary.run_id
    folder.mkdir(parents=True, exist_ok=True)
    for item in loads:
        target = folder / f"validation-{item.export.sha256[:12]}.json"
        target.write_text(json.dumps(item.validation.gx_result, indent=2, default=str), encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps(asdict(summary), indent=2), encoding="utf-8")


def rebuild_indicators(paths: Paths) -> int:
    catalogue = load_checked_catalogue(paths.indicators_file, paths.surveys)
    with connect(paths.warehouse, read_only=True):  # no warehouse: say so, never create an empty one
        pass
    with connect(paths.warehouse) as con:
        ensure_schema(con)
        con.execute("BEGIN TRANSACTION")
        try:
            estimates = compute(con, catalogue, load_rules(paths.disclosure_file),
                                merged_code_labels(load_privacy_rules(privacy_path(paths))))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return len(estimates)


__all__ = ["RunError", "RunSummary", "run_load", "rebuild_indicators", "ExportError", "WarehouseError"]

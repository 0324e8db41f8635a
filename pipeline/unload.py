"""Unload: take back one export that `consult run` loaded by mistake (`consult unload`).

A file put in the wrong wave folder, a test export, or a file from another consultation that
happened to match the questionnaire: its rows are removed from the warehouse as if it had never
been loaded, in one transaction (an error or a killed process leaves the warehouse as it was).
What is worked out from a whole wave (k-anonymity of the stored answers, the indicators) is then
recomputed by the same functions `consult run` uses, and the load ledger changes, so the next
`consult run` renders the report and the release again.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field

import duckdb

from pipeline.anonymity import load_checked_privacy_rules, load_privacy_rules, privacy_path, protect_microdata
from pipeline.config import Paths
from pipeline.disclosure import load_rules
from pipeline.indicators import compute, load_checked_catalogue, merged_code_labels
from pipeline.load import (LOAD_TIME, ROW_OUTCOMES, WarehouseError, connect, ensure_schema, mark_rewrite_pending,
                           rewrite_warehouse, write_error)
from pipeline.validate import OTHER_KIND, SAME_CONTENT

# Per-wave tables of what a wave's loads brought (its questionnaire, reference rates, protection
# record): they go with the wave's last export, as in a warehouse that never loaded it.
WAVE_TABLES = ("concepts", "choices", "derived_concepts", "living_wage", "column_protection", "anonymity_summary",
               "wave_inclusion")
HASH_START = re.compile(r"^[0-9a-fA-F]{6,64}$")  # at least 6 hex digits: short enough to type, rarely shared


class UnloadError(RuntimeError):
    """An unload refused; the message says why and what to do first. Nothing was changed."""


@dataclass(frozen=True)
class LoadedFile:
    sha256: str
    name: str
    wave: int
    loaded_at: dt.datetime
    read: int
    loaded: int
    quarantined: int
    excluded: int
    duplicates: int

    def line(self) -> str:
        return (f"{self.name}  wave {self.wave}  loaded {self.loaded_at.strftime(LOAD_TIME)}  "
                f"{self.loaded} response(s)  sha256 {self.sha256[:12]}")


@dataclass
class Unload:
    """What unloading a file removes (or removed, once `removed` is true)."""

    file: LoadedFile
    open_text: int = 0  # open answers stored from the file
    quotes: int = 0  # candidate quotes that exist only because of the file
    quotes_decided: int = 0  # ... of which a reviewer approved or rejected
    quote_ids: list[str] = field(default_factory=list)  # those candidates' ids (not in the record)
    last_of_wave: bool = False  # no other export of the wave: its questionnaire copy goes too
    removed: bool = False


def loaded_files(con: duckdb.DuckDBPyConnection) -> list[LoadedFile]:
    rows = con.execute(
        "SELECT file_sha256, file_name, wave, loaded_at, rows_read, rows_loaded, rows_quarantined, rows_excluded, "
        "rows_duplicate FROM load_ledger ORDER BY wave, loaded_at, file_name").fetchall()
    return [LoadedFile(*row) for row in rows]


def find_loaded(files: list[LoadedFile], which: str, wave: int | None = None) -> LoadedFile:
    """The one loaded file named `which` (as in `consult status`), in `wave` when given, or whose
    content hash starts with `which`. Otherwise the error lists the loaded files to choose from."""
    named = [f for f in files if f.name == which and (wave is None or f.wave == wave)]
    if not named and HASH_START.match(which):
        named = [f for f in files if f.sha256.startswith(which.lower()) and (wave is None or f.wave == wave)]
    if len(named) == 1:
        return named[0]
    listed = "\n".join("  " + f.line() for f in files) or "  (none: nothing is loaded)"
    where = f" in wave {wave}" if wave is not None else ""
    if not named:
        raise UnloadError(f"{which}: no loaded export{where} has this name or hash start. Loaded exports:\n{listed}")
    how = ("add --wave WAVE" if len({f.wave for f in named}) > 1 else "give the start of its hash instead of the name")
    choices = "\n".join("  " + f.line() for f in named)
    raise UnloadError(f"{which}: {len(named)} loaded exports match{where}; say which one ({how}):\n{choices}")


def unload(paths: Paths, which: str, wave: int | None = None, confirm: bool = False,
           progress=lambda _m: None) -> Unload:
    """Without `confirm`, only say what would be removed. With it, remove the file's rows and its
    respondents, and recompute k-anonymity and the indicators, all in one transaction; then rewrite
    the warehouse file, so that the removed rows' bytes leave it too."""
    catalogue = load_checked_catalogue(paths.indicators_file, paths.surveys)  # broken definitions: stop first
    privacy = load_checked_privacy_rules(privacy_path(paths), paths.surveys)
    with connect(paths.warehouse, read_only=True) as con:  # no warehouse, or a run holds it: said plainly
        target = find_loaded(loaded_files(con), which, wave)
        plan = _plan(con, paths, target)
        _refuse_dependants(con, target)
    _refuse_if_still_read(paths, target)
    if not confirm:
        return plan
    not_rewritten = None
    try:
        with connect(paths.warehouse) as con:
            ensure_schema(con)
            con.execute("BEGIN TRANSACTION")
            try:
                _remove_and_recompute(con, paths, target, catalogue, privacy)
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise
            try:
                rewrite_warehouse(con, paths.warehouse, progress)
            except WarehouseError as exc:  # the unload itself is done: recorded below, then said
                not_rewritten = exc
    except duckdb.Error as exc:
        if (told := write_error(paths.warehouse, exc, "Nothing was removed.")) is not None:
            raise told from None
        raise
    plan.removed = True
    _forget_quotes(paths, target.wave, set(plan.quote_ids))
    _keep_record(paths, plan)
    if not_rewritten is not None:
        raise not_rewritten
    return plan


def _remove_and_recompute(con: duckdb.DuckDBPyConnection, paths: Paths, target: LoadedFile, catalogue,
                          privacy) -> None:
    """The unload itself, inside the caller's transaction: checked again (another command may have
    changed the warehouse since the file was looked up), removed, then what is worked out from
    whole waves is worked out again by the functions `consult run` uses."""
    _still_loaded(con, target)
    _refuse_dependants(con, target)
    derived_current = _derived_record_current(con, paths)
    remove_file(con, target)
    if derived_current:
        _write_derived_record(con, paths)
    protect_microdata(con, privacy)  # k-anonymity of the wave, over the respondents left
    compute(con, catalogue, load_rules(paths.disclosure_file), merged_code_labels(privacy))
    mark_rewrite_pending(con)  # cleared by the rewrite that follows the commit


def remove_file(con: duckdb.DuckDBPyConnection, target: LoadedFile) -> None:
    """Delete every row keyed by the file, and everything of the respondents it brought (each
    respondent comes from exactly one file). Tables are found by their key column, so a table
    added later is not forgotten. The caller holds the transaction."""
    tables = _base_tables(con)
    chosen = "SELECT respondent_key FROM respondents WHERE file_sha256 = ?"
    for table in sorted(t for t, columns in tables.items() if "respondent_key" in columns and t != "respondents"):
        _delete(con, f"DELETE FROM {table} WHERE respondent_key IN ({chosen})", [target.sha256])
    # not the record that its raw export was deleted (`consult purge-raw`): that stays true
    for table in sorted(t for t, columns in tables.items() if "file_sha256" in columns and t != "purges"):
        _delete(con, f"DELETE FROM {table} WHERE file_sha256 = ?", [target.sha256])
    # rows set aside in other exports whose fixed version this file loaded wait for a fix again
    con.execute("UPDATE row_outcomes SET fixed_in = NULL, fixed_row = NULL WHERE fixed_in = ?", [target.sha256])
    still = {w for (w,) in con.execute("SELECT DISTINCT wave FROM load_ledger").fetchall()}
    if target.wave in still:
        return
    for table in WAVE_TABLES:  # the wave's last export: nothing of the wave stays
        _delete(con, f"DELETE FROM {table} WHERE wave = ?", [target.wave])


def _delete(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> None:
    con.execute(sql, params)


def _base_tables(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """The warehouse's own tables (not views, not this connection's temporary tables) and their columns."""
    rows = con.execute(
        "SELECT t.table_name, c.column_name FROM duckdb_tables() t JOIN duckdb_columns() c "
        "ON c.table_oid = t.table_oid WHERE NOT t.temporary AND t.schema_name = 'main' "
        "AND t.database_name = current_database()").fetchall()
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    return tables


def _plan(con: duckdb.DuckDBPyConnection, paths: Paths, target: LoadedFile) -> Unload:
    open_text = con.execute("SELECT count(*) FROM open_text WHERE respondent_key IN "
                            "(SELECT respondent_key FROM respondents WHERE file_sha256 = ?)",
                            [target.sha256]).fetchall()[0][0]
    only_here = _quotes_only_from(con, paths, target)
    decided = _decided_quotes(paths, target.wave, only_here)
    others = con.execute("SELECT count(*) FROM load_ledger WHERE wave = ? AND file_sha256 <> ?",
                         [target.wave, target.sha256]).fetchall()[0][0]
    return Unload(target, open_text, len(only_here), len(decided), sorted(only_here), last_of_wave=others == 0)


def _quotes_only_from(con: duckdb.DuckDBPyConnection, paths: Paths, target: LoadedFile) -> set[str]:
    """Ids of the candidate quotes that only the file's open answers give (the same words from
    another export stay a candidate)."""
    from pipeline.quotes import quote_id

    rules = load_privacy_rules(privacy_path(paths)).quotes
    mine_or_not = con.execute(
        "SELECT o.wave, o.concept, o.text, bool_and(r.file_sha256 = ?) FROM open_text o "
        "JOIN respondents r USING (respondent_key) WHERE o.wave = ? GROUP BY ALL",
        [target.sha256, target.wave]).fetchall()
    return {quote_id(w, concept, text) for w, concept, text, only in mine_or_not
            if only and rules.min_words <= len(text.split()) <= rules.max_words}


def _decided_quotes(paths: Paths, wave: int, ids: set[str]) -> set[str]:
    from pipeline.quotes import read_review, review_file

    return {i for i, q in read_review(review_file(paths, wave)).items() if i in ids and q.status != "pending"}


def _forget_quotes(paths: Paths, wave: int, ids: set[str]) -> None:
    """Drop the review entries of the file's quotes: `consult run` keeps a decision on words no longer
    in the warehouse, but words from a wrong export have no business in data/review/."""
    from pipeline.quotes import read_review, review_file, write_review

    path = review_file(paths, wave)
    decided = read_review(path)
    if ids & set(decided):
        write_review(path, wave, [q for i, q in decided.items() if i not in ids])


def _still_loaded(con: duckdb.DuckDBPyConnection, target: LoadedFile) -> None:
    if not con.execute("SELECT count(*) FROM load_ledger WHERE file_sha256 = ?", [target.sha256]).fetchall()[0][0]:
        raise UnloadError(f"{target.name}: no longer loaded (another command took it back meanwhile). Nothing was "
                          "changed.")


def dependants(con: duckdb.DuckDBPyConnection, targets: list[LoadedFile]) -> list[tuple[str, int, int]]:
    """Rows of exports other than `targets` counted as duplicates of responses the targets loaded, as
    (file, wave, rows): without the targets' rows, nothing would hold those responses."""
    shas = [t.sha256 for t in targets]
    return con.execute(
        f"SELECT l.file_name, l.wave, count(*) FROM {ROW_OUTCOMES} o JOIN load_ledger l USING (file_sha256) "
        "WHERE o.outcome = 'duplicate' AND NOT list_contains($shas, o.file_sha256) AND (o.response_key IN "
        "(SELECT response_key FROM seen_responses WHERE list_contains($shas, file_sha256)) OR "
        "(o.reason IN ($same, $other) AND o.content_key IN "
        f"(SELECT content_key FROM {ROW_OUTCOMES} WHERE list_contains($shas, file_sha256) AND outcome = 'loaded'))) "
        "GROUP BY ALL ORDER BY ALL", {"shas": shas, "same": SAME_CONTENT, "other": OTHER_KIND}).fetchall()


def _refuse_dependants(con: duckdb.DuckDBPyConnection, target: LoadedFile) -> None:
    """Once the file is gone nothing would hold its dependants' responses, so a warehouse without the
    file would have loaded them."""
    if others := dependants(con, [target]):
        named = ", ".join(f"{name} (wave {w}: {n} row(s))" for name, w, n in others)
        raise UnloadError(
            f"{target.name}: other exports hold responses counted as duplicates of the ones this file loaded: {named}. "
            "Unloading it alone would lose those responses. Unload those exports first, then this one, then put "
            "the right exports back in data/raw/<wave>/ and run `consult run`. Nothing was changed.")


def _refuse_if_still_read(paths: Paths, target: LoadedFile) -> None:
    """The next `consult run` loads every export of data/raw/<wave>/ it has not loaded: a file
    unloaded but left there would simply come back."""
    from pipeline.retention import raw_exports

    found = [f.path for f in raw_exports(paths)[0] if f.sha256 == target.sha256 and f.wave == target.wave]
    if found:
        where = found[0].relative_to(paths.root) if found[0].is_relative_to(paths.root) else found[0]
        raise UnloadError(
            f"{where}: this export is still in the folder `consult run` reads, so the next run would load it "
            f"again. Move it out of {where.parent}/ first (or into the folder of the wave it belongs to, e.g. "
            f"data/raw/<wave>/), then run `consult unload` again. Nothing was changed.")


def _derived_record_current(con: duckdb.DuckDBPyConnection, paths: Paths) -> bool:
    from pipeline.run import derived_inputs_sha256

    stored = con.execute("SELECT value FROM warehouse_meta WHERE key = 'derived_inputs_sha256'").fetchall()
    return bool(stored) and stored[0][0] == derived_inputs_sha256(paths, _waves(con))


def _write_derived_record(con: duckdb.DuckDBPyConnection, paths: Paths) -> None:
    """What the stored derived answers were computed from covers the loaded waves (`consult run`
    refuses to load when it differs): written again for the waves left. Only when it was current
    before: a stale record must keep stopping the next run."""
    from pipeline.run import derived_inputs_sha256

    con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES ('derived_inputs_sha256', ?)",
                [derived_inputs_sha256(paths, _waves(con))])


def _waves(con: duckdb.DuckDBPyConnection) -> list[int]:
    return [w for (w,) in con.execute("SELECT DISTINCT wave FROM load_ledger ORDER BY wave").fetchall()]


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # a transaction the database already aborted has nothing left to roll back


def _keep_record(paths: Paths, done: Unload) -> None:
    """Beside the run records: which file was taken back, when, and what it had brought."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = paths.runs / stamp
    folder.mkdir(parents=True, exist_ok=True)
    record = asdict(done)
    del record["quote_ids"]
    record["file"]["loaded_at"] = done.file.loaded_at.strftime(LOAD_TIME)
    (folder / f"unload-{done.file.sha256[:12]}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")

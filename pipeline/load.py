"""Load: write de-identified responses and the ledger into the DuckDB warehouse, atomically.

All files of one run are written in a single transaction: a failure or an interrupted process
leaves the warehouse exactly as it was. A file already in the ledger (same content hash) is never
loaded again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd

from pipeline.anonymity import HELD_ANSWERS, hold_answers
from pipeline.deidentify import Deidentified, DerivedConcept, load_reference_table
from pipeline.ingest import Export
from pipeline.instrument import Disclosure, Instrument, show_if_text, unit_text
from pipeline.validate import Validation, WaitingRow


class WarehouseError(RuntimeError):
    """The warehouse cannot be opened or written; the message says what to do."""


@dataclass
class FileLoad:
    """Everything one export file contributes to the warehouse."""

    export: Export
    instrument: Instrument
    validation: Validation
    data: Deidentified | None  # None once written (write_run)
    synthetic: bool


def schema_sql() -> str:
    return resources.files("pipeline").joinpath("sql/schema.sql").read_text(encoding="utf-8")


# DuckDB's memory budget; beyond it, it spills to disk (the warehouse's folder, <file>.tmp, removed
# on close). Its own default (80% of the machine's memory) let a run on 1,000,000 responses take
# 23 GB. Since the indicators are built one step at a time, 1.5 GB is enough: at 1,000,000
# responses it keeps the whole run under 4 GB (with 2 GB: 4.1 GB), for about a tenth more CPU in
# the indicators and none elsewhere.
DEFAULT_MEMORY_LIMIT = "1.5GB"
MEMORY_LIMIT_VARIABLE = "CONSULT_MEMORY_LIMIT"  # e.g. 8GB on a large machine, 1GB on a small one
_SIZE = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def memory_limit() -> str:
    limit = os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip() or DEFAULT_MEMORY_LIMIT
    if not _SIZE.match(limit):
        raise WarehouseError(f"{MEMORY_LIMIT_VARIABLE}={limit!r}: expected a size such as 4GB or 512MB")
    return limit


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    if read_only and not path.exists():
        raise WarehouseError(f"{path}: no warehouse yet; run `consult run` (or `make report`) first")
    limit = memory_limit()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path), read_only=read_only)
        con.execute(f"SET memory_limit = '{limit}'")
        _no_progress_bar(con)
    except duckdb.IOException as exc:
        message = str(exc).splitlines()[0]
        if "lock" in message.lower():
            raise WarehouseError(_locked(path, message)) from None
        hint = DAMAGED_HINT if any(sign in message for sign in DAMAGED_SIGNS) else ""
        raise WarehouseError(f"{path}: cannot open the warehouse ({message}).{hint}") from None
    except OSError as exc:
        raise WarehouseError(f"{path}: cannot create the warehouse folder ({exc.strerror})") from None
    if not read_only:  # the lock is ours: a rewrite killed before its swap left its copy behind
        _remove_rewrite_leftovers(path)
    try:
        yield con
    finally:
        con.close()


def _locked(path: Path, message: str) -> str:
    """Another process holds the warehouse: said in words, with that process's number (DuckDB's own
    text, with its lock and documentation link, means nothing to staff)."""
    holder = re.search(r"\(PID (\d+)\)", message)
    which = f" (process {holder.group(1)})" if holder else ""
    return (f"{path}: the warehouse is in use by another program{which}. Another `consult` run may be using it: "
            "wait for it to finish, then run the command again.")


REWRITING = "rewriting the warehouse so that removed text leaves the file too"
# Set in warehouse_meta by the transaction that removes stored text, absent from the rewritten copy:
# a warehouse still holding it was not rewritten since (the process was killed, the disk was full),
# and the next `consult run` rewrites it.
REWRITE_PENDING = "rewrite_pending"


def mark_rewrite_pending(con: duckdb.DuckDBPyConnection) -> None:
    """Inside the transaction that removes or replaces stored text."""
    con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES (?, 'stored text removed since the file was "
                "last rewritten')", [REWRITE_PENDING])


def rewrite_pending(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM warehouse_meta WHERE key = ?", [REWRITE_PENDING]).fetchall()[0][0])


def rewrite_path(path: Path) -> Path:
    """Where rewrite_warehouse builds the new file, beside the warehouse (same filesystem: the swap is atomic)."""
    return path.with_name(path.name + ".compact")


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _remove_rewrite_leftovers(path: Path) -> None:
    fresh = rewrite_path(path)
    for leftover in (fresh, _wal(fresh)):
        leftover.unlink(missing_ok=True)


def rewrite_warehouse(con: duckdb.DuckDBPyConnection, path: Path, progress=lambda _m: None) -> None:
    """Write the warehouse afresh, once a committed change removed or replaced stored text (open
    answers scrubbed again, failing values masked, an export unloaded): DuckDB keeps the old bytes
    of updated and deleted rows in the file's free blocks, where `strings` finds the removed names
    although no table holds them. `con` is the read-write connection that made the change (it holds
    the warehouse's lock, so no other run has the file open); it must be closed right after.

    Every table, view, macro, sequence, index and key is copied (COPY FROM DATABASE) into a new file
    beside it, which is synced and only then swapped in over the old one (os.replace): a process
    killed on the way leaves the old file, complete, and its copy, which the next read-write
    connection removes (connect); the warehouse still says a rewrite is pending, so the next
    `consult run` does it."""
    progress(REWRITING)
    fresh = rewrite_path(path)
    _remove_rewrite_leftovers(path)
    con.execute("CHECKPOINT")  # everything committed is in the file: its .wal holds nothing more
    database = con.execute("SELECT current_database()").fetchall()[0][0]
    quoted = str(fresh).replace("'", "''")
    try:
        con.execute(f"ATTACH '{quoted}' AS rewritten_warehouse")
        try:
            con.execute(f'COPY FROM DATABASE "{database.replace(chr(34), chr(34) * 2)}" TO rewritten_warehouse')
            con.execute("DELETE FROM rewritten_warehouse.main.warehouse_meta WHERE key = ?", [REWRITE_PENDING])
        finally:
            con.execute("DETACH rewritten_warehouse")  # checkpoints the copy into its file
        if _wal(fresh).exists():
            raise WarehouseError(f"{fresh}: the rewritten warehouse was not written out whole; the warehouse "
                                 "was left as it was")
        _fsync(fresh)
        # a .wal of the old file would be replayed into the new one; after the CHECKPOINT there is none,
        # and what it could hold is in the file (and so in the copy)
        _wal(path).unlink(missing_ok=True)
        os.replace(fresh, path)
    except (duckdb.Error, OSError) as exc:
        _remove_rewrite_leftovers(path)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WarehouseError(
            f"{path}: the change was written, but the warehouse file could not be rewritten afterwards ({message}), "
            "so the text it removed may still be found in the file's unused space. Free some disk space (the "
            "rewrite needs room for a second copy of the warehouse), then run `consult run`: it rewrites the "
            "file.") from None
    except BaseException:
        _remove_rewrite_leftovers(path)
        raise
    _fsync(path.parent)  # the swap itself survives a power cut


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# What DuckDB says of a file cut short or that is not a database at all.
DAMAGED_SIGNS = ("Could not read enough bytes", "not a valid DuckDB database")
DAMAGED_HINT = (" The file is damaged (cut short, or not a DuckDB database). Restore it from a backup, or rebuild it "
                "from the exports: `make clean-warehouse`, then `consult run` with every export loaded so far in data/raw/.")


# How a file's load time is shown where it tells the file from a same-named one (the QA tables,
# `consult quarantine`, `consult unload`): to the second, as a re-run can be within a minute.
LOAD_TIME = "%Y-%m-%d %H:%M:%S"


def write_error(path: Path, exc: BaseException, nothing: str) -> WarehouseError | None:
    """What to tell staff when writing the warehouse failed with `exc` (`nothing`: what did not
    happen, e.g. "Nothing was loaded."), or None for any other error: out of its memory budget, a
    full disk or a read-only folder, a damaged file."""
    if isinstance(exc, duckdb.OutOfMemoryException):
        return WarehouseError(
            f"{path}: the database ran out of its memory budget ({memory_limit()}). {nothing} If the machine has "
            f"more memory, raise it (e.g. {MEMORY_LIMIT_VARIABLE}=8GB) and run again.")
    if isinstance(exc, (duckdb.IOException, duckdb.TransactionException, duckdb.FatalException)):
        message = str(exc).splitlines()[0]
        if any(sign in message for sign in DAMAGED_SIGNS):
            return WarehouseError(f"{path}: could not read the warehouse ({message}).{DAMAGED_HINT}")
        return WarehouseError(f"{path}: could not write the warehouse ({message}). {nothing} Free some disk space "
                              "or fix the folder's permissions, then run again.")
    return None


def _no_progress_bar(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB draws its progress bar on standard output, even into a file or a pipe: it would corrupt
    `consult audit --json` and the logs (the commands say what they do themselves)."""
    try:
        con.execute("SET enable_progress_bar = false; SET enable_progress_bar_print = false")
    except duckdb.Error:  # inside a notebook kernel DuckDB refuses the change (it draws no text bar there)
        pass


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create what pipeline/sql/schema.sql defines and the warehouse lacks. Skipped when the warehouse
    already has every table and view of this very schema (its hash is kept in warehouse_meta):
    running the DDL again rewrites the catalog, so a run that loads nothing, or fails, would change
    the file's bytes although nothing in it changed."""
    sql = schema_sql()
    digest = hashlib.sha256(sql.encode("utf-8")).hexdigest()
    if _schema_in_place(con, sql, digest):
        return
    con.execute(sql)
    con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES ('schema_sha256', ?)", [digest])


def _schema_in_place(con: duckdb.DuckDBPyConnection, sql: str, digest: str) -> bool:
    defined = set(re.findall(r"CREATE (?:TABLE IF NOT EXISTS|OR REPLACE VIEW) (\w+)", sql))
    present = {name for (name,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    if not defined <= present:
        return False
    stored = con.execute("SELECT value FROM warehouse_meta WHERE key = 'schema_sha256'").fetchall()
    return stored == [(digest,)]


def loaded_hashes(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("SELECT file_sha256 FROM load_ledger").fetchall()}


def seen_response_keys(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("SELECT response_key FROM seen_responses").fetchall()}


def seen_content_keys(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The content keys of the rows loaded without a response id, with how many rows loaded each."""
    return dict(con.execute("SELECT content_key, count(*) FROM row_outcomes WHERE outcome = 'loaded' "
                            "AND response_key IS NULL AND content_key IS NOT NULL GROUP BY content_key").fetchall())


def seen_id_content_keys(con: duckdb.DuckDBPyConnection, wave: int) -> dict[str, list[str]]:
    """The content keys of the wave's rows loaded with a response id, with their response keys (in
    load order): an export of the wave without response ids is checked against them."""
    found: dict[str, list[str]] = {}
    for content, response in con.execute(
            "SELECT o.content_key, o.response_key FROM row_outcomes o JOIN load_ledger l USING (file_sha256) "
            "WHERE l.wave = ? AND o.outcome = 'loaded' AND o.response_key IS NOT NULL AND o.content_key IS NOT NULL "
            "ORDER BY l.loaded_at, o.file_sha256, o.source_row", [wave]).fetchall():
        found.setdefault(content, []).append(response)
    return found


def waiting_rows(con: duckdb.DuckDBPyConnection, wave: int) -> list[WaitingRow]:
    """The wave's rows set aside without a response id and not fixed since (pipeline/validate.py,
    match_fixes): a later export's fixed version of one is recognised."""
    return [WaitingRow(sha, int(row), key, left_out) for sha, row, key, left_out in con.execute(
        "SELECT o.file_sha256, o.source_row, o.fix_key, o.fix_left_out FROM row_outcomes o "
        "JOIN load_ledger l USING (file_sha256) WHERE l.wave = ? AND o.outcome = 'quarantined' "
        "AND o.fix_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM row_outcomes f WHERE f.file_sha256 = o.fixed_in "
        "AND f.source_row = o.fixed_row AND f.outcome = 'loaded') ORDER BY o.file_sha256, o.source_row",
        [wave]).fetchall()]


def unkeyed_loaded_files(con: duckdb.DuckDBPyConnection, wave: int, with_ids: bool = False) -> list[tuple[str, int]]:
    """The wave's exports that loaded rows without a response id (`with_ids`: with one) and without a
    content key (loaded before the pipeline kept content keys for them), with how many: a later export
    of the other kind cannot be checked against them."""
    has_id = "IS NOT NULL" if with_ids else "IS NULL"
    return [(name, int(n)) for name, n in con.execute(
        "SELECT l.file_name, count(*) FROM row_outcomes o JOIN load_ledger l USING (file_sha256) "
        f"WHERE l.wave = ? AND o.outcome = 'loaded' AND o.response_key {has_id} AND o.content_key IS NULL "
        "GROUP BY l.file_name, l.loaded_at ORDER BY l.loaded_at", [wave]).fetchall()]


def content_keyed_files(con: duckdb.DuckDBPyConnection, wave: int) -> list[str]:
    """The wave's exports that loaded rows recognised by their content (no response id), oldest first."""
    return [name for (name,) in con.execute(
        "SELECT l.file_name FROM load_ledger l WHERE l.wave = ? AND EXISTS (SELECT 1 FROM row_outcomes o WHERE "
        "o.file_sha256 = l.file_sha256 AND o.outcome = 'loaded' AND o.response_key IS NULL "
        "AND o.content_key IS NOT NULL) ORDER BY l.loaded_at", [wave]).fetchall()]


def holds_synthetic(con: duckdb.DuckDBPyConnection) -> bool | None:
    """True/False when the warehouse holds synthetic/real data, None when it is empty."""
    rows = con.execute("SELECT DISTINCT synthetic FROM load_ledger").fetchall()
    return None if not rows else bool(rows[0][0])


# row_outcomes as read by commands that open the warehouse read-only (status, charts, unload): one
# made before content keys and fix keys, not yet given the columns by a run, reads them as NULL.
ROW_OUTCOMES = ("(SELECT * FROM row_outcomes UNION ALL BY NAME SELECT NULL::VARCHAR AS content_key, "
                "NULL::VARCHAR AS fix_key, NULL::VARCHAR AS fix_left_out, NULL::VARCHAR AS fixed_in, "
                "NULL::INTEGER AS fixed_row WHERE false)")

# Responses per wave and what became of them (the public methods page, `consult status`): a
# response read from several exports (a corrected re-export repeats the others) counts once, by its
# keyed response id, with the best of its outcomes. Rows without a response id count once by their
# content key, the n-th row of a file with a content with the n-th of every other file (two people
# who answered alike in one file stay two); rows with neither (loaded before content keys) count each.
# A row set aside without a response id whose fixed version a later export loaded (fixed_in) counts
# with that row.
RESPONSES_BY_WAVE = """
    WITH numbered AS (  -- BY NAME: a warehouse not yet given content_key (opened read-only) reads it as NULL
        SELECT *, coalesce(response_key, content_key || '#' || row_number() OVER (
                      PARTITION BY file_sha256, content_key, response_key IS NULL ORDER BY source_row),
                  file_sha256 || '#' || source_row) AS response
        FROM """ + ROW_OUTCOMES + """),
    responses AS (
        SELECT l.wave, bool_or(l.synthetic) AS synthetic,
               min(CASE o.outcome WHEN 'loaded' THEN 1 WHEN 'quarantined' THEN 2
                                  WHEN 'excluded' THEN 3 ELSE 4 END) AS outcome
        FROM numbered o JOIN load_ledger l USING (file_sha256)
        LEFT JOIN numbered f ON f.file_sha256 = o.fixed_in AND f.source_row = o.fixed_row AND f.outcome = 'loaded'
        GROUP BY l.wave, coalesce(f.response, o.response))
    SELECT wave, bool_or(synthetic) AS synthetic, count(*) AS read,
           count(*) FILTER (WHERE outcome = 1) AS loaded, count(*) FILTER (WHERE outcome = 3) AS excluded,
           count(*) FILTER (WHERE outcome = 4) AS duplicates, count(*) FILTER (WHERE outcome = 2) AS quarantined
    FROM responses GROUP BY wave ORDER BY wave"""


def data_source(con: duckdb.DuckDBPyConnection) -> str | None:
    """'synthetic' or 'real': what the warehouse holds (None when it is empty)."""
    holds = holds_synthetic(con)
    return None if holds is None else "synthetic" if holds else "real"


def write_run(con: duckdb.DuckDBPyConnection, loads: list[FileLoad], run_id: str, living_wage_file: Path) -> int:
    """Write every file of a run; the caller wraps this in a transaction. Each file's de-identified
    frames are released once written (`data` becomes None), and so are its response keys (keyed
    hashes of response ids): the warehouse holds them from then on, and a large export's would
    otherwise stay in memory for the rest of the run. Answers de-identification held apart (those to
    the key quasi-identifiers) go to anonymity's HELD_ANSWERS: the caller must then run
    protect_microdata in the same transaction, which stores them. Returns how many answers stored
    before went (of questions the questionnaire now marks direct identifiers)."""
    removed = 0
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    for item in loads:
        removed += _write_catalogue(con, item.instrument, item.data.derived)
        _write_file(con, item, run_id, now)
        item.data = None
        item.validation.response_keys = None
        item.validation.content_keys = None
        item.validation.counted_as = None
    _write_living_wage(con, living_wage_file, {item.instrument.wave for item in loads})
    record_inclusion(con, {item.instrument.wave: item.instrument for item in loads}.values())
    return removed


def _append(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    con.register("incoming", frame)
    columns = ", ".join(frame.columns)
    con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM incoming")
    con.unregister("incoming")


def _write_file(con: duckdb.DuckDBPyConnection, item: FileLoad, run_id: str, now: dt.datetime) -> None:
    export, validation, data = item.export, item.validation, item.data
    sha = export.sha256
    counts = {outcome: validation.count(outcome) for outcome in ("loaded", "quarantined", "excluded", "duplicate")}
    con.execute(
        "INSERT INTO load_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [sha, export.path.name, item.instrument.wave, export.platform, item.synthetic, item.instrument.sha256,
         run_id, now, export.rows, counts["loaded"], counts["quarantined"], counts["excluded"], counts["duplicate"]],
    )
    counted = validation.counted_as if validation.counted_as is not None else validation.response_keys
    outcomes = pd.DataFrame({
        "file_sha256": sha,
        "source_row": export.source_rows_of(validation.outcome.index.to_numpy()),
        "outcome": validation.outcome.values,
        "reason": validation.reason.values,
        "response_key": (counted.reindex(validation.outcome.index).values if counted is not None else None),
        "content_key": (validation.content_keys.reindex(validation.outcome.index).values
                        if validation.content_keys is not None else None),
        "fix_key": (validation.fix_keys.reindex(validation.outcome.index).values
                    if validation.fix_keys is not None else None),
        "fix_left_out": (validation.fix_left_out.reindex(validation.outcome.index).values
                         if validation.fix_left_out is not None else None),
    })
    _append(con, "row_outcomes", outcomes)
    for row, held_in, held_row in validation.fixes:  # rows set aside earlier, fixed by this file's
        con.execute("UPDATE row_outcomes SET fixed_in = ?, fixed_row = ? WHERE file_sha256 = ? AND source_row = ?",
                    [sha, int(export.source_rows_of(np.array([row]))[0]), held_in, held_row])
    issues = pd.DataFrame(
        [(sha, i.source_row, i.rule, i.concept, i.value) for i in validation.issues],
        columns=["file_sha256", "source_row", "rule", "concept", "value"],
    )
    _append(con, "quarantine_issues", issues)
    if validation.response_keys is not None:
        keys = validation.response_keys[validation.outcome == "loaded"].dropna()
        _append(con, "seen_responses", pd.DataFrame({"response_key": keys.values, "file_sha256": sha}))
        held = validation.response_keys[validation.outcome == "quarantined"].dropna()
        _append(con, "quarantine_keys", pd.DataFrame({
            "file_sha256": sha, "source_row": export.source_rows_of(held.index.to_numpy()), "response_key": held.values,
        }))
    rules = pd.DataFrame(
        [(sha, r.rule, r.concept, r.column, r.expectation, r.checked_rows, r.failed_rows) for r in validation.rules],
        columns=["file_sha256", "rule", "concept", "column_name", "expectation", "rows_checked", "rows_failed"],
    )
    _append(con, "validation_rules", rules)
    _append(con, "quality_flags", data.quality_flags)
    respondents = data.respondents.assign(file_sha256=sha)
    _append(con, "respondents", respondents)
    _append(con, "answers", data.answers)
    if not data.held_answers.empty:
        hold_answers(con)
        _append(con, HELD_ANSWERS, data.held_answers)
    _append(con, "open_text", data.open_text)


CONCEPT_COLUMNS = ["wave", "concept", "section", "type", "disclosure", "stored", "label_en", "label_fr", "show_if",
                   "unit"]
# Kept only since warehouses record them (see unrecorded_waves).
RECORDED_LATER = ["show_if", "unit"]
UNRECORDED_KEY = "waves_before_show_if"  # warehouse_meta: the waves stored before they were
CHOICE_COLUMNS = ["wave", "concept", "code", "label_en", "label_fr", "score", "missing"]
DERIVED = "derived"  # the section of the derived answers in `concepts`


def catalogue_frames(instrument: Instrument, derived: Sequence[DerivedConcept] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The wave's questions (and derived answers) as the `concepts` and `choices` tables hold them."""
    wave = instrument.wave
    concept_rows, choice_rows = [], []
    sections = [(s.id, s.questions) for s in instrument.sections] + [(DERIVED, [d.question for d in derived])]
    for section, questions in sections:
        for q in questions:
            concept_rows.append((wave, q.id, section, q.type.value, q.disclosure.value,
                                 q.disclosure is not Disclosure.direct, q.label.en, q.label.fr,
                                 show_if_text(q.show_if), unit_text(q.unit)))
            for c in instrument.choices_of(q):
                choice_rows.append((wave, q.id, c.code, c.label.en, c.label.fr, c.score, c.missing))
    return (pd.DataFrame(concept_rows, columns=CONCEPT_COLUMNS), pd.DataFrame(choice_rows, columns=CHOICE_COLUMNS))


# Answer codes of a question that k-anonymity adds to `choices` (the groups of its generalisation
# levels, pipeline/anonymity.py), by question: not the questionnaire's.
GroupCodes = dict[str, set[str]]

# The rows of a loaded wave's questions (not its derived answers) and of their answers that came
# from the questionnaire (not k-anonymity's groups). Parameters: wave, the derived section, and the
# (concept, code) pairs of the groups as a list of structs.
_QUESTIONNAIRE_CHOICES = """FROM choices c WHERE c.wave = $wave
    AND c.concept IN (SELECT concept FROM concepts WHERE wave = $wave AND section <> $derived)
    AND NOT list_contains($groups, {'concept': c.concept, 'code': c.code})"""


def _group_pairs(groups: GroupCodes) -> list[dict[str, str]]:
    return [{"concept": concept, "code": code} for concept, codes in sorted(groups.items()) for code in sorted(codes)]


def stored_questionnaire(con: duckdb.DuckDBPyConnection, wave: int, groups: GroupCodes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A loaded wave's questions (not its derived answers) as the warehouse holds them, and their
    answers but k-anonymity's groups: comparable with catalogue_frames."""
    concepts = con.execute(f"SELECT {', '.join(CONCEPT_COLUMNS)} FROM concepts WHERE wave = ? AND section <> ?",
                           [wave, DERIVED]).df()
    choices = con.execute(f"SELECT {', '.join('c.' + c for c in CHOICE_COLUMNS)} {_QUESTIONNAIRE_CHOICES}",
                          {"wave": wave, "derived": DERIVED, "groups": _group_pairs(groups)}).df()
    return concepts, choices


def questionnaire_changed(con: duckdb.DuckDBPyConnection, instrument: Instrument, groups: GroupCodes) -> bool:
    """Whether the wave's questions in the warehouse differ from its current questionnaire's."""
    def rows(frame: pd.DataFrame) -> set[tuple]:
        return {tuple(None if pd.isna(v) else v for v in row) for row in frame.itertuples(index=False)}

    stored = stored_questionnaire(con, instrument.wave, groups)
    return any(rows(old) != rows(new) for old, new in zip(stored, catalogue_frames(instrument)))


def unrecorded_waves(con: duckdb.DuckDBPyConnection) -> set[int]:
    """The waves stored before the warehouse kept who is asked each question and the units. Two of
    them are not compared on those (a warehouse made before must not stop over waves it reported
    on); one of them and a later wave are, with what its questionnaire says (the next run fills it
    in, as it rewrites a changed questionnaire's copy). Listed in warehouse_meta when the schema is
    brought up to date; a warehouse still without the columns (opened read-only) lists none yet."""
    if lacks_recorded_later(con):
        return {w for (w,) in con.execute("SELECT DISTINCT wave FROM concepts").fetchall()}
    listed = con.execute("SELECT value FROM warehouse_meta WHERE key = ?", [UNRECORDED_KEY]).fetchall()
    return {int(w) for (value,) in listed for w in value.split(",")}


BEFORE_INCLUSION_KEY = "waves_before_inclusion_check"  # warehouse_meta, written by pipeline/sql/schema.sql


def waves_before_inclusion_check(con: duckdb.DuckDBPyConnection) -> set[int]:
    """The waves loaded before runs compared who is in scope between waves: two of them are not
    compared (their figures may be published already; a warehouse made before keeps running), one
    of them and a later wave are. Listed when the schema is brought up to date; a warehouse not
    brought up to date yet (opened read-only) counts every wave it holds."""
    listed = con.execute("SELECT value FROM warehouse_meta WHERE key = ?", [BEFORE_INCLUSION_KEY]).fetchall()
    if not listed:
        return {w for (w,) in con.execute("SELECT DISTINCT wave FROM load_ledger").fetchall()}
    return {int(w) for (value,) in listed for w in value.split(",") if w}


def mark_unrecorded(con: duckdb.DuckDBPyConnection, waves: set[int]) -> None:
    """List `waves` as stored before who is asked and units were kept (for the comparison from the
    questionnaires to take them as the warehouse does)."""
    if waves:
        con.execute("INSERT OR REPLACE INTO warehouse_meta VALUES (?, ?)",
                    [UNRECORDED_KEY, ",".join(str(w) for w in sorted(waves))])


def refresh_questionnaire(con: duckdb.DuckDBPyConnection, instrument: Instrument, groups: GroupCodes) -> int:
    """Rewrite a loaded wave's questions from its current questionnaire (wording, scores, codes that
    mean no answer, disclosure class), as loading another export of the wave would; its derived
    answers stay, and so do the groups k-anonymity stored values in (it runs again only on new
    answers or new rules). The stored answers of a question now marked a direct identifier go: returns
    how many."""
    wave = instrument.wave
    con.execute(f"DELETE {_QUESTIONNAIRE_CHOICES}", {"wave": wave, "derived": DERIVED, "groups": _group_pairs(groups)})
    con.execute("DELETE FROM concepts WHERE wave = ? AND section <> ?", [wave, DERIVED])
    concepts, choices = catalogue_frames(instrument)
    _append(con, "concepts", concepts)
    _append(con, "choices", choices)
    return _drop_unstored(con, wave)


def lacks_recorded_later(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether `concepts` has no columns for who is asked and units: a warehouse made before, opened
    read-only (its schema is brought up to date only when it is written to)."""
    present = {c for (c,) in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'concepts'").fetchall()}
    return not set(RECORDED_LATER) <= present


def _drop_unstored(con: duckdb.DuckDBPyConnection, wave: int) -> int:
    """The stored answers of questions the wave's questionnaire now marks as direct identifiers (a
    class changed after a load): such answers are never kept. Returns how many were removed."""
    removed = 0
    for table in ("answers", "open_text"):
        removed += con.execute(f"DELETE FROM {table} WHERE wave = ? AND concept IN "
                               "(SELECT concept FROM concepts WHERE wave = ? AND NOT stored)",
                               [wave, wave]).fetchall()[0][0]
    return removed


def _write_catalogue(con: duckdb.DuckDBPyConnection, instrument: Instrument, derived: Sequence[DerivedConcept] = ()) -> int:
    """The wave's questions, and its derived answers (section `derived`) with what they were worked out from.
    Returns how many stored answers went (of questions now marked direct identifiers)."""
    wave = instrument.wave
    for table in ("concepts", "choices", "derived_concepts"):
        con.execute(f"DELETE FROM {table} WHERE wave = ?", [wave])
    concepts, choices = catalogue_frames(instrument, derived)
    _append(con, "concepts", concepts)
    _append(con, "choices", choices)
    removed = _drop_unstored(con, wave)
    _append(con, "derived_concepts", pd.DataFrame(
        [(wave, d.question.id, ", ".join(d.reads), d.reference, d.reference_year, d.note) for d in derived],
        columns=["wave", "concept", "reads", "reference", "reference_year", "note"]))
    return removed


def _write_living_wage(con: duckdb.DuckDBPyConnection, path: Path, waves: set[int]) -> None:
    """The rates each wave is compared with (the same year as the derived answers use), for reference."""
    reference = load_reference_table(path)
    rows = []
    for wave in sorted(waves):
        year = reference.year_for(wave).year
        rows += [(wave, region, year, rate) for region, rate in reference.rates[year].items()]
        con.execute("DELETE FROM living_wage WHERE wave = ?", [wave])
    _append(con, "living_wage", pd.DataFrame(rows, columns=["wave", "lw_region", "rate_year", "hourly"]))


def ledger_identity_violations(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Files whose ledger counts disagree with their row outcomes (should always be empty)."""
    return con.execute(
        """
        SELECT l.file_name, l.rows_read, count(o.source_row)
        FROM load_ledger l LEFT JOIN row_outcomes o USING (file_sha256)
        GROUP BY ALL
        HAVING l.rows_read <> count(o.source_row)
            OR l.rows_loaded <> count(*) FILTER (WHERE o.outcome = 'loaded')
            OR l.rows_quarantined <> count(*) FILTER (WHERE o.outcome = 'quarantined')
            OR l.rows_excluded <> count(*) FILTER (WHERE o.outcome = 'excluded')
            OR l.rows_duplicate <> count(*) FILTER (WHERE o.outcome = 'duplicate')
        """
    ).fetchall()


def recorded_inclusion(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """By loaded wave: the `inclusion:` rules its exports were loaded under (population.inclusion_record).
    None for a wave loaded before the warehouse kept them, or a warehouse without the table yet
    (opened read-only before a run brought its schema up to date)."""
    if not con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'wave_inclusion'").fetchall():
        return {}
    return dict(con.execute("SELECT wave, rules FROM wave_inclusion").fetchall())


def record_inclusion(con: duckdb.DuckDBPyConnection, instruments: Iterable[Instrument]) -> None:
    """Keep the rules each wave's exports are being loaded under (the caller holds the transaction)."""
    from pipeline.population import inclusion_record

    for instrument in instruments:
        con.execute("INSERT OR REPLACE INTO wave_inclusion VALUES (?, ?)", [instrument.wave, inclusion_record(instrument)])


def record_known_inclusion(con: duckdb.DuckDBPyConnection, instruments: dict[int, Instrument]) -> None:
    """A wave loaded before the warehouse kept its rules gets them when they are surely those it was
    loaded under: its instrument file is byte for byte the one every export of it was loaded with."""
    recorded = recorded_inclusion(con)
    loaded = con.execute("SELECT wave, list(DISTINCT instrument_sha256) FROM load_ledger GROUP BY wave").fetchall()
    record_inclusion(con, [instruments[wave] for wave, used in loaded
                           if wave not in recorded and wave in instruments and used == [instruments[wave].sha256]])

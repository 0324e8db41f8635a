"""Retention of raw exports: `consult purge-raw WAVE`.

Raw exports hold identifiers (names, emails, IP addresses, response ids), so they are deleted once
they are no longer needed: when the wave's release is published (the release holds the wave, built
from exactly the files loaded). Each deleted file is recorded in the warehouse (`purges`: name,
wave, hash, size, date, release version), so the recorded state stays traceable: the load ledger
still says what every file brought, and no later command takes a purged file for a missing one.
How long exports may stay is `raw_retention_days` in surveys/privacy.yaml; `consult status` warns
after that.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Paths
from pipeline.ingest import file_sha256
from pipeline.load import connect, ensure_schema


class RetentionError(RuntimeError):
    """A purge refused; the message says why and what to do first."""


@dataclass(frozen=True)
class RawFile:
    path: Path
    wave: int | None  # None: not in a folder named after its wave
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Purge:
    wave: int
    files: list[RawFile]
    release_version: str
    dry_run: bool


def raw_exports(paths: Paths) -> tuple[list[RawFile], bool]:
    """The exports `consult run` reads (data/raw/, or the synthetic consultation when data/raw/ has
    none), with their wave and hash, and whether they are the synthetic ones."""
    from pipeline.run import RunError, choose_source, wave_of

    files, synthetic = choose_source(paths)
    found = []
    for path in files:
        try:
            wave = wave_of(path)
        except RunError:
            wave = None
        found.append(RawFile(path, wave, file_sha256(path), path.stat().st_size))
    return found, synthetic


def purged_files(con) -> dict[str, dict]:
    """Files purged so far, by hash (none in a warehouse made before purges were recorded)."""
    if not con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'purges'").fetchall():
        return {}
    rows = con.execute("SELECT file_sha256, file_name, wave, bytes, purged_on, release_version FROM purges "
                       "ORDER BY wave, file_name").fetchall()
    return {r[0]: {"file": r[1], "wave": r[2], "bytes": r[3], "purged_on": r[4].isoformat(), "release": r[5]}
            for r in rows}


def purge_raw(paths: Paths, wave: int, dry_run: bool = False, today: dt.date | None = None) -> Purge:
    """Delete the wave's raw exports if its published release holds exactly what is loaded;
    otherwise refuse, saying what to do first. With dry_run, only say what would be deleted."""
    from pipeline.release import read_release

    files = [f for f in raw_exports(paths)[0] if f.wave == wave]
    with connect(paths.warehouse, read_only=True) as con:
        loaded = {sha: name for sha, name in con.execute(
            "SELECT file_sha256, file_name FROM load_ledger WHERE wave = ?", [wave]).fetchall()}
    release = read_release(paths)
    _refuse_unless_published(paths, wave, files, loaded, release)
    version = str(release["version"])
    if dry_run or not files:
        return Purge(wave, files, version, dry_run)
    _record_and_delete(paths, wave, files, version, today or dt.date.today())
    return Purge(wave, files, version, dry_run)


def _refuse_unless_published(paths: Paths, wave: int, files: list[RawFile], loaded: dict[str, str],
                             release: dict | None) -> None:
    if not loaded:
        raise RetentionError(f"wave {wave} has nothing loaded in the warehouse, so its exports are still needed; "
                             "nothing was deleted. Load them first: `consult run`.")
    waiting = [f for f in files if f.sha256 not in loaded]
    if waiting:
        names = ", ".join(str(f.path.relative_to(paths.root)) for f in waiting)
        raise RetentionError(f"{names}: not loaded yet, so not in any release; nothing was deleted. Load it with "
                             "`consult run` (or remove it if it is not needed), then publish the release again.")
    if release is None:
        raise RetentionError(f"wave {wave} has no published release yet; nothing was deleted. Build it with "
                             "`consult release`, publish reports/_site/, then run `consult purge-raw` again.")
    if wave not in [int(w) for w in release.get("waves", [])]:
        raise RetentionError(f"the release ({release.get('version')}) does not include wave {wave}; nothing was "
                             "deleted. Build it again with `consult release` and publish it first.")
    released = {i["sha256"] for i in release.get("inputs", []) if int(i["wave"]) == wave}
    if released != set(loaded):
        raise RetentionError(f"the release ({release.get('version')}) was built before the last load of wave {wave} "
                             "(its files differ from the warehouse's); nothing was deleted. Build it again with "
                             "`consult release` and publish it first.")


def _record_and_delete(paths: Paths, wave: int, files: list[RawFile], version: str, today: dt.date) -> None:
    """Record every file, then delete them; a file that cannot be deleted loses its record (it was
    not purged) and stops the purge with its name."""
    with connect(paths.warehouse) as con:
        ensure_schema(con)  # adds `purges` to a warehouse made before it existed
        con.execute("BEGIN TRANSACTION")
        con.executemany("INSERT OR REPLACE INTO purges VALUES (?, ?, ?, ?, ?, ?)",
                        [[f.sha256, f.path.name, wave, f.bytes, today, version] for f in files])
        for number, f in enumerate(files):
            try:
                f.path.unlink()
            except OSError as exc:
                con.executemany("DELETE FROM purges WHERE file_sha256 = ?", [[g.sha256] for g in files[number:]])
                con.execute("COMMIT")
                raise RetentionError(f"{f.path}: could not be deleted ({exc.strerror}); the files before it were "
                                     "deleted and recorded. Fix the permissions and run the command again.") from None
        con.execute("COMMIT")
    for folder in {f.path.parent for f in files}:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

"""Faults: a killed run, two runs at once, a full disk, a read-only warehouse."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from conftest import REPO, make_project
from pipeline.config import Paths
from pipeline.load import WarehouseError
from pipeline.run import run_load


def state(paths: Paths) -> tuple | None:
    """What a run changes, without the random respondent keys: ledger, counts, published figures."""
    if not paths.warehouse.exists():
        return None
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "load_ledger" not in tables:
            return None
        ledger = con.execute(
            "SELECT file_sha256, rows_read, rows_loaded, rows_quarantined, rows_excluded, rows_duplicate "
            "FROM load_ledger ORDER BY ALL").fetchall()
        counts = tuple(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                       for t in ("respondents", "answers", "open_text", "row_outcomes", "seen_responses"))
        figures = con.execute("SELECT * FROM published_estimates ORDER BY ALL").fetchall()
        return (ledger, counts, figures) if ledger else None
    finally:
        con.close()


def start_load(paths: Paths) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "--root", str(paths.root), "load"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(process: subprocess.Popen, marker: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if marker in line:
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"the run ended before printing {marker!r}")
    raise AssertionError(f"no {marker!r} within {timeout} s")


@pytest.fixture(scope="module")
def finished_state(tmp_path_factory: pytest.TempPathFactory, synthetic_exports: Path) -> tuple:
    """The state a complete, uninterrupted load reaches."""
    paths = make_project(tmp_path_factory.mktemp("reference") / "project", synthetic_exports)
    run_load(paths)
    return state(paths)


@pytest.mark.parametrize(
    ("marker", "delay"),
    [
        ("[2/3]", 0.0),  # while reading and validating the second file
        ("de-identifying", 0.0),
        ("writing", 0.0),  # the transaction has just begun
        ("writing", 0.4),  # inside the transaction
        ("writing", 1.2),  # computing indicators, or committing
    ],
)
def test_a_killed_run_leaves_the_warehouse_as_before_or_complete(
    tmp_path: Path, synthetic_exports: Path, finished_state: tuple, marker: str, delay: float
) -> None:
    paths = make_project(tmp_path / "project", synthetic_exports)
    process = start_load(paths)
    wait_for(process, marker)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    after_kill = state(paths)
    # Nothing in between: either the run had not committed (nothing loaded) or it had (all of it).
    assert after_kill in (None, finished_state)
    run_load(paths)  # the next run completes
    assert state(paths) == finished_state


def test_a_killed_second_run_keeps_the_first_runs_data(
    tmp_path: Path, synthetic_exports: Path, finished_state: tuple
) -> None:
    paths = make_project(tmp_path / "project", synthetic_exports)
    later = paths.synthetic / "2025"
    held_back = later.rename(tmp_path / "held-back-2025")
    run_load(paths)
    before = state(paths)
    held_back.rename(later)
    process = start_load(paths)
    wait_for(process, "writing")
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert state(paths) in (before, finished_state)
    run_load(paths)
    assert state(paths) == finished_state


def test_two_runs_at_once_one_refuses_clearly(tmp_path: Path, synthetic_exports: Path, finished_state: tuple) -> None:
    paths = make_project(tmp_path / "project", synthetic_exports)
    first = start_load(paths)
    wait_for(first, "[1/3]")
    second = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--root", str(paths.root), "load"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert second.returncode == 2
    assert "Another `consult` run may be using it" in second.stderr
    assert "Traceback" not in second.stderr
    # in words, naming the process that holds it (not DuckDB's lock text and documentation link)
    assert f"in use by another program (process {first.pid})" in second.stderr
    assert "Conflicting lock" not in second.stderr and "duckdb.org" not in second.stderr
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert state(paths) == finished_state


def mount_tmpfs(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path, synthetic_exports: Path):
    """A project whose warehouse folder is a 1 MB file system: too small for a load."""
    paths = make_project(tmp_path / "project", synthetic_exports)
    mount_tmpfs(paths.warehouse_dir, "1M")
    yield paths
    subprocess.run(["umount", str(paths.warehouse_dir)], check=False)


def test_a_full_disk_is_a_clear_error_not_a_traceback(small_disk: Paths) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--root", str(small_disk.root), "load"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr
    assert state(small_disk) is None


def test_a_read_only_warehouse_is_a_clear_error(tmp_path: Path, synthetic_exports: Path) -> None:
    paths = make_project(tmp_path / "project", synthetic_exports)
    mount_tmpfs(paths.warehouse_dir, "64M")
    try:
        run_load(paths)
        before = state(paths)
        (paths.synthetic / "2025" / "again.csv").write_bytes(b"StartDate\n")  # something new to load
        subprocess.run(["mount", "-o", "remount,ro", str(paths.warehouse_dir)], check=True)
        with pytest.raises(WarehouseError) as error:
            run_load(paths)
        assert str(paths.warehouse) in str(error.value)
        assert state(paths) == before
    finally:
        subprocess.run(["umount", str(paths.warehouse_dir)], check=False)


@pytest.mark.parametrize("damage", ["cut short", "not a database"])
def test_a_damaged_warehouse_says_so_and_how_to_rebuild(loaded: Paths, damage: str) -> None:
    data = loaded.warehouse.read_bytes()
    loaded.warehouse.write_bytes(data[: len(data) // 2] if damage == "cut short" else b"not a database at all")
    with pytest.raises(WarehouseError) as error:
        run_load(loaded)
    message = str(error.value)
    assert str(loaded.warehouse) in message and "damaged" in message and "make clean-warehouse" in message

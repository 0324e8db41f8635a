"""`consult audit`: hidden cells that published totals give away, planted failures, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from builders import response, write_export
from conftest import REPO, make_project
from pipeline.audit import check_derivability, run_audit
from pipeline.config import Paths
from pipeline.derivation import NO_GROUP
from pipeline.disclosure import DisclosureRules
from pipeline.instrument import load_instrument
from pipeline.run import run_load

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
SMALL = "fewer than 10 respondents in the group"
ONE_WAY = "fewer than 5 respondents answered one way"
COMPLEMENT = "hidden so that another hidden value cannot be worked out from the total"


def estimates(cells: list[tuple]) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse holding one proportion table of wave 2025 (1000 respondents)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE indicator_catalogue (indicator_id VARCHAR, kind VARCHAR)")
    con.execute("INSERT INTO indicator_catalogue VALUES ('T-01', 'proportion')")
    con.execute("CREATE TABLE respondents AS SELECT 2025 AS wave FROM range(1000)")
    con.execute("CREATE TABLE indicator_estimates (indicator_id VARCHAR, wave INTEGER, breakdown VARCHAR, "
                "group_code VARCHAR, n INTEGER, count INTEGER, estimate DOUBLE, suppressed BOOLEAN, suppression VARCHAR)")
    for breakdown, group, n, count, reason in cells:
        con.execute("INSERT INTO indicator_estimates VALUES ('T-01', 2025, ?, ?, ?, ?, ?, ?, ?)",
                    [breakdown, group, n, count, 100.0 * count / n, reason is not None, reason])
    return con


def disclosed(cells: list[tuple]) -> dict[str, str]:
    result = check_derivability(estimates(cells))
    return {d["group_code"]: d["disclosed"] for d in result.details}


def test_one_hidden_cell_is_worked_out_from_the_total() -> None:
    # 50 = 30 + 12 + n_C and 25 = 15 + 6 + c_C: the hidden cell is 8 people, 4 of them yes.
    found = disclosed([("all", "all", 50, 25, None), ("region", "A", 30, 15, None),
                       ("region", "B", 12, 6, None), ("region", "C", 8, 4, SMALL)])
    assert found == {"C": "n = 8 and count = 4"}


def test_two_hidden_cells_keep_each_other_safe() -> None:
    # n_B + n_C = 10 with each between 1 and 9, c_B + c_C = 5: neither is known.
    assert disclosed([("all", "all", 40, 20, None), ("region", "A", 30, 15, None),
                      ("region", "B", 6, 3, SMALL), ("region", "C", 4, 2, SMALL)]) == {}


def test_all_or_none_in_the_hidden_cells_is_a_disclosure() -> None:
    # Everyone who said yes is in group A (20 of 20): nobody in B or C said yes, whatever their sizes.
    found = disclosed([("all", "all", 40, 20, None), ("region", "A", 30, 20, None),
                       ("region", "B", 6, 0, SMALL), ("region", "C", 4, 0, SMALL)])
    assert found == {"B": "nobody in the group answered yes", "C": "nobody in the group answered yes"}


def test_a_small_cell_reason_limits_the_split() -> None:
    # C is hidden because fewer than 5 answered one way; with n_C = 12 pinned and c_C in
    # [0, 4] or [8, 12], and the total pinning c_C exactly, it is disclosed.
    found = disclosed([("all", "all", 52, 26, None), ("region", "A", 40, 23, None),
                       ("region", "C", 12, 3, ONE_WAY)])
    assert found == {"C": "n = 12 and count = 3"}


# --- a small real run: passes, then fails on what is planted -----------------------------------


@pytest.fixture
def clean(tmp_path: Path) -> Paths:
    """30 respondents alike in everything but a few answers: every check passes."""
    paths = make_project(tmp_path / "project")
    rows = [response(i, {"paid_sick_days": "1" if i <= 15 else "2", "discrimination_any": "1" if i <= 12 else "2",
                         "health_benefits": "1" if i % 2 else "2"}) for i in range(1, 31)]
    write_export(paths.raw / "2025" / "export.csv", INSTRUMENT, rows)
    run_load(paths)
    return paths


def consult(paths: Paths, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "--root", str(paths.root), "audit", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def test_audit_passes_a_clean_run_and_fails_on_a_planted_identifier(clean: Paths) -> None:
    passed = consult(clean)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert json.loads((clean.warehouse_dir / "audit.json").read_text())["passed"] is True
    page = clean.site / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("<p>Figures for the respondent at 203.0.113.7</p>", encoding="utf-8")  # row 7's IP
    failed = consult(clean)
    assert failed.returncode == 1
    report = json.loads((clean.warehouse_dir / "audit.json").read_text())
    found = [c for c in report["checks"] if c["name"] == "no identifier in any output"][0]
    assert found["passed"] is False
    assert found["details"] == [{"where": "reports/_site/index.html", "identifier": "ip_address", "occurrences": 1}]
    # the report says where and what kind, never the value
    assert "203.0.113.7" not in failed.stdout + failed.stderr + (clean.warehouse_dir / "audit.json").read_text()


def plant(paths: Paths, text: str) -> None:
    page = paths.site / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"<p>{text}</p>", encoding="utf-8")


def identifier_finds(paths: Paths) -> list[dict]:
    report = json.loads((paths.warehouse_dir / "audit.json").read_text())
    return [c for c in report["checks"] if c["name"] == "no identifier in any output"][0]["details"]


def test_a_coordinate_is_searched_for_only_when_written_precisely(tmp_path: Path) -> None:
    """Platforms drop trailing zeros: a latitude of 43.1250 arrives as 43.125, which is also 69 of 160
    as a percentage. The report must not fail on such a figure; a precise coordinate still fails it."""
    paths = make_project(tmp_path / "project")
    rows = [response(i, {"paid_sick_days": "1" if i <= 15 else "2"}) for i in range(1, 31)]
    rows[0]["LocationLatitude"] = "43.125"
    rows[1]["LocationLongitude"] = "-79.6532"
    write_export(paths.raw / "2025" / "export.csv", INSTRUMENT, rows)
    run_load(paths)
    plant(paths, "43.125% of respondents (69 of 160) had paid sick days")
    assert consult(paths).returncode == 0
    plant(paths, "Seen near -79.6532")
    assert consult(paths).returncode == 1
    assert identifier_finds(paths) == [{"where": "reports/_site/index.html", "identifier": "longitude", "occurrences": 1}]
    # The threshold is a setting (surveys/privacy.yaml): at 3 decimals the short latitude is searched too.
    privacy = paths.surveys / "privacy.yaml"
    privacy.write_text(privacy.read_text().replace("min_coordinate_decimals: 4", "min_coordinate_decimals: 3"))
    plant(paths, "43.125% of respondents")
    assert consult(paths).returncode == 1
    assert identifier_finds(paths) == [{"where": "reports/_site/index.html", "identifier": "latitude", "occurrences": 1}]


@pytest.mark.parametrize("bundle", ["basic", "full"])
def test_the_embedded_chart_library_is_not_mistaken_for_coordinates(tmp_path: Path, bundle: str) -> None:
    """plotly.js, embedded in every page, holds map-projection constants such as 79.4188: with a
    large export, some respondent's coordinate is one of them. The library is left out of the scan
    only as an exact copy; the same number anywhere else in the page still fails the audit. Pages
    carry the basic bundle vendored in pipeline/vendor/ (18.6875 in it), or after a plotly upgrade
    the full library plotly.py ships."""
    from plotly.offline import get_plotlyjs

    vendored = REPO / "pipeline" / "vendor" / "plotly-basic.min.js"
    library = vendored.read_text(encoding="utf-8") if bundle == "basic" else get_plotlyjs()
    constant = re.search(r"[^\d.](\d{2}\.\d{4})[^\d]", library).group(1)
    paths = make_project(tmp_path / "project")
    rows = [response(i, {"paid_sick_days": "1" if i <= 15 else "2"}) for i in range(1, 31)]
    rows[2]["LocationLatitude"] = constant
    write_export(paths.raw / "2025" / "export.csv", INSTRUMENT, rows)
    run_load(paths)
    plant(paths, f"<script>{library}</script>")
    assert consult(paths).returncode == 0
    plant(paths, f"<script>{library}</script><p>Seen at {constant}</p>")
    assert consult(paths).returncode == 1
    assert identifier_finds(paths) == [{"where": "reports/_site/index.html", "identifier": "latitude", "occurrences": 1}]


def test_audit_fails_on_a_published_cell_under_the_threshold(clean: Paths) -> None:
    con = duckdb.connect(str(clean.warehouse))
    target = con.execute("SELECT indicator_id, wave, breakdown, group_code FROM indicator_estimates "
                         "WHERE NOT suppressed ORDER BY ALL LIMIT 1").fetchall()[0]
    con.execute("UPDATE indicator_estimates SET n = 4 WHERE indicator_id = ? AND wave = ? AND breakdown = ? "
                "AND group_code = ?", list(target))
    con.close()
    result = consult(clean, "--json")
    assert result.returncode == 1
    cells = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "published cells"][0]
    assert not cells["passed"]
    assert [(d["indicator_id"], d["group_code"], d["n"]) for d in cells["details"]] == [(target[0], target[3], 4)]


def test_audit_fails_when_the_stored_microdata_is_not_k_anonymous(clean: Paths) -> None:
    con = duckdb.connect(str(clean.warehouse))
    key = con.execute("SELECT respondent_key FROM respondents ORDER BY respondent_key LIMIT 1").fetchall()[0][0]
    con.execute("UPDATE answers SET value = '1' WHERE respondent_key = ? AND concept = 'oh_region'", [key])
    con.close()
    report = run_audit(clean)
    check = [c for c in report.checks if c.name == "k-anonymity"][0]
    assert not report.passed and not check.passed
    assert check.details[0]["smallest_group"] == 1 and check.details[0]["respondents_at_risk"] == 1


def test_people_in_no_group_worked_out_from_the_total_are_a_disclosure() -> None:
    # 50 = 30 + 12 + 8 and 25 = 15 + 6 + 4: the 8 people in no group (who did not answer), 4 of them
    # yes, follow from the table as surely as a hidden group would.
    cells = [("all", "all", 50, 25, None), ("region", "A", 30, 15, None), ("region", "B", 12, 6, None)]
    result = check_derivability(estimates(cells), rules=DisclosureRules(min_group_n=10, min_cell=5))
    assert [(d["group_code"], d["disclosed"]) for d in result.details] == [(NO_GROUP, "n = 8 and count = 4")]
    # once the largest group is hidden with them, 12 + 6 people in B or in no group is all that shows
    cells[1] = ("region", "A", 30, 15, COMPLEMENT)
    assert check_derivability(estimates(cells), rules=DisclosureRules(min_group_n=10, min_cell=5)).passed


def test_a_name_is_found_with_or_without_its_accents(tmp_path: Path) -> None:
    """The platform's name fields and what staff or respondents type are written apart: "Belanger"
    in the export and "Bélanger" in a report (or the other way round, or the accent typed as a
    separate combining mark) are the same person, as the scrubber already takes them to be."""
    paths = make_project(tmp_path / "project")
    rows = [response(i, {"paid_sick_days": "1" if i <= 15 else "2"}) for i in range(1, 31)]
    rows[0].update(RecipientFirstName="Sophie", RecipientLastName="Bélanger")
    rows[1].update(RecipientFirstName="Marc", RecipientLastName="Cote")
    write_export(paths.raw / "2025" / "export.csv", INSTRUMENT, rows)
    run_load(paths)
    assert consult(paths).returncode == 0
    full_name = [{"where": "reports/_site/index.html", "identifier": "full_name", "occurrences": 1}]
    for planted in ("Thanks to Sophie Belanger", "Thanks to SOPHIE BÉLANGER", "Thanks to Marc Côté",
                    "Thanks to Marc Co\u0302te\u0301"):
        plant(paths, planted)
        assert consult(paths).returncode == 1, planted
        assert identifier_finds(paths) == full_name, planted
    plant(paths, "Thanks to Marc Cotton")  # a name that only starts the same is no finding
    assert consult(paths).returncode == 0


def test_a_warehouse_text_holding_a_name_without_its_accents_is_found(tmp_path: Path) -> None:
    paths = make_project(tmp_path / "project")
    rows = [response(i, {"paid_sick_days": "1" if i <= 15 else "2"}) for i in range(1, 31)]
    rows[0].update(RecipientFirstName="Hélène", RecipientLastName="Lévesque")
    write_export(paths.raw / "2025" / "export.csv", INSTRUMENT, rows)
    run_load(paths)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("CREATE TABLE notes (note VARCHAR)")
        con.execute("INSERT INTO notes VALUES ('Ask helene levesque about it'), ('nothing here')")
    assert consult(paths).returncode == 1
    assert identifier_finds(paths) == [{"where": "warehouse notes.note", "identifier": "full_name", "occurrences": 1}]

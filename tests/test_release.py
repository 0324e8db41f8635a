"""The open data release (`consult release`, reports/_site/data/): a valid Frictionless package of
the published figures only, checksummed, citable, safe to open in a spreadsheet, reproducible to
the byte, and never written when the disclosure audit fails."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import duckdb
import frictionless
import pytest
import yaml

from builders import merged_codes_named
from builders import warehouse_rows as warehouse
from pipeline.audit import AuditReport
from pipeline.cli import main
from pipeline.config import Paths
from pipeline.release import ReleaseError, build_release, read_release, release_dir, release_settings

NUMBERS = ("n", "count", "value", "ci_low", "ci_high")
# Direct identifier columns of the synthetic (Qualtrics) exports; exact timestamps and coordinates too.
IDENTIFIER_TEXT = ("IPAddress", "ResponseId", "RecipientEmail", "ExternalReference")
IDENTIFIER_CELLS = ("StartDate", "EndDate", "RecordedDate", "LocationLatitude", "LocationLongitude")
# What a caller passes when it has just run the audit itself and it passed (as `consult run` does):
# for tests whose subject is not the audit, to spare its run time.
PASSED = AuditReport([])


@pytest.fixture(scope="module")
def released(loaded_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """One release built with the real audit, shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("released") / "project"
    shutil.copytree(loaded_template, root, symlinks=True)
    previous = os.environ.get("CONSULT_SECRET_FILE")
    os.environ["CONSULT_SECRET_FILE"] = str(tmp_path_factory.getbasetemp() / "secret.key")
    try:
        build_release(Paths(root))
    finally:
        if previous is None:
            os.environ.pop("CONSULT_SECRET_FILE", None)
        else:
            os.environ["CONSULT_SECRET_FILE"] = previous
    return Paths(root)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_the_data_package_validates_and_describes_every_table(released: Paths) -> None:
    folder = release_dir(released)
    report = frictionless.validate(str(folder / "datapackage.json"))
    assert report.valid, report.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])[:10]
    package = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    described = {r["path"] for r in package["resources"]}
    csvs = {p.name for p in folder.glob("*.csv")}
    indicators = {i for (i,) in warehouse(released, "SELECT indicator_id FROM indicator_catalogue")}
    assert csvs == {f"{i}.csv" for i in indicators} | {"gaps.csv", "changes.csv", "indicators.csv", "scores.csv",
                                                      "breakdowns.csv"}
    assert csvs | {"README.md", "CITATION.cff"} == described
    # Every field is described, the licence and version are the configured ones.
    settings = yaml.safe_load((released.surveys / "release.yaml").read_text(encoding="utf-8"))
    for resource in package["resources"]:
        for field in resource.get("schema", {}).get("fields", []):
            assert field["description"].strip(), (resource["name"], field["name"])
    assert package["version"] == settings["version"]
    assert package["licenses"][0]["path"] == settings["licence"]["url"]
    prec = next(r for r in package["resources"] if r["path"] == "PREC-01.csv")
    definition, = warehouse(released, "SELECT definition FROM indicator_catalogue WHERE indicator_id = 'PREC-01'")[0]
    assert definition in prec["description"]


def test_every_file_is_checksummed_and_the_checksums_match(released: Paths) -> None:
    folder = release_dir(released)
    listed = {}
    for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert list(listed) == sorted(listed)
    assert set(listed) == {p.name for p in folder.iterdir()} - {"SHA256SUMS"}
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_release_json_says_what_was_released_from_what(released: Paths) -> None:
    release = read_release(released)
    assert release is not None
    assert release["audit"] == "passed"
    assert release["waves"] == [2023, 2024, 2025]
    assert release["version"] == "2025.1" and release["date"] == "2025-06-30"
    ledger = warehouse(released, "SELECT file_name, wave, file_sha256 FROM load_ledger")
    assert sorted((i["file"], i["wave"], i["sha256"]) for i in release["inputs"]) == sorted(ledger)
    folder = release_dir(released)
    for entry in release["files"]:
        data = (folder / entry["path"]).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry["sha256"], entry["bytes"])
    assert {e["path"] for e in release["files"]} == {p.name for p in folder.iterdir()} - {"SHA256SUMS", "release.json"}
    assert len(release["inputs_key"]) == 64


def test_read_release_is_none_before_any_release(empty_project: Paths) -> None:
    assert read_release(empty_project) is None


def test_the_citation_file_is_valid_cff_and_says_synthetic(released: Paths) -> None:
    citation = yaml.safe_load((release_dir(released) / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0"
    assert citation["message"].strip()
    assert citation["authors"] and all(a.get("name") for a in citation["authors"])
    assert "Peer support in Ontario: what peer supporters told us" in citation["title"]
    assert str(citation["date-released"]) == "2025-06-30"
    assert citation["license"] == "CC-BY-4.0"
    # The synthetic consultation is loaded: every place a reader looks first says so.
    assert "SYNTHETIC" in citation["title"]
    assert "SYNTHETIC" in (release_dir(released) / "README.md").read_text(encoding="utf-8")
    package = json.loads((release_dir(released) / "datapackage.json").read_text(encoding="utf-8"))
    assert "SYNTHETIC" in package["description"]


def test_a_merged_answer_a_rule_names_is_given_its_label_in_the_catalogue_and_breakdowns(released: Paths) -> None:
    # The synthetic waves store Indigenous identity as answered; the breakdown's rule also names the
    # merged code k-anonymity may store (`indigenous`), which a reader must be able to read.
    merged = merged_codes_named(released.surveys)
    assert ("indigenous", "indigenous") in merged
    folder = release_dir(released)
    text = "\n".join(" ".join(row.values()) for name in ("breakdowns.csv", "indicators.csv")
                     for row in rows(folder / name))
    for (_question, code), label in merged.items():
        assert f"{code} ({label})" in text, code


def instrument_questions(surveys: Path) -> dict[int, dict[str, dict]]:
    """Wave -> question id -> the question as its instrument YAML writes it, with its choice set
    (named or inline) resolved: read here, not by the pipeline's instrument loader."""
    waves = {}
    for path in sorted(surveys.glob("*/instrument.yaml")):
        instrument = yaml.safe_load(path.read_text(encoding="utf-8"))
        sets = instrument.get("choice_sets") or {}
        questions = {}
        for section in instrument["sections"]:
            for question in section["questions"]:
                choices = question.get("choices") or []
                resolved = sets[choices] if isinstance(choices, str) else choices
                questions[question["id"]] = question | {"choices": resolved}
        waves[instrument["wave"]] = questions
    return waves


def test_scores_csv_describes_every_score_an_indicator_uses(released: Paths) -> None:
    # Read independently of the pipeline: surveys/indicators.yaml and the instruments, as YAML.
    catalogue = yaml.safe_load(released.indicators_file.read_text(encoding="utf-8"))
    scores = catalogue["scores"]
    used = {name for i in catalogue["indicators"] for name in [*i["questions"], i.get("value")] if name in scores}
    assert {"epi_score", "burnout_score", "moral_distress_score"} <= used
    waves = instrument_questions(released.surveys)
    released_rows = rows(release_dir(released) / "scores.csv")
    assert {r["score"] for r in released_rows} == used
    for name in sorted(used):
        score, mine = scores[name], [r for r in released_rows if r["score"] == name]
        assert [r["item"] for r in mine] == score["items"], name  # every item, in the catalogue's order
        for row in mine:
            assert (row["title"], row["definition"]) == (score["title"], score["definition"].strip())
            assert float(row["item_max"]) == score["item_max"] and int(row["min_items"]) == score["min_items"]
            assert f"divided by {score['item_max']:g}" in row["scaling"]
            assert f"fewer than {score['min_items']} of the {len(score['items'])} items" in row["scaling"]
            asked = {wave: questions[row["item"]] for wave, questions in waves.items() if row["item"] in questions}
            assert asked, row["item"]
            assert row["waves"] == ", ".join(str(w) for w in sorted(asked))
            for question in asked.values():
                assert question["label"]["en"] in row["wording"], row["item"]
                for choice in question["choices"]:
                    label = f"{choice['code']} ({choice['label']['en']})"
                    points = (score["points"].get(choice["code"]) if "points" in score
                              else None if choice.get("missing") else choice.get("score"))
                    said = f"{label} = {points:g} points" if points is not None else f"{label} not counted"
                    assert said in row["points"], (row["item"], said)
    # Percentages built on a score (PREC-02: epi_score at least 75) find it there too.
    catalogue_rows = {r["indicator_id"]: r for r in rows(release_dir(released) / "indicators.csv")}
    assert "epi_score" in catalogue_rows["PREC-02"]["condition_rule"]
    assert "epi_score" in catalogue_rows["PREC-02"]["questions"].split(", ")


def test_the_data_dictionary_and_readme_describe_scores_csv(released: Paths) -> None:
    folder = release_dir(released)
    package = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    resources = {r["path"]: r for r in package["resources"]}
    schema = resources["scores.csv"]["schema"]
    with (folder / "scores.csv").open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    assert [f["name"] for f in schema["fields"]] == header
    assert {"score", "item", "wording", "points", "item_max", "min_items", "scaling"} <= set(header)
    assert all(f["description"].strip() for f in schema["fields"])
    assert schema["primaryKey"] == ["score", "item"]
    catalogue = {f["name"]: f["description"] for f in resources["indicators.csv"]["schema"]["fields"]}
    assert "scores.csv" in catalogue["score"] and "scores.csv" in catalogue["questions"]
    assert "`scores.csv`" in (folder / "README.md").read_text(encoding="utf-8")
    release = read_release(released)
    assert release["audit"] == "passed" and "scores.csv" in {f["path"] for f in release["files"]}


def test_the_audit_reads_scores_csv(loaded: Paths) -> None:
    # An email in a score's wording (stored in the warehouse, so the table is also a finding) is
    # found in the released file itself: the audit scans scores.csv like every release file.
    con = duckdb.connect(str(loaded.warehouse))
    con.execute("UPDATE indicator_scores SET wording = wording || ' Write to someone@example.org.' "
                "WHERE item = 'epi_paid_missed_day'")
    con.close()
    build_release(loaded, audit=PASSED)
    from pipeline.audit import run_audit

    report = run_audit(loaded)
    patterns = next(c for c in report.checks if c.name == "no identifier pattern in any output")
    assert not report.passed and not patterns.passed
    assert any(d["where"].endswith("data/scores.csv") for d in patterns.details), patterns.details


def test_the_readme_gives_licence_caveats_and_citation(released: Paths) -> None:
    text = (release_dir(released) / "README.md").read_text(encoding="utf-8")
    rules = yaml.safe_load(released.disclosure_file.read_text(encoding="utf-8"))
    for needed in ("CC-BY-4.0", "https://creativecommons.org/licenses/by/4.0/", "convenience sample",
                   f"fewer than {rules['min_group_n']} respondents", "apostrophe", "How to cite", "2025.1"):
        assert needed in text, needed


def test_figures_equal_the_warehouse_published_estimates(released: Paths) -> None:
    truth = {(i, w, b, g): rest for i, w, b, g, *rest in warehouse(
        released, "SELECT indicator_id, wave, breakdown, group_code, suppressed, n, count, estimate, ci_low, ci_high "
                  "FROM indicator_estimates")}
    seen = set()
    for path in release_dir(released).glob("*-*.csv"):
        for row in rows(path):
            key = (row["indicator_id"], int(row["wave"]), row["breakdown"], row["group"])
            assert path.name == f"{row['indicator_id']}.csv"
            suppressed, n, count, estimate, low, high = truth[key]
            seen.add(key)
            if suppressed:
                continue
            assert row["status"] == "published" and row["suppression_reason"] == ""
            assert int(row["n"]) == n
            assert row["count"] == ("" if count is None else str(count))
            for column, expected in (("value", estimate), ("ci_low", low), ("ci_high", high)):
                assert float(row[column]) == pytest.approx(expected, abs=5e-7), (key, column)
    assert seen == set(truth)  # every cell of every table, nothing more


def test_no_suppressed_value_is_released(released: Paths) -> None:
    folder = release_dir(released)
    hidden = {(i, w, b, g) for i, w, b, g in warehouse(
        released, "SELECT indicator_id, wave, breakdown, group_code FROM indicator_estimates WHERE suppressed")}
    assert hidden, "the synthetic consultation has suppressed cells"
    rules = yaml.safe_load(released.disclosure_file.read_text(encoding="utf-8"))
    min_n = dict(warehouse(released, "SELECT indicator_id, coalesce(min_n, 0) FROM indicator_catalogue"))
    for path in folder.glob("*-*.csv"):
        for row in rows(path):
            key = (row["indicator_id"], int(row["wave"]), row["breakdown"], row["group"])
            if key in hidden:
                assert row["status"] == "suppressed" and row["suppression_reason"]
                assert all(row[c] == "" for c in NUMBERS), key
                continue
            # Independently of the code: a published cell meets surveys/disclosure.yaml.
            n = int(row["n"])
            assert n >= rules["min_group_n"] and n >= min_n[row["indicator_id"]], key
            if row["unit"] == "%":
                assert min(int(row["count"]), n - int(row["count"])) >= rules["min_cell"], key
    for table, numbers in (("gaps", ("n", "count", "value", "rest_n", "rest_count", "rest_value", "gap", "gap_low",
                                     "gap_high", "statement")),
                           ("changes", ("n", "value", "previous_n", "previous_value", "change", "change_low",
                                        "change_high", "statement"))):
        hidden = {(i, w, b, g) for i, w, b, g in warehouse(
            released, f"SELECT indicator_id, wave, breakdown, group_code FROM indicator_{table} WHERE suppressed")}
        released_hidden = set()
        for row in rows(folder / f"{table}.csv"):
            key = (row["indicator_id"], int(row["wave"]), row["breakdown"], row["group"])
            if row["status"] == "suppressed":
                released_hidden.add(key)
                assert all(row[c] == "" for c in numbers), (table, key)
        assert released_hidden == hidden, table


def test_no_direct_identifier_of_the_exports_is_released(released: Paths) -> None:
    texts, cells = set(), set()
    for export in sorted((released.root / "data" / "synthetic").rglob("*.csv")):
        with export.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            next(reader), next(reader)  # Qualtrics' question texts and import ids
            for record in reader:
                row = dict(zip(header, record))
                texts |= {row[c] for c in IDENTIFIER_TEXT if len(row.get(c, "")) >= 6}
                if row.get("RecipientFirstName") and row.get("RecipientLastName"):
                    texts.add(f"{row['RecipientFirstName']} {row['RecipientLastName']}")
                cells |= {row[c] for c in IDENTIFIER_CELLS if row.get(c)}
    assert len(texts) > 1000 and len(cells) > 1000  # the exports do carry identifiers
    folder = release_dir(released)
    for path in folder.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not [t for t in texts if t in text], path.name
        if path.suffix == ".csv":
            values = {v for record in csv.reader(io.StringIO(text, newline="")) for v in record}
            assert not values & cells, path.name


def test_formula_like_text_is_neutralised_and_numbers_are_not(loaded: Paths) -> None:
    evil = {"1": '=HYPERLINK("http://evil.example","click")', "2": "+1+1", "3": "@SUM(A1)", "4": "-2+3",
            "5": "\tTAB"}
    con = duckdb.connect(str(loaded.warehouse))
    for code, label in evil.items():
        con.execute("UPDATE indicator_estimates SET group_label = ? WHERE indicator_id = 'PREC-01' "
                    "AND breakdown = 'oh_region' AND group_code = ?", [label, code])
    con.close()
    build_release(loaded, audit=PASSED)
    labels = {r["group"]: r["group_label"] for r in rows(release_dir(loaded) / "PREC-01.csv")
              if r["breakdown"] == "oh_region"}
    for code, label in evil.items():
        assert labels[code] == "'" + label
    assert labels["6"] == "West"  # ordinary text unchanged
    # Negative numbers are numbers: never prefixed.
    gaps = [r["gap"] for r in rows(release_dir(loaded) / "gaps.csv") if r["gap"].startswith("-")]
    assert gaps and all(float(g) < 0 for g in gaps)


def test_two_builds_on_the_same_inputs_are_byte_identical(released: Paths, loaded: Paths) -> None:
    # Another folder, another day, no audit object in common: the same bytes.
    build_release(loaded, audit=PASSED)
    first = snapshot(release_dir(loaded))
    shutil.rmtree(release_dir(loaded))  # else the unchanged release is kept, not built again
    build_release(loaded, audit=PASSED)
    assert snapshot(release_dir(loaded)) == first
    assert snapshot(release_dir(released)) == first


def test_a_rerun_with_nothing_new_leaves_the_release_as_it_is(loaded: Paths) -> None:
    said: list[str] = []
    build_release(loaded, audit=PASSED)
    folder = release_dir(loaded)
    first, times = snapshot(folder), {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    build_release(loaded, audit=PASSED, progress=said.append)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == times  # not even written again
    assert snapshot(folder) == first and "unchanged" in said[-1]


@pytest.mark.parametrize("damage", ["edit", "remove", "add"])
def test_a_release_changed_by_hand_is_built_again(loaded: Paths, damage: str) -> None:
    build_release(loaded, audit=PASSED)
    folder = release_dir(loaded)
    first = snapshot(folder)
    victim = folder / "gaps.csv"
    if damage == "edit":
        victim.write_bytes(victim.read_bytes().replace(b",", b";", 3))
    elif damage == "remove":
        victim.unlink()
    else:
        (folder / "notes.txt").write_text("my notes\n", encoding="utf-8")
    build_release(loaded, audit=PASSED)
    assert snapshot(folder) == first


def test_a_release_is_built_again_when_its_settings_change(loaded: Paths) -> None:
    build_release(loaded, audit=PASSED)
    settings = loaded.surveys / "release.yaml"
    settings.write_text(settings.read_text(encoding="utf-8").replace("version: \"2025.1\"", "version: \"2025.7\""),
                        encoding="utf-8")
    assert release_settings(loaded).version == "2025.7"
    build_release(loaded, audit=PASSED)
    assert read_release(loaded)["version"] == "2025.7"


def test_a_failing_audit_refuses_and_leaves_the_previous_release(loaded: Paths, capsys) -> None:
    build_release(loaded, audit=PASSED)
    before = snapshot(release_dir(loaded))
    # Stricter rules than the published figures were made with: the audit's cell check fails.
    loaded.disclosure_file.write_text("min_group_n: 100000\nmin_cell: 5\ncomplementary: true\n", encoding="utf-8")
    assert main(["--root", str(loaded.root), "release"]) != 0
    assert "disclosure audit failed" in capsys.readouterr().err
    assert snapshot(release_dir(loaded)) == before
    assert [p.name for p in loaded.site.iterdir()] == ["data"]  # no staging folder left behind


def test_a_synthetic_release_that_would_not_say_so_is_refused(loaded: Paths, monkeypatch) -> None:
    monkeypatch.setattr("pipeline.release.readme_text", lambda *args: "# Peer support data\n")
    with pytest.raises(ReleaseError, match="synthetic.*README.md"):
        build_release(loaded, audit=PASSED)
    assert not loaded.site.exists()  # nothing written, not even an empty folder


@pytest.mark.parametrize(("line", "field"), [('version: 2025.10', "version"), ("date: soon", "date")])
def test_bad_release_settings_name_the_file_and_the_field(empty_project: Paths, line: str, field: str) -> None:
    path = empty_project.surveys / "release.yaml"
    key = line.split(":")[0]
    text = "\n".join(line if row.startswith(f"{key}:") else row for row in path.read_text(encoding="utf-8").splitlines())
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ReleaseError) as caught:
        release_settings(empty_project)
    assert str(path) in str(caught.value) and field in str(caught.value)


def test_the_report_manifest_records_every_definition_and_the_packages(loaded: Paths, tmp_path: Path) -> None:
    from pipeline.render import RenderResult
    from pipeline.report import write_manifest

    manifest = json.loads(write_manifest(loaded, RenderResult("engine", tmp_path, []), "key").read_text())
    release_yaml = loaded.surveys / "release.yaml"
    assert manifest["definitions"]["surveys/release.yaml"] == hashlib.sha256(release_yaml.read_bytes()).hexdigest()
    assert "surveys/2025/instrument.yaml" in manifest["definitions"]
    assert manifest["packages"]["faker"] != "not installed"  # the synthetic data depend on it
    assert manifest["python"].count(".") == 2

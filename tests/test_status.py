"""`consult status`: where a wave stands, from the warehouse and the files, and the next command."""

from __future__ import annotations

import json
import os
import shutil

import duckdb
import pytest

from builders import dated_a_year_later
from pipeline.cli import main
from pipeline.config import Paths
from pipeline.status import project_status


def status_json(paths: Paths, capsys, *wave: str) -> dict:
    assert main(["--root", str(paths.root), "status", *wave, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def next_line(paths: Paths, capsys, *wave: str) -> str:
    """The `Next:` line of `consult status [WAVE]` as staff read it: a command, or what to do in
    words, never "(no command)", which leaves them without an action."""
    assert main(["--root", str(paths.root), "status", *wave]) == 0
    line = next(x for x in reversed(capsys.readouterr().out.splitlines()) if x.startswith("Next: "))
    assert "(no command)" not in line
    return line


def test_rows_and_quarantine_reasons_are_the_warehouse_counts(loaded: Paths, capsys) -> None:
    con = duckdb.connect(str(loaded.warehouse), read_only=True)
    read, kept, held, out, dup = con.execute(
        "SELECT sum(rows_read), sum(rows_loaded), sum(rows_quarantined), sum(rows_excluded), sum(rows_duplicate) "
        "FROM load_ledger WHERE wave = 2024").fetchall()[0]
    outcomes = dict(con.execute("SELECT outcome, count(*) FROM row_outcomes o JOIN load_ledger l USING (file_sha256) "
                                "WHERE l.wave = 2024 GROUP BY ALL").fetchall())
    reasons = dict(con.execute(
        "SELECT rule, count(DISTINCT source_row) FROM quarantine_issues JOIN load_ledger USING (file_sha256) "
        "WHERE wave = 2024 GROUP BY ALL").fetchall())
    con.close()
    status = status_json(loaded, capsys, "2024")
    wave = status["waves"][0]
    assert [s["wave"] for s in status["waves"]] == [2024]
    assert wave["rows"] == {"read": read, "loaded": kept, "quarantined": held, "excluded": out, "duplicates": dup}
    assert (outcomes["loaded"], outcomes["quarantined"], outcomes["excluded"]) == (kept, held, out)
    assert wave["quarantine_reasons"] == reasons and reasons
    assert wave["exports"] == [{"file": "data/synthetic/2024/qualtrics-2024.csv", "loaded": True,
                                "sha256": wave["exports"][0]["sha256"],
                                "bytes": (loaded.synthetic / "2024" / "qualtrics-2024.csv").stat().st_size}]
    assert status["source"] == "synthetic" and wave["data"] == "synthetic"
    # nothing reviewed yet: the quote review files come first
    assert status["next"]["command"] == "consult quotes"


def test_the_next_command_follows_the_cycle(loaded: Paths, capsys) -> None:
    root = ["--root", str(loaded.root)]
    main([*root, "quotes"])
    capsys.readouterr()
    assert status_json(loaded, capsys)["next"]["command"] == "consult quotes review --wave 2023"
    for wave in (2023, 2024, 2025):  # every quote decided by hand in the YAML, as the header allows
        path = loaded.root / "data" / "review" / str(wave) / "quotes.yaml"
        path.write_text(path.read_text(encoding="utf-8").replace("status: pending", "status: rejected"),
                        encoding="utf-8")
    capsys.readouterr()
    assert status_json(loaded, capsys)["next"]["command"] == "consult audit"
    audit = loaded.warehouse_dir / "audit.json"
    audit.write_text('{"passed": false, "checks": []}', encoding="utf-8")
    step = status_json(loaded, capsys)["next"]
    assert step["command"] == "consult audit" and "FAILED" in step["why"]
    audit.write_text('{"passed": true, "checks": []}', encoding="utf-8")
    status = status_json(loaded, capsys)
    assert status["audit"]["state"] == "passed" and status["next"]["command"] == "consult report"
    # a quote decision after the audit makes it out of date
    review = loaded.root / "data" / "review" / "2025" / "quotes.yaml"
    later = os.stat(audit).st_mtime + 5
    os.utime(review, (later, later))
    status = status_json(loaded, capsys)
    assert status["audit"]["state"] == "out of date" and status["next"]["command"] == "consult audit"


def test_an_export_not_loaded_comes_first_and_is_named(loaded: Paths, capsys) -> None:
    extra = loaded.synthetic / "2025" / "qualtrics-2025-late.csv"
    shutil.copyfile(loaded.synthetic / "2024" / "qualtrics-2024.csv", extra)
    assert main(["--root", str(loaded.root), "status", "2025"]) == 0
    out = capsys.readouterr().out
    assert "data/synthetic/2025/qualtrics-2025-late.csv (NOT LOADED)" in out
    assert out.rstrip().splitlines()[-2] == "Next: `consult run`"


def test_a_new_wave_waits_for_its_export_and_an_unknown_wave_is_an_error(loaded: Paths, capsys) -> None:
    root = ["--root", str(loaded.root)]
    assert main([*root, "wave", "new", "2026", "--from", "2025"]) == 0
    capsys.readouterr()
    _set_rate_year(loaded, 2026, 2024)  # the checklist's required living-wage year
    wave = status_json(loaded, capsys, "2026")["waves"][0]
    assert wave["data"] is None and wave["files_loaded"] == 0
    assert wave["next"]["command"] is None and "data/raw/2026/" in wave["next"]["why"]
    assert wave["next"]["why"].startswith("Wave 2026 has no export yet")
    assert next_line(loaded, capsys, "2026") == "Next: when the survey closes, put its export in data/raw/2026/"
    assert main([*root, "status", "2031"]) == 2
    assert "wave 2031 is unknown" in capsys.readouterr().err


def test_real_exports_beside_a_synthetic_warehouse_say_to_clean_it_first(loaded: Paths) -> None:
    (loaded.raw / "2025").mkdir(parents=True)
    shutil.copyfile(loaded.synthetic / "2025" / "qualtrics-2025.csv", loaded.raw / "2025" / "export.csv")
    status = project_status(loaded)
    assert status["source"] == "data/raw" and status["next"]["command"] == "make clean-warehouse"


def test_an_export_outside_a_wave_folder_comes_first_and_says_to_move_it(empty_project: Paths, capsys,
                                                                        synthetic_exports) -> None:
    # `consult run` stops at such a file, so "Wave 2023 has no export yet" would send staff the wrong way.
    empty_project.raw.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(synthetic_exports / "2025" / "qualtrics-2025.csv", empty_project.raw / "export.csv")
    status = status_json(empty_project, capsys)
    assert status["exports_without_wave"] == ["data/raw/export.csv"]
    assert status["next"]["command"] is None
    assert status["next"]["why"].startswith("Move data/raw/export.csv into the folder of its wave")


def test_quarantine_reasons_count_only_rows_still_waiting(empty_project: Paths, capsys) -> None:
    # Two wages out of range are set aside; a corrected export brings one of them back: one row waits.
    from builders import response, write_export
    from pipeline.instrument import load_instrument
    from pipeline.run import run_load

    instrument = load_instrument(empty_project.surveys / "2025" / "instrument.yaml")
    write_export(empty_project.raw / "2025" / "export.csv", instrument,
                 [response(1, {"hourly_wage": 940}), response(2, {"hourly_wage": 950}), response(3)])
    run_load(empty_project)
    write_export(empty_project.raw / "2025" / "export-fixed.csv", instrument, [response(1, {"hourly_wage": 24})])
    run_load(empty_project)
    wave = status_json(empty_project, capsys, "2025")["waves"][0]
    assert wave["quarantine_waiting"] == 1
    assert wave["quarantine_reasons"] == {"out_of_range": 1}


def test_a_broken_instrument_is_the_wave_s_next_step_with_the_run_s_error(project: Paths, capsys) -> None:
    # A typo in the disclosure class: `consult run` stops at it, so status must not say "run" first.
    instrument = project.surveys / "2025" / "instrument.yaml"
    text = instrument.read_text(encoding="utf-8")
    instrument.write_text(text.replace("disclosure: quasi\n", "disclosure: quasy\n", 1), encoding="utf-8")

    assert main(["--root", str(project.root), "run", "--no-report"]) != 0
    run_error = capsys.readouterr().err.strip().removeprefix("error: ")
    assert "surveys/2025/instrument.yaml" in run_error and "disclosure" in run_error

    status = status_json(project, capsys, "2025")
    step = status["waves"][0]["next"]
    assert status["waves"][0]["instrument_error"] == run_error
    assert step["command"] is None and step == status["next"]
    assert "surveys/2025/instrument.yaml" in step["why"] and run_error in step["why"]
    # the whole project's next step too: the run stops for every wave
    assert project_status(project)["next"] == step

    assert_screen_shows(project, capsys, "Instrument:   surveys/2025/instrument.yaml (DOES NOT LOAD)", run_error)


def assert_screen_shows(project: Paths, capsys, flagged: str, run_error: str) -> None:
    """`consult status 2025` flags the file, names no command, and prints the run's error line by line."""
    assert main(["--root", str(project.root), "status", "2025"]) == 0
    out = capsys.readouterr().out
    assert flagged in out
    assert "`consult run`:" not in out and "(no command)" not in out
    assert f"Next: fix {flagged.split()[1]} where the error below says" in out  # the file, in words
    for line in run_error.splitlines():  # every line of the error, each on its own line
        assert any(shown.strip() == line.strip() for shown in out.splitlines())


# A rules.yaml that does not load: a YAML syntax error (a flow mapping left open), an invalid rule.
BROKEN_RULES = {
    "yaml": ("    require: {question: hours_per_week, at_most: 37.5}\n",
             "    require: {question: hours_per_week, at_most: 37.5\n", "not valid YAML"),
    "rule": ("    severity: flag\n", "    severity: warning\n", "severity"),
}


@pytest.mark.parametrize("broken", BROKEN_RULES)
def test_a_broken_rules_file_is_the_wave_s_next_step_with_the_run_s_error(project: Paths, capsys,
                                                                          broken: str) -> None:
    assert project_status(project)["next"]["command"] == "consult run"  # the rules as they are load
    good, bad, what = BROKEN_RULES[broken]
    rules = project.surveys / "2025" / "rules.yaml"
    text = rules.read_text(encoding="utf-8")
    assert text.count(good) == 1
    rules.write_text(text.replace(good, bad), encoding="utf-8")

    assert main(["--root", str(project.root), "run", "--no-report"]) != 0
    run_error = capsys.readouterr().err.partition("error: ")[2].strip()  # after the progress of the run
    assert "surveys/2025/rules.yaml" in run_error and what in run_error

    status = status_json(project, capsys, "2025")
    wave = status["waves"][0]
    step = wave["next"]
    assert step["command"] is None and step == status["next"]
    assert "surveys/2025/rules.yaml does not load" in step["why"] and "Fix it" in step["why"]
    assert run_error in step["why"]
    assert (wave["rules"], wave["rules_error"]) == ("surveys/2025/rules.yaml", run_error)
    assert project_status(project)["next"] == step  # the whole project's next step too

    assert_screen_shows(project, capsys, "Rules:        surveys/2025/rules.yaml (DOES NOT LOAD)", run_error)


def _set_rate_year(paths: Paths, wave: int, year: int) -> None:
    """What the analyst does for the checklist: name the wave's rate year in living_wage.yaml."""
    table = paths.surveys / "reference" / "living_wage.yaml"
    text = table.read_text(encoding="utf-8")
    assert "\nrate_year_for_wave:\n" in text
    table.write_text(text.replace("\nrate_year_for_wave:\n", f"\nrate_year_for_wave:\n  {wave}: {{year: {year}}}\n"),
                     encoding="utf-8")


def test_a_new_wave_without_its_living_wage_year_says_so_before_the_export(loaded: Paths, capsys) -> None:
    root = ["--root", str(loaded.root)]
    assert main([*root, "wave", "new", "2026", "--from", "2025"]) == 0
    capsys.readouterr()
    status = status_json(loaded, capsys, "2026")
    step = status["waves"][0]["next"]
    # what to add, where: the file, the wave and the key the checklist names
    assert "surveys/reference/living_wage.yaml" in step["why"] and "rate_year_for_wave" in step["why"]
    assert "`2026: {year: YEAR}`" in step["why"]
    assert step["why"].index("rate_year_for_wave") < step["why"].index("data/raw/2026/")  # before the export
    assert step["command"] is None
    # the Next line says it in plain words: which file, what to add, where the rates come from
    assert next_line(loaded, capsys, "2026") == (
        "Next: in surveys/reference/living_wage.yaml, add `2026: {year: YEAR}` under `rate_year_for_wave:` (the year "
        "of the Ontario Living Wage Network rates in force while wave 2026 was collected; add those rates under "
        "`rates:` first if they are missing: https://www.ontariolivingwage.ca/rates)")
    # not yet urgent for the project: the older waves' steps still come first
    assert status_json(loaded, capsys)["next"]["command"] == "consult quotes"

    # with an export of 2026 waiting, a run would stop at it: it comes first for the whole project
    dated_a_year_later(loaded.synthetic / "2025" / "qualtrics-2025.csv", loaded.raw / "2026" / "export.csv")
    shutil.rmtree(loaded.synthetic)  # real exports only (a synthetic warehouse beside them says to clean it first)
    shutil.rmtree(loaded.warehouse_dir)
    overall = status_json(loaded, capsys)["next"]
    assert "rate_year_for_wave" in overall["why"] and "2026" in overall["why"]
    assert main([*root, "run", "--no-report"]) != 0  # the run agrees
    assert "no rate year is set for wave 2026" in capsys.readouterr().err

    _set_rate_year(loaded, 2026, 2024)
    assert status_json(loaded, capsys)["next"]["command"] == "consult run"


def test_last_year_s_release_settings_come_before_the_report(loaded: Paths, capsys) -> None:
    # A report of the 2025 wave under a release dated 2024 would be cited with last year's version,
    # date and address: status says to renew them before the report is built.
    root = ["--root", str(loaded.root)]
    main([*root, "quotes"])
    for wave in (2023, 2024, 2025):
        path = loaded.root / "data" / "review" / str(wave) / "quotes.yaml"
        path.write_text(path.read_text(encoding="utf-8").replace("status: pending", "status: rejected"),
                        encoding="utf-8")
    settings = loaded.surveys / "release.yaml"
    text = settings.read_text(encoding="utf-8")
    assert "\ndate: 2025-06-30\n" in text and '\nversion: "2025.1"\n' in text
    settings.write_text(text.replace("\ndate: 2025-06-30\n", "\ndate: 2024-06-30\n")
                        .replace('\nversion: "2025.1"\n', '\nversion: "2024.1"\n'), encoding="utf-8")
    audit = loaded.warehouse_dir / "audit.json"
    audit.write_text('{"passed": true, "checks": []}', encoding="utf-8")  # made after every input (mtime)
    capsys.readouterr()
    step = status_json(loaded, capsys)["next"]
    assert step["command"] is None
    assert ("surveys/release.yaml still describes an earlier release (version 2024.1, dated 2024-06-30) but the "
            'warehouse holds wave 2025: set this release\'s version (e.g. "2025.1")') in step["why"]
    assert next_line(loaded, capsys) == "Next: set this release's version, publication date and url in surveys/release.yaml"
    settings.write_text(text, encoding="utf-8")  # this year's settings: the report is next
    audit.write_text('{"passed": true, "checks": []}', encoding="utf-8")
    assert status_json(loaded, capsys)["next"]["command"] == "consult report"


def test_a_new_project_starts_with_the_practice_run(empty_project: Paths, capsys) -> None:
    step = status_json(empty_project, capsys)["next"]
    assert step["command"] == "consult run" and "synthetic" in step["why"] and "data/raw/<wave>/" in step["why"]
    # and the run it names is indeed the practice one (no export anywhere: the synthetic consultation)
    assert main(["--root", str(empty_project.root), "run", "--no-report"]) == 0
    assert "no export in data/raw/: generating the built-in synthetic consultation" in capsys.readouterr().err
    assert status_json(empty_project, capsys)["source"] == "synthetic"


def test_a_reworded_question_without_a_comparability_statement_says_so_before_the_export(
        loaded: Paths, capsys) -> None:
    """Rewording a question in next year's questionnaire makes `consult run` stop until indicators.yaml
    says whether the years still compare: status says so as soon as the wave is started, and the run
    agrees (stopping before it reads the export)."""
    root = ["--root", str(loaded.root)]
    assert main([*root, "wave", "new", "2026", "--from", "2025"]) == 0
    capsys.readouterr()
    _set_rate_year(loaded, 2026, 2024)
    questionnaire = loaded.surveys / "2026" / "instrument.yaml"
    asked = questionnaire.read_text(encoding="utf-8")
    assert status_json(loaded, capsys, "2026")["waves"][0]["next"]["why"].startswith("Wave 2026 has no export yet")

    said = 'en: "I feel valued by the people I support."'
    assert said in asked
    questionnaire.write_text(asked.replace(said, 'en: "The people I support value my work."'), encoding="utf-8")
    step = status_json(loaded, capsys, "2026")["waves"][0]["next"]
    assert "DISR-07: valued_people_served asked differently in 2025 and 2026" in step["why"]
    assert "comparability:" in step["why"]
    assert step["why"].index("comparability") < step["why"].index("data/raw/2026/")  # before the export
    assert next_line(loaded, capsys, "2026") == (
        "Next: add the `comparability:` statements named below to surveys/indicators.yaml")
    assert status_json(loaded, capsys, "2025")["waves"][0]["comparability_error"] is None
    assert status_json(loaded, capsys)["next"]["command"] == "consult quotes"  # older waves' steps first

    # with its export waiting (beside the loaded ones: a practice wave), the run would stop: first for
    # the whole project, and the run agrees, leaving the warehouse as it was
    dated_a_year_later(loaded.synthetic / "2025" / "qualtrics-2025.csv", loaded.synthetic / "2026" / "export.csv")
    before = loaded.warehouse.read_bytes()
    overall = status_json(loaded, capsys)["next"]
    assert "DISR-07: valued_people_served asked differently in 2025 and 2026" in overall["why"]
    assert main([*root, "run", "--no-report"]) != 0
    assert "DISR-07: valued_people_served asked differently in 2025 and 2026" in capsys.readouterr().err
    assert loaded.warehouse.read_bytes() == before

    questionnaire.write_text(asked, encoding="utf-8")  # worded as before: nothing to state
    assert status_json(loaded, capsys)["next"]["command"] == "consult run"


def test_practice_quotes_are_named_as_such_once_real_exports_wait(loaded: Paths, capsys) -> None:
    """After the practice run and `make clean-warehouse`, the practice run's review files are still
    there until the first real run removes them: status must not count them as this year's quotes."""
    root = ["--root", str(loaded.root)]
    assert main([*root, "quotes"]) == 0
    capsys.readouterr()
    assert status_json(loaded, capsys, "2025")["waves"][0]["quotes_from_practice"] is False  # practice: real work
    dated_a_year_later(loaded.synthetic / "2025" / "qualtrics-2025.csv", loaded.raw / "2026" / "export.csv")
    shutil.rmtree(loaded.synthetic)
    shutil.rmtree(loaded.warehouse_dir)
    wave = status_json(loaded, capsys, "2025")["waves"][0]
    assert wave["quotes"]["pending"] > 0 and wave["quotes_from_practice"] is True
    assert main([*root, "status", "2025"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "Quotes:" in line)
    assert "from the practice run" in line and "removed by the first run on real exports" in line


def test_a_passed_audit_stays_passed_when_the_quotes_are_refreshed_with_nothing_new(loaded: Paths, capsys) -> None:
    # Every `consult run` refreshes every wave's quotes file before auditing, and the audit is reused (not
    # written again) when nothing changed: with ten waves, status then sent staff to `consult audit` each time.
    root = ["--root", str(loaded.root)]
    assert main([*root, "quotes"]) == 0
    assert main([*root, "audit"]) == 0
    capsys.readouterr()
    assert status_json(loaded, capsys)["audit"]["state"] == "passed"
    assert main([*root, "quotes"]) == 0  # the same candidates and decisions as before
    capsys.readouterr()
    assert status_json(loaded, capsys)["audit"]["state"] == "passed"


def test_consult_run_ends_with_the_release_settings_reminder(loaded: Paths, capsys) -> None:
    """A run renders the report under surveys/release.yaml's version and date: when those are last
    year's, the run itself says so (status names it only once the quotes are reviewed)."""
    root = ["--root", str(loaded.root)]
    assert main([*root, "run", "--no-report"]) == 0
    assert "release.yaml still describes an earlier release" not in "".join(capsys.readouterr())
    settings = loaded.surveys / "release.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace("\ndate: 2025-06-30\n", "\ndate: 2024-06-30\n")
                        .replace('\nversion: "2025.1"\n', '\nversion: "2024.1"\n'), encoding="utf-8")
    assert main([*root, "run", "--no-report"]) == 0
    said = "".join(capsys.readouterr())
    assert ("note: surveys/release.yaml still describes an earlier release (version 2024.1, dated 2024-06-30) but "
            "the warehouse holds wave 2025") in said


def test_a_wave_drafted_from_an_export_needs_its_living_wage_year_before_status_says_run(tmp_path, capsys) -> None:
    """A wave started with `consult instrument draft` (not `consult wave new`, which lists the living-wage
    year as REQUIRED): status names the missing rate year instead of sending staff to `consult run`, and
    the run stops on it before reading the export."""
    from conftest import SHARED_FIXTURES, make_project
    from pipeline.platforms.draft import draft_instrument

    paths = make_project(tmp_path / "project")
    export = SHARED_FIXTURES / "googleforms" / "googleforms-responses.csv"
    (paths.surveys / "2026").mkdir()
    (paths.surveys / "2026" / "instrument.yaml").write_text(draft_instrument(export).as_yaml(2026), encoding="utf-8")
    (paths.raw / "2026").mkdir()
    shutil.copy(export, paths.raw / "2026" / "form.csv")

    step = status_json(paths, capsys, "2026")["next"]
    assert step["command"] is None
    assert "no rate year is set for wave 2026" in step["why"] and "living_wage.yaml" in step["why"]

    assert main(["--root", str(paths.root), "run"]) == 2
    said = capsys.readouterr().err
    assert "no rate year is set for wave 2026" in said
    assert "read 79 rows" not in said  # stopped before reading the export


def test_every_step_without_a_command_says_what_to_do(empty_project: Paths, capsys) -> None:
    """An export of a wave with no questionnaire and no earlier wave to start it from: no command
    does that step, and it still says what to do (a step may never lack both)."""
    from pipeline.status import _step

    for wave in ("2023", "2024", "2025"):
        shutil.rmtree(empty_project.surveys / wave)
    (empty_project.raw / "2026").mkdir()
    (empty_project.raw / "2026" / "export.csv").write_text("id,answer\n1,2\n", encoding="utf-8")
    assert next_line(empty_project, capsys) == (
        "Next: write wave 2026's questionnaire as surveys/2026/instrument.yaml (`consult instrument draft` writes a "
        "starting one from an export)")
    with pytest.raises(ValueError, match="needs a todo"):
        _step(1, None, "a new kind of step written without saying what to do")

"""Definitions changed after a wave was loaded apply at the next run, with nothing new to load: the
disclosure rules, the questionnaire's wording, scores and disclosure classes (read from the
warehouse's copy of it), and the scrub lists (the stored open answers are scrubbed again)."""

from __future__ import annotations

import duckdb

from builders import warehouse_rows as query
from pipeline.audit import AuditReport, check_published_cells
from pipeline.cli import main
from pipeline.config import Paths
from pipeline.disclosure import load_rules
from pipeline.instrument import instrument_path
from pipeline.quotes import published_quotes, wave_review
from pipeline.release import build_release, release_dir
from pipeline.run import run_load

STRICTER = "min_group_n: 15\nmin_cell: 5\ncomplementary: true\n"  # than the 11 the figures were made with
HIGH_DEGREE = '{code: 2, label: {en: "To a high degree", fr: "Dans une grande mesure"}, score: '


def test_new_disclosure_rules_alone_recompute_the_figures(loaded: Paths) -> None:
    loaded.disclosure_file.write_text(STRICTER, encoding="utf-8")
    summary = run_load(loaded)
    assert summary.indicators_rebuilt
    con = duckdb.connect(str(loaded.warehouse), read_only=True)
    try:  # the audit's own check of every published cell, with the new rules
        check = check_published_cells(con, load_rules(loaded.disclosure_file))
    finally:
        con.close()
    assert check.passed, check.details[:3]
    assert not run_load(loaded).indicators_rebuilt  # and only once


def test_a_corrected_score_applies_to_the_waves_already_loaded(loaded: Paths) -> None:
    groups = "SELECT wave, concept, code, label_en FROM choices WHERE code IN ('multiple', 'community') ORDER BY ALL"
    generalised = query(loaded, groups)
    assert generalised  # k-anonymity's groups, which the questionnaire does not hold
    for wave in (2023, 2024, 2025):  # "To a high degree" scored 80 instead of 75, in every wave alike
        path = instrument_path(loaded.surveys, wave)
        text = path.read_text(encoding="utf-8")
        assert HIGH_DEGREE + "75}" in text
        path.write_text(text.replace(HIGH_DEGREE + "75}", HIGH_DEGREE + "80}"), encoding="utf-8")
    progress: list[str] = []
    summary = run_load(loaded, progress=progress.append)
    assert summary.indicators_rebuilt and summary.files[0].status == "already loaded"
    assert any("surveys/2025/instrument.yaml: the questionnaire changed since wave 2025 was loaded" in m
               for m in progress)
    # every respondent who answered "To a high degree" now scores 80 on that item, worked out here
    # from the stored answers
    scored = query(loaded, """SELECT DISTINCT w.cbi_burnt_out__score FROM answers a
                              JOIN respondent_wide w USING (respondent_key)
                              WHERE a.concept = 'cbi_burnt_out' AND a.value = '2'""")
    assert scored == [(80.0,)]
    assert query(loaded, groups) == generalised  # k-anonymity's groups are kept
    # what the release says of the score is the corrected points too (stored with the figures)
    points, = query(loaded, "SELECT points FROM indicator_scores WHERE item = 'cbi_burnt_out'")[0]
    assert "2 (To a high degree) = 80 points" in points and "= 75 points" not in points
    assert not run_load(loaded).indicators_rebuilt  # and only once


def test_a_warehouse_made_before_scores_were_stored_describes_them_at_the_next_run(loaded: Paths) -> None:
    figures = query(loaded, "SELECT * FROM indicator_estimates ORDER BY ALL")
    con = duckdb.connect(str(loaded.warehouse))
    con.execute("DROP TABLE indicator_scores")  # as in a warehouse made before the table existed
    con.close()
    build_release(loaded, audit=AuditReport([]))  # the release still builds, with no score described
    assert (release_dir(loaded) / "scores.csv").read_text(encoding="utf-8").count("\n") == 1  # the header
    assert run_load(loaded).indicators_rebuilt
    described = {score for (score,) in query(loaded, "SELECT DISTINCT score FROM indicator_scores")}
    assert described == {"epi_score", "burnout_score", "moral_distress_score"}
    assert query(loaded, "SELECT * FROM indicator_estimates ORDER BY ALL") == figures  # the same figures
    assert not run_load(loaded).indicators_rebuilt  # and only once


def test_a_name_added_to_the_scrub_lists_is_removed_from_the_stored_answers(loaded: Paths) -> None:
    # a word of the synthetic answers stands in for an employer's name noticed in the quotes
    before = query(loaded, "SELECT text, placeholders FROM open_text WHERE text ILIKE '%coffee%' ORDER BY ALL")
    assert before
    assert main(["--root", str(loaded.root), "quotes"]) == 0
    for review in sorted((loaded.root / "data" / "review").glob("*/quotes.yaml")):  # every quote approved
        review.write_text(review.read_text(encoding="utf-8").replace("status: pending", "status: approved"),
                          encoding="utf-8")
    assert any("coffee" in q.text for q in published_quotes(loaded))
    text = loaded.deid_file.read_text(encoding="utf-8")
    assert "organizations:\n" in text
    loaded.deid_file.write_text(text.replace("organizations:\n", "organizations:\n  - coffee\n", 1), encoding="utf-8")
    progress: list[str] = []
    run_load(loaded, progress=progress.append)
    assert any("surveys/deidentification.yaml changed since the open answers were stored" in m for m in progress)
    assert query(loaded, "SELECT count(*) FROM open_text WHERE text ILIKE '%coffee%'") == [(0,)]
    after = query(loaded, "SELECT text, placeholders FROM open_text WHERE text LIKE '%the [ORGANIZATION].%' "
                          "OR text LIKE '%the [ORGANIZATION]' ORDER BY ALL")
    # the same answers, the word replaced and one more placeholder counted in each
    assert sorted((t.replace("coffee", "[ORGANIZATION]"), n + 1) for t, n in before) == sorted(after)
    assert not any("scrubbed again" in m for m in _run(loaded))  # and only once
    # the approvals were of the old words: the new text waits for a decision, the old is not published
    assert main(["--root", str(loaded.root), "quotes"]) == 0
    assert published_quotes(loaded) and not any("coffee" in q.text for q in published_quotes(loaded))
    pending = [q.text for w in (2023, 2024, 2025) for q in wave_review(loaded, w) if q.status == "pending"]
    assert pending and all("[ORGANIZATION]" in text for text in pending)


def _run(paths: Paths) -> list[str]:
    progress: list[str] = []
    run_load(paths, progress=progress.append)
    return progress


def test_a_question_marked_a_direct_identifier_after_the_load_loses_its_stored_answers(loaded: Paths) -> None:
    assert query(loaded, "SELECT count(*) FROM open_text WHERE wave = 2025 AND concept = 'comments_other'")[0][0] > 0
    path = instrument_path(loaded.surveys, 2025)
    text = path.read_text(encoding="utf-8")
    block = text[text.index("      - id: comments_other"):]
    block = block[:block.index("disclosure: sensitive") + len("disclosure: sensitive")]
    path.write_text(text.replace(block, block.replace("disclosure: sensitive", "disclosure: direct")), encoding="utf-8")
    assert run_load(loaded).indicators_rebuilt
    assert query(loaded, "SELECT stored FROM concepts WHERE wave = 2025 AND concept = 'comments_other'") == [(False,)]
    assert query(loaded, "SELECT count(*) FROM open_text WHERE wave = 2025 AND concept = 'comments_other'") == [(0,)]
    assert query(loaded, "SELECT count(*) FROM open_text WHERE wave = 2024 AND concept = 'comments_other'")[0][0] > 0


def test_a_broken_definition_file_stops_the_run_before_any_export_is_read(project: Paths, capsys) -> None:
    """disclosure.yaml and deidentification.yaml are read late in a run (after exports were read and
    checked): a typo in either stops it at once, with the file and line, not a traceback."""
    disclosure = project.disclosure_file.read_text(encoding="utf-8")
    lines = disclosure.splitlines()
    first = next(n for n, row in enumerate(lines, start=1) if row.startswith("min_cell:"))
    project.disclosure_file.write_text(disclosure + "min_cell: 3\n", encoding="utf-8")
    assert main(["--root", str(project.root), "run"]) == 2
    err = capsys.readouterr().err
    assert f"error: {project.disclosure_file}: not valid YAML" in err
    assert f"'min_cell' is written twice (first on line {first}): keep one" in err
    assert "Traceback" not in err and "validating" not in err and not project.warehouse.exists()
    project.disclosure_file.write_text(disclosure, encoding="utf-8")
    with project.deid_file.open("a", encoding="utf-8") as lists:
        lists.write("places: [Sudbury\n")
    assert main(["--root", str(project.root), "run"]) == 2
    err = capsys.readouterr().err
    assert f"error: {project.deid_file}: not valid YAML" in err and not project.warehouse.exists()

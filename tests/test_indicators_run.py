"""The indicators of the synthetic consultation as `consult run` leaves them, the catalogue as
`consult indicators --list` prints it, and the methods page's entries."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest
import yaml

from builders import merged_codes_named
from conftest import REPO
from pipeline import charts
from pipeline.config import Paths
from pipeline.indicators import IndicatorError
from pipeline.run import rebuild_indicators

EQUITY = ["race", "indigenous", "gender", "disability", "lgbtq", "francophone", "newcomer"]
# Per the instruments' headers: 2023 asked no precarity index, microaggression, tokenism, moral
# distress, values or comparison-with-other-disciplines questions, nor about feeling valued by the
# people served or by peers; 2024 asked no microaggression questions.
FROM_2024 = {"PREC-01", "PREC-02", "PREC-07", "PREC-08", "PREC-09", "DISR-07", "DISR-08", "DISR-10", "RES-03",
             "RES-04", "RES-05", "DRIFT-03", "DRIFT-05", "WELL-03", "WELL-04"}
ONLY_2025 = {"DISR-04", "DISR-09"}


def query(paths: Paths, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def catalogue_ids() -> list[str]:
    return [i["id"] for i in yaml.safe_load((REPO / "surveys" / "indicators.yaml").read_text(encoding="utf-8"))["indicators"]]


def expected_waves(paths: Paths) -> dict[str, set[int]]:
    return {i: {2025} if i in ONLY_2025 else {2024, 2025} if i in FROM_2024 else {2023, 2024, 2025}
            for i in catalogue_ids()}


def test_every_indicator_is_computed_for_every_wave_that_asked_its_questions(loaded: Paths) -> None:
    got = {i: set() for i in catalogue_ids()}
    for indicator_id, wave in query(loaded, "SELECT indicator_id, wave FROM indicator_estimates WHERE breakdown = 'all'"):
        got[indicator_id].add(wave)
    expected = expected_waves(loaded)
    assert got == expected
    listed = dict(query(loaded, "SELECT indicator_id, waves FROM indicator_catalogue"))
    assert listed == {i: ", ".join(str(w) for w in sorted(waves)) for i, waves in expected.items()}


def carried(concept: str, asked: set[str], scores: dict, derived: dict) -> bool:
    """Whether a wave's questionnaire carries a concept: a question it asks, a score with enough of
    its items, or a derived answer whose questions it asks (read from the YAML, not the code)."""
    if concept in scores:
        return sum(item in asked for item in scores[concept]["items"]) >= scores[concept]["min_items"]
    if concept in derived:
        return {derived[concept]["compare"]["value"], derived[concept]["compare"]["key"]} <= asked
    return concept in asked


def rule_concepts(rule: dict) -> list[str]:
    if "any" in rule or "all" in rule:
        return [c for part in rule.get("any", rule.get("all")) for c in rule_concepts(part)]
    return [rule["question"]] + [v for k, v in rule.items() if k in ("below", "at_least") and isinstance(v, str)]


def test_every_indicator_has_an_overall_figure_for_every_wave_whose_questionnaire_carries_it(loaded: Paths) -> None:
    """`consult run` computes all indicators for all waves: a published or suppressed (with its
    reason) overall figure with n > 0 wherever the questionnaire asked what the indicator needs."""
    surveys = loaded.surveys
    definitions = yaml.safe_load((surveys / "indicators.yaml").read_text(encoding="utf-8"))
    derived = {d["id"]: d for d in yaml.safe_load((surveys / "derived.yaml").read_text(encoding="utf-8"))["derived"]}
    asked = {}
    for wave in (2023, 2024, 2025):
        instrument = yaml.safe_load((surveys / str(wave) / "instrument.yaml").read_text(encoding="utf-8"))
        asked[wave] = {q["id"] for section in instrument["sections"] for q in section["questions"]}
    expected = set()
    for i in definitions["indicators"]:
        needs = rule_concepts(i["population"]) + i["questions"] + rule_concepts(i.get("condition") or {"question": i["value"]})
        expected |= {(i["id"], wave) for wave in asked
                     if all(carried(c, asked[wave], definitions["scores"], derived) for c in needs)}
    assert {("PREC-03", 2023), ("PREC-03", 2024), ("PREC-03", 2025)} <= expected
    figures = {(i, w): (n, estimate, suppressed, reason) for i, w, n, estimate, suppressed, reason in query(loaded, """
        SELECT indicator_id, wave, n, estimate, suppressed, suppression FROM indicator_estimates WHERE breakdown = 'all'""")}
    missing = sorted(expected - set(figures))
    assert not missing, f"no overall figure for {missing}"
    for key in sorted(expected):
        n, estimate, suppressed, reason = figures[key]
        assert n > 0, key
        assert (not suppressed and estimate is not None) or (suppressed and reason), key


def test_prec03_matches_the_raw_exports_wage_and_area(loaded: Paths) -> None:
    """Below the living wage, worked out here from each loaded response's wage and area as exported
    (rates by hand from surveys/reference/living_wage.yaml), equals the run's PREC-03 in every wave."""
    from pipeline.ingest import file_sha256, read_export
    from pipeline.instrument import instrument_path, load_instrument

    reference = yaml.safe_load((loaded.surveys / "reference" / "living_wage.yaml").read_text(encoding="utf-8"))
    got = {w: (n, count) for w, n, count in query(loaded, """
        SELECT wave, n, count FROM indicator_estimates WHERE indicator_id = 'PREC-03' AND breakdown = 'all'""")}
    for path in sorted(loaded.synthetic.rglob("*.csv")):
        wave = int(path.parent.name)
        export = read_export(path, load_instrument(instrument_path(loaded.surveys, wave)))
        loaded_rows = {row for (row,) in query(loaded, f"""
            SELECT source_row FROM row_outcomes WHERE file_sha256 = '{file_sha256(path)}' AND outcome = 'loaded'""")}
        rates = reference["rates"][reference["rate_year_for_wave"][wave]["year"]]
        n = below = 0
        for index, row in export.answers.iterrows():
            if export.source_row(index) not in loaded_rows or row["eligible_role"] != "1":
                continue
            if isinstance(row["hourly_wage"], str) and isinstance(row["lw_region"], str):
                n += 1
                below += float(row["hourly_wage"]) < rates[int(row["lw_region"])]
        assert got[wave] == (n, below), wave


def test_equity_breakdowns_follow_what_each_wave_asked(loaded: Paths) -> None:
    rows = query(loaded, "SELECT wave, list(DISTINCT breakdown) FROM indicator_estimates WHERE indicator_id = 'DISR-05' GROUP BY wave")
    by_wave = {wave: set(breakdowns) for wave, breakdowns in rows}
    assert by_wave[2025] == {"all", "oh_region", "work_setting", *EQUITY}
    # disability, 2SLGBTQIA+, francophone and newcomer status were first asked in 2024
    assert by_wave[2023] == {"all", "oh_region", "work_setting", "race", "indigenous", "gender"}


def test_changes_follow_the_stated_comparability(loaded: Paths) -> None:
    rows = {(i, w): (prev, status, statement) for i, w, prev, status, statement in query(loaded, """
        SELECT indicator_id, wave, previous_wave, comparability, statement FROM indicator_changes
        WHERE breakdown = 'all'""")}
    assert rows[("DISR-03", 2025)][:2] == (2024, "not_comparable") and rows[("DISR-03", 2025)][2] == "not comparable"
    assert rows[("DISR-03", 2024)][:2] == (2023, "comparable")
    assert rows[("PREC-01", 2025)][:2] == (2024, "comparable_with_caveat")
    assert ("PREC-01", 2024) not in rows  # the index was not asked in 2023
    assert rows[("PREC-04", 2025)][:2] == (2024, "comparable")
    # every indicator has a change for each of its waves after its first
    assert set(rows) == {(i, w) for i, waves in expected_waves(loaded).items() for w in sorted(waves)[1:]}


def test_published_views_carry_no_number_for_a_hidden_figure(loaded: Paths) -> None:
    checks = {
        "published_estimates": ["n", "count", "estimate", "ci_low", "ci_high"],
        "published_gaps": ["n", "count", "estimate", "rest_n", "rest_count", "rest_estimate", "gap", "gap_low",
                           "gap_high", "statement"],
        "published_changes": ["n", "estimate", "previous_n", "previous_estimate", "change", "change_low",
                              "change_high", "statement"],
    }
    for view, columns in checks.items():
        hidden, leaking = query(loaded, f"""
            SELECT count(*) FILTER (WHERE suppressed),
                   count(*) FILTER (WHERE suppressed AND NOT ({' AND '.join(f'{c} IS NULL' for c in columns)}))
            FROM {view}""")[0]
        assert hidden > 0 and leaking == 0, view


def test_no_published_gap_or_change_rests_on_a_hidden_figure(loaded: Paths) -> None:
    gaps_on_hidden = query(loaded, """
        SELECT count(*) FROM published_gaps g JOIN published_estimates e USING (indicator_id, wave, breakdown, group_code)
        WHERE NOT g.suppressed AND (e.suppressed OR g.n <> e.n OR g.estimate <> e.estimate)""")[0][0]
    changes_on_hidden = query(loaded, """
        SELECT count(*) FROM published_changes c
        JOIN published_estimates now USING (indicator_id, wave, breakdown, group_code)
        JOIN published_estimates before ON before.indicator_id = c.indicator_id AND before.wave = c.previous_wave
             AND before.breakdown = c.breakdown AND before.group_code = c.group_code
        WHERE NOT c.suppressed AND (now.suppressed OR before.suppressed OR c.previous_n <> before.n)""")[0][0]
    assert gaps_on_hidden == 0 and changes_on_hidden == 0
    # and the hidden ones exist, so the check above is not empty
    assert query(loaded, "SELECT count(*) FROM indicator_gaps WHERE suppressed")[0][0] > 0


MARTS = ["indicator_estimates", "indicator_gaps", "indicator_changes", "indicator_catalogue", "indicator_breakdowns"]


def marts(paths: Paths) -> dict[str, list[tuple]]:
    return {table: query(paths, f"SELECT * FROM {table} ORDER BY ALL") for table in MARTS}


def test_recomputing_gives_the_same_figures_to_the_last_bit(loaded: Paths) -> None:
    before = marts(loaded)
    rebuild_indicators(loaded)
    after = marts(loaded)
    assert repr(after) == repr(before)


def test_a_failing_definition_leaves_the_warehouse_as_it_was(loaded: Paths) -> None:
    before = marts(loaded)
    text = loaded.indicators_file.read_text(encoding="utf-8")
    head, tail = text.split("  - id: DISR-07", 1)
    # DISR-07's question was reworded between 2024 and 2025: without its statement the run stops
    broken = head + "  - id: DISR-07" + tail.replace("    comparability: *valued_2024_2025\n", "", 1)
    loaded.indicators_file.write_text(broken, encoding="utf-8")
    with pytest.raises(IndicatorError, match="DISR-07: valued_people_served asked differently in 2024 and 2025"):
        rebuild_indicators(loaded)
    assert marts(loaded) == before


def test_recomputing_without_a_warehouse_says_so_and_creates_none(empty_project: Paths) -> None:
    """`consult indicators` before any run: the same message as every other command, not
    "computed 0 indicator cells" and an empty warehouse a report could then be rendered from."""
    from pipeline.load import WarehouseError

    with pytest.raises(WarehouseError, match="no warehouse yet; run `consult run`"):
        rebuild_indicators(empty_project)
    assert not empty_project.warehouse.exists()


def consult(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_indicators_list_prints_the_whole_catalogue() -> None:
    result = consult("indicators", "--list")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    definitions = yaml.safe_load((REPO / "surveys" / "indicators.yaml").read_text(encoding="utf-8"))
    for i in definitions["indicators"]:
        entry = out.split(f"\n{i['id']}  ", 1)[1].split("\n\n", 1)[0]
        assert entry.startswith(i["title"])
        assert f"domain: {i['domain']}; {i['kind']}" in entry
        assert f"minimum n {i.get('min_n', definitions['default_min_n'])}" in entry
        assert f"population: {i['population_text']}" in entry
        assert "breakdowns: oh_region, work_setting, race, indigenous, gender" in entry
    disr03 = out.split("\nDISR-03  ", 1)[1].split("\n\n", 1)[0]
    assert "counted when: valued_administrators is one of 1 (Strongly disagree), 2 (Disagree)" in disr03
    assert "2024 to 2025: not comparable." in disr03
    for breakdown in definitions["breakdowns"].values():
        assert breakdown["title"] in out
    assert "people who gave two or more form one group: More than one race category" in out
    # a merged answer a rule names (surveys/privacy.yaml), labelled as the answers are
    merged = merged_codes_named(REPO / "surveys")
    assert ("indigenous", "indigenous") in merged
    for (_question, code), label in merged.items():
        assert f"{code} ({label})" in out, code


def test_methods_entries_come_straight_from_the_definitions(loaded: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSULT_WAREHOUSE", str(loaded.warehouse))
    entry = charts.definition_md("DISR-03", charts.question_labels(), charts.breakdown_titles())
    assert "{#DISR-03}" in entry
    # the rules in words: question wording and answer labels (as the 2025 questionnaire words them)
    assert "**Denominator (n):** answered “Do you currently work or volunteer in a peer support role in Ontario?” " \
           "with “Yes, in a paid role” or “Yes, as a volunteer or for an honorarium only”" in entry
    assert "**Counted (numerator):** answered “I feel valued by the managers and administrators where I work.” with " \
           "“Strongly disagree” or “Disagree”" in entry
    assert "**Shown by:** Ontario Health region, Work setting, Race, Indigenous identity" in entry
    minimum = yaml.safe_load((REPO / "surveys" / "indicators.yaml").read_text(encoding="utf-8"))["default_min_n"]
    assert f"**Smallest group reported:** {minimum} respondents" in entry
    assert "**Years with figures:** 2023, 2024, 2025" in entry
    assert "**Across years:** 2024 to 2025: not comparable. 2023 and 2024 asked whether people feel" in entry
    assert "&#x27;" not in charts.definition_md("PREC-02")  # "PeerWorks' choice" reads as written
    same = charts.definition_md("PREC-04", charts.question_labels(), charts.breakdown_titles())
    assert "**Across years:** asked the same way in every year with figures" in same
    groups = charts.breakdowns_md()
    assert "**Race.** Race categories of the Ontario Anti-Racism Data Standards" in groups
    assert "people who gave two or more answers form one group: More than one race category" in groups


def test_every_missing_comparability_statement_is_named_at_once(loaded: Paths) -> None:
    """A reworded question is often used by several indicators: the run names every indicator that
    needs `comparability:`, not one per run (each run reads and checks the new exports again first)."""
    text = loaded.indicators_file.read_text(encoding="utf-8")
    removed = ["    comparability: *valued_2024_2025\n", "    comparability: *epi_2024_2025\n"]
    blocks = text.split("  - id: ")[1:]
    expected = {block.split("\n", 1)[0] for block in blocks if any(line in block for line in removed)}
    assert len(expected) == 7  # 3 valued-by indicators, 4 precarity bands (read from the catalogue)
    for line in removed:
        text = text.replace(line, "")
    loaded.indicators_file.write_text(text, encoding="utf-8")
    with pytest.raises(IndicatorError) as error:
        rebuild_indicators(loaded)
    listed = str(error.value).split("\nWhat changed", 1)[0]  # then each question's changes, once
    named = {line.split(":")[0].strip() for line in listed.splitlines()[1:]}
    assert named == expected
    assert "asked differently in 2024 and 2025" in str(error.value)
    # and what changed, each question once: the words reworded, the score's items added
    said = str(error.value).split("\nWhat changed", 1)[1]
    assert "valued_people_served (2024 -> 2025):\n    wording: I feel [-respected-] {+valued+} by the people I support." in said
    assert "epi_on_call (2024 -> 2025, an item of epi_score):\n    added in 2025 (not asked in 2024)" in said
    assert said.count("valued_people_served") == 1


def _without_statements(paths: Paths) -> None:
    """indicators.yaml without its 2024-2025 comparability statements (two reworded questions)."""
    text = paths.indicators_file.read_text(encoding="utf-8")
    for line in ("    comparability: *valued_2024_2025\n", "    comparability: *epi_2024_2025\n"):
        assert line in text
        text = text.replace(line, "")
    paths.indicators_file.write_text(text, encoding="utf-8")


def test_a_missing_comparability_statement_is_foreseen_from_the_questionnaires(loaded: Paths) -> None:
    """`consult run` checks the statements before reading any export: the questionnaires alone must
    give the very message the indicators stage gives from the stored questions."""
    from pipeline.deidentify import derived_path, load_derivations
    from pipeline.indicators import load_catalogue, unstated_comparability
    from pipeline.instrument import instrument_path, load_instrument

    instruments = {w: load_instrument(instrument_path(loaded.surveys, w)) for w in (2023, 2024, 2025)}
    derivations = load_derivations(derived_path(loaded.surveys))
    assert unstated_comparability(load_catalogue(loaded.indicators_file), instruments, derivations) is None
    _without_statements(loaded)
    with pytest.raises(IndicatorError) as stored:
        rebuild_indicators(loaded)
    foreseen = unstated_comparability(load_catalogue(loaded.indicators_file), instruments, derivations)
    assert foreseen == str(stored.value)


def test_the_run_stops_before_reading_any_export_when_a_statement_is_missing(
        project: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.run as run

    _without_statements(project)
    read = []
    monkeypatch.setattr(run, "read_export", lambda path, *a, **k: read.append(path))
    with pytest.raises(IndicatorError) as error:
        run.run_load(project)
    assert "DISR-07: valued_people_served asked differently in 2024 and 2025" in str(error.value)
    assert "Nothing was loaded" in str(error.value)
    assert read == []
    assert not project.warehouse.exists()


def test_answers_k_anonymity_merged_in_one_wave_only_are_not_a_question_asked_differently(loaded: Paths) -> None:
    """A smaller wave may need its living-wage areas merged into North and South (surveys/privacy.yaml),
    which stores those two codes among the wave's answers; the question was asked the same way, so the
    years still compare without a statement (a decade of yearly loads stopped here)."""
    with duckdb.connect(str(loaded.warehouse)) as con:
        con.execute("INSERT INTO choices VALUES (2025, 'lw_region', 'north', 'North', 'Nord', NULL, false), "
                    "(2025, 'lw_region', 'south', 'South', 'Sud', NULL, false)")
    before = query(loaded, "SELECT comparability FROM indicator_changes WHERE indicator_id = 'PREC-03' "
                           "AND wave = 2025 AND breakdown = 'all'")
    rebuild_indicators(loaded)
    after = query(loaded, "SELECT comparability FROM indicator_changes WHERE indicator_id = 'PREC-03' "
                          "AND wave = 2025 AND breakdown = 'all'")
    assert after == before == [("comparable",)]

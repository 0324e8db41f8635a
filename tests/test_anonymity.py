"""k-anonymity of the stored microdata: rules, generalisation, local suppression, and an independent
check with pycanon on what the warehouse holds."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml
from pycanon.anonymity import k_anonymity

from conftest import REPO, make_project
from pipeline.anonymity import (
    Column,
    PrivacyError,
    load_checked_privacy_rules,
    load_privacy_rules,
    protect_wave,
)
from pipeline.config import Paths
from pipeline.run import run_load

PRIVACY = yaml.safe_load((REPO / "surveys" / "privacy.yaml").read_text(encoding="utf-8"))
KEY = list(PRIVACY["microdata"]["key_quasi_identifiers"])
K = PRIVACY["microdata"]["k"]


def stored_key_values(warehouse: Path, wave: int) -> "pd.DataFrame":  # noqa: F821
    """The key quasi-identifiers of one wave as stored, one row per respondent, built here from the
    raw tables (a value is the sorted codes of its answer rows; no answer is 'missing')."""
    import pandas as pd

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        asked = [c for (c,) in con.execute("SELECT concept FROM concepts WHERE wave = ? AND stored", [wave]).fetchall()]
        concepts = [c for c in KEY if c in asked]
        keys = [k for (k,) in con.execute("SELECT respondent_key FROM respondents WHERE wave = ?", [wave]).fetchall()]
        rows = con.execute("SELECT respondent_key, concept, value FROM answers WHERE wave = ?", [wave]).fetchall()
    finally:
        con.close()
    values: dict[tuple[str, str], list[str]] = {}
    for key, concept, value in rows:
        if concept in concepts:
            values.setdefault((key, concept), []).append(value)
    return pd.DataFrame(
        [{c: ",".join(sorted(values.get((key, c), []))) or "missing" for c in concepts} for key in keys]
    ), concepts


def test_pycanon_confirms_k_on_every_wave_of_the_stored_microdata(loaded: Paths) -> None:
    for wave in (2023, 2024, 2025):
        frame, concepts = stored_key_values(loaded.warehouse, wave)
        assert len(concepts) == len(KEY)
        assert k_anonymity(frame, concepts) >= K, wave


def test_generalised_values_are_labelled_for_the_indicators(loaded: Paths) -> None:
    con = duckdb.connect(str(loaded.warehouse), read_only=True)
    unlabelled = con.execute(
        f"""SELECT a.wave, a.concept, a.value FROM answers a
            LEFT JOIN choices c ON c.wave = a.wave AND c.concept = a.concept AND c.code = a.value
            WHERE a.concept IN ({', '.join(repr(c) for c in KEY)}) AND c.code IS NULL"""
    ).fetchall()
    con.close()
    assert unlabelled == []


def test_the_warehouse_says_how_each_column_is_protected(loaded: Paths) -> None:
    con = duckdb.connect(str(loaded.warehouse), read_only=True)
    rows = con.execute(
        "SELECT wave, concept, disclosure, stored, k_anonymity_key, treatment, cells_suppressed FROM respondent_columns"
    ).fetchall()
    summary = con.execute("SELECT wave, k, smallest_class FROM anonymity_summary ORDER BY wave").fetchall()
    con.close()
    assert all(treatment for *_, treatment, _ in rows)
    key_rows = {(wave, concept) for wave, concept, _, _, key, _, _ in rows if key}
    assert {concept for _, concept in key_rows} == set(KEY)
    quasi = {(wave, concept) for wave, concept, disclosure, *_ in rows if disclosure == "quasi"}
    assert key_rows <= quasi
    direct = [treatment for _, _, disclosure, stored, _, treatment, _ in rows if disclosure == "direct"]
    assert direct and all("never stored" in t for t in direct)
    assert [(w, k) for w, k, _ in summary] == [(2023, K), (2024, K), (2025, K)]
    assert all(smallest >= K for *_, smallest in summary)


def test_stored_pay_is_rounded_and_top_coded(loaded: Paths) -> None:
    con = duckdb.connect(str(loaded.warehouse), read_only=True)
    wages = [float(v) for (v,) in con.execute("SELECT value FROM answers WHERE concept = 'hourly_wage'").fetchall()]
    con.close()
    assert wages and max(wages) <= 45
    assert all(w * 2 == int(w * 2) for w in wages)


def _column(concept: str, values: list[set[str]], rule: dict, missing: set[str] = frozenset(), codes: int = 3) -> Column:
    from pipeline.anonymity import KeyQuasiIdentifier

    return Column.of_values(concept, KeyQuasiIdentifier.model_validate(rule), [frozenset(v) for v in values],
                            frozenset(missing), codes)


REGION = {"weight": 1, "levels": [
    {"name": "as asked"},
    {"name": "merged", "groups": [{"code": "south", "codes": [2, 3], "label": {"en": "South", "fr": "Sud"}}]},
]}


def test_generalising_beats_suppressing_when_it_loses_less() -> None:
    # 5 in region 1, 3 in region 2, 2 in region 3; k = 5.
    # As asked: regions 2 and 3 (5 people) are under 5; removing their region loses 5 values (0.5).
    # Merged: {1: 5, south: 5}; each merged value loses (2-1)/(3-1) = 0.5, so 5 x 0.5 / 10 = 0.25.
    column = _column("region", [{"1"}] * 5 + [{"2"}] * 3 + [{"3"}] * 2, REGION)
    outcome = protect_wave([column], k=5, candidates=4, order=np.arange(10))
    assert outcome.levels == (1,)
    assert sorted(row[0] for row in outcome.rows) == ["1"] * 5 + ["south"] * 5
    assert outcome.loss == pytest.approx(0.25)
    assert not outcome.suppressed[0].any()


def test_local_suppression_when_merging_cannot_help() -> None:
    # 9 in region 1 and 1 in region 2: merging 2 and 3 leaves region 2's person alone. Removing that
    # one value leaves a group of 1 with no value, so 4 people from region 1 (which has 9) lose theirs
    # too: a group of 5 with no value and a group of 5 in region 1. 5 values removed: loss 0.5.
    column = _column("region", [{"1"}] * 9 + [{"2"}], REGION)
    outcome = protect_wave([column], k=5, candidates=4, order=np.arange(10))
    assert sorted(row[0] for row in outcome.rows) == ["*"] * 5 + ["1"] * 5
    assert int(outcome.suppressed[0].sum()) == 5
    assert outcome.loss == pytest.approx(0.5)


def test_multiple_choice_levels() -> None:
    rules = load_privacy_rules(REPO / "surveys" / "privacy.yaml").microdata.key_quasi_identifiers["race"]
    missing = frozenset({"99"})
    assert rules.generalise(frozenset({"1", "8"}), 1, missing) == {"multiple"}
    assert rules.generalise(frozenset({"1"}), 1, missing) == {"1"}
    assert rules.generalise(frozenset({"4"}), 2, missing) == {"another_or_rare"}
    assert rules.generalise(frozenset({"99"}), 2, missing) == {"99"}
    # values stored by an earlier run are taken further, never back
    assert rules.generalise(frozenset({"multiple"}), 2, missing) == {"multiple"}
    assert rules.generalise(frozenset({"another_or_rare"}), 2, missing) == {"another_or_rare"}


AS_ASKED = {"weight": 2, "levels": [{"name": "as asked"}]}


def _race_case(race_rule: dict) -> "Outcome":  # noqa: F821
    # k = 5. At risk: A 3 x (region 1, gender 2, Black), B 2 x (1, 2, White), C 2 x (2, 1, Black),
    # G 3 x (2, 1, White); safe: D 5 x (2, 2, White), H 5 x (1, 1, Black). Removing race puts A with B
    # and C with G (5 each); removing region and gender instead puts A with C and B with G (5 each).
    groups = [(3, "1", "2", "1"), (2, "1", "2", "8"), (2, "2", "1", "1"), (3, "2", "1", "8"),
              (5, "2", "2", "8"), (5, "1", "1", "1")]
    rows = [row for size, *row in groups for _ in range(size)]
    region = _column("region", [{r} for r, _, _ in rows], AS_ASKED)
    gender = _column("gender", [{g} for _, g, _ in rows], AS_ASKED)
    race = _column("race", [{c} for _, _, c in rows], race_rule, missing={"99"}, codes=9)
    return protect_wave([region, gender, race], k=5, candidates=50, order=np.arange(len(rows)))


def test_race_is_the_last_answer_removed_with_the_shipped_weights() -> None:
    outcome = _race_case(PRIVACY["microdata"]["key_quasi_identifiers"]["race"])
    assert outcome.rows == ([("*", "*", "1")] * 3 + [("*", "*", "8")] * 2 + [("*", "*", "1")] * 2
                            + [("*", "*", "8")] * 3 + [("2", "2", "8")] * 5 + [("1", "1", "1")] * 5)
    assert not outcome.suppressed[2].any()
    assert int(outcome.suppressed[0].sum()) == 10 and int(outcome.suppressed[1].sum()) == 10
    # The weight decides it: race weighing 3 (less than region and gender together) loses race instead.
    lighter = _race_case({**PRIVACY["microdata"]["key_quasi_identifiers"]["race"], "weight": 3})
    assert int(lighter.suppressed[2].sum()) == 10 and not lighter.suppressed[0].any()


def test_the_shipped_rules_put_race_and_indigenous_identity_first() -> None:
    # ARDS Standard 33: each must outweigh every other key quasi-identifier together, or local
    # suppression removes it before removing two or three other answers of the same person.
    weights = {c: rule.get("weight", 1) for c, rule in PRIVACY["microdata"]["key_quasi_identifiers"].items()}
    others = sum(w for c, w in weights.items() if c not in ("race", "indigenous"))
    assert weights["race"] > others and weights["indigenous"] > others


def test_min_level_stores_race_as_ards_reports_it_even_when_the_exact_mix_is_common() -> None:
    # Five people gave races 1 and 8, five gave 8 only: as selected, both groups already reach k = 5
    # at no loss, but min_level 1 stores the mix as "more than one race category".
    rule = {"weight": 3, "min_level": 1, "levels": [
        {"name": "as selected"},
        {"name": "one or more than one", "more_than_one": {"code": "multiple", "label": {"en": "More", "fr": "Plus"}}},
    ]}
    column = _column("race", [{"1", "8"}] * 5 + [{"8"}] * 5, rule, missing={"99"}, codes=9)
    outcome = protect_wave([column], k=5, candidates=4, order=np.arange(10))
    assert outcome.levels == (1,)
    assert [row[0] for row in outcome.rows] == ["multiple"] * 5 + ["8"] * 5
    without = _column("race", [{"1", "8"}] * 5 + [{"8"}] * 5, {**rule, "min_level": 0}, missing={"99"}, codes=9)
    assert protect_wave([without], k=5, candidates=4, order=np.arange(10)).levels == (0,)


def test_a_min_level_beyond_the_levels_is_refused(tmp_path: Path) -> None:
    bad = yaml.safe_load((REPO / "surveys" / "privacy.yaml").read_text(encoding="utf-8"))
    bad["microdata"]["key_quasi_identifiers"]["race"]["min_level"] = 3
    path = tmp_path / "privacy.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(PrivacyError) as error:
        load_privacy_rules(path)
    assert str(path) in str(error.value) and "race" in str(error.value) and "min_level 3" in str(error.value)


def test_a_level_that_splits_a_group_is_refused(tmp_path: Path) -> None:
    bad = yaml.safe_load((REPO / "surveys" / "privacy.yaml").read_text(encoding="utf-8"))
    bad["microdata"]["key_quasi_identifiers"]["age_band"]["levels"][2]["groups"] = [
        {"code": "18-44", "codes": [1, 2, 3], "label": {"en": "18 to 44", "fr": "18 à 44 ans"}},
        {"code": "45+", "codes": [4, 5, 6], "label": {"en": "45 or older", "fr": "45 ans ou plus"}},
    ]
    path = tmp_path / "privacy.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(PrivacyError) as error:
        load_privacy_rules(path)
    assert str(path) in str(error.value) and "age_band" in str(error.value) and "splits" in str(error.value)


def test_every_quasi_identifier_must_be_covered(tmp_path: Path) -> None:
    bad = yaml.safe_load((REPO / "surveys" / "privacy.yaml").read_text(encoding="utf-8"))
    del bad["microdata"]["other_quasi_identifiers"]["newcomer"]
    path = tmp_path / "privacy.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(PrivacyError) as error:
        load_checked_privacy_rules(path, REPO / "surveys")
    assert str(path) in str(error.value) and "'newcomer'" in str(error.value)


def _split(export: Path, first: Path, second: Path) -> None:
    """A Qualtrics export (3 header rows) as two exports of half the responses each."""
    records = list(csv.reader(io.StringIO(export.read_text(encoding="utf-8-sig"), newline="")))
    header, body = records[:3], records[3:]
    for target, part in ((first, body[: len(body) // 2]), (second, body[len(body) // 2:])):
        target.parent.mkdir(parents=True, exist_ok=True)
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(header + part)
        target.write_text(out.getvalue(), encoding="utf-8")


def test_k_holds_on_the_whole_wave_after_each_incremental_load(tmp_path: Path, synthetic_exports: Path) -> None:
    paths = make_project(tmp_path / "project")
    first, second = paths.raw / "2023" / "part-1.csv", paths.raw / "2023" / "part-2.csv"
    _split(synthetic_exports / "2023" / "qualtrics-2023.csv", first, second)
    held = second.rename(tmp_path / "held.csv")
    run_load(paths)
    frame, concepts = stored_key_values(paths.warehouse, 2023)
    assert k_anonymity(frame, concepts) >= K
    levels = _levels(paths.warehouse)
    shutil.move(held, second)
    run_load(paths)
    frame, concepts = stored_key_values(paths.warehouse, 2023)
    assert k_anonymity(frame, concepts) >= K
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    assert con.execute("SELECT count(*) FROM respondents").fetchall()[0][0] == len(frame) > len(frame) // 2
    con.close()
    after = _levels(paths.warehouse)
    assert all(after[c] >= levels[c] for c in levels)  # a stored value is never made precise again


def _levels(warehouse: Path) -> dict[str, int]:
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = dict(con.execute("SELECT concept, level FROM column_protection WHERE k_anonymity_key").fetchall())
    con.close()
    return rows


def test_the_same_exports_give_the_same_published_figures(tmp_path: Path, loaded: Paths, synthetic_exports: Path) -> None:
    # Respondent keys are random, but which values are generalised or removed depends only on the
    # answers: a second warehouse built from the same exports publishes the same figures.
    again = make_project(tmp_path / "again", synthetic_exports)
    run_load(again)
    query = "SELECT * FROM published_estimates ORDER BY ALL"
    figures = []
    for paths in (loaded, again):
        con = duckdb.connect(str(paths.warehouse), read_only=True)
        figures.append(con.execute(query).fetchall())
        con.close()
    assert figures[0] == figures[1] and figures[0]


def test_the_answers_removed_per_question_are_what_the_export_and_the_warehouse_say(loaded: Paths) -> None:
    # column_protection.cells_suppressed (shown on the methods page) worked out independently: the
    # loaded rows of the raw export that answer the question, minus the respondents whose answer the
    # warehouse holds.
    import hashlib

    from pipeline.instrument import load_instrument

    con = duckdb.connect(str(loaded.warehouse), read_only=True)
    try:
        for wave in (2023, 2024, 2025):
            export = loaded.synthetic / str(wave) / f"qualtrics-{wave}.csv"
            sha = hashlib.sha256(export.read_bytes()).hexdigest()
            kept = {r for (r,) in con.execute("SELECT source_row FROM row_outcomes WHERE file_sha256 = ? "
                                                "AND outcome = 'loaded'", [sha]).fetchall()}
            records = list(csv.reader(io.StringIO(export.read_text(encoding="utf-8-sig"))))
            instrument = load_instrument(loaded.surveys / str(wave) / "instrument.yaml")
            for concept in ("oh_region", "work_setting", "age_band", "gender"):
                column = records[0].index(instrument.question(concept).aliases[0])
                answered = sum(1 for number, record in enumerate(records[3:], start=4)
                               if number in kept and record[column].strip() not in ("", "-99"))
                stored, removed = con.execute(
                    "SELECT (SELECT count(DISTINCT respondent_key) FROM answers WHERE wave = ? AND concept = ?), "
                    "(SELECT cells_suppressed FROM column_protection WHERE wave = ? AND concept = ?)",
                    [wave, concept, wave, concept]).fetchall()[0]
                assert removed == answered - stored > 0, (wave, concept)
    finally:
        con.close()

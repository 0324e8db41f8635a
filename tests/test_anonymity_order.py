"""k-anonymity treats respondents in a fixed order: by their answers, then by their position in the
load, never by their random keys or by the order DuckDB's threads happen to return rows in."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np

from conftest import REPO
from pipeline.anonymity import _merge, load_privacy_rules, protect_microdata
from pipeline.load import ensure_schema

WAVE = 2030
RULES = load_privacy_rules(REPO / "surveys" / "privacy.yaml")


def _warehouse(path: Path, men: int) -> list[int]:
    """A wave asking gender (and one other question): `men` respondents with the same answers, then one
    woman, loaded in that order. Keys run backwards (the first loaded has the largest key), so an order
    by key is not the load order. Returns the keys in load order."""
    con = duckdb.connect(str(path))
    ensure_schema(con)
    con.execute(f"""INSERT INTO concepts VALUES
        ({WAVE}, 'gender', 'demographics', 'single', 'quasi', true, 'Gender', 'Genre', '', ''),
        ({WAVE}, 'tenure', 'work', 'single', 'none', true, 'Tenure', 'Ancienneté', '', '')""")
    con.executemany(f"INSERT INTO choices VALUES ({WAVE}, 'gender', ?, ?, ?, NULL, ?)",
                    [("1", "Man", "Homme", False), ("2", "Woman", "Femme", False), ("3", "Non-binary", "Non binaire", False),
                     ("4", "Another", "Autre", False), ("99", "Prefer not to answer", "Préfère ne pas répondre", True)])
    con.execute(f"""CREATE TEMP TABLE people AS
        SELECT i, ({men} - i + 1)::BIGINT AS respondent_key, CASE WHEN i = {men} THEN '2' ELSE '1' END AS gender
        FROM range({men} + 1) t(i)""")
    con.execute(f"INSERT INTO respondents SELECT respondent_key, {WAVE}, 'export' FROM people ORDER BY i")
    con.execute(f"INSERT INTO answers SELECT respondent_key, {WAVE}, 'gender', gender FROM people ORDER BY i")
    con.execute(f"INSERT INTO answers SELECT respondent_key, {WAVE}, 'tenure', '3' FROM people ORDER BY i")
    keys = [key for (key,) in con.execute("SELECT respondent_key FROM people ORDER BY i").fetchall()]
    con.close()
    return keys


def _protect(path: Path, threads: int | None = None) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path))
    if threads:
        con.execute(f"SET threads = {threads}")
    con.execute("BEGIN TRANSACTION")
    protect_microdata(con, RULES)
    con.execute("COMMIT")
    stored = {
        # answers as stored, in the order they were written
        "answers": con.execute("SELECT * FROM answers").fetchall(),
        "choices": con.execute("SELECT * FROM choices ORDER BY ALL").fetchall(),
        "column_protection": con.execute("SELECT * FROM column_protection ORDER BY ALL").fetchall(),
        "anonymity_summary": con.execute("SELECT * FROM anonymity_summary").fetchall(),
    }
    con.close()
    return stored


def test_among_identical_respondents_the_first_loaded_lose_their_value(tmp_path: Path) -> None:
    # k = 5: the woman is alone, so her gender is removed; a group of 1 without gender is under k, so 4
    # men (there are 20: 16 stay, still at least k) lose theirs too. The 20 men answered alike: the
    # 4 loaded first are taken, whatever their keys.
    keys = _warehouse(tmp_path / "w.duckdb", men=20)
    stored = _protect(tmp_path / "w.duckdb")
    gender = {key: value for key, _, concept, value in stored["answers"] if concept == "gender"}
    assert sorted(set(keys) - set(gender)) == sorted(keys[:4] + keys[-1:])
    assert set(gender.values()) == {"1"} and len(gender) == 16
    assert sum(1 for *_, concept, _ in stored["answers"] if concept == "tenure") == 21  # not a key: untouched
    assert stored["anonymity_summary"][0][2:6] == (21, 5, 1, 5)  # respondents, smallest class, at risk, suppressed


def test_two_runs_with_several_threads_store_the_same_data(tmp_path: Path) -> None:
    # Enough rows for DuckDB to split the work between threads (row groups of 122,880 rows).
    _warehouse(tmp_path / "source.duckdb", men=150_000)
    runs = []
    for run in ("first", "second"):
        shutil.copy(tmp_path / "source.duckdb", tmp_path / f"{run}.duckdb")
        runs.append(_protect(tmp_path / f"{run}.duckdb", threads=4))
    assert runs[0] == runs[1]
    assert sum(1 for *_, concept, _ in runs[0]["answers"] if concept == "gender") == 150_001 - 5


def test_counting_combinations_with_large_keys() -> None:
    # The packed sort and the fallback for keys too large to pack give the same counts as a Counter.
    rng = np.random.default_rng(7)
    for high in (1_000, 1 << 61):
        keys = rng.integers(0, high, 5_000) // 3 * 3
        counts = rng.integers(1, 5, 5_000)
        expected: Counter[int] = Counter()
        for key, count in zip(keys.tolist(), counts.tolist()):
            expected[key] += count
        merged, summed = _merge(keys, counts)
        assert merged.tolist() == sorted(expected)
        assert summed.tolist() == [expected[key] for key in sorted(expected)]


MERGED_THEN_MULTIPLE = {"weight": 2, "levels": [
    {"name": "as selected"},
    {"name": "1 and 2 merged", "groups": [{"code": "g", "codes": [1, 2], "label": {"en": "G", "fr": "G"}}]},
    # From here two answers are "more than one": {1, 2} was "g" at level 1, like {1} alone, but is not
    # like it any more, so level 2 cannot be worked out from level 1's groups alone.
    {"name": "more than one", "groups": [{"code": "g", "codes": [1, 2], "label": {"en": "G", "fr": "G"}}],
     "more_than_one": {"code": "multi", "label": {"en": "More than one", "fr": "Plus d'un"}}},
]}
REGION = {"weight": 1, "levels": [
    {"name": "as asked"},
    {"name": "merged", "groups": [{"code": "south", "codes": [2, 3], "label": {"en": "South", "fr": "Sud"}}]},
]}


def test_respondents_at_risk_are_counted_right_for_every_combination_of_levels() -> None:
    # The candidate search counts, for every combination of levels, the respondents in groups under k,
    # merging the groups of finer levels. Checked here against a count made respondent by respondent.
    import itertools

    from pipeline.anonymity import Column, KeyQuasiIdentifier, _at_risk_by_levels

    rng = np.random.default_rng(3)
    rules = [KeyQuasiIdentifier.model_validate(MERGED_THEN_MULTIPLE), KeyQuasiIdentifier.model_validate(REGION)]
    choices = [[{"1"}, {"2"}, {"3"}, {"1", "2"}, {"1", "3"}, {"9"}, set()], [{"1"}, {"2"}, {"3"}, {"9"}]]
    people = [[frozenset(options[i]) for i in rng.integers(0, len(options), 60)] for options in choices]
    missing = frozenset({"9"})
    columns = [Column.of_values(f"q{j}", rule, values, missing, 3) for j, (rule, values) in enumerate(zip(rules, people))]
    for column in columns:
        column.prepare()
    counted = dict(_at_risk_by_levels(columns, k=5))
    assert sorted(counted) == list(itertools.product(range(3), range(2)))
    for levels in counted:
        combination = [tuple(",".join(sorted(rule.generalise(values[i], level, missing)))
                             for rule, values, level in zip(rules, people, levels)) for i in range(60)]
        sizes = Counter(combination)
        assert counted[levels] == sum(1 for c in combination if sizes[c] < 5), levels

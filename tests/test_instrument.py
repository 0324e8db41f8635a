"""Instrument files: the real ones load; broken ones fail with the file and the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO
from pipeline.instrument import Disclosure, InstrumentError, QuestionType, available_waves, load_instrument

WAVES = [2023, 2024, 2025]


@pytest.mark.parametrize("wave", WAVES)
def test_each_wave_loads_with_bilingual_labels(wave: int) -> None:
    instrument = load_instrument(REPO / "surveys" / str(wave) / "instrument.yaml")
    assert instrument.wave == wave
    assert instrument.languages == ["en", "fr"]
    for question in instrument.questions:
        assert question.label.en.strip() and question.label.fr.strip()
        for choice in instrument.choices_of(question):
            assert choice.label.en.strip() and choice.label.fr.strip()
    assert {"no_consent", "ineligible"} <= set(instrument.inclusion)


def test_waves_are_discovered() -> None:
    assert available_waves(REPO / "surveys") == WAVES


def test_the_2025_questionnaire_covers_every_domain() -> None:
    instrument = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    sections = {s.id for s in instrument.sections}
    assert {"consent", "employment", "disrespect", "resources", "drift", "wellbeing", "demographics"} <= sections
    types = {q.type for q in instrument.questions}
    assert {QuestionType.single, QuestionType.multiple, QuestionType.likert, QuestionType.numeric, QuestionType.text} <= types
    classes = {q.disclosure for q in instrument.questions}
    assert classes == set(Disclosure)


def test_epi_items_score_to_at_most_100() -> None:
    instrument = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    items = [q for q in instrument.questions if q.id.startswith("epi_")]
    assert len(items) == 10
    top = sum(max(c.score for c in instrument.choices_of(q) if c.score is not None) for q in items)
    assert top == 100


def test_concepts_shared_between_waves_keep_their_codes() -> None:
    reference = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
    for wave in (2023, 2024):
        earlier = load_instrument(REPO / "surveys" / str(wave) / "instrument.yaml")
        for question in earlier.questions:
            now = reference.question(question.id)
            assert question.type == now.type
            assert [c.code for c in earlier.choices_of(question)] == [c.code for c in reference.choices_of(now)]


def write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((REPO / "surveys" / "2025" / "instrument.yaml").read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "instrument.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def first_question(data: dict) -> dict:
    return data["sections"][0]["questions"][0]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: first_question(d).pop("label"), ["(id consent)", "label", "Field required"]),
        (lambda d: first_question(d).update(type="slider"), ["(id consent)", "type"]),
        (lambda d: first_question(d).update(choices="no_such_set"), ["no_such_set", "choice set"]),
        (lambda d: first_question(d).update(disclosure="secret"), ["disclosure"]),
        (lambda d: d["sections"][1]["questions"][0].update(show_if={"question": "nope", "in": [1]}), ["nope"]),
        (lambda d: d["sections"][1]["questions"][0].update(aliases=["Q1"]), ["alias", "Q1"]),
        (lambda d: d["sections"][1]["questions"][0].update(id="consent"), ["consent", "twice"]),
    ],
)
def test_broken_instruments_say_where_and_what(tmp_path: Path, mutate, expected: list[str]) -> None:
    path = write(tmp_path, mutate)
    with pytest.raises(InstrumentError) as error:
        load_instrument(path)
    message = str(error.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_not_yaml_at_all(tmp_path: Path) -> None:
    path = tmp_path / "instrument.yaml"
    path.write_text("wave: [2025\n", encoding="utf-8")
    with pytest.raises(InstrumentError, match="not valid YAML"):
        load_instrument(path)


def test_an_impossible_date_names_the_file_and_line(tmp_path: Path) -> None:
    """Day and month swapped in the collection window (2025-30-05): YAML reads it as a date that
    cannot exist; the error says so, with the file and line, not a traceback."""
    text = (REPO / "surveys" / "2025" / "instrument.yaml").read_text(encoding="utf-8")
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if row.startswith("collection_window:"))
    path = tmp_path / "instrument.yaml"
    path.write_text(text.replace("end: 2025-05-30", "end: 2025-30-05", 1), encoding="utf-8")
    with pytest.raises(InstrumentError) as error:
        load_instrument(path)
    message = str(error.value)
    assert str(path) in message and "not valid YAML" in message
    assert "'2025-30-05' is not a date" in message and "YYYY-MM-DD" in message
    assert f"line {line}," in message


def test_a_key_written_twice_names_both_lines(tmp_path: Path) -> None:
    """A second `inclusion:` block typed lower down would silently replace the first (YAML keeps the
    last): an error with the file and both lines instead."""
    text = (REPO / "surveys" / "2025" / "instrument.yaml").read_text(encoding="utf-8")
    first = next(n for n, row in enumerate(text.splitlines(), start=1) if row.startswith("inclusion:"))
    path = tmp_path / "instrument.yaml"
    path.write_text(text + "\ninclusion:\n  no_consent: {question: consent, in: [1]}\n", encoding="utf-8")
    with pytest.raises(InstrumentError) as error:
        load_instrument(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not valid YAML")
    assert f"'inclusion' is written twice (first on line {first}): keep one" in message
    assert f"line {len(text.splitlines()) + 2}, column 1" in message
    assert "<byte string>" not in message


def test_a_key_written_twice_inside_a_rule_and_merge_keys(tmp_path: Path) -> None:
    path = tmp_path / "instrument.yaml"
    path.write_text("wave: 2025\ninclusion:\n  ineligible: {question: eligible_role, in: [1], in: [1, 2]}\n",
                    encoding="utf-8")
    with pytest.raises(InstrumentError, match="'in' is written twice"):
        load_instrument(path)
    from pipeline.instrument import parse_yaml  # YAML's own way to repeat a block stays allowed

    assert parse_yaml("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n")["d"] == {"x": 3, "y": 2}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InstrumentError, match="cannot read"):
        load_instrument(tmp_path / "nowhere.yaml")

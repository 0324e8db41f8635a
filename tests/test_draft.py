"""`consult instrument draft`: a starting instrument from an export, an XLSForm or a REDCap data
dictionary, that loads as it is and carries its export through the whole pipeline."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import REPO, SHARED_FIXTURES, make_project
from pipeline.ingest import read_export
from pipeline.instrument import available_waves, instrument_path, load_instrument
from pipeline.platforms.draft import draft_instrument
from pipeline.platforms.reading import ReadError

EXPORTS = [
    "qualtrics/qualtrics-modern-3row.csv",
    "qualtrics/qualtrics-legacy-2row.csv",
    "surveymonkey/surveymonkey-2row-excerpt.csv",
    "limesurvey/limesurvey-codes.csv",
    "googleforms/googleforms-responses.csv",
    "kobo/kobo-transportation.csv",
    "redcap/redcap-simple-data.csv",
    "redcap/redcap-repeating-sparse.csv",
]
FIRST_WAVE = 2031  # drafted waves go after the project's own


def drafted(name: str, wave: int, reserved: frozenset[str] = frozenset()) -> str:
    return draft_instrument(SHARED_FIXTURES / name, reserved=reserved).as_yaml(wave)


def concept_ids(surveys: Path) -> frozenset[str]:
    return frozenset(q.id for w in available_waves(surveys) for q in load_instrument(instrument_path(surveys, w)).questions)


@pytest.mark.parametrize("name", EXPORTS)
def test_a_draft_is_a_valid_instrument_that_maps_every_question_column(name: str, tmp_path: Path) -> None:
    path = tmp_path / "instrument.yaml"
    path.write_text(drafted(name, 2031), encoding="utf-8")
    instrument = load_instrument(path)
    export = read_export(SHARED_FIXTURES / name, instrument)
    unmapped = [c.name for c in export.columns if c.kind == "unknown"]
    assert unmapped == []
    assert set(export.answers.columns) == {q.id for q in instrument.questions}


def questions_of(text: str) -> dict[str, dict]:
    data = yaml.safe_load(text)
    return {q["id"]: q for s in data["sections"] for q in s["questions"]}


def test_draft_from_a_qualtrics_export() -> None:
    text = drafted("qualtrics/qualtrics-modern-3row.csv", 2031)
    data = yaml.safe_load(text)
    assert data["collection_window"] == {"start": __import__("datetime").date(2017, 7, 18),
                                         "end": __import__("datetime").date(2017, 7, 18)}
    found = questions_of(text)
    assert set(found) == {"q1", "q2"}  # identifiers, metadata and Text iQ columns are left out
    assert found["q1"]["type"] == "single" and [c["code"] for c in found["q1"]["choices"]] == ["2"]
    assert found["q2"]["type"] == "text" and found["q2"]["aliases"] == ["Q2"]
    assert found["q1"]["label"]["en"] == "This is a multiple choice question."


def test_draft_from_label_exports_gives_codes_to_observed_answers() -> None:
    found = questions_of(drafted("surveymonkey/surveymonkey-2row-excerpt.csv", 2031))
    steak = found["how_do_you_like_your_steak_prepared"]
    assert steak["type"] == "single"
    assert [c["label"]["en"] for c in steak["choices"]] == ["Medium", "Medium rare", "Medium Well", "Rare"]
    assert [c["code"] for c in steak["choices"]] == ["1", "2", "3", "4"]


def test_draft_from_redcap_data_marks_identifier_fields_direct_and_checkboxes_multiple() -> None:
    found = questions_of(drafted("redcap/redcap-simple-data.csv", 2031))
    for field in ("name_first", "name_last", "address", "telephone", "email", "dob"):
        assert found[field]["disclosure"] == "direct", field
    assert found["race"]["type"] == "multiple"
    assert [c["code"] for c in found["race"]["choices"]] == ["1", "2", "3", "4", "5", "6"]
    assert found["height"]["type"] == "numeric" and found["comments"]["type"] == "text"
    assert "record_id" not in found


def test_draft_from_kobo_groups_option_columns_into_one_question() -> None:
    found = questions_of(drafted("kobo/kobo-transportation.csv", 2031))
    types = found["available_transportation_types_to"]
    assert types["type"] == "multiple" and len(types["choices"]) == 10
    assert types["aliases"] == ["transport/available_transportation_types_to_referral_facility"]
    assert "bicycle_frequency_to_referral_facility" in found  # loop items keep their item in the id


def test_draft_from_an_xlsform() -> None:
    draft = draft_instrument(SHARED_FIXTURES / "kobo" / "xlsform-widgets.csv")
    with pytest.raises(ReadError, match="--wave"):
        draft.as_yaml(None)  # a questionnaire has no dates to tell the wave from
    found = questions_of(draft.as_yaml(2031))
    assert found["my_select"]["type"] == "multiple"
    assert [c["code"] for c in found["my_select"]["choices"]] == ["a", "b", "c", "d"]
    assert found["my_select1"]["type"] == "single" and len(found["my_select1"]["choices"]) == 8
    assert found["my_int"]["type"] == found["my_decimal"]["type"] == "numeric"
    assert found["my_geopoint"]["disclosure"] == "direct"
    assert "my_image" not in found and "my_trigger" not in found  # media and acknowledgements hold no answer
    assert any("skip logic" in n for n in draft.notes)  # an expression it could not translate is named


def test_draft_from_a_redcap_data_dictionary_reads_the_data_export() -> None:
    draft = draft_instrument(SHARED_FIXTURES / "redcap" / "redcap-simple-dictionary.csv")
    text = draft.as_yaml(2031)
    data = yaml.safe_load(text)
    assert [s["id"] for s in data["sections"]] == ["demographics", "health", "race_and_ethnicity"]
    found = questions_of(text)
    assert found["sex"]["choices"] == [{"code": "0", "label": {"en": "Female", "fr": "Female"}},
                                       {"code": "1", "label": {"en": "Male", "fr": "Male"}}]
    assert found["height"]["range"] == {"min": 130.0, "max": 215.0}
    assert found["email"]["disclosure"] == "direct" and found["sex"]["disclosure"] == "none"
    assert found["race"]["type"] == "multiple" and "record_id" not in found


def test_a_draft_never_takes_an_id_the_project_already_uses() -> None:
    reserved = concept_ids(REPO / "surveys")
    draft = draft_instrument(SHARED_FIXTURES / "redcap" / "redcap-repeating-sparse.csv", reserved=reserved)
    ids = {q["id"] for s in draft.sections for q in s["questions"]}
    assert "race" in reserved and "race" not in ids and "race_2" in ids
    assert any("race_2" in n for n in draft.notes)


def test_every_drafted_export_passes_through_the_whole_pipeline(tmp_path: Path) -> None:
    from pipeline.run import run_load

    paths = make_project(tmp_path / "project")
    rates = yaml.safe_load(paths.living_wage_file.read_text(encoding="utf-8"))
    files = []
    for offset, name in enumerate(EXPORTS):
        wave = FIRST_WAVE + offset
        target = instrument_path(paths.surveys, wave)
        target.parent.mkdir(parents=True)
        target.write_text(drafted(name, wave, concept_ids(paths.surveys)), encoding="utf-8")
        rates["rate_year_for_wave"][wave] = {"year": max(rates["rates"])}
        files.append(paths.raw / str(wave) / Path(name).name)
        files[-1].parent.mkdir(parents=True)
        shutil.copy(SHARED_FIXTURES / name, files[-1])
    paths.living_wage_file.write_text(yaml.safe_dump(rates), encoding="utf-8")
    summary = run_load(paths)
    assert [f.file for f in summary.files] == [f.name for f in files]
    for item in summary.files:
        assert item.status == "loaded" and item.read > 0
        assert item.read == item.loaded + item.quarantined + item.excluded + item.duplicates
    assert sum(f.loaded for f in summary.files) > 100
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    stored = "\n".join(str(v) for t in ("answers", "open_text") for row in con.execute(f"SELECT * FROM {t}").fetchall()
                       for v in row)
    con.close()
    for secret in ("nutty@mouse.com", "(405) 321-1111", "130.92.34.66", "R_2YPOQ602ER1jkf1",
                   "5b2cc313-fc09-437e-8149-fcd32f695d41", "Nutmouse", "14 Rose Cottage St."):
        assert secret not in stored


def consult(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONSULT_HOME": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env=env)


def test_draft_command_writes_once_and_never_replaces(tmp_path: Path) -> None:
    out = tmp_path / "instrument.yaml"
    source = SHARED_FIXTURES / "limesurvey" / "limesurvey-codes.csv"
    missing_wave = consult("instrument", "draft", str(source), "--out", str(out))
    assert missing_wave.returncode == 2 and "--wave" in missing_wave.stderr and not out.exists()
    result = consult("instrument", "draft", str(source), "--wave", "2031", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert load_instrument(out).wave == 2031
    before = out.read_bytes()
    again = consult("instrument", "draft", str(source), "--wave", "2031", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr and out.read_bytes() == before


def test_draft_command_prints_yaml() -> None:
    result = consult("instrument", "draft", str(SHARED_FIXTURES / "googleforms" / "googleforms-responses.csv"))
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert data["wave"] == 2026 and len(questions_of(result.stdout)) == 3
    rows = list(csv.reader(io.StringIO((SHARED_FIXTURES / "googleforms" / "googleforms-responses.csv").read_text())))
    assert f"{len(rows) - 1} responses read" in result.stdout


def test_answers_holding_emails_or_phone_numbers_never_become_choices(tmp_path: Path) -> None:
    path = tmp_path / "responses.csv"
    path.write_text("Timestamp,How can we reach you?,Region\n"
                    "3/10/2025 10:00:00,jo@example.org,North\n"
                    "3/10/2025 11:00:00,416-555-0199,South\n", encoding="utf-8")
    text = draft_instrument(path).as_yaml(None)
    found = questions_of(text)
    assert found["how_can_we_reach_you"]["type"] == "text" and "choices" not in found["how_can_we_reach_you"]
    assert "jo@example.org" not in text and "416-555-0199" not in text
    assert [c["label"]["en"] for c in found["region"]["choices"]] == ["North", "South"]


def test_a_draft_written_where_the_wave_reads_it_says_to_check_it_and_run_status(tmp_path: Path) -> None:
    paths = make_project(tmp_path / "project")
    out = paths.surveys / "2026" / "instrument.yaml"
    source = SHARED_FIXTURES / "googleforms" / "googleforms-responses.csv"
    result = consult("--root", str(paths.root), "instrument", "draft", str(source), "--wave", "2026", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (f"wrote {out}. Check it (question types, disclosure, inclusion rules), then run "
                                     "`consult status 2026`.")
    assert "save it as" not in result.stderr

"""`consult wave new`: next year's wave from the previous questionnaire, with only the year moved."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import Paths
from pipeline.instrument import load_instrument
from pipeline.wave import updated_text


def test_a_new_wave_keeps_every_question_and_moves_only_the_year(empty_project: Paths, capsys) -> None:
    source_folder = empty_project.surveys / "2025"
    assert main(["--root", str(empty_project.root), "wave", "new", "2026", "--from", "2025"]) == 0
    out = capsys.readouterr().out
    old = yaml.safe_load((source_folder / "instrument.yaml").read_text(encoding="utf-8"))
    new = yaml.safe_load((empty_project.surveys / "2026" / "instrument.yaml").read_text(encoding="utf-8"))
    start, end = old["collection_window"]["start"], old["collection_window"]["end"]
    expected = {**old, "wave": 2026,
                "title": {k: v.replace("2025", "2026") for k, v in old["title"].items()},
                "collection_window": {"start": dt.date(2026, start.month, start.day),
                                      "end": dt.date(2026, end.month, end.day)}}
    assert new == expected and "2026" in new["title"]["en"]
    assert load_instrument(empty_project.surveys / "2026" / "instrument.yaml").wave == 2026
    # comments are kept: the new file has as many lines, and the same comment lines bar the year
    old_lines = (source_folder / "instrument.yaml").read_text(encoding="utf-8").splitlines()
    new_lines = (empty_project.surveys / "2026" / "instrument.yaml").read_text(encoding="utf-8").splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert all(b == a.replace("2025", "2026") for a, b in changed) and 4 <= len(changed) <= 6
    assert yaml.safe_load((empty_project.surveys / "2026" / "rules.yaml").read_text(encoding="utf-8")) == \
        yaml.safe_load((source_folder / "rules.yaml").read_text(encoding="utf-8"))
    # the checklist names what a person must review, and what to do next
    assert "living_wage.yaml" in out and "rate_year_for_wave" in out and "REQUIRED" in out
    assert "comparability" in out and "indicators.yaml" in out and "Collection window" in out
    assert "anonymize" in out.lower() and "Next:" in out
    # and the release settings to renew, as they stand now (read here as plain YAML)
    release = yaml.safe_load((empty_project.surveys / "release.yaml").read_text(encoding="utf-8"))
    assert f'set its version (e.g. "2026.1"), publication date and url in surveys/release.yaml (now version ' \
           f'{release["version"]}, dated {release["date"].isoformat()}' in " ".join(out.split())


def test_an_existing_wave_or_a_missing_source_is_refused_and_nothing_changes(empty_project: Paths, capsys) -> None:
    before = (empty_project.surveys / "2025" / "instrument.yaml").read_bytes()
    assert main(["--root", str(empty_project.root), "wave", "new", "2025", "--from", "2024"]) == 2
    assert "wave 2025 already exists" in capsys.readouterr().err
    assert (empty_project.surveys / "2025" / "instrument.yaml").read_bytes() == before
    assert main(["--root", str(empty_project.root), "wave", "new", "2027", "--from", "2019"]) == 2
    err = capsys.readouterr().err
    assert "wave 2019 has no instrument" in err and "2023, 2024, 2025" in err
    assert not (empty_project.surveys / "2027").exists()


def test_a_copy_the_definitions_refuse_leaves_no_half_made_wave(empty_project: Paths, capsys) -> None:
    privacy = empty_project.surveys / "privacy.yaml"
    privacy.write_text(privacy.read_text(encoding="utf-8").replace("  k: 5", "  k: five"), encoding="utf-8")
    assert main(["--root", str(empty_project.root), "wave", "new", "2026", "--from", "2025"]) == 2
    assert "privacy.yaml" in capsys.readouterr().err
    assert not (empty_project.surveys / "2026").exists()


def test_a_population_change_stays_with_its_wave(empty_project: Paths) -> None:
    """2025's word on who is in scope since 2024 is not 2026's: the copy leaves it out (it would
    otherwise say `since: 2024` of 2026 and be refused), and keeps what follows it."""
    rules = empty_project.surveys / "2025" / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8") + "population_change:\n  since: 2024\n  status: comparable\n"
                     "  note: Same people.\n# kept\ndate_order: day_first\n", encoding="utf-8")
    assert main(["--root", str(empty_project.root), "wave", "new", "2026", "--from", "2025"]) == 0
    copied = (empty_project.surveys / "2026" / "rules.yaml").read_text(encoding="utf-8")
    assert "population_change" not in yaml.safe_load(copied) and "Same people" not in copied
    assert "# kept\ndate_order: day_first\n" in copied
    # the comments' example names the wave before the file's own, in the source and in the copy
    example = next(line for line in rules.read_text(encoding="utf-8").splitlines() if "Example: population_change" in line)
    assert "since: 2024," in example
    assert "Example: population_change: {since: 2025," in copied and "since: 2026" not in copied


def test_the_window_moves_by_whole_years_and_29_february_becomes_28() -> None:
    text = ("# Wave 2024 questionnaire\nwave: 2024\ntitle:\n  en: Consultation 2024\n"
            "collection_window:\n  start: 2024-02-29\n  end: 2024-05-30\n"
            "note: asked since 2024\n")
    assert updated_text(text, 2024, 2026) == (
        "# Wave 2026 questionnaire\nwave: 2026\ntitle:\n  en: Consultation 2026\n"
        "collection_window:\n  start: 2026-02-28\n  end: 2026-05-30\n"
        "note: asked since 2024\n")


@pytest.mark.parametrize("argv", [["wave", "new", "2026"], ["wave", "new", "--from", "2025"]])
def test_both_waves_are_required(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        main(argv)


def test_a_new_wave_cannot_load_until_its_living_wage_year_is_set(empty_project: Paths, synthetic_exports,
                                                                   capsys) -> None:
    # As the checklist and the runbook say: no silent fallback to older rates. A real export of the
    # new wave (here last year's, dated a year later) stops the run before anything is stored.
    from builders import dated_a_year_later

    root = str(empty_project.root)
    assert main(["--root", root, "wave", "new", "2026", "--from", "2025"]) == 0
    dated_a_year_later(synthetic_exports / "2025" / "qualtrics-2025.csv", empty_project.raw / "2026" / "export.csv")
    capsys.readouterr()
    assert main(["--root", root, "run"]) != 0
    err = capsys.readouterr().err
    assert "living_wage.yaml: no rate year is set for wave 2026" in err and "`2026: {year: YEAR}`" in err
    assert "Traceback" not in err
    assert not empty_project.warehouse.exists() or not _tables(empty_project)


def _tables(paths: Paths) -> list:
    import duckdb

    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute("SELECT table_name FROM information_schema.tables").fetchall()

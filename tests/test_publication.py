"""A published release version keeps its figures: once `consult mark-published` has recorded it, a
report or release with other figures under the same version is refused until the version changes,
so a citation of a version always names the same numbers."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from builders import warehouse_rows
from pipeline.cli import main
from pipeline.config import Paths
from pipeline.release import (ReleaseError, build_release, mark_published, publications, read_release,
                              release_dir, settings_file)
from test_release import PASSED

STRICTER = "min_group_n: 15\nmin_cell: 5\ncomplementary: true\n"  # than the 11 the figures were made with


def site_files(paths: Paths) -> dict[str, bytes]:
    return {str(p.relative_to(paths.site)): p.read_bytes() for p in sorted(paths.site.rglob("*")) if p.is_file()}


def recorded(paths: Paths) -> list[tuple]:
    return warehouse_rows(paths, "SELECT version, release_date, published_on, figures_sha256, tables "
                                 "FROM release_publications ORDER BY version")


def set_version(paths: Paths, version: str) -> None:
    text = settings_file(paths).read_text(encoding="utf-8")
    assert 'version: "2025.1"' in text
    settings_file(paths).write_text(text.replace('version: "2025.1"', f'version: "{version}"'), encoding="utf-8")


def decide_every_quote(paths: Paths) -> None:
    assert main(["--root", str(paths.root), "quotes"]) == 0
    for review in sorted((paths.root / "data" / "review").glob("*/quotes.yaml")):
        review.write_text(review.read_text(encoding="utf-8").replace("status: pending", "status: rejected"),
                          encoding="utf-8")


def test_a_published_version_keeps_its_figures_until_the_version_changes(loaded: Paths, capsys) -> None:
    root = ["--root", str(loaded.root)]
    decide_every_quote(loaded)
    assert main([*root, "report"]) == 0
    assert main([*root, "mark-published"]) == 0
    assert "Recorded: release 2025.1 (2025-06-30) published on" in capsys.readouterr().out
    published = site_files(loaded)

    # Stricter disclosure rules change the figures: the run loads them, but renders nothing.
    loaded.disclosure_file.write_text(STRICTER, encoding="utf-8")
    assert main([*root, "run"]) == 1
    err = capsys.readouterr().err
    assert "version 2025.1 was published on" in err and 'set a new version in surveys/release.yaml (e.g. version: ' \
        '"2025.2")' in err and "Nothing was rendered or released" in err
    assert site_files(loaded) == published
    assert main([*root, "report"]) == 2 and "version 2025.1 was published on" in capsys.readouterr().err
    assert main([*root, "release"]) == 2 and "version 2025.1 was published on" in capsys.readouterr().err
    assert site_files(loaded) == published

    capsys.readouterr()
    assert main([*root, "status", "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert "Release version 2025.1 was published on" in state["release"]["version_taken"]
    assert state["next"]["command"] is None and "new version" in state["next"]["why"]

    # A new version: the report and release are built, and recorded in their turn.
    set_version(loaded, "2025.2")
    assert main([*root, "report"]) == 0
    assert read_release(loaded)["version"] == "2025.2"
    assert main([*root, "mark-published"]) == 0
    versions = recorded(loaded)
    assert [v[0] for v in versions] == ["2025.1", "2025.2"] and versions[0][3] != versions[1][3]


def test_settings_alone_need_no_new_version(loaded: Paths) -> None:
    build_release(loaded, audit=PASSED)
    mark_published(loaded)
    text = settings_file(loaded).read_text(encoding="utf-8")
    settings_file(loaded).write_text(text.replace("date: 2025-06-30", "date: 2025-07-02"), encoding="utf-8")
    build_release(loaded, audit=PASSED)  # the same figures: not refused
    assert read_release(loaded)["date"] == "2025-07-02"
    again = mark_published(loaded)
    assert again.already and len(recorded(loaded)) == 1


def test_what_is_recorded_is_the_release_as_built(loaded: Paths) -> None:
    build_release(loaded, audit=PASSED)
    mark_published(loaded, today=dt.date(2025, 7, 1))
    ((version, release_date, published_on, figures, tables),) = recorded(loaded)
    assert (version, release_date, published_on) == ("2025.1", dt.date(2025, 6, 30), dt.date(2025, 7, 1))
    # every data table of the release as it is on disk, hashed here (README, citation and metadata
    # carry the settings, not figures)
    folder = release_dir(loaded)
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.csv"))}
    assert json.loads(tables) == on_disk and "gaps.csv" in on_disk and len(on_disk) > 5
    expected = hashlib.sha256("".join(f"{on_disk[n]}  {n}\n" for n in sorted(on_disk)).encode()).hexdigest()
    assert figures == expected
    assert publications(loaded)["2025.1"]["figures_sha256"] == expected


def test_mark_published_refuses_a_release_that_may_not_be_the_one_published(loaded: Paths, capsys) -> None:
    root = ["--root", str(loaded.root)]
    assert main([*root, "mark-published"]) == 2
    assert "no release built yet" in capsys.readouterr().err

    build_release(loaded, audit=PASSED)
    table = next(release_dir(loaded).glob("*-*.csv"))
    table.write_bytes(table.read_bytes() + b"edited,by,hand\r\n")
    assert main([*root, "mark-published"]) == 2
    assert f"{table.name}: changed since the release was built" in capsys.readouterr().err

    build_release(loaded, audit=PASSED)
    set_version(loaded, "2025.9")  # settings changed after the build: the release there is not current
    with pytest.raises(ReleaseError, match="was not built from the current data and definitions"):
        mark_published(loaded)
    assert publications(loaded) == {}


def test_the_refusal_suggests_the_new_year_s_version_once_a_later_wave_is_loaded() -> None:
    # The same advice as `consult status` gives for a new wave ("2026.1"), not a correction of 2025's.
    from pipeline.release import _next_version

    assert _next_version("2025.1", 2026) == 'e.g. version: "2026.1"'
    assert _next_version("2025.1", 2025) == 'e.g. version: "2025.2"'  # same year: a correction
    assert _next_version("2025.3", None) == 'e.g. version: "2025.4"'
    assert _next_version("spring", 2026) == "a version not used before"


def test_once_published_undecided_quotes_are_a_note_not_the_next_step(loaded: Paths, capsys) -> None:
    # A release may go out with quotes still pending (only approved ones are published); afterwards
    # status must not keep sending the analyst back to review them as if the cycle were unfinished.
    root = ["--root", str(loaded.root)]
    assert main([*root, "quotes"]) == 0
    assert main([*root, "report"]) == 0
    capsys.readouterr()
    assert main([*root, "status", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    latest = before["waves"][-1]
    pending = latest["quotes"]["pending"]
    assert pending > 0 and latest["next"]["command"] == f"consult quotes review --wave {latest['wave']}"

    assert main([*root, "mark-published"]) == 0
    out = capsys.readouterr().out
    assert f"Note: " in out and f"{pending} quote(s) of wave {latest['wave']}" in out and "never decided" in out
    assert main([*root, "status", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["waves"][-1]
    assert after["published_in"] == "2025.1"
    assert not (after["next"]["command"] or "").startswith("consult quotes review")
    assert any(f"{pending} quote(s) of wave {latest['wave']} were never decided" in w for w in after["warnings"])
    if after["quarantine_waiting"]:
        assert any("were never fixed: release 2025.1, published, does not count them" in w for w in after["warnings"])

"""The same synthetic respondents exported by every platform give the same warehouse."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import make_project
from pipeline.config import Paths
from pipeline.run import run_load
from pipeline.synth import WRITERS, write_synthetic_consultation
from test_load import query

WAVE = 2025
RESPONSES = 70
# Loaded into a warehouse each; the Excel variants are compared with their CSV twins as read.
LOADED = [name for name in WRITERS if not name.endswith("-xlsx")]


@pytest.fixture(scope="session")
def platform_exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small synthetic wave written in every format (a project whose synthetic.yaml asks for few)."""
    root = tmp_path_factory.mktemp("platforms") / "source"
    paths = make_project(root)
    spec = yaml.safe_load(paths.synth_file.read_text(encoding="utf-8"))
    spec["waves"] = {WAVE: {"responses": RESPONSES}}
    paths.synth_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    out = root / "exports"
    write_synthetic_consultation(paths, out_dir=out, platform="all")
    return root, out


@pytest.fixture(scope="session")
def warehouses(platform_exports: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Paths]:
    source, out = platform_exports
    secret = tmp_path_factory.getbasetemp() / "secret.key"
    previous = os.environ.get("CONSULT_SECRET_FILE")
    os.environ["CONSULT_SECRET_FILE"] = str(secret)
    loaded = {}
    try:
        for platform in LOADED:
            paths = make_project(tmp_path_factory.mktemp(platform) / "project")
            (paths.surveys / "synthetic.yaml").write_bytes((source / "surveys" / "synthetic.yaml").read_bytes())
            files = sorted((out / platform).glob("*/*"))
            assert len(files) == 1
            run_load(paths, files=files, synthetic=True)
            loaded[platform] = paths
    finally:
        if previous is None:
            os.environ.pop("CONSULT_SECRET_FILE", None)
        else:
            os.environ["CONSULT_SECRET_FILE"] = previous
    return loaded


def test_every_format_is_written_and_detected(platform_exports: tuple[Path, Path]) -> None:
    from pipeline.ingest import inspect_file

    _, out = platform_exports
    for name in WRITERS:
        (path,) = sorted((out / name).glob("*/*"))
        assert inspect_file(path).platform == name.removesuffix("-xlsx")


def test_excel_exports_read_as_their_csv_twins(platform_exports: tuple[Path, Path]) -> None:
    from pipeline.ingest import read_export
    from pipeline.instrument import load_instrument

    source, out = platform_exports
    instrument = load_instrument(source / "surveys" / str(WAVE) / "instrument.yaml")
    for name in ("qualtrics", "surveymonkey"):
        (csv_file,) = (out / name).glob("*/*")
        (xlsx_file,) = (out / f"{name}-xlsx").glob("*/*")
        as_csv, as_xlsx = read_export(csv_file, instrument), read_export(xlsx_file, instrument)
        assert as_xlsx.rows == as_csv.rows > RESPONSES
        assert as_xlsx.answers.to_dict("list") == as_csv.answers.to_dict("list")
        for column in ("response_id", "email", "ip_address", "started_at"):  # Excel drops trailing zeros
            assert as_xlsx.identifiers[column].tolist() == as_csv.identifiers[column].tolist()


def test_every_platform_gives_the_same_answers(warehouses: dict[str, Paths]) -> None:
    answers = {
        platform: Counter(query(paths, "SELECT wave, concept, value FROM answers"))
        for platform, paths in warehouses.items()
    }
    reference = answers["qualtrics"]
    assert sum(reference.values()) > 1000
    for platform, counted in answers.items():
        assert counted == reference, platform


def test_every_platform_gives_the_same_open_text_and_respondents(warehouses: dict[str, Paths]) -> None:
    texts = {p: Counter(query(paths, "SELECT concept, text FROM open_text")) for p, paths in warehouses.items()}
    people = {p: query(paths, "SELECT count(*) FROM respondents")[0][0] for p, paths in warehouses.items()}
    assert len(set(people.values())) == 1 and people["qualtrics"] >= RESPONSES * 0.8
    for platform, counted in texts.items():
        assert counted == texts["qualtrics"], platform


def test_every_platform_gives_the_same_indicators(warehouses: dict[str, Paths]) -> None:
    figures = "SELECT indicator_id, wave, breakdown, group_code, n, count, estimate, suppressed FROM indicator_estimates ORDER BY ALL"
    reference = query(warehouses["qualtrics"], figures)
    assert reference
    for platform, paths in warehouses.items():
        assert query(paths, figures) == reference, platform

"""The synthetic consultation: deterministic, realistic in the ways the pipeline must handle."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from conftest import REPO
from pipeline.config import Paths
from pipeline.synth import write_synthetic_consultation


def test_same_seed_same_bytes(tmp_path: Path, synthetic_exports: Path) -> None:
    again = write_synthetic_consultation(Paths(REPO), out_dir=tmp_path, waves=[2023])
    assert again[0].read_bytes() == (synthetic_exports / "2023" / "qualtrics-2023.csv").read_bytes()


def test_exports_look_like_qualtrics_with_identifiers_and_defects(synthetic_exports: Path) -> None:
    path = synthetic_exports / "2025" / "qualtrics-2025.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    ids, texts, imports, body = rows[0], rows[1], rows[2], rows[3:]
    assert ids[:3] == ["StartDate", "EndDate", "Status"] and texts[0] == "Start Date"
    assert all("ImportId" in json.loads(cell) for cell in imports)
    records = [dict(zip(ids, r)) for r in body]
    assert 1340 < len(records) < 1600
    assert sum(bool(r["IPAddress"]) for r in records) == len(records)
    assert any(r["RecipientEmail"] for r in records)
    assert sum(r["Finished"] == "0" for r in records) > 20  # partial responses
    response_ids = [r["ResponseId"] for r in records]
    assert len(set(response_ids)) < len(response_ids)  # a response exported twice
    assert any(r["Q1"] == "2" for r in records)  # refused consent
    comments = " ".join(r[c] for r in records for c in ids if c.startswith("Q") and "@" in r[c])
    assert "@" in comments  # personal details inside free text


def test_every_wave_has_an_export(synthetic_exports: Path) -> None:
    assert sorted(p.parent.name for p in synthetic_exports.glob("*/*.csv")) == ["2023", "2024", "2025"]


def test_every_platform_format_is_deterministic(tmp_path: Path) -> None:
    from pipeline.synth import WRITERS

    first = write_synthetic_consultation(Paths(REPO), out_dir=tmp_path / "a", waves=[2023], platform="all")
    again = write_synthetic_consultation(Paths(REPO), out_dir=tmp_path / "b", waves=[2023], platform="all")
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in again]
    assert len(first) == len(WRITERS)
    for one, two in zip(first, again):
        assert one.read_bytes() == two.read_bytes(), one.name
    qualtrics = next(p for p in first if p.name == "qualtrics-2023.csv")
    assert qualtrics.parent.parent.name == "qualtrics"  # each format in its own tree, loadable alone

"""Quote review: candidate quotes with stable ids, decisions that survive a rebuild, approved only."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest
import yaml

from pipeline.anonymity import QuoteRules
from pipeline.config import Paths
from pipeline.quotes import QuoteReviewError, published_quotes, read_review, refresh_review_files, review_file
from pipeline.run import run_load

RULES = QuoteRules(min_words=8, max_words=80)


def entries(paths: Paths, wave: int) -> list[dict]:
    return yaml.safe_load(review_file(paths, wave).read_text(encoding="utf-8"))["quotes"]


def test_review_files_list_every_candidate_under_a_stable_id(loaded: Paths) -> None:
    refresh_review_files(loaded, RULES)
    con = duckdb.connect(str(loaded.warehouse), read_only=True)
    texts = con.execute("SELECT DISTINCT wave, concept, text FROM open_text").fetchall()
    con.close()
    for wave in (2023, 2024, 2025):
        expected = {(c, t) for w, c, t in texts if w == wave and 8 <= len(t.split()) <= 80}
        listed = entries(loaded, wave)
        assert {(e["question"], e["text"]) for e in listed} == expected and expected
        for entry in listed:
            digest = hashlib.sha256(f"{wave}\x1f{entry['question']}\x1f{entry['text']}".encode()).hexdigest()
            assert entry["id"] == "Q-" + digest[:10] and entry["status"] == "pending"
    assert "never committed" in review_file(loaded, 2025).read_text(encoding="utf-8")


def _decide(paths: Paths, wave: int, decisions: dict[str, str]) -> None:
    path = review_file(paths, wave)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in data["quotes"]:
        entry["status"] = decisions.get(entry["id"], entry["status"])
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_decisions_survive_a_warehouse_rebuild_and_only_approved_quotes_are_published(loaded: Paths) -> None:
    refresh_review_files(loaded, RULES)
    listed = entries(loaded, 2025)
    approved, rejected = [listed[0]["id"], listed[3]["id"]], listed[1]["id"]
    _decide(loaded, 2025, {**{i: "approved" for i in approved}, rejected: "rejected"})
    assert [q.id for q in published_quotes(loaded, RULES)] == approved  # review order, newest wave first
    # A rebuilt warehouse has new random respondent keys; the same words keep their ids.
    loaded.warehouse.unlink()
    run_load(loaded)
    refresh_review_files(loaded, RULES)
    statuses = {e["id"]: e["status"] for e in entries(loaded, 2025)}
    assert [statuses[i] for i in approved] == ["approved", "approved"] and statuses[rejected] == "rejected"
    assert sum(s != "pending" for s in statuses.values()) == 3
    published = published_quotes(loaded, RULES)
    assert [q.id for q in published] == approved
    assert [q.text for q in published] == [listed[0]["text"], listed[3]["text"]]


def test_a_bad_status_names_the_file_and_the_quote(tmp_path: Path) -> None:
    path = tmp_path / "quotes.yaml"
    path.write_text("quotes:\n  - {id: Q-0123456789, status: aproved, text: hello}\n", encoding="utf-8")
    with pytest.raises(QuoteReviewError) as error:
        read_review(path)
    assert str(path) in str(error.value) and "Q-0123456789" in str(error.value) and "approved" in str(error.value)

"""Quotes: open answers offered to a reviewer, published only once a person approved them.

Every scrubbed open answer of a suitable length is a candidate quote. Each has a stable id, a hash
of its wave, question and scrubbed text: respondent keys are random and change with every load,
but the id of the same words stays the same across re-runs and warehouse rebuilds.

Reviewers decide in `data/review/<wave>/quotes.yaml` (status: pending, approved or rejected). The
file holds scrubbed text only, but it comes from real answers, so it lives under data/ and is never
committed. `consult run` (or `consult quotes`) adds new candidates and keeps every decision. The
report publishes exactly the approved ids, with the text as stored in the warehouse.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.anonymity import QuoteRules, load_privacy_rules, privacy_path
from pipeline.config import Paths
from pipeline.load import connect

STATUSES = ("pending", "approved", "rejected")
HEADER = """\
# Candidate quotes for the public report, wave {wave}: open answers after scrubbing.
#
# Set `status` to `approved` to publish a quote, or `rejected` to never publish it. Only approved
# quotes appear in the report, exactly as written here under `text`. Before approving, ask: could
# someone who knows this person, or their workplace, recognise them from these words? If so,
# reject it. Editing `text` does not change what is published: reject, or leave pending.
#
# This file comes from real answers: it stays in data/review/ and is never committed.
# `consult run` (or `consult quotes`) adds new candidates and keeps every decision made here.
"""


class QuoteReviewError(ValueError):
    """A review file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Quote:
    id: str
    wave: int
    question: str
    text: str
    status: str = "pending"


def quote_id(wave: int, question: str, text: str) -> str:
    digest = hashlib.sha256(f"{wave}\x1f{question}\x1f{text}".encode("utf-8")).hexdigest()
    return f"Q-{digest[:10]}"


def review_file(paths: Paths, wave: int) -> Path:
    return paths.root / "data" / "review" / str(wave) / "quotes.yaml"


def candidates(paths: Paths, rules: QuoteRules) -> dict[int, list[Quote]]:
    """Candidate quotes per wave, from the warehouse's scrubbed open answers."""
    with connect(paths.warehouse, read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT wave, concept, text FROM open_text ORDER BY wave, concept, text"
        ).fetchall()
    found: dict[int, list[Quote]] = {}
    for wave, question, text in rows:
        if rules.min_words <= len(text.split()) <= rules.max_words:
            found.setdefault(wave, []).append(Quote(quote_id(wave, question, text), wave, question, text))
    return found


def read_review(path: Path) -> dict[str, Quote]:
    """The decisions in one review file, by quote id (none when the file does not exist yet)."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise QuoteReviewError(f"{path}: not valid YAML: {exc}") from None
    entries = data.get("quotes") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise QuoteReviewError(f"{path}: expected a list under `quotes:`")
    decided: dict[str, Quote] = {}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not {"id", "status"} <= set(entry):
            raise QuoteReviewError(f"{path}: quote {number} needs an `id` and a `status`")
        if entry["status"] not in STATUSES:
            raise QuoteReviewError(
                f"{path}: quote {number} ({entry['id']}) has status {entry['status']!r}; "
                f"expected one of {', '.join(STATUSES)}"
            )
        decided[str(entry["id"])] = Quote(str(entry["id"]), int(entry.get("wave", 0) or 0),
                                          str(entry.get("question", "")), str(entry.get("text", "")), entry["status"])
    return decided


def refresh_review_files(paths: Paths, rules: QuoteRules) -> dict[int, Counter]:
    """Write every wave's review file: current candidates with their decisions, plus decided quotes
    no longer in the warehouse (a decision is kept). Returns the count of each status per wave."""
    tallies: dict[int, Counter] = {}
    for wave, found in candidates(paths, rules).items():
        path = review_file(paths, wave)
        decided = read_review(path)
        current = {q.id for q in found}
        entries = [Quote(q.id, q.wave, q.question, q.text, decided[q.id].status if q.id in decided else "pending")
                   for q in found]
        entries += [q for q in decided.values() if q.id not in current and q.status != "pending"]
        path.parent.mkdir(parents=True, exist_ok=True)
        body = yaml.safe_dump(
            {"quotes": [{"id": q.id, "question": q.question, "status": q.status, "text": q.text} for q in entries]},
            sort_keys=False, allow_unicode=True, width=100,
        )
        path.write_text(HEADER.format(wave=wave) + body, encoding="utf-8")
        tallies[wave] = Counter(q.status for q in entries)
    return tallies


def published_quotes(paths: Paths, rules: QuoteRules | None = None) -> list[Quote]:
    """Approved quotes whose words are in the warehouse now, newest wave first. Nothing else."""
    rules = rules or load_privacy_rules(privacy_path(paths)).quotes
    published = []
    for wave, found in sorted(candidates(paths, rules).items(), reverse=True):
        decided = read_review(review_file(paths, wave))
        published += [q for q in found if q.id in decided and decided[q.id].status == "approved"]
    return published

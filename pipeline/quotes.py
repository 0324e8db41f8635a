"""Quotes: open answers offered to a reviewer, published only once a person approved them.

Every scrubbed open answer of a suitable length is a candidate quote. Each has a stable id, a hash
of its wave, question and scrubbed text: respondent keys are random and change with every load,
but the id of the same words stays the same across re-runs and warehouse rebuilds.

Reviewers decide in `data/review/<wave>/quotes.yaml` (status: pending, approved or rejected), by
hand, one quote at a time with `consult quotes review`, or in a spreadsheet with `consult quotes
export` / `consult quotes import`; the commands record the date (and the reviewer's name when
given) of each decision. The file holds scrubbed text only, but it comes from real answers, so it
lives under data/ and is never committed. `consult run` (or `consult quotes`) adds new candidates
and keeps every decision. Each file says whether it comes from real answers or from the synthetic
practice run; the practice files are removed once the warehouse holds real answers. The report publishes exactly the approved ids, with the text as stored in
the warehouse: quote text is never edited by hand, so a sheet whose `text` was changed cannot
approve that quote (a name is removed with surveys/deidentification.yaml instead).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import yaml

from pipeline.anonymity import QuoteRules, load_privacy_rules, privacy_path
from pipeline.config import Paths
from pipeline.instrument import parse_yaml, yaml_problem
from pipeline.load import connect, data_source

STATUSES = ("pending", "approved", "rejected")
CSV_COLUMNS = ("id", "wave", "question", "text", "decision", "note")
# What a reviewer may type in the CSV's `decision` column (blank: not decided yet).
DECISION_WORDS = {"approve": "approved", "approved": "approved", "reject": "rejected", "rejected": "rejected",
                  "pending": "pending", "": "pending"}
HEADER = """\
# Candidate quotes for the public report, wave {wave}: open answers after scrubbing.
#
# Set `status` to `approved` to publish a quote, or `rejected` to never publish it. Only approved
# quotes appear in the report, exactly as written here under `text`. Before approving, ask: could
# someone who knows this person, or their workplace, recognise them from these words? If so,
# reject it. Editing `text` does not change what is published: reject, or leave pending.
#
# {origin}
# `consult run` (or `consult quotes`) adds new candidates and keeps every decision made here.
"""
# What to do instead of editing a quote's words (in the import's refusal and notes).
SCRUB_ADVICE = ("To remove a name or organisation everywhere, add it to surveys/deidentification.yaml "
                "(under organizations, places, or extra_first_names for a person's given name): at the next "
                "`consult run` it is scrubbed from every stored answer, and the quotes whose text changed come "
                "back for review.")
ORIGINS = {
    "real": "This file comes from real answers: it stays in data/review/ and is never committed.",
    "synthetic": "This file comes from the SYNTHETIC consultation (invented answers), for practice. It is "
                 "removed\n# once real exports are loaded; it is never committed.",
}


class QuoteReviewError(ValueError):
    """A review file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Quote:
    id: str
    wave: int
    question: str
    text: str
    status: str = "pending"
    decided: str = ""  # ISO date of the decision, when a command recorded it
    reviewer: str = ""
    note: str = ""


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
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise QuoteReviewError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
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
                                          str(entry.get("question", "")), str(entry.get("text", "")), entry["status"],
                                          str(entry.get("decided", "") or ""), str(entry.get("reviewer", "") or ""),
                                          str(entry.get("note", "") or ""))
    return decided


def refresh_review_files(paths: Paths, rules: QuoteRules) -> dict[int, Counter]:
    """Write every wave's review file: current candidates with their decisions, plus decided quotes
    no longer in the warehouse (a decision is kept). Returns the count of each status per wave.
    Each file says which data it comes from; once the warehouse holds real answers, the files of the
    synthetic practice run are removed (their quotes can never be real ones, and would otherwise
    still be counted and exported for review)."""
    source = _warehouse_source(paths)
    if source == "real":
        for path in sorted((paths.root / "data" / "review").glob("*/quotes.yaml")):
            if review_source(path) == "synthetic":
                path.unlink()
    tallies: dict[int, Counter] = {}
    for wave, found in candidates(paths, rules).items():
        path = review_file(paths, wave)
        decided = read_review(path)
        refuse_edited_approvals(path, found, decided)
        current = {q.id for q in found}
        entries = [_with_decision(q, decided.get(q.id)) for q in found]
        entries += [q for q in decided.values() if q.id not in current and q.status != "pending"]
        write_review(path, wave, entries, source)
        tallies[wave] = Counter(q.status for q in entries)
    # A loaded wave with no candidate quote (no open-text question, or no open answer to quote) gets an
    # empty file: its quotes are then done, rather than "no review file yet" for ever.
    for wave in _loaded_waves(paths) - set(tallies):
        path = review_file(paths, wave)
        if not path.exists():
            write_review(path, wave, [], source)
            tallies[wave] = Counter()
    return tallies


def _loaded_waves(paths: Paths) -> set[int]:
    with connect(paths.warehouse, read_only=True) as con:
        return {int(w) for (w,) in con.execute("SELECT DISTINCT wave FROM load_ledger").fetchall()}


def why_no_quotes(paths: Paths, wave: int) -> str:
    """Why a loaded wave has no quote to review, in a few words."""
    from pipeline.instrument import InstrumentError, QuestionType, instrument_path, load_instrument

    try:
        instrument = load_instrument(instrument_path(paths.surveys, wave))
    except (InstrumentError, OSError):
        return "none of its open answers can be quoted"
    if not any(q.type == QuestionType.text for q in instrument.questions):
        return "it has no open-text question"
    return "none of its open answers can be quoted (surveys/privacy.yaml sets how long a quote may be)"


def _warehouse_source(paths: Paths) -> str | None:
    with connect(paths.warehouse, read_only=True) as con:
        return data_source(con)


def review_source(path: Path) -> str | None:
    """'synthetic' or 'real' as the review file says (None: written before files said it)."""
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    found = data.get("source") if isinstance(data, dict) else None
    return found if found in ORIGINS else None


def _with_decision(candidate: Quote, decision: Quote | None) -> Quote:
    if decision is None:
        return candidate
    return replace(candidate, status=decision.status, decided=decision.decided, reviewer=decision.reviewer,
                   note=decision.note)


def write_review(path: Path, wave: int, entries: list[Quote], source: str | None = None) -> None:
    """One wave's review file, in the order given; decision details only where recorded. `source`:
    the data it comes from (default: what the file already says, else real)."""
    source = source or review_source(path) or "real"
    rows = []
    for q in entries:
        row = {"id": q.id, "question": q.question, "status": q.status, "text": q.text}
        row.update({k: v for k, v in (("decided", q.decided), ("reviewer", q.reviewer), ("note", q.note)) if v})
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump({"source": source, "quotes": rows}, sort_keys=False, allow_unicode=True, width=100)
    text = HEADER.format(wave=wave, origin=ORIGINS[source]) + body
    # Unchanged: not written again. Every `consult run` refreshes every wave's file, and `consult status`
    # dates the audit against them: a rewrite with the same words made a passed audit read "out of date".
    if not (path.exists() and path.read_text(encoding="utf-8") == text):
        path.write_text(text, encoding="utf-8")


def published_quotes(paths: Paths, rules: QuoteRules | None = None) -> list[Quote]:
    """Approved quotes whose words are in the warehouse now, newest wave first. Nothing else."""
    rules = rules or load_privacy_rules(privacy_path(paths)).quotes
    published = []
    for wave, found in sorted(candidates(paths, rules).items(), reverse=True):
        decided = read_review(review_file(paths, wave))
        refuse_edited_approvals(review_file(paths, wave), found, decided)
        published += [q for q in found if q.id in decided and decided[q.id].status == "approved"]
    return published


# --- review by command: one quote at a time, or a spreadsheet round-trip -------------------------


def review_waves(paths: Paths) -> list[int]:
    """Waves that have a review file."""
    folder = paths.root / "data" / "review"
    return sorted(int(p.parent.name) for p in folder.glob("*/quotes.yaml") if p.parent.name.isdigit())


def wave_review(paths: Paths, wave: int) -> list[Quote]:
    """One wave's review file in its order, each quote carrying its wave; a clear error when the
    file was never written."""
    path = review_file(paths, wave)
    if not path.exists():
        raise QuoteReviewError(f"{path}: no quote review file for wave {wave} yet; run `consult run` (or "
                               "`consult quotes`) after loading the wave")
    return [replace(q, wave=wave) for q in read_review(path).values()]


def decide(paths: Paths, wave: int, decisions: dict[str, tuple[str, str]], reviewer: str = "",
           today: dt.date | None = None) -> None:
    """Record decisions (quote id -> (status, note)) in the wave's review file, dated today. A
    quote put back to pending loses its date and reviewer."""
    entries = wave_review(paths, wave)
    known = {q.id for q in entries}
    unknown = sorted(set(decisions) - known)
    if unknown:
        raise QuoteReviewError(f"{review_file(paths, wave)}: no quote {', '.join(unknown)} in wave {wave}")
    day = (today or dt.date.today()).isoformat()
    updated = []
    for q in entries:
        if q.id in decisions:
            status, note = decisions[q.id]
            dated = status != "pending"
            q = replace(q, status=status, decided=day if dated else "", reviewer=reviewer if dated else "", note=note)
        updated.append(q)
    write_review(review_file(paths, wave), wave, updated)


ANSWERS = {"a": "approved", "approve": "approved", "r": "rejected", "reject": "rejected", "s": "skip",
           "skip": "skip", "q": "quit", "quit": "quit"}
QUESTION = "Approve (a), reject (r), skip (s) or stop here (q)? "


def review_interactively(paths: Paths, quotes: list[Quote], ask: Callable[[str], str] = input,
                         show: Callable[[str], None] = print, reviewer: str = "",
                         today: dt.date | None = None) -> Counter:
    """Ask a person about each quote; each decision is saved as soon as it is made, so stopping
    (q, Ctrl-D or Ctrl-C) keeps the ones made before. Returns how many were approved, rejected,
    skipped, and how many were not reached."""
    tally: Counter = Counter()
    for number, quote in enumerate(quotes, start=1):
        show(f"\n[{number}/{len(quotes)}] {quote.id} · wave {quote.wave} · question {quote.question}\n"
             f"    \u201c{quote.text}\u201d")
        answer = _ask_until_valid(ask, show)
        if answer == "quit":
            tally["not reached"] += len(quotes) - number + 1
            break
        tally[answer] += 1
        if answer != "skip":
            decide(paths, quote.wave, {quote.id: (answer, quote.note)}, reviewer, today)
    return tally


def _ask_until_valid(ask: Callable[[str], str], show: Callable[[str], None]) -> str:
    while True:
        try:
            typed = ask(QUESTION).strip().lower()
        except EOFError:  # the end of piped input, or Ctrl-D: stop here
            return "quit"
        if typed in ANSWERS:
            return ANSWERS[typed]
        show(f"    {typed!r} is not one of the answers: type a, r, s or q")


def export_csv(paths: Paths, wave: int, target: Path) -> int:
    """Write one wave's quotes to a CSV for a spreadsheet (decision: approved, rejected or blank).
    Refuses to replace a file, so a half-reviewed sheet is never overwritten. Returns the rows."""
    if target.exists():
        raise QuoteReviewError(f"{target}: already exists; choose another file name (or delete it first)")
    entries = wave_review(paths, wave)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8-sig", newline="") as out:  # the BOM makes Excel read UTF-8
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for q in entries:
            decision = "" if q.status == "pending" else q.status
            writer.writerow([q.id, wave, q.question, _inert(q.text), decision, _inert(q.note)])
    return len(entries)


def _inert(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (answers may start with = or -)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def import_csv(paths: Paths, source: Path, reviewer: str = "", today: dt.date | None = None,
               show: Callable[[str], None] = print) -> dict[int, Counter]:
    """Apply the decisions of a CSV written by `export_csv` (after editing the `decision` and
    `note` columns). Every row is checked first: one bad row and nothing changes. A row approving a
    quote whose `text` was changed is a bad row: the report publishes the stored words, never the
    sheet's, so the reviewer's redaction would silently be lost. Rejected or pending rows with
    changed text publish nothing: they are recorded, and `show` tells the reviewer the change was
    not used. Returns, per wave, how many quotes were approved, rejected or put back to pending by
    this import (rows whose decision and note did not change are not counted and keep their date)."""
    rows = _read_csv(source)
    missing = [c for c in ("id", "wave", "decision") if rows and c not in rows[0][1]]
    if not rows or missing:
        raise QuoteReviewError(f"{source}: expected a header row with the columns {', '.join(CSV_COLUMNS)}"
                               + (f" (missing: {', '.join(missing)})" if missing else " and one row per quote"))
    reviews: dict[int, dict[str, Quote]] = {}
    changes: dict[int, dict[str, tuple[str, str]]] = {}
    errors: list[str] = []
    edited_approvals = False
    unused_edits: list[str] = []  # rows whose changed text publishes nothing: said, not refused
    for number, row in rows:
        problem, wave, quote_id, change = _check_row(paths, row, reviews)
        if not problem and change and _text_edited(row, reviews[wave][quote_id]):
            if change[0] == "approved":
                problem, edited_approvals = EDITED_APPROVAL.format(quote_id=quote_id), True
            else:
                unused_edits.append(f"  row {number}, quote {quote_id}: {UNUSED_EDIT[change[0]]}")
        if problem:
            errors.append(f"  row {number}, {problem}")
        elif quote_id in changes.get(wave, {}):
            errors.append(f"  row {number}, column id: quote {quote_id} is in the file twice")
        else:
            changes.setdefault(wave, {})[quote_id] = change
    if errors:
        raise QuoteReviewError(f"{source}: nothing was changed; fix these rows and import again:\n"
                               + "\n".join(errors[:30]) + (f"\n  ... and {len(errors) - 30} more" if len(errors) > 30 else "")
                               + (f"\n{EDIT_ADVICE}" if edited_approvals else ""))
    applied: dict[int, Counter] = {}
    for wave, decisions in changes.items():
        changed = {i: d for i, d in decisions.items() if d != (reviews[wave][i].status, reviews[wave][i].note)}
        if changed:
            decide(paths, wave, changed, reviewer, today)
        applied[wave] = Counter(status for status, _note in changed.values())
    if unused_edits:
        show(f"Note ({source}): quote text cannot be edited in the spreadsheet; the changed text of these rows "
             "was not used:\n" + "\n".join(unused_edits) + f"\n{SCRUB_ADVICE}")
    return applied


EDITED_APPROVAL = ("column text: the text of quote {quote_id} was changed; quote text cannot be edited in the "
                   "spreadsheet (the report would publish the stored words, not the sheet's)")
EDIT_ADVICE = ("To publish such a quote as stored, put its text back as exported; to keep it out of the report, "
               "write reject instead (the changed text can stay). " + SCRUB_ADVICE)
# What the reviewer is told about a row whose changed text was not used, by the decision recorded.
UNUSED_EDIT = {"rejected": "recorded as rejected (not published)",
               "pending": "left pending (not published; if reviewed again, it shows its stored words)"}


def refuse_edited_approvals(path: Path, found: list[Quote], decided: dict[str, Quote]) -> None:
    """A quote approved in the review file whose `text` there was edited by hand: the report would
    publish the stored words, not the file's, so the approval is not used. Refused, naming each."""
    edited = [q.id for q in found if (d := decided.get(q.id)) is not None and d.status == "approved"
              and _comparable(d.text) != _comparable(q.text)]
    if edited:
        shown = ", ".join(edited[:10]) + (f" and {len(edited) - 10} more" if len(edited) > 10 else "")
        raise QuoteReviewError(
            f"{path}: quote(s) {shown} are approved but their `text` was edited in the file; the report publishes "
            "the stored words, never the file's, so nothing was published or changed. Put the text back as it was, "
            f"or set `status: rejected`. {SCRUB_ADVICE}")


def _text_edited(row: dict[str, str], stored: Quote) -> bool:
    """Whether the sheet's `text` cell holds other words than the stored quote (a sheet without the
    column edited nothing)."""
    return "text" in row and _comparable(row["text"]) != _comparable(stored.text)


def _comparable(text: str) -> str:
    """Text as a spreadsheet may give it back unedited: surrounding and repeated whitespace (and
    Windows line ends) do not count, nor the apostrophe `_inert` puts before a formula-like answer."""
    return " ".join(text.strip().removeprefix("'").split())


def _read_csv(source: Path) -> list[tuple[int, dict[str, str]]]:
    """(spreadsheet row number, cells) for every data row; the header is row 1. Read as exports are
    (pipeline/platforms/reading.py): a spreadsheet in a French locale saves with ";" and Windows-1252."""
    from pipeline.platforms.reading import ReadError, decode, sniff_delimiter

    try:
        text, _encoding = decode(source.read_bytes())
    except ReadError as exc:
        raise QuoteReviewError(f"{source}: {exc}") from None
    except OSError as exc:
        raise QuoteReviewError(f"{source}: cannot read the file ({exc.strerror})") from None
    rows = csv.DictReader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    return [(number, {k.strip().lower(): (v or "") for k, v in row.items() if k})
            for number, row in enumerate(rows, start=2)]


def _check_row(paths: Paths, row: dict[str, str], reviews: dict[int, dict[str, Quote]]
               ) -> tuple[str, int, str, tuple[str, str] | None]:
    """(problem, wave, quote id, (status, note)) for one CSV row; problem is '' when it is fine."""
    wave_text, quote_id = row.get("wave", "").strip(), row.get("id", "").strip()
    if not (wave_text.isdigit() and len(wave_text) == 4):
        return f"column wave: expected a wave year such as 2025, found {wave_text!r}", 0, quote_id, None
    wave = int(wave_text)
    if wave not in reviews:
        if not review_file(paths, wave).exists():
            return f"column wave: wave {wave} has no quote review file ({review_file(paths, wave)})", wave, quote_id, None
        reviews[wave] = {q.id: q for q in wave_review(paths, wave)}
    if quote_id not in reviews[wave]:
        return (f"column id: no quote {quote_id!r} in wave {wave}'s review file ({review_file(paths, wave)})",
                wave, quote_id, None)
    word = row.get("decision", "").strip().lower()
    if word not in DECISION_WORDS:
        return (f"column decision: expected approve, reject or blank (not decided yet), found {word!r}",
                wave, quote_id, None)
    return "", wave, quote_id, (DECISION_WORDS[word], row.get("note", "").strip())

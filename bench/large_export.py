"""A large synthetic Qualtrics export for the benchmark, generated vectorised (numpy), not row by row.

The synthetic consultation's generator (pipeline/synth.py) invents respondents one at a time: right
for a few thousand, far too slow for a million. Here every answer column is drawn at once from the
wave's instrument, with the full questionnaire and its skip logic, under the same Qualtrics header
(pipeline.synth.qualtrics_csv), so the file reads and validates like a real export. Every response
gets its own response id; a share of rows carry the defects validation must find (no consent,
ineligible, unfinished, a wage typed without its decimal point, a repeated row, a resubmission).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipeline.instrument import Condition, Instrument, Question, QuestionType, ShowIf, load_instrument
from pipeline.synth import QUALTRICS_METADATA, qualtrics_csv

ROOT = Path(__file__).resolve().parent.parent
WAVE = 2025
SEED = 20251126
# Shares of rows with the defects validation has to find (the rest are valid, complete responses).
DEFECTS = {"refused_consent": 0.02, "ineligible": 0.02, "partial": 0.05, "out_of_range": 0.005,
           "repeated_row": 0.01, "resubmitted": 0.01}
COMMENTS = ["More paid hours and a real contract instead of casual shifts.",
            "Peer supervision from someone who has lived experience.",
            "A living wage, benefits and paid sick days."]


def instrument() -> Instrument:
    return load_instrument(ROOT / "surveys" / str(WAVE) / "instrument.yaml")


def generate(path: Path, rows: int, seed: int = SEED) -> Path:
    """Write `rows` responses as a Qualtrics CSV (the synthetic consultation's header, numpy answers)."""
    inst = instrument()
    rng = np.random.default_rng(seed)
    base = rows - round(rows * DEFECTS["repeated_row"]) - round(rows * DEFECTS["resubmitted"])
    frame = _responses(inst, rng, base)
    frame = _with_copies(frame, rng, rows - base, rows * DEFECTS["resubmitted"] / max(1, rows - base))
    columns = [m[0] for m in QUALTRICS_METADATA] + [q.aliases[0] for q in inst.questions]
    path.parent.mkdir(parents=True, exist_ok=True)
    body = path.with_suffix(".body.csv")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.register("responses", frame[columns])
    con.execute(f"COPY responses TO '{body}' (HEADER false, DELIMITER ',')")
    con.close()
    with path.open("wb") as out, body.open("rb") as rest:
        out.write(qualtrics_csv(inst, []))  # BOM and the three header lines
        shutil.copyfileobj(rest, out, 1 << 24)
    body.unlink()
    return path


def _responses(inst: Instrument, rng: np.random.Generator, n: int) -> pd.DataFrame:
    answers: dict[str, pd.Series] = {}
    chosen: dict[str, np.ndarray] = {}  # concept -> code index per row (-1: not answered), for skip logic
    shown_all = np.ones(n, dtype=bool)
    for question in inst.questions:
        shown = shown_all & _holds(question.show_if, chosen, inst, n)
        answers[question.aliases[0]], chosen[question.id] = _answer(question, inst, rng, shown)
    frame = pd.DataFrame(answers)
    frame = _defects(frame, inst, rng, n)
    return pd.concat([_metadata(rng, n, inst), frame], axis=1)


def _holds(show_if: ShowIf | None, chosen: dict[str, np.ndarray], inst: Instrument, n: int) -> np.ndarray:
    if show_if is None:
        return np.ones(n, dtype=bool)
    if isinstance(show_if, Condition):
        codes = [c.code for c in inst.choices_of(inst.question(show_if.question))]
        wanted = [codes.index(c) for c in show_if.in_ if c in codes]
        return np.isin(chosen.get(show_if.question, np.full(n, -1)), wanted)
    parts = [_holds(p, chosen, inst, n) for p in (show_if.all if hasattr(show_if, "all") else show_if.any)]
    return np.logical_and.reduce(parts) if hasattr(show_if, "all") else np.logical_or.reduce(parts)


def _answer(question: Question, inst: Instrument, rng: np.random.Generator, shown: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    n = len(shown)
    codes = [c.code for c in inst.choices_of(question)]
    if question.id == "consent":
        index = np.where(rng.random(n) < DEFECTS["refused_consent"], 1, 0)
    elif question.id == "eligible_role":
        index = rng.choice(3, size=n, p=[0.85 - DEFECTS["ineligible"], 0.15, DEFECTS["ineligible"]])
    elif codes and question.type is not QuestionType.multiple:
        index = rng.integers(0, len(codes), size=n)
    else:
        index = np.full(n, -1)
    index = np.where(shown, index, -1)
    if question.type is QuestionType.multiple:
        real = [c.code for c in inst.choices_of(question) if not c.missing]
        bits = (rng.random((n, len(real))) < 0.3) @ (1 << np.arange(len(real)))
        bits = np.where(bits == 0, 1 << (len(real) - 1), bits)  # nothing ticked: the last option ("none of these")
        combos = [",".join(c for k, c in enumerate(real) if mask >> k & 1) or "-" for mask in range(1 << len(real))]
        return pd.Series(pd.Categorical.from_codes(np.where(shown, bits, -1), combos)), index
    if question.type is QuestionType.numeric:
        wage = question.id == "hourly_wage"
        values = rng.normal(24, 4, n).clip(16.55, 60).round(2) if wage else (rng.normal(28, 9, n).clip(1, 60) * 2).round() / 2
        return pd.Series(np.where(shown, values, np.nan)), index
    if question.type is QuestionType.text:  # comments; direct identifiers (an email, an employer) left blank
        wanted = shown & (rng.random(n) < 0.3) & (question.disclosure.value != "direct")
        return pd.Series(pd.Categorical.from_codes(np.where(wanted, rng.integers(0, len(COMMENTS), n), -1), COMMENTS)), index
    return pd.Series(pd.Categorical.from_codes(index, codes)), index


def _defects(frame: pd.DataFrame, inst: Instrument, rng: np.random.Generator, n: int) -> pd.DataFrame:
    wage = inst.question("hourly_wage").aliases[0]
    broken = rng.random(n) < DEFECTS["out_of_range"]
    frame[wage] = frame[wage].where(~broken, frame[wage] * 100)  # typed without the decimal point
    return frame


def _metadata(rng: np.random.Generator, n: int, inst: Instrument) -> pd.DataFrame:
    window = inst.collection_window
    seconds = int((window.end - window.start).days * 86400)
    start = pd.Timestamp(window.start) + pd.to_timedelta(rng.integers(0, seconds - 7200, n), unit="s")
    duration = rng.lognormal(np.log(900), 0.45, n).astype(int)
    finished = rng.random(n) >= DEFECTS["partial"]
    ids = pd.Series(np.arange(n)).map(lambda i: f"R_{i:015d}")
    emails = pd.Series(np.arange(n)).map(lambda i: f"person{i}@example.org").where(rng.random(n) < 0.25, None)
    ips = pd.Series(rng.integers(1, 2**32 - 1, n, dtype=np.uint64)).map(
        lambda v: f"{v >> 24 & 255}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}")
    return pd.DataFrame({
        "StartDate": start, "EndDate": start + pd.to_timedelta(duration, unit="s"), "Status": "0", "IPAddress": ips,
        "Progress": np.where(finished, 100, 40), "Duration (in seconds)": duration,
        "Finished": np.where(finished, "1", "0"), "RecordedDate": start + pd.to_timedelta(duration, unit="s"),
        "ResponseId": ids, "RecipientLastName": None, "RecipientFirstName": None, "RecipientEmail": emails,
        "ExternalReference": None, "LocationLatitude": rng.uniform(42, 50, n).round(4),
        "LocationLongitude": rng.uniform(-94, -75, n).round(4), "DistributionChannel": "anonymous", "UserLanguage": "EN",
    })


def _with_copies(frame: pd.DataFrame, rng: np.random.Generator, copies: int, resubmitted_share: float) -> pd.DataFrame:
    """Append repeated rows (same response id) and resubmissions (new id, same answers, days later)."""
    extra = frame.iloc[rng.integers(0, len(frame), copies)].copy()
    again = rng.random(copies) < resubmitted_share
    later = pd.to_timedelta(rng.integers(1, 20, copies), unit="D")
    extra["ResponseId"] = extra["ResponseId"].where(~again, extra["ResponseId"] + "b")
    for column in ("StartDate", "EndDate", "RecordedDate"):
        extra[column] = extra[column].where(~again, extra[column] + later)
    return pd.concat([frame, extra], ignore_index=True)

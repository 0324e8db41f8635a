"""The built-in synthetic consultation: seeded, deterministic survey-platform exports.

`write_synthetic_consultation` invents respondents from `surveys/synthetic.yaml`, answers each
wave's instrument for them and writes the exports a survey platform would (Qualtrics' 3-header-row
CSV), identifiers and defects included. Same seed and definitions, same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import json
import math
import re
import uuid as uuid_module
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from faker import Faker

from pipeline.config import Paths
from pipeline.instrument import (
    AllOf,
    AnyOf,
    Condition,
    Instrument,
    Question,
    QuestionType,
    ShowIf,
    instrument_path,
    load_instrument,
    parse_yaml,
)

Answers = dict[str, Any]  # concept id -> code (str), list of codes, number, text or None

QUALTRICS_METADATA = [
    ("StartDate", "Start Date", "startDate"),
    ("EndDate", "End Date", "endDate"),
    ("Status", "Response Type", "status"),
    ("IPAddress", "IP Address", "ipAddress"),
    ("Progress", "Progress", "progress"),
    ("Duration (in seconds)", "Duration (in seconds)", "duration"),
    ("Finished", "Finished", "finished"),
    ("RecordedDate", "Recorded Date", "recordedDate"),
    ("ResponseId", "Response ID", "_recordId"),
    ("RecipientLastName", "Recipient Last Name", "recipientLastName"),
    ("RecipientFirstName", "Recipient First Name", "recipientFirstName"),
    ("RecipientEmail", "Recipient Email", "recipientEmail"),
    ("ExternalReference", "External Data Reference", "externalDataReference"),
    ("LocationLatitude", "Location Latitude", "locationLatitude"),
    ("LocationLongitude", "Location Longitude", "locationLongitude"),
    ("DistributionChannel", "Distribution Channel", "distributionChannel"),
    ("UserLanguage", "User Language", "userLanguage"),
]

ORGANIZATIONS = [
    "Lakeshore Community Mental Health",
    "Northern Lights Peer Network",
    "St. Brigid's Hospital",
    "Riverside Harm Reduction Services",
    "Trillium Housing Collective",
    "Bayview Recovery Centre",
]
PLACES = ["Sudbury", "Kenora", "Peterborough", "Brampton", "Kingston", "Timmins", "Guelph"]
COMMENT_STEMS = [
    "More paid hours and a real contract instead of casual shifts.",
    "Being treated as part of the team, not as the person who makes the coffee.",
    "Peer supervision from someone who has lived experience.",
    "Funding for training like the nurses and social workers get.",
    "Stop asking us to chart in diagnostic language.",
    "A living wage. I work two jobs to get by.",
    "Time to meet other peer workers and debrief.",
    "Managers who understand what peer support is for.",
    "Benefits and paid sick days.",
    "Not being asked to tell my story every time there is a funder visit.",
]
PII_TEMPLATES = [
    "My manager {name} at {org} told me peers should not question the doctors.",
    "Call me at {phone} if you want to hear more about {org}.",
    "I am at {email}, happy to talk about what happened in {place}.",
    "{name} from {org} in {place} keeps giving me reception shifts.",
    "Write to {email} or {phone}. I live at {address}.",
]


@dataclass
class Respondent:
    answers: Answers
    factors: dict[str, float]
    identity: dict[str, str] = field(default_factory=dict)
    finished: bool = True
    progress: int = 100


def write_synthetic_consultation(
    paths: Paths,
    out_dir: Path | None = None,
    waves: list[int] | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
    platform: str = "qualtrics",
) -> list[Path]:
    """Write one export per wave under `out_dir/<wave>/`; return the files written.

    `platform` names the export format (see WRITERS), or `all`: every format, each in its own
    folder `out_dir/<platform>/<wave>/`, so that each can be loaded as its own consultation. Only
    the Qualtrics export goes to data/synthetic/ by default (what `consult run` falls back to);
    the others go to data/synthetic-platforms/.
    """
    if platform != "all" and platform not in WRITERS:
        raise ValueError(f"unknown synthetic export format {platform!r}; known: {', '.join(WRITERS)}, all")
    spec = parse_yaml(paths.synth_file.read_text(encoding="utf-8"))
    living_wage = parse_yaml(paths.living_wage_file.read_text(encoding="utf-8"))
    platforms = list(WRITERS) if platform == "all" else [platform]
    default_dir = paths.synthetic if platform == "qualtrics" else paths.root / "data" / "synthetic-platforms"
    out_dir = out_dir or default_dir
    if platform not in ("qualtrics", "all") and out_dir == default_dir:
        out_dir = out_dir / platform
    written = []
    for wave, wave_spec in sorted(spec["waves"].items()):
        if waves and int(wave) not in waves:
            continue
        instrument = load_instrument(instrument_path(paths.surveys, int(wave)))
        progress(f"synthesising wave {wave}: {wave_spec['responses']} responses")
        generator = WaveGenerator(instrument, spec, living_wage, seed=int(spec["seed"]) + int(wave))
        rows = generator.export_rows(int(wave_spec["responses"]))
        for name in platforms:
            write, suffix = WRITERS[name]
            folder = out_dir / name if platform == "all" else out_dir
            target = folder / str(wave) / f"{name}-{wave}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(write(instrument, rows))
            written.append(target)
    return written


class WaveGenerator:
    def __init__(self, instrument: Instrument, spec: dict, living_wage: dict, seed: int):
        self.instrument = instrument
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self.fake = Faker("en_CA")
        self.fake.seed_instance(seed)
        self.living_wage = living_wage
        year = living_wage["rate_year_for_wave"][instrument.wave]["year"]
        self.rates = {str(k): float(v) for k, v in living_wage["rates"][year].items()}
        self.window = instrument.collection_window
        self.section_of = {q.id: s.id for s in instrument.sections for q in s.questions}
        self.demographic_draws = self._demographic_draws()

    # --- respondents -------------------------------------------------------------------------

    def respondent(self) -> Respondent:
        answers: Answers = {}
        self._demographics(answers)
        factors = self._factors(answers)
        respondent = Respondent(answers=answers, factors=factors)
        tendencies = self._tendencies(factors)
        demographic_ids = set(answers)
        for question in self.instrument.questions:
            if question.id in demographic_ids:
                continue
            answers[question.id] = None
            if not self._shown(question.show_if, answers):
                continue
            answers[question.id] = self._answer(question, tendencies[self.section_of[question.id]], answers)
        for question in self.instrument.questions:  # demographics sit behind consent too
            if question.id in demographic_ids and not self._shown(question.show_if, answers):
                answers[question.id] = None
        return respondent

    def _demographic_draws(self) -> list[tuple[str, list[str], np.ndarray, bool]]:
        """Per demographic question asked: its codes, their probabilities, whether several apply."""
        draws = []
        for concept, concept_weights in self.spec["demographics"].items():
            if concept == "more_than_one_race" or not self._asks(concept):
                continue
            question = self.instrument.question(concept)
            codes = [c.code for c in self.instrument.choices_of(question)]
            probs = np.array([float(concept_weights.get(int(c), 1.0)) for c in codes])
            probs /= probs.sum()
            draws.append((concept, codes, probs, question.type is QuestionType.multiple))
        return draws

    def _demographics(self, answers: Answers) -> None:
        weights = self.spec["demographics"]
        for concept, codes, probs, multiple in self.demographic_draws:
            if multiple:
                how_many = 2 if self.rng.random() < weights["more_than_one_race"] else 1
                picked = self.rng.choice(codes, size=how_many, replace=False, p=probs)
                answers[concept] = sorted({str(c) for c in picked}, key=int)
            else:
                answers[concept] = str(self.rng.choice(codes, p=probs))
        if self._asks("lw_region") and answers.get("oh_region"):
            options = self.spec["lw_region_by_oh_region"][int(answers["oh_region"])]
            codes = [str(c) for c in options]
            probs = np.array([float(w) for w in options.values()])
            answers["lw_region"] = str(self.rng.choice(codes, p=probs / probs.sum()))

    def _factors(self, answers: Answers) -> dict[str, float]:
        effects = self.spec["effects"]
        trend = float(effects.get("wave_trend_per_year", 0.0)) * (self.instrument.wave - 2023)
        factors = {}
        for name, by_concept in effects.items():
            if not isinstance(by_concept, dict):
                continue
            shift = trend
            for concept, shifts in by_concept.items():
                given = answers.get(concept)
                given = given if isinstance(given, list) else [given]
                shift += max((float(shifts.get(int(g), 0.0)) for g in given if g), default=0.0)
            factors[name] = shift + float(self.rng.normal(0, 0.6))
        return factors

    def _asks(self, concept: str) -> bool:
        return any(q.id == concept for q in self.instrument.questions)

    def _shown(self, show_if: ShowIf | None, answers: Answers) -> bool:
        if show_if is None:
            return True
        if isinstance(show_if, Condition):
            given = answers.get(show_if.question)
            given = given if isinstance(given, list) else [given]
            return any(g in show_if.in_ for g in given if g is not None)
        if isinstance(show_if, AllOf):
            return all(self._shown(part, answers) for part in show_if.all)
        assert isinstance(show_if, AnyOf)
        return any(self._shown(part, answers) for part in show_if.any)

    def _tendencies(self, factors: dict[str, float]) -> dict[str, float]:
        """Section id -> the mean of the tendencies its answers follow (0 when none)."""
        tendencies = {}
        for section in self.instrument.sections:
            names = self.spec["sections"].get(section.id, [])
            names = names if isinstance(names, list) else [names]
            tendencies[section.id] = float(np.mean([factors[n] for n in names])) if names else 0.0
        return tendencies

    def _section_base(self, question: Question) -> float:
        return float(self.spec.get("section_bases", {}).get(self.section_of[question.id], 0.0))

    def _answer(self, question: Question, tendency: float, answers: Answers) -> Any:
        if question.id == "consent":
            return "1"
        if question.id == "eligible_role":
            return "1" if self.rng.random() < 0.88 else "2"
        rule = self.spec["answers"].get(question.id, {})
        kind = question.type
        if kind is QuestionType.numeric:
            return self._numeric(question, tendency, answers)
        if kind is QuestionType.text:
            return self._text(question)
        if kind is QuestionType.date:
            return str(self.window.start)
        if kind is QuestionType.multiple:
            return self._multiple(question, tendency, rule)
        return self._ordered(question, tendency, rule)

    def _ordered(self, question: Question, tendency: float, rule: dict) -> str | None:
        choices = self.instrument.choices_of(question)
        missing = [c for c in choices if c.missing]
        real = [c for c in choices if not c.missing]
        if missing and self.rng.random() < 0.03:
            return missing[0].code
        if "worse_codes" in rule:
            worse = self.rng.random() < _phi(float(rule.get("base", 0.0)) + tendency)
            pool = [c for c in real if (c.code in rule["worse_codes"]) == worse] or real
            return pool[int(self.rng.integers(len(pool)))].code
        if any(c.score is not None for c in real):
            real = sorted(real, key=lambda c: (c.score or 0.0, int(c.code)))
        elif rule.get("worse") == "low":
            real = list(reversed(real))
        elif rule.get("worse") != "high":
            return real[int(self.rng.integers(len(real)))].code
        # Ordered probit: a latent score cut into equal-probability bands when tendency is 0.
        latent = float(rule.get("base", self._section_base(question))) + tendency + float(self.rng.normal(0, 1))
        return real[sum(latent > cut for cut in _band_cuts(len(real)))].code

    def _multiple(self, question: Question, tendency: float, rule: dict) -> list[str]:
        choices = [c for c in self.instrument.choices_of(question) if not c.missing]
        none_codes = [c.code for c in choices if c.label.en.lower().startswith("none")]
        base = float(rule.get("options_base", -0.5))
        slope = float(rule.get("factor_sign", 0.5))
        picked = [
            c.code
            for c in choices
            if c.code not in none_codes and self.rng.random() < _phi(base + slope * tendency)
        ]
        return picked or none_codes[:1]

    def _numeric(self, question: Question, tendency: float, answers: Answers) -> float:
        rule = self.spec["numeric"].get(question.id, {})
        if "relative_to_living_wage" in rule:
            rate = self.rates.get(str(answers.get("lw_region")), 21.0)
            ratio = rule["relative_to_living_wage"] + rule["factor_slope"] * tendency
            value = rate * (ratio + float(self.rng.normal(0, rule["sd"])))
            value = max(value, 16.55)
        else:
            mean, sd = float(rule.get("mean", 10)), float(rule.get("sd", 3))
            value = mean + float(rule.get("factor_slope", 0)) * tendency + self.rng.normal(0, sd)
        if question.range:
            value = min(max(value, question.range.min), question.range.max)
        step = float(rule.get("round_to", 1))
        return round(round(value / step) * step, 2)

    def _text(self, question: Question) -> str | None:
        defects = self.spec["defects"]
        if question.id == "contact_email":
            return self.fake.email() if self.rng.random() < defects["leaves_email"] else None
        if question.id == "employer_name":
            return str(self.rng.choice(ORGANIZATIONS)) if self.rng.random() < 0.5 else None
        if self.rng.random() < 0.45:
            return None
        text = str(self.rng.choice(COMMENT_STEMS))
        if self.rng.random() < defects["pii_in_comments"]:
            text += " " + str(self.rng.choice(PII_TEMPLATES)).format(
                name=self.fake.name(),
                org=self.rng.choice(ORGANIZATIONS),
                phone=self.fake.phone_number(),
                email=self.fake.email(),
                place=self.rng.choice(PLACES),
                address=self.fake.street_address(),
            )
        return text

    # --- the export ----------------------------------------------------------------------------

    def export_rows(self, responses: int) -> list[dict[str, Any]]:
        """Rows of a Qualtrics export: metadata plus answers, with the usual defects mixed in."""
        defects = self.spec["defects"]
        people = [self.respondent() for _ in range(responses)]
        extra = lambda share: max(1, round(responses * share))  # noqa: E731
        for _ in range(extra(defects["refused_consent"])):
            people.append(self._refused())
        for _ in range(extra(defects["ineligible"])):
            people.append(self._ineligible())
        for _ in range(extra(defects["partial"])):
            people.append(self._partial())
        for _ in range(extra(defects["impossible_value"])):
            person = people[int(self.rng.integers(responses))]
            if person.answers.get("hourly_wage") is not None:
                person.answers["hourly_wage"] = round(person.answers["hourly_wage"] * 100)
        rows = [self._metadata(p) for p in people]
        for _ in range(extra(defects["resubmitted"])):  # same person, a few days later
            original = int(self.rng.integers(responses))
            again = self._metadata(people[original])
            again["RecipientEmail"] = rows[original]["RecipientEmail"]
            again["IPAddress"] = rows[original]["IPAddress"]
            again["answers"] = dict(rows[original]["answers"])
            again["answers"]["contact_email"] = rows[original]["answers"].get("contact_email")
            rows.append(again)
        for _ in range(extra(defects["repeated_row"])):  # the same response exported twice
            rows.append(dict(rows[int(self.rng.integers(len(rows)))]))
        order = self.rng.permutation(len(rows))
        rows = [rows[i] for i in order]
        rows.sort(key=lambda r: r["StartDate"])
        return rows

    def _refused(self) -> Respondent:
        person = Respondent(answers={"consent": "2"}, factors={})
        return person

    def _ineligible(self) -> Respondent:
        person = self.respondent()
        answers = {q.id: None for q in self.instrument.questions}
        answers.update(consent="1", eligible_role="3")
        person.answers = answers
        return person

    def _partial(self) -> Respondent:
        person = self.respondent()
        questions = self.instrument.questions
        stop = int(self.rng.integers(2, max(3, len(questions) // 2)))
        for question in questions[stop:]:
            person.answers[question.id] = None
        person.finished = False
        person.progress = int(100 * stop / len(questions))
        return person

    def _metadata(self, person: Respondent) -> dict[str, Any]:
        days = (self.window.end - self.window.start).days
        start = dt.datetime.combine(self.window.start, dt.time(8)) + dt.timedelta(
            days=int(self.rng.integers(days + 1)), seconds=int(self.rng.integers(14 * 3600))
        )
        duration = int(self.rng.lognormal(math.log(900), 0.45))
        if not person.finished:
            duration = int(duration * person.progress / 100)
        end = start + dt.timedelta(seconds=duration)
        by_email = self.rng.random() < 0.3
        return {
            "StartDate": start.strftime("%Y-%m-%d %H:%M:%S"),
            "EndDate": end.strftime("%Y-%m-%d %H:%M:%S"),
            "Status": "0",
            "IPAddress": self.fake.ipv4_public(),
            "Progress": str(person.progress),
            "Duration (in seconds)": str(duration),
            "Finished": "1" if person.finished else "0",
            "RecordedDate": end.strftime("%Y-%m-%d %H:%M:%S"),
            "ResponseId": "R_" + "".join(self.rng.choice(list(_ALNUM), size=15)),
            "RecipientLastName": self.fake.last_name() if by_email else "",
            "RecipientFirstName": self.fake.first_name() if by_email else "",
            "RecipientEmail": self.fake.email() if by_email else "",
            "ExternalReference": "",
            "LocationLatitude": f"{self.rng.uniform(42.0, 50.0):.4f}",
            "LocationLongitude": f"{self.rng.uniform(-94.0, -75.0):.4f}",
            "DistributionChannel": "email" if by_email else "anonymous",
            "UserLanguage": "FR-CA" if person.answers.get("francophone") == "1" else "EN",
            "answers": person.answers,
        }


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def qualtrics_csv(instrument: Instrument, rows: list[dict[str, Any]]) -> bytes:
    """Qualtrics' current CSV: ids, question texts, ImportId JSON, then one line per response."""
    questions = instrument.questions
    ids = [m[0] for m in QUALTRICS_METADATA] + [q.aliases[0] if q.aliases else q.id for q in questions]
    texts = [m[1] for m in QUALTRICS_METADATA] + [q.label.en for q in questions]
    imports = [json.dumps({"ImportId": m[2]}) for m in QUALTRICS_METADATA] + [
        json.dumps({"ImportId": _import_id(i, q)}) for i, q in enumerate(questions, start=1)
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([ids, texts, imports])
    for row in rows:
        values = [row[m[0]] for m in QUALTRICS_METADATA]
        values += [_cell(row["answers"].get(q.id)) for q in questions]
        writer.writerow(values)
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")  # Qualtrics writes a BOM


def _import_id(number: int, question: Question) -> str:
    return f"QID{number}_TEXT" if question.type is QuestionType.text else f"QID{number}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:g}" if value != int(value) else str(int(value))
    return str(value)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@functools.cache
def _band_cuts(bands: int) -> tuple[float, ...]:
    """The latent scores cutting a standard normal into `bands` equally likely bands."""
    return tuple(_phi_inverse((i + 1) / bands) for i in range(bands - 1))


def _phi_inverse(p: float) -> float:
    # Bisection is plenty for the few distinct cut points (cached by _band_cuts).
    low, high = -8.0, 8.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _phi(mid) < p else (low, mid)
    return (low + high) / 2


# --- the same responses as other platforms export them -----------------------------------------
#
# Every writer gets the same rows and keeps what its platform can say: a platform that exports
# only completed responses (SurveyMonkey's "completed" filter, Google Forms, KoboToolbox) leaves
# out the partial ones; one without response ids (Google Forms) cannot export a response twice.
# A platform without IP addresses collects an email from everyone (Google Forms' "collect email
# addresses", an ODK `email` field, a REDCap contact field), so the same person answering twice
# stays recognisable. Loaded, every format gives the same warehouse.


def _completed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["Finished"] == "1"]


def _first_exports(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    kept = []
    for row in rows:
        if row["ResponseId"] not in seen:
            seen.add(row["ResponseId"])
            kept.append(row)
    return kept


def _numbering(rows: list[dict[str, Any]], start: int = 1) -> dict[str, int]:
    """A platform's sequential response numbers; a response exported twice keeps its number."""
    numbers: dict[str, int] = {}
    for row in rows:
        numbers.setdefault(row["ResponseId"], start + len(numbers))
    return numbers


def _email_of(row: dict[str, Any]) -> str:
    """The respondent's email: the recipient's, or one the form collected (the same person, on
    the same connection, gives the same one)."""
    if row["RecipientEmail"]:
        return row["RecipientEmail"]
    digest = hashlib.sha256(row["IPAddress"].encode()).hexdigest()[:10]
    return f"respondent.{digest}@example.org"


def _time(row: dict[str, Any], column: str) -> dt.datetime:
    return dt.datetime.strptime(row[column], "%Y-%m-%d %H:%M:%S")


def _label(instrument: Instrument, question: Question, code: str) -> str:
    return next(c.label.en for c in instrument.choices_of(question) if c.code == code)


def _labelled(instrument: Instrument, question: Question, value: Any, joiner: str) -> str:
    """An answer as choice text, the way label-exporting platforms write it."""
    if value is None or question.type not in (QuestionType.single, QuestionType.likert, QuestionType.multiple):
        return _cell(value)
    if isinstance(value, list):
        return joiner.join(_label(instrument, question, c) for c in value)
    return _label(instrument, question, value)


def _csv_bytes(records: list[list[str]], encoding: str = "utf-8", delimiter: str = ",",
               line_end: str = "\r\n", quote_all: bool = False, bom: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=line_end,
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerows(records)
    return ("\ufeff" if bom else "").encode(encoding) + buffer.getvalue().encode(encoding)


def surveymonkey_records(instrument: Instrument, rows: list[dict[str, Any]]) -> list[list[str]]:
    """SurveyMonkey's two header rows, one column per option of a multiple-choice question."""
    meta = ["Respondent ID", "Collector ID", "Start Date", "End Date", "IP Address", "Email Address",
            "First Name", "Last Name", "Custom Data 1"]
    top, sub = list(meta), [""] * len(meta)
    for question in instrument.questions:
        if question.type is QuestionType.multiple:
            for index, choice in enumerate(instrument.choices_of(question)):
                top.append(question.label.en if index == 0 else "")
                sub.append(choice.label.en)
        else:
            top.append(question.label.en)
            sub.append("Open-Ended Response" if question.type in (QuestionType.text, QuestionType.numeric) else "Response")
    records = [top, sub]
    numbers = _numbering(rows, start=114_000_000_001)
    for row in _completed(rows):
        record = [str(numbers[row["ResponseId"]]), "431234567",
                  _time(row, "StartDate").strftime("%m/%d/%Y %I:%M:%S %p"),
                  _time(row, "EndDate").strftime("%m/%d/%Y %I:%M:%S %p"), row["IPAddress"], row["RecipientEmail"],
                  row["RecipientFirstName"], row["RecipientLastName"], ""]
        for question in instrument.questions:
            value = row["answers"].get(question.id)
            if question.type is QuestionType.multiple:
                chosen = set(value or [])
                record += [c.label.en if c.code in chosen else "" for c in instrument.choices_of(question)]
            else:
                record.append(_labelled(instrument, question, value, ""))
        records.append(record)
    return records


def surveymonkey_csv(instrument: Instrument, rows: list[dict[str, Any]]) -> bytes:
    return _csv_bytes(surveymonkey_records(instrument, rows))


def googleforms_csv(instrument: Instrument, rows: list[dict[str, Any]]) -> bytes:
    """Google Forms: Timestamp (M/D/YYYY H:MM:SS), Email Address, question texts, labels; checkbox
    labels joined by ", "."""
    header = ["Timestamp", "Email Address"] + [q.label.en for q in instrument.questions]
    records = [header]
    for row in _first_exports(_completed(rows)):
        stamp = _time(row, "EndDate")
        record = [f"{stamp.month}/{stamp.day}/{stamp.year} {stamp.hour}:{stamp:%M:%S}", _email_of(row)]
        record += [_labelled(instrument, q, row["answers"].get(q.id), ", ") for q in instrument.questions]
        records.append(record)
    data = _csv_bytes(records)
    return data[:-2]  # Google's download has no final line end


def limesurvey_csv(instrument: Instrument, rows: list[dict[str, Any]]) -> bytes:
    """LimeSurvey, "question code & question text" headings, answer codes, ';'-separated; partial
    responses have no submit date; token attributes name the participant."""
    meta = ["Response ID", "Date submitted", "Last page", "Start language", "Seed", "Date started",
            "Date last action", "IP address", "Referrer URL", "First name", "Last name", "Email address"]
    header = list(meta)
    for question in instrument.questions:
        code = re.sub(r"[^A-Za-z0-9]", "", question.aliases[0] if question.aliases else question.id)
        if question.type is QuestionType.multiple:
            header += [f"{code}[SQ{int(c.code):03d}]. {question.label.en} [{c.label.en}]"
                       for c in instrument.choices_of(question)]
        else:
            header.append(f"{code}. {question.label.en}")
    records = [header]
    numbers = _numbering(rows)
    for row in rows:
        finished = row["Finished"] == "1"
        language = "fr" if row["UserLanguage"].startswith("FR") else "en"
        record = [str(numbers[row["ResponseId"]]), row["EndDate"] if finished else "", "7" if finished else "3",
                  language, str(numbers[row["ResponseId"]] * 7919 % 100000), row["StartDate"], row["RecordedDate"],
                  row["IPAddress"], "", row["RecipientFirstName"], row["RecipientLastName"], row["RecipientEmail"]]
        for question in instrument.questions:
            value = row["answers"].get(question.id)
            if question.type is QuestionType.multiple:
                chosen = set(value or [])
                record += ["Y" if c.code in chosen else "" for c in instrument.choices_of(question)]
            elif question.type is QuestionType.numeric and value is not None:
                record.append(f"{value:.10f}")  # LimeSurvey's fixed decimals
            else:
                record.append(_cell(value))
        records.append(record)
    return _csv_bytes(records, delimiter=";", line_end="\n")


def kobo_csv(instrument: Instrument, rows: list[dict[str, Any]]) -> bytes:
    """KoboToolbox: XML names with group paths, ';'-separated, every value quoted; select-multiple
    as space-separated codes and one column per option."""
    header = ["start", "end", "email"]
    for section in instrument.sections:
        for question in section.questions:
            path = f"{section.id}/{question.id}"
            header.append(path)
            if question.type is QuestionType.multiple:
                header += [f"{path}/{c.code}" for c in instrument.choices_of(question)]
    header += ["meta/instanceID", "_id", "_uuid", "_submission_time", "_validation_status", "_notes", "_status",
               "_submitted_by", "__version__", "_tags", "_index"]
    records = [header]
    numbers = _numbering(rows)
    for index, row in enumerate(_completed(rows), start=1):
        number = numbers[row["ResponseId"]]
        uuid = str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, row["ResponseId"]))
        record = [_time(row, "StartDate").isoformat() + ".000-05:00", _time(row, "EndDate").isoformat() + ".000-05:00",
                  _email_of(row)]
        for question in instrument.questions:
            value = row["answers"].get(question.id)
            if question.type is QuestionType.multiple:
                chosen = set(value or [])
                record.append(" ".join(value or []))
                record += [("1" if c.code in chosen else "0") if value else "" for c in instrument.choices_of(question)]
            else:
                record.append(_cell(value))
        record += [f"uuid:{uuid}", str(300000 + number), uuid, _time(row, "RecordedDate").isoformat(), "", "",
                   "submitted_via_web", "", "vGx7pPZ2sYkhG8uMH9Fy5T", "", str(index)]
        records.append(record)
    return _csv_bytes(records, delimiter=";", quote_all=True)


def redcap_csv(instrument: Instrument, rows: list[dict[str, Any]]) -> bytes:
    """REDCap records export (raw data): record_id, a contact form, one form per section with
    `<form>_complete`, checkbox fields as `field___code`."""
    header = ["record_id", "redcap_survey_identifier", "contact_timestamp", "first_name", "last_name", "email",
              "contact_complete"]
    for section in instrument.sections:
        for question in section.questions:
            if question.type is QuestionType.multiple:
                header += [f"{question.id}___{c.code}" for c in instrument.choices_of(question)]
            else:
                header.append(question.id)
        header.append(f"{section.id}_complete")
    records = [header]
    numbers = _numbering(rows)
    for row in rows:
        finished = row["Finished"] == "1"
        record = [str(numbers[row["ResponseId"]]), "", row["RecordedDate"], row["RecipientFirstName"],
                  row["RecipientLastName"], _email_of(row), "2"]
        for position, section in enumerate(instrument.sections):
            for question in section.questions:
                value = row["answers"].get(question.id)
                if question.type is QuestionType.multiple:
                    chosen = set(value or [])
                    record += ["1" if c.code in chosen else "0" for c in instrument.choices_of(question)]
                else:
                    record.append(_cell(value))
            record.append("2" if finished or position == 0 else "0")
        records.append(record)
    return _csv_bytes(records, line_end="\n")


def generic_csv(instrument: Instrument, rows: list[dict[str, Any]]) -> bytes:
    """A table someone assembled in French-Canadian Excel: ';'-separated, Windows-1252, decimal
    commas, concept ids as headers, several codes in one cell joined by commas."""
    header = ["response_id", "started_at", "ended_at", "completed", "email", "ip_address"] + [q.id for q in instrument.questions]
    records = [header]
    for row in rows:
        record = [row["ResponseId"], row["StartDate"], row["EndDate"], "oui" if row["Finished"] == "1" else "non",
                  row["RecipientEmail"], row["IPAddress"]]
        for question in instrument.questions:
            value = row["answers"].get(question.id)
            cell = _cell(value)
            record.append(cell.replace(".", ",") if question.type is QuestionType.numeric else cell)
        records.append(record)
    return _csv_bytes(records, encoding="cp1252", delimiter=";")


def qualtrics_xlsx(instrument: Instrument, rows: list[dict[str, Any]]) -> bytes:
    """Qualtrics' Excel export: the three header rows of the CSV, numbers as numbers."""
    text = qualtrics_csv(instrument, rows).decode("utf-8-sig")
    return xlsx_bytes(list(csv.reader(io.StringIO(text, newline=""))), "Sheet0", header_rows=3)


def surveymonkey_xlsx(instrument: Instrument, rows: list[dict[str, Any]]) -> bytes:
    return xlsx_bytes(surveymonkey_records(instrument, rows), "Sheet", header_rows=2)


def xlsx_bytes(records: list[list[str]], sheet: str, header_rows: int) -> bytes:
    """A workbook with one sheet, the same bytes every time (fixed dates inside the zip too)."""
    from openpyxl import Workbook

    book = Workbook()
    book.properties.created = book.properties.modified = dt.datetime(2025, 1, 1)
    table = book.active
    table.title = sheet
    for number, record in enumerate(records):
        table.append([_typed(v) if number >= header_rows else v for v in record])
    buffer = io.BytesIO()
    book.save(buffer)
    return _fixed_zip(buffer.getvalue())


def _typed(value: str) -> Any:
    if re.fullmatch(r"-?[1-9]\d{0,14}|0", value):
        return int(value)
    if re.fullmatch(r"-?\d+\.\d+", value):
        return float(value)
    return value


def _fixed_zip(data: bytes) -> bytes:
    """openpyxl stamps the save time into the zip entries and docProps/core.xml: both are fixed."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2025-01-01T00:00:00Z", content)
            info = zipfile.ZipInfo(item.filename, date_time=(2025, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, content)
    return out.getvalue()


# Export format name -> (writer, file suffix).
WRITERS: dict[str, tuple[Callable[[Instrument, list[dict[str, Any]]], bytes], str]] = {
    "qualtrics": (qualtrics_csv, ".csv"),
    "qualtrics-xlsx": (qualtrics_xlsx, ".xlsx"),
    "surveymonkey": (surveymonkey_csv, ".csv"),
    "surveymonkey-xlsx": (surveymonkey_xlsx, ".xlsx"),
    "limesurvey": (limesurvey_csv, ".csv"),
    "googleforms": (googleforms_csv, ".csv"),
    "kobo": (kobo_csv, ".csv"),
    "redcap": (redcap_csv, ".csv"),
    "csv": (generic_csv, ".csv"),
}

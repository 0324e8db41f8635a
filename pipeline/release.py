"""`consult release`: the open data release beside the public report (reports/_site/data/).

What is in it:
- `<INDICATOR_ID>.csv`: one tidy table per indicator, every wave, overall and every group of every
  breakdown, exactly the disclosure-controlled figures the report shows (suppressed cells empty,
  with the reason);
- `gaps.csv` (each group against everyone else) and `changes.csv` (each wave against the previous
  one): one tidy table each, for every indicator;
- `indicators.csv`, `scores.csv` and `breakdowns.csv`: the catalogue, what each score it names is
  made of (questions, wording, points, scaling) and the groupings, to read the tables by;
- `datapackage.json` (Frictionless), `CITATION.cff`, `README.md`, `release.json` (what was
  released from what) and `SHA256SUMS` (every other file's checksum).

Values are read only from the warehouse's published_* views, where suppressed cells (decided by
pipeline/disclosure.py) already carry no number. The release is built in a staging folder and
swapped in only when the disclosure audit passes over the staged files too, so a refused release
leaves the previous one as it was. Settings (title, version, date, licence) live in
surveys/release.yaml; nothing depends on the clock, so the same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml
from pydantic import BaseModel, ConfigDict, field_validator

from pipeline.config import Paths
from pipeline.instrument import parse_yaml, read_yaml_model

SETTINGS_FILE = "release.yaml"
RELEASE_FOLDER = "data"  # under the site: reports/_site/data/
RELEASE_JSON = "release.json"
CHECKSUMS = "SHA256SUMS"
SYNTHETIC_MARK = "SYNTHETIC"
DECIMALS = 6  # fixed: the same figure always prints the same way
# Spreadsheets run a cell starting with these as a formula (CSV injection, OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ReleaseError(ValueError):
    """A release that cannot be built (bad settings, failed audit, unlabelled synthetic data)."""


class NothingToRelease(ReleaseError):
    """The warehouse holds no survey responses yet."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Licence(Strict):
    name: str  # SPDX identifier, e.g. CC-BY-4.0
    title: str
    url: str


class Contact(Strict):
    name: str
    email: str | None = None


class ReleaseSettings(Strict):
    title: str
    publisher: str
    version: str
    date: dt.date
    url: str
    licence: Licence
    contact: Contact

    @field_validator("version", mode="before")
    @classmethod
    def _quoted_version(cls, value: object) -> object:
        # Unquoted, YAML reads 2025.10 as the number 2025.1: refuse rather than guess.
        if not isinstance(value, str):
            raise ValueError(f'write the version as quoted text (e.g. version: "2025.1"), not {value!r}')
        return value


def settings_file(paths: Paths) -> Path:
    return paths.surveys / SETTINGS_FILE


def release_dir(paths: Paths) -> Path:
    return paths.site / RELEASE_FOLDER


def release_settings(paths: Paths) -> ReleaseSettings:
    """surveys/release.yaml; errors name the file and the field."""
    settings, _raw = read_yaml_model(settings_file(paths), ReleaseSettings, ReleaseError, "release settings",
                                     "title, publisher, version, date, url, licence and contact")
    return settings


def read_release(paths: Paths) -> dict | None:
    """The built release's release.json (version, date, waves, inputs_key, inputs, audit, files),
    or None when no release is built."""
    try:
        return json.loads((release_dir(paths) / RELEASE_JSON).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def release_current(paths: Paths) -> bool:
    """The built release was made from the current inputs (its key) and holds exactly the files its
    SHA256SUMS lists, unchanged: building it again would write the same bytes, so a re-run with
    nothing new leaves it as it is."""
    release, folder = read_release(paths), release_dir(paths)
    if release is None or release.get("inputs_key") != release_key(paths) or not (folder / CHECKSUMS).is_file():
        return False
    listed = {}
    for line in (folder / CHECKSUMS).read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {p.name for p in folder.iterdir()}
    return present == {*listed, CHECKSUMS} and all(
        (folder / name).is_file() and _sha256((folder / name).read_bytes()) == digest for name, digest in listed.items())


def release_key(paths: Paths) -> str:
    """What the release depends on, as one hash: everything that leaves the warehouse (as for the
    report's key), every definition under surveys/ (release.yaml included) and this module."""
    from pipeline.report import hash_files, hash_published

    digest = hashlib.sha256(b"release")
    hash_published(paths, digest)
    hash_files(paths, digest, [*sorted(paths.surveys.rglob("*.yaml")), Path(__file__)])
    return digest.hexdigest()


# --- the tables ---------------------------------------------------------------------------------
# (column, Frictionless type, description). The order is the order of the CSV columns.

Field = tuple[str, str, str]
STATUS = ("published", "suppressed")

_GROUP_FIELDS: list[Field] = [
    ("indicator_id", "string", "The indicator's stable id (see indicators.csv); the same id anchors the figure in the report."),
    ("wave", "integer", "Consultation year."),
    ("breakdown", "string", "How respondents are grouped: 'all' for everyone, otherwise a breakdown id (see breakdowns.csv)."),
    ("group", "string", "The group's code within its breakdown ('all' for everyone)."),
    ("group_label", "string", "The group's name."),
]
_STATUS_FIELDS: list[Field] = [
    ("status", "string", "'published', or 'suppressed' to protect respondents (then every number in the row is empty)."),
    ("suppression_reason", "string", "Why the row is suppressed; empty when published."),
]
INDICATOR_FIELDS: list[Field] = [
    *_GROUP_FIELDS,
    ("n", "integer", "Respondents in the group who are counted: the denominator."),
    ("count", "integer", "Respondents to whom the indicator applies: the numerator (percentages only; empty for scores)."),
    ("value", "number", "The figure: a percentage of respondents (0 to 100) or an average score (0 to 100), see unit."),
    ("ci_low", "number", "Lower end of the 95% confidence interval of value."),
    ("ci_high", "number", "Upper end of the 95% confidence interval of value."),
    ("unit", "string", "'%' (percentage of respondents) or 'score 0-100' (an average score)."),
    *_STATUS_FIELDS,
]
GAP_FIELDS: list[Field] = [
    *_GROUP_FIELDS,
    ("n", "integer", "Respondents in the group who are counted."),
    ("count", "integer", "Respondents in the group to whom the indicator applies (percentages only)."),
    ("value", "number", "The group's figure (as in the indicator's own table)."),
    ("rest_n", "integer", "Everyone else in the breakdown who is counted."),
    ("rest_count", "integer", "Everyone else to whom the indicator applies (percentages only)."),
    ("rest_value", "number", "Everyone else's figure."),
    ("gap", "number", "The group's figure minus everyone else's: percentage points, or score points."),
    ("gap_low", "number", "Lower end of the 95% interval of the gap (Newcombe for percentages, Welch for scores)."),
    ("gap_high", "number", "Upper end of the 95% interval of the gap."),
    ("unit", "string", "'percentage points' or 'score points'."),
    ("statement", "string", "Whether the interval leaves out zero, in words."),
    *_STATUS_FIELDS,
]
CHANGE_FIELDS: list[Field] = [
    *_GROUP_FIELDS,
    ("previous_wave", "integer", "The earlier consultation year compared with."),
    ("comparability", "string", "'comparable', 'comparable_with_caveat' or 'not_comparable' (then change is empty)."),
    ("comparability_note", "string", "What differs between the two years' questions, in words."),
    ("n", "integer", "Respondents counted in wave."),
    ("value", "number", "The figure in wave."),
    ("previous_n", "integer", "Respondents counted in previous_wave."),
    ("previous_value", "number", "The figure in previous_wave."),
    ("change", "number", "value minus previous_value: percentage points, or score points."),
    ("change_low", "number", "Lower end of the 95% interval of the change (Newcombe for percentages, Welch for scores)."),
    ("change_high", "number", "Upper end of the 95% interval of the change."),
    ("unit", "string", "'percentage points' or 'score points'."),
    ("statement", "string", "An increase or decrease beyond chance variation, noise, or not comparable, in words."),
    *_STATUS_FIELDS,
]
CATALOGUE_FIELDS: list[Field] = [
    ("indicator_id", "string", "The indicator's stable id: its table is <indicator_id>.csv."),
    ("title", "string", "The indicator's name."),
    ("domain", "string", "precarity, disrespect, resources, drift or wellbeing."),
    ("kind", "string", "'proportion' (a percentage of respondents) or 'mean' (an average score)."),
    ("unit", "string", "'%' or 'score 0-100'."),
    ("definition", "string", "What the indicator measures, in plain language."),
    ("population", "string", "Who is counted, in plain language."),
    ("population_rule", "string", "The denominator as a rule, with question ids and answer codes."),
    ("condition_rule", "string", "The numerator as a rule (percentages only)."),
    ("score", "string", "The score averaged (average scores only): its questions, their points and the 0-100 "
     "scaling are in scores.csv."),
    ("questions", "string", "The questions and scores the rules name (ids, comma-separated). A score (e.g. "
     "epi_score) is made of several questions: scores.csv lists them with their wording and points."),
    ("breakdowns", "string", "The breakdowns the indicator is shown by (comma-separated)."),
    ("min_n", "integer", "The indicator's smallest reportable group (the suppression rules apply on top)."),
    ("waves", "string", "Years with figures."),
    ("comparability", "string", "How the years compare."),
    ("caveats", "string", "What to keep in mind when reading the figures."),
]
SCORE_FIELDS: list[Field] = [
    ("score", "string", "The score's id, as indicators.csv names it (columns score and questions, and the rules)."),
    ("title", "string", "The score's name."),
    ("item", "string", "One question the score is made of (question id); one row per question."),
    ("wording", "string", "The question as asked (English), year by year when the wording changed."),
    ("points", "string", "The points each answer code gives, and the answers not counted (as no answer); "
     "year by year when they changed."),
    ("waves", "string", "Years whose questionnaire asked the question (comma-separated)."),
    ("item_max", "number", "The most points one question gives."),
    ("min_items", "integer", "The fewest questions someone must answer to have a score."),
    ("scaling", "string", "How the points become a score from 0 to 100, partial answers included, in words."),
    ("definition", "string", "What the score measures and how, in plain language."),
]
BREAKDOWN_FIELDS: list[Field] = [
    ("breakdown", "string", "The breakdown id used in the tables."),
    ("title", "string", "The breakdown's name."),
    ("definition", "string", "How respondents are grouped."),
    ("groups", "string", "How each group is formed, in words."),
]

_ESTIMATES_SQL = """
    SELECT e.indicator_id, e.wave, e.breakdown, e.group_code AS "group", e.group_label, e.n, e.count,
           e.estimate AS value, e.ci_low, e.ci_high, c.unit, e.suppressed, e.suppression
    FROM published_estimates e JOIN indicator_catalogue c USING (indicator_id)
"""
_GAPS_SQL = """
    SELECT g.indicator_id, g.wave, g.breakdown, g.group_code AS "group", g.group_label, g.n, g.count,
           g.estimate AS value, g.rest_n, g.rest_count, g.rest_estimate AS rest_value, g.gap, g.gap_low,
           g.gap_high, CASE c.kind WHEN 'proportion' THEN 'percentage points' ELSE 'score points' END AS unit,
           g.statement, g.suppressed, g.suppression
    FROM published_gaps g JOIN indicator_catalogue c USING (indicator_id)
"""
_CHANGES_SQL = """
    SELECT h.indicator_id, h.wave, h.breakdown, h.group_code AS "group", h.group_label, h.previous_wave,
           h.comparability, h.comparability_note, h.n, h.estimate AS value, h.previous_n,
           h.previous_estimate AS previous_value, h.change, h.change_low, h.change_high,
           CASE c.kind WHEN 'proportion' THEN 'percentage points' ELSE 'score points' END AS unit,
           h.statement, h.suppressed, h.suppression
    FROM published_changes h JOIN indicator_catalogue c USING (indicator_id)
"""
_SCORES_SQL = """
    SELECT score, title, item, wording, points, waves, item_max, min_items, scaling, definition
    FROM indicator_scores ORDER BY sort_order
"""
_CATALOGUE_SQL = """
    SELECT indicator_id, title, domain, kind, unit, definition, population, population_rule, condition_rule,
           value AS score, questions, breakdowns, min_n, waves, comparability, caveats
    FROM indicator_catalogue
"""


def _records(con, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _with_status(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The views already hold no number for a suppressed row; here it only gets its words.
    return [{**{k: v for k, v in r.items() if k not in ("suppressed", "suppression")},
             "status": STATUS[1] if r["suppressed"] else STATUS[0],
             "suppression_reason": r["suppression"] if r["suppressed"] else None} for r in rows]


def _scores(con) -> list[dict[str, Any]]:
    # A warehouse made before indicator_scores existed, opened read-only, has no such table.
    present = con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'indicator_scores'").fetchall()
    return _records(con, _SCORES_SQL) if present else []


def _used_scores(scores: list[dict[str, Any]], catalogue: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items of the scores some indicator names (as its score or among its questions)."""
    named = {name.strip() for info in catalogue for name in [str(info["score"] or ""),
                                                              *str(info["questions"] or "").split(",")]}
    return [row for row in scores if row["score"] in named]


def _group_rank(code: str) -> tuple:
    # 'all' first, answer codes in questionnaire (numeric) order, merged groups after.
    return (-1, 0, "") if code == "all" else (0, int(code), "") if code.isdigit() else (1, 0, code)


class Tables:
    """Everything the release publishes, read once from the warehouse's published views."""

    def __init__(self, paths: Paths) -> None:
        from pipeline.load import connect

        with connect(paths.warehouse, read_only=True) as con:
            self.catalogue = sorted(_records(con, _CATALOGUE_SQL), key=lambda r: r["indicator_id"])
            self.breakdowns = _records(con, "SELECT breakdown, title, definition, groups FROM indicator_breakdowns "
                                            "ORDER BY sort_order, breakdown")
            self.scores = _used_scores(_scores(con), self.catalogue)
            self.estimates = _with_status(_records(con, _ESTIMATES_SQL))
            self.gaps = _with_status(_records(con, _GAPS_SQL))
            self.changes = _with_status(_records(con, _CHANGES_SQL))
            self.inputs = [{"file": f, "wave": w, "sha256": s} for f, w, s in con.execute(
                "SELECT file_name, wave, file_sha256 FROM load_ledger ORDER BY wave, file_name, file_sha256").fetchall()]
            self.synthetic = bool(con.execute("SELECT coalesce(bool_or(synthetic), false) FROM load_ledger").fetchall()[0][0])
        self.waves = sorted({i["wave"] for i in self.inputs})
        self._breakdown_rank = {b["breakdown"]: i for i, b in enumerate(self.breakdowns)}

    def sorted(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows in a fixed order: indicator, wave, breakdown ('all' first, then as in the definitions), group."""
        rank = self._breakdown_rank

        def order(r: dict[str, Any]) -> tuple:
            breakdown = -1 if r["breakdown"] == "all" else rank.get(r["breakdown"], len(rank))
            return (r["indicator_id"], r["wave"], r.get("previous_wave", 0), breakdown, r["breakdown"],
                    _group_rank(r["group"]))

        return sorted(rows, key=order)


# --- writing ------------------------------------------------------------------------------------


def neutralise(text: str) -> str:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe."""
    return "'" + text if text.startswith(FORMULA_START) else text


def _cell(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""  # missing (suppressed, or not applicable): never 0
    if kind == "integer":
        return str(int(value))
    if kind == "number":
        text = f"{float(value):.{DECIMALS}f}"
        return text[1:] if text.startswith("-") and text.strip("-0.") == "" else text  # no "-0.000000"
    return neutralise(str(value))


def csv_bytes(fields: list[Field], rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow([name for name, _, _ in fields])
    for row in rows:
        writer.writerow([_cell(row.get(name), kind) for name, kind, _ in fields])
    return out.getvalue().encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _schema(fields: list[Field], key: list[str] | None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "fields": [{"name": name, "type": kind, "description": text}
                   | ({"constraints": {"enum": list(STATUS)}} if name == "status" else {})
                   for name, kind, text in fields],
        "missingValues": [""],
    }
    return schema | ({"primaryKey": key} if key else {})


def _resource(name: str, path: str, title: str, description: str, data: bytes, fields: list[Field] | None = None,
              key: list[str] | None = None) -> dict[str, Any]:
    resource = {"name": name, "path": path, "title": title, "description": description,
                "hash": f"sha256:{_sha256(data)}", "bytes": len(data), "encoding": "utf-8"}
    if fields is None:
        return resource | {"format": path.rsplit(".", 1)[-1], "mediatype": "text/plain"}
    return resource | {"profile": "tabular-data-resource", "format": "csv", "mediatype": "text/csv",
                       "dialect": {"delimiter": ",", "lineTerminator": "\r\n", "header": True},
                       "schema": _schema(fields, key)}


def _catalogue_description(info: dict[str, Any]) -> str:
    parts = [info["definition"], f"Who is counted: {info['population']}."]
    if info.get("caveats"):
        parts.append(f"Read with care: {info['caveats']}")
    return " ".join(str(p).strip() for p in parts)


def _synthetic_title(title: str, synthetic: bool) -> str:
    return f"{SYNTHETIC_MARK} DATA, NOT REAL RESULTS: {title}" if synthetic else title


def citation_text(settings: ReleaseSettings, synthetic: bool) -> str:
    """How to cite the release, in one line (the report's "how to cite" reads the same settings)."""
    return (f"{settings.publisher} ({settings.date.year}). {_synthetic_title(settings.title, synthetic)} (open data), "
            f"version {settings.version} ({settings.date.isoformat()}). {settings.url}. "
            f"Licence: {settings.licence.title} ({settings.licence.name}).")


def readme_text(settings: ReleaseSettings, tables: Tables, rules) -> str:
    from pipeline.charts import SYNTHETIC_NOTICE

    waves = ", ".join(str(w) for w in tables.waves)
    synthetic = f"**{SYNTHETIC_MARK} DATA.** {SYNTHETIC_NOTICE}\n\n" if tables.synthetic else ""
    return f"""# {_synthetic_title(settings.title, tables.synthetic)} (open data)

{synthetic}Version {settings.version}, released {settings.date.isoformat()} by {settings.publisher}.
The report: {settings.url}

## What the data are

The figures of the report, as tables: every indicator of the {settings.publisher} consultation of
peer supporters in Ontario ({waves}), for all respondents and for every group of every breakdown,
with the number of respondents, the 95% confidence interval and whether the figure is published.

- `<INDICATOR_ID>.csv`: one table per indicator (e.g. `PREC-01.csv`): every year, every group.
- `gaps.csv`: each group against everyone else in its breakdown, for every indicator and year.
- `changes.csv`: each year against the previous year with the indicator, for every indicator.
- `indicators.csv`: what each indicator measures, who is counted, the questions and rules used.
- `scores.csv`: what each score is made of (e.g. `epi_score`, named in `indicators.csv`): its
  questions, their wording, the points of each answer, and how the points become 0 to 100.
- `breakdowns.csv`: how respondents are grouped.
- `datapackage.json`: a Frictionless Data Package describing every table and column.
- `CITATION.cff`: how to cite the data, for reference managers.
- `release.json`: the version, the survey files it was made from (by checksum) and every file.
- `SHA256SUMS`: the SHA-256 checksum of every other file (check with `sha256sum -c SHA256SUMS`).

Files: CSV, UTF-8, comma-separated, one header row. Numbers have {DECIMALS} decimals; an empty
cell means no figure (suppressed, or not applicable), never zero.

## Read with care

- **A convenience sample.** Peer supporters chose to answer; the respondents are not a random
  sample of peer supporters in Ontario, so the figures describe those who answered. The intervals
  show chance variation only, not the bias of who chose to answer.
- **Suppression.** To protect respondents, a figure is not published (status `suppressed`, its
  numbers empty, the reason given) when its group has fewer than {rules.min_group_n} respondents,
  when fewer than {rules.min_cell} of them answered one way or the other, when the group is
  under the indicator's own minimum, or when it could otherwise be worked out from the figures
  that are published (complementary suppression). Gaps and changes built from a suppressed figure
  are suppressed too.
- **Comparisons across years** hold only where `changes.csv` says `comparable` (or
  `comparable_with_caveat`: read its note).
- **Spreadsheet safety.** A text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
  return starts with an apostrophe (`'`) here, so a spreadsheet never runs it as a formula.
  Remove that apostrophe to get the original text. Numbers are never changed.

## Licence

{settings.licence.title} ({settings.licence.name}): {settings.licence.url}.
You may share and adapt the data for any purpose, giving appropriate credit.

## How to cite

{citation_text(settings, tables.synthetic)}

A figure: add its indicator id (e.g. PREC-01) and the year; the report's figure with that id is
at {settings.url}#<INDICATOR_ID>.

Questions: {settings.contact.name}{f" <{settings.contact.email}>" if settings.contact.email else ""}.
"""


def citation_cff(settings: ReleaseSettings, tables: Tables) -> str:
    """CITATION.cff (Citation File Format 1.2.0)."""
    data = {
        "cff-version": "1.2.0",
        "message": "If you use these data, please cite them as below.",
        "type": "dataset",
        "title": _synthetic_title(settings.title, tables.synthetic) + " (open data)",
        "authors": [{"name": settings.publisher}],
        "version": settings.version,
        "date-released": settings.date.isoformat(),
        "license": settings.licence.name,
        "url": settings.url,
        "abstract": ("Indicators of precarity, disrespect, resource gaps, drift and wellbeing among peer "
                     f"supporters in Ontario, {', '.join(str(w) for w in tables.waves)}, with suppression of "
                     "small groups." + (f" {SYNTHETIC_MARK}: invented respondents, for testing." if tables.synthetic else "")),
        "keywords": ["peer support", "Ontario", "survey", "open data"],
        "contact": [{"name": settings.contact.name} | ({"email": settings.contact.email} if settings.contact.email else {})],
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def datapackage(settings: ReleaseSettings, tables: Tables, resources: list[dict[str, Any]]) -> dict[str, Any]:
    from pipeline.charts import SYNTHETIC_NOTICE

    description = (f"The figures of the report '{settings.title}' ({settings.publisher}) as tables: indicators "
                   "for all respondents and every group, with confidence intervals; suppressed figures are "
                   "empty, with the reason. A convenience sample: see README.md.")
    if tables.synthetic:
        description = f"{SYNTHETIC_MARK} DATA. {SYNTHETIC_NOTICE} {description}"
    waves = ", ".join(str(w) for w in tables.waves)
    return {
        "name": "peerworks-consultation",
        "title": _synthetic_title(settings.title, tables.synthetic) + " (open data)",
        "description": description,
        "version": settings.version,
        "created": f"{settings.date.isoformat()}T00:00:00Z",
        "homepage": settings.url,
        "licenses": [{"name": settings.licence.name, "title": settings.licence.title, "path": settings.licence.url}],
        "contributors": [{"title": settings.publisher, "role": "publisher"}],
        "sources": [{"title": f"{settings.publisher} consultation of peer supporters, {waves}: "
                              "de-identified survey responses" + (" (synthetic)" if tables.synthetic else ""),
                     "path": settings.url}],
        "keywords": ["peer support", "Ontario", "survey", "open data"],
        "resources": resources,
    }


def figure_files(tables: Tables) -> dict[str, bytes]:
    """The release's data tables (CSV): every figure, the catalogue, scores and breakdowns they are read
    by. What a version's citation pins: they depend on the warehouse only, not on the settings."""
    return {name: data for name, data, _resource in _tables(tables)}


def _tables(tables: Tables) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """Each data table of the release: file name, bytes, data package resource."""
    for info in tables.catalogue:
        ind = str(info["indicator_id"])
        rows = tables.sorted([r for r in tables.estimates if r["indicator_id"] == ind])
        name = f"{ind}.csv"
        if Path(name).name != name or name.startswith("."):
            raise ReleaseError(f"indicator id {ind!r} cannot name a file")
        data = csv_bytes(INDICATOR_FIELDS, rows)
        yield name, data, _resource(ind.lower(), name, f"{ind}: {info['title']}", _catalogue_description(info),
                                    data, INDICATOR_FIELDS, ["wave", "breakdown", "group"])
    tidy = [
        ("gaps", "Gaps: each group against everyone else", "For every indicator, year and group: the group's "
         "figure, everyone else's, and the gap between them with its 95% interval.", GAP_FIELDS,
         tables.sorted(tables.gaps), ["indicator_id", "wave", "breakdown", "group"]),
        ("changes", "Changes since the previous year", "For every indicator, year and group present in both "
         "years: the change since the previous year with the indicator, its 95% interval and comparability.",
         CHANGE_FIELDS, tables.sorted(tables.changes), ["indicator_id", "wave", "breakdown", "group"]),
        ("indicators", "The indicator catalogue", "What each indicator measures, who is counted, the questions "
         "and rules used, and how the years compare.", CATALOGUE_FIELDS, tables.catalogue, ["indicator_id"]),
        ("scores", "The scores", "What each score the indicators name is made of: one row per question, with "
         "its wording, the points of each answer, and how the points become a score from 0 to 100.", SCORE_FIELDS,
         tables.scores, ["score", "item"]),
        ("breakdowns", "The breakdowns", "How respondents are grouped in the tables.", BREAKDOWN_FIELDS,
         tables.breakdowns, ["breakdown"]),
    ]
    for name, title, description, fields, rows, primary in tidy:
        data = csv_bytes(fields, rows)
        yield f"{name}.csv", data, _resource(name, f"{name}.csv", title, description, data, fields, primary)


def write_release(folder: Path, settings: ReleaseSettings, tables: Tables, key: str, rules) -> None:
    """Every file of the release into `folder` (empty), in an order where each checksum is final."""
    files: dict[str, bytes] = {}
    resources: list[dict[str, Any]] = []
    for name, data, resource in _tables(tables):
        files[name] = data
        resources.append(resource)
    files["README.md"] = readme_text(settings, tables, rules).encode("utf-8")
    files["CITATION.cff"] = citation_cff(settings, tables).encode("utf-8")
    resources += [_resource("readme", "README.md", "About these data", "What the data are, caveats, licence and "
                            "how to cite.", files["README.md"]),
                  _resource("citation", "CITATION.cff", "Citation", "How to cite the data (Citation File Format "
                            "1.2.0).", files["CITATION.cff"])]
    files["datapackage.json"] = _json(datapackage(settings, tables, resources))
    files[RELEASE_JSON] = _json({
        "version": settings.version, "date": settings.date.isoformat(), "waves": tables.waves,
        "synthetic": tables.synthetic, "inputs_key": key, "inputs": tables.inputs, "audit": "passed",
        "files": [{"path": p, "sha256": _sha256(files[p]), "bytes": len(files[p])} for p in sorted(files)],
    })
    files[CHECKSUMS] = "".join(f"{_sha256(files[p])}  {p}\n" for p in sorted(files)).encode("utf-8")
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def unlabelled_synthetic(folder: Path) -> list[str]:
    """The files of a synthetic release that do not say so where a reader looks first."""
    package = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    citation = parse_yaml((folder / "CITATION.cff").read_text(encoding="utf-8"))
    said = {"README.md": SYNTHETIC_MARK in (folder / "README.md").read_text(encoding="utf-8"),
            "datapackage.json (description)": SYNTHETIC_MARK in str(package.get("description", "")),
            "CITATION.cff (title)": SYNTHETIC_MARK in str(citation.get("title", ""))}
    return [name for name, ok in said.items() if not ok]


def build_release(paths: Paths, audit=None, progress: Callable[[str], None] = lambda _m: None) -> Path:
    """Write the open data release into reports/_site/data/ and return that folder.

    `audit` is an AuditReport the caller has just run on the current outputs (as `consult run`
    does after rendering); without one, the audit runs here, over the staged release too. Refuses
    (ReleaseError, nothing changed) when the audit fails, when there is nothing to release, or
    when synthetic data would not be labelled as such, or when its version was published with other
    figures (VersionPublished)."""
    from pipeline.audit import audit_file, run_audit
    from pipeline.disclosure import load_rules
    from pipeline.render import _staging_dir, _swap_in

    settings = release_settings(paths)
    if audit is not None and not audit.passed:
        raise ReleaseError(_refusal(audit, paths, audit_file))
    target = release_dir(paths)
    if audit is not None and release_current(paths):  # the audit just passed over these very files
        progress(f"open data release {settings.version} ({settings.date.isoformat()}) unchanged: {target}")
        return target
    tables = Tables(paths)
    if not tables.inputs:
        raise NothingToRelease(f"{paths.warehouse}: no survey responses loaded, nothing to release")
    check_version(paths, tables)
    site_existed = paths.site.is_dir()
    staging = _staging_dir(target)
    try:
        write_release(staging, settings, tables, release_key(paths), load_rules(paths.disclosure_file))
        if tables.synthetic and (missing := unlabelled_synthetic(staging)):
            raise ReleaseError(f"the data are synthetic but the release does not say {SYNTHETIC_MARK} in "
                               f"{', '.join(missing)}: not released")
        if audit is None:
            progress("running the disclosure audit over the outputs and the new release")
            audit = run_audit(paths)
            if not audit.passed:
                raise ReleaseError(_refusal(audit, paths, audit_file))
        if audit.exceptions:  # a wave's raw exports purged: released, but never silently (docs/runbook.md, 9)
            progress(f"warning: the disclosure audit {audit.verdict}: the files released now were not searched "
                     "for that wave's identifiers (the warehouse they come from was, before the purge)")
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not site_existed:
            with contextlib.suppress(OSError):
                paths.site.rmdir()  # made only to hold the staging folder
        raise
    progress(f"open data release {settings.version} ({settings.date.isoformat()}) written: {target}")
    return target


def _refusal(audit, paths: Paths, audit_file) -> str:
    failed = ", ".join(c.name for c in audit.checks if not c.passed)
    return (f"the disclosure audit failed ({failed}; see {audit_file(paths)}): no data released, "
            "the previous release (if any) is unchanged")


# --- publication: a published version keeps its figures -----------------------------------------
# Advocates cite figures by the release's version. Once a version is published (recorded by
# `consult mark-published`), a report or release with other figures under the same version is
# refused: the version in surveys/release.yaml must change first, so a citation always names the
# numbers it quotes. Recorded in the warehouse (release_publications), beside the loads it describes.

PUBLICATIONS = "release_publications"


class VersionPublished(ReleaseError):
    """surveys/release.yaml names a version already published with other figures."""

    def __init__(self, message: str, version: str = "", published_on: str = "", suggestion: str = "") -> None:
        super().__init__(message)
        self.version, self.published_on, self.suggestion = version, published_on, suggestion


def figures_sha256(files: dict[str, bytes]) -> str:
    """One hash of the release's data tables (their names and bytes)."""
    return _sha256("".join(f"{_sha256(files[name])}  {name}\n" for name in sorted(files)).encode("utf-8"))


def publications(paths: Paths) -> dict[str, dict[str, Any]]:
    """Every version recorded as published: its release date, the day it was recorded, the hash of
    its figures and of each data table. Empty without a warehouse or before any was recorded."""
    from pipeline.load import connect

    if not paths.warehouse.exists():
        return {}
    with connect(paths.warehouse, read_only=True) as con:
        if not con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ?", [PUBLICATIONS]).fetchall():
            return {}
        rows = con.execute(f"SELECT version, release_date, published_on, figures_sha256, tables FROM {PUBLICATIONS} "
                           "ORDER BY published_on, version").fetchall()
    return {version: {"release_date": date.isoformat(), "published_on": on.isoformat(), "figures_sha256": digest,
                      "tables": json.loads(tables)} for version, date, on, digest, tables in rows}


def check_version(paths: Paths, tables: Tables | None = None) -> None:
    """Refuse (VersionPublished) when the version in surveys/release.yaml was published with other
    figures than the warehouse's: before anything is rendered or released, so nothing changes."""
    settings = release_settings(paths)
    published = publications(paths).get(settings.version)
    if published is None:
        return
    files = figure_files(tables if tables is not None else Tables(paths))
    if figures_sha256(files) == published["figures_sha256"]:
        return
    before = published["tables"]
    changed = sorted(name for name in {*files, *before}
                     if before.get(name) != (_sha256(files[name]) if name in files else None))
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    suggestion = _next_version(settings.version, _latest_wave(paths))
    raise VersionPublished(
        f"{settings_file(paths)}: version {settings.version} was published on {published['published_on']} "
        f"(recorded by `consult mark-published`) and the figures have changed since ({len(changed)} data "
        f"table(s): {shown}). A citation of version {settings.version} must keep pointing at the numbers it "
        f"quotes: set a new version in surveys/release.yaml ({suggestion}) and its release "
        "date, then run the command again. Nothing was rendered or released: reports/_site/ is as it was.",
        settings.version, published["published_on"], suggestion)


def _next_version(version: str, latest_wave: int | None = None) -> str:
    """The suggestion in a refusal: a later year's first version when the warehouse now holds a
    wave after the version's year (as `consult status` suggests for a new wave), else the last
    number of the version plus one (a correction)."""
    head, _, last = version.rpartition(".")
    if latest_wave is not None and head.isdigit() and latest_wave > int(head):
        return f'e.g. version: "{latest_wave}.1"'
    return f'e.g. version: "{head}.{int(last) + 1}"' if head and last.isdigit() else 'a version not used before'


def _latest_wave(paths: Paths) -> int | None:
    from pipeline.load import connect

    with connect(paths.warehouse, read_only=True) as con:
        (latest,) = con.execute("SELECT max(wave) FROM load_ledger").fetchone()
    return None if latest is None else int(latest)


@dataclass
class Publication:
    version: str
    release_date: str
    published_on: str
    synthetic: bool
    already: bool  # the version was recorded before, with these very figures


def mark_published(paths: Paths, today: dt.date | None = None) -> Publication:
    """Record the release in reports/_site/data/ as published: its version, release date, today's
    date and the hash of its data tables, read from the files as they are. Refuses, recording
    nothing, when no release is built, when it was built from other data or settings than the
    current ones, or when a file of it changed since it was built."""
    from pipeline.load import connect, ensure_schema

    release = read_release(paths)
    folder = release_dir(paths)
    if release is None:
        raise ReleaseError(f"{folder}: no release built yet, nothing to mark. Build it with `consult report`, "
                           "publish reports/_site/, then run `consult mark-published`.")
    settings = release_settings(paths)
    version = str(release.get("version", ""))
    if version != settings.version or release.get("inputs_key") != release_key(paths):
        raise ReleaseError(f"{folder / RELEASE_JSON}: the release there (version {version}) was not built from the "
                           "current data and definitions, so it may not be what gets published. Build it again "
                           "with `consult report` (or `consult release`), publish that, then mark it.")
    files: dict[str, bytes] = {}
    for entry in release.get("files", []):
        path = folder / entry["path"]
        data = path.read_bytes() if path.is_file() else None
        if data is None or _sha256(data) != entry["sha256"]:
            raise ReleaseError(f"{path}: {'missing' if data is None else 'changed'} since the release was built "
                               "(SHA256SUMS no longer holds). Build it again with `consult release`, publish that, "
                               "then mark it.")
        if entry["path"].endswith(".csv"):
            files[entry["path"]] = data
    digest = figures_sha256(files)
    recorded = publications(paths).get(version)
    publication = Publication(version, str(release.get("date", "")), (today or dt.date.today()).isoformat(),
                              bool(release.get("synthetic")), recorded is not None)
    if recorded is not None:
        if recorded["figures_sha256"] != digest:  # check_version refuses such a build: only a hand-made one
            raise VersionPublished(f"{folder}: version {version} was recorded as published on "
                                   f"{recorded['published_on']} with other figures; set a new version in "
                                   "surveys/release.yaml and build the release again.")
        publication.published_on = recorded["published_on"]
        return publication
    tables = json.dumps({name: _sha256(data) for name, data in sorted(files.items())}, sort_keys=True)
    with connect(paths.warehouse) as con:
        ensure_schema(con)  # adds the table to a warehouse made before it existed
        con.execute(f"INSERT INTO {PUBLICATIONS} VALUES (?, ?, ?, ?, ?)",
                    [version, release.get("date"), publication.published_on, digest, tables])
    return publication

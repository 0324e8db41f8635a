"""`consult wave new`: start next year's wave from the previous one's questionnaire.

The new wave's files are copies of the previous wave's (comments kept), with only what belongs to
one year changed: the wave number, the year in the title and in the header comments, and the
collection window (same days, moved to the new year). Concept ids are kept, so the indicators stay
comparable. Everything else is for a person to check: the command prints a checklist.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Paths
from pipeline.instrument import (
    Instrument,
    InstrumentError,
    available_waves,
    instrument_path,
    load_instrument,
    parse_yaml,
)
from pipeline.wave_rules import RULES_FILE

ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


class WaveError(ValueError):
    """A wave that cannot be started; the message says why and what to do instead."""


@dataclass(frozen=True)
class NewWave:
    wave: int
    source: int
    folder: Path
    files: list[Path]
    checklist: list[str]


def new_wave(paths: Paths, wave: int, source: int) -> NewWave:
    """Copy surveys/<source>/ to surveys/<wave>/ with the year-specific fields updated, check that
    the new instrument loads with every definition, and return what to review. On any failure
    nothing is left behind."""
    folder = paths.surveys / str(wave)
    source_file = instrument_path(paths.surveys, source)
    if folder.exists():
        raise WaveError(f"{folder}: wave {wave} already exists; nothing was changed. Edit the files in it, or "
                        f"remove the folder first to start it again from wave {source}.")
    if not source_file.exists():
        known = ", ".join(str(w) for w in available_waves(paths.surveys)) or "none"
        raise WaveError(f"{source_file}: wave {source} has no instrument to start from (waves with one: {known}). "
                        f"Choose one with --from.")
    if wave <= source:
        raise WaveError(f"wave {wave} must come after the wave it starts from ({source})")
    previous = load_instrument(source_file)
    try:
        folder.mkdir(parents=True)
        written = [_copy(path, folder / path.name, source, wave)
                   for path in sorted(source_file.parent.iterdir()) if path.is_file()]
        _check(paths, previous, load_instrument(instrument_path(paths.surveys, wave)), wave)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return NewWave(wave, source, folder, written, checklist(paths, wave, source))


def _copy(path: Path, target: Path, source: int, wave: int) -> Path:
    if path.suffix.lower() in (".yaml", ".yml"):
        text = updated_text(path.read_text(encoding="utf-8"), source, wave)
        if path.name == RULES_FILE:  # a change of who is in scope is the source wave's, not the new one's
            text = without_block(text, "population_change")
            text = _example_since(text, source, wave)
        target.write_text(text, encoding="utf-8")
    else:
        shutil.copyfile(path, target)
    return target


def _example_since(text: str, source: int, wave: int) -> str:
    """The comments' example `since:` names the wave before the file's own: before the new wave's."""
    return "".join(re.sub(rf"\bsince: {source - 1}\b", f"since: {wave - 1}", line) if line.lstrip().startswith("#")
                   else line for line in text.splitlines(keepends=True))


def updated_text(text: str, source: int, wave: int) -> str:
    """The YAML text with the year-specific lines moved from `source` to `wave`: the header comment
    block, `wave:`, the `title:` block and the `collection_window:` block. Other lines are kept as
    written (a year in a question's wording or a source citation is not the wave's year)."""
    lines = text.splitlines(keepends=True)
    block = ""  # the top-level key whose indented lines we are in
    header = True
    for number, line in enumerate(lines):
        header = header and (line.startswith("#") or not line.strip())
        if line[:1].isalpha():
            block = line.split(":", 1)[0]
        if header or block in ("wave", "title"):
            lines[number] = line.replace(str(source), str(wave))
        elif block == "collection_window":
            lines[number] = ISO_DATE.sub(lambda m: _shift(m, wave - source), line)
    return "".join(lines)


def without_block(text: str, key: str) -> str:
    """The YAML text without the top-level `key:` and its indented lines."""
    kept, inside = [], False
    for line in text.splitlines(keepends=True):
        if line[:1] and not line[:1].isspace():  # a top-level line (key or comment) ends the block
            inside = line.split(":", 1)[0] == key
        if not inside:
            kept.append(line)
    return "".join(kept)


def _shift(match: re.Match, years: int) -> str:
    day = dt.date(int(match[1]), int(match[2]), int(match[3]))
    try:
        return day.replace(year=day.year + years).isoformat()
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year + years, day=28).isoformat()


def _check(paths: Paths, previous: Instrument, new: Instrument, wave: int) -> None:
    """The new wave is the old one moved by a year, and every definition accepts it."""
    from pipeline.anonymity import load_checked_privacy_rules, privacy_path
    from pipeline.indicators import load_checked_catalogue
    from pipeline.wave_rules import load_wave_rules

    where = new.source
    if new.wave != wave:
        raise WaveError(f"{where}: the `wave:` line could not be updated to {wave}; nothing was kept")
    if [q.id for q in new.questions] != [q.id for q in previous.questions]:
        raise InstrumentError(f"{where}: the concept ids changed while copying; nothing was kept")
    if new.collection_window.start.year == previous.collection_window.start.year:
        raise WaveError(f"{where}: the collection window could not be moved to {wave}; nothing was kept")
    load_wave_rules(new)
    load_checked_catalogue(paths.indicators_file, paths.surveys)
    load_checked_privacy_rules(privacy_path(paths), paths.surveys)


def checklist(paths: Paths, wave: int, source: int) -> list[str]:
    """What a person must review before the new wave goes live, most urgent first."""
    import yaml

    living_wage = parse_yaml(paths.living_wage_file.read_text(encoding="utf-8")) or {}
    rate_years = sorted(int(y) for y in (living_wage.get("rates") or {}))
    lw_rule = (living_wage.get("rate_year_for_wave") or {}).get(wave)

    def rel(path: Path) -> Path:  # shown relative to the project, as staff see it
        return path.relative_to(paths.root)

    items = []
    if lw_rule is None:
        items.append(
            f"REQUIRED before loading wave {wave}: say which living-wage year it uses. In "
            f"{rel(paths.living_wage_file)}, add the year's rates under `rates:` if the Ontario Living Wage "
            f"Network published new ones (latest there: {rate_years[-1] if rate_years else 'none'}), then add "
            f"`{wave}: {{year: YEAR}}` under `rate_year_for_wave:`.")
    else:
        items.append(f"Living wage: wave {wave} uses the {lw_rule['year']} rates "
                     f"({rel(paths.living_wage_file)}); update them if newer rates are published.")
    items += [
        f"Collection window: {rel(instrument_path(paths.surveys, wave))} has the same days as {source}, moved to "
        f"{wave}. Set the real start and end dates (responses outside them are quarantined).",
        f"Questions: if any question's wording, answers, items, who is asked it (`show_if`) or its `unit` "
        f"changed from {source}, change them in the instrument (keep each question's `id`), and say whether each "
        f"indicator using it still compares under `comparability:` in {rel(paths.indicators_file)} (the run stops "
        "until you do).",
        "Platform: build or copy the questionnaire on the survey platform so its column names match the "
        "instrument's `aliases`, and set the export settings in docs/runbook.md (e.g. Qualtrics: anonymize "
        "responses, numeric values).",
        f"Checks: review {rel(paths.surveys / str(wave) / 'rules.yaml')} (cross-question rules, duplicate and "
        "data-quality thresholds).",
        _release_item(paths, wave),
    ]
    return items


def _release_item(paths: Paths, wave: int) -> str:
    """The release settings to renew: the report and its open data are cited by their version, date and url."""
    from pipeline.release import ReleaseError, release_settings, settings_file

    try:
        settings = release_settings(paths)
        now = f" (now version {settings.version}, dated {settings.date.isoformat()}, {settings.url})"
    except ReleaseError:
        now = ""
    return (f"Release: before publishing wave {wave}'s report, set its version (e.g. \"{wave}.1\"), publication date "
            f"and url in {settings_file(paths).relative_to(paths.root)}{now}: citations of the report and its open "
            "data name them.")

"""French text for the French report: every indicator and every breakdown group has it, and a new
indicator (or group) without French is named in a clear error."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pytest
import yaml

from builders import warehouse_rows as published
from conftest import loaded_copy
from pipeline.translations import TranslationError, french_catalogue, missing_french

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def surveys(tmp_path: Path) -> Path:
    copy = tmp_path / "surveys"
    shutil.copytree(REPO / "surveys", copy)
    return copy


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_every_indicator_and_breakdown_group_has_french() -> None:
    assert missing_french(REPO / "surveys" / "indicators.yaml", REPO / "surveys") == []


def test_the_french_catalogue_covers_the_english_one_id_for_id() -> None:
    english = yaml.safe_load((REPO / "surveys" / "indicators.yaml").read_text(encoding="utf-8"))
    french = french_catalogue(REPO / "surveys" / "indicators.yaml", REPO / "surveys")
    assert set(french["indicators"]) >= {ind["id"] for ind in english["indicators"]}
    assert set(french["breakdowns"]) >= set(english["breakdowns"])
    # Translated, not copied: no French title is the English one (a few words are the same in both).
    same = [i["id"] for i in english["indicators"] if french["indicators"][i["id"]]["title"] == i["title"]]
    assert same == []


def test_a_new_indicator_without_french_is_named(surveys: Path) -> None:
    def add(data: dict) -> None:
        new = dict(data["indicators"][0], id="PREC-99", title="A new measure")
        new.pop("comparability", None)
        data["indicators"].append(new)

    edit_yaml(surveys / "indicators.yaml", add)
    problems = missing_french(surveys / "indicators.yaml", surveys)
    assert "indicators.fr.yaml: indicator PREC-99 has no French title" in problems
    assert "indicators.fr.yaml: indicator PREC-99 has no French definition" in problems
    with pytest.raises(TranslationError, match="PREC-99 has no French title"):
        french_catalogue(surveys / "indicators.yaml", surveys)


def test_a_group_label_without_french_is_named(surveys: Path) -> None:
    edit_yaml(surveys / "indicators.fr.yaml", lambda d: d["breakdowns"]["disability"]["labels"].pop(2))
    problems = missing_french(surveys / "indicators.yaml", surveys)
    assert problems == ["indicators.fr.yaml: breakdown disability has no French label for group 2"]


def test_a_missing_caveat_translation_is_named(surveys: Path) -> None:
    edit_yaml(surveys / "indicators.fr.yaml", lambda d: d["indicators"]["WELL-03"].pop("caveats"))
    assert missing_french(surveys / "indicators.yaml", surveys) == [
        "indicators.fr.yaml: indicator WELL-03 has no French caveats"]


# --- the French site (`consult report --lang fr`), rendered once by the offline engine -------------

import json  # noqa: E402
import re  # noqa: E402
from html.parser import HTMLParser  # noqa: E402

import duckdb  # noqa: E402

from pipeline.config import Paths  # noqa: E402
from pipeline.report import build_report  # noqa: E402

NBSP = "\u00a0"


class _Page(HTMLParser):
    """Every id, the <html lang>, headings' text, figure captions' text and links of one page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.lang = ""
        self.headings: dict[str, str] = {}
        self.captions: list[str] = []
        self.links: list[dict[str, str]] = []
        self._open: tuple[str, str] | None = None  # (tag, id) being read
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "html":
            self.lang = a.get("lang", "")
        if tag == "a":
            self.links.append(a)
        if tag in ("h2", "h3", "figcaption") and self._open is None:
            self._open, self._text = (tag, a.get("id", "")), []

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag == self._open[0]:
            text = " ".join("".join(self._text).split())
            if tag == "figcaption":
                self.captions.append(text)
            else:
                self.headings[self._open[1]] = text
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)


def figure_ids(page: _Page) -> set[str]:
    # Indicator anchors (PREC-01), charts, their figures and captions, and the data tables.
    return {i for i in page.ids if re.match(r"^([A-Z]+-\d+$|(figure-|caption-)?chart-|table-|tables-)", i)}


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory, loaded_template: Path) -> tuple[Paths, list[str]]:
    root = tmp_path_factory.mktemp("french") / "project"
    paths = loaded_copy(loaded_template, root)
    build_report(paths, engine="offline", french=True)
    said: list[str] = []
    build_report(paths, engine="offline", french=True, progress=said.append)  # nothing changed
    return paths, said


def page(paths: Paths, name: str) -> _Page:
    return _Page((paths.site / name).read_text(encoding="utf-8"))


def test_the_french_pages_have_the_same_figure_ids_as_the_english(sites) -> None:
    paths, _ = sites
    for name in ("index.html", "methods.html"):
        english, french = page(paths, name), page(paths, f"fr/{name}")
        assert figure_ids(english) == figure_ids(french)
        assert english.headings.keys() == french.headings.keys()  # every section anchor, same ids
    # 37 indicators, each with its anchor on both pages.
    indicators = yaml.safe_load((REPO / "surveys" / "indicators.yaml").read_text(encoding="utf-8"))["indicators"]
    assert {i["id"] for i in indicators} <= figure_ids(page(paths, "fr/index.html"))


def test_the_french_page_says_it_is_french_and_its_headings_are_french(sites) -> None:
    paths, _ = sites
    french = page(paths, "fr/index.html")
    assert french.lang == "fr"
    assert page(paths, "index.html").lang == "en"
    assert french.headings["precarity"] == "Précarité"
    assert french.headings["key-figures"] == "Chiffres clés"
    titles = yaml.safe_load((REPO / "surveys" / "indicators.fr.yaml").read_text(encoding="utf-8"))["indicators"]
    assert french.headings["PREC-03"] == "Payé sous le salaire de subsistance" == titles["PREC-03"]["title"]
    assert page(paths, "fr/methods.html").headings["privacy"] == "Protéger les répondants"


def test_a_suppressed_cell_says_masque_with_its_reason_in_french(sites) -> None:
    paths, _ = sites
    text = (paths.site / "fr" / "index.html").read_text(encoding="utf-8")
    assert published(paths, "SELECT count(*) FROM published_estimates WHERE suppressed")[0][0] > 0
    assert '<td class="suppressed">masqué<a class="note-ref"' in text
    assert '<td class="suppressed">suppressed' not in text
    # The small-cell reasons, as table notes, in French only (which of them the page needs depends on
    # the data: at least one of them does).
    rules = yaml.safe_load((REPO / "surveys" / "disclosure.yaml").read_text(encoding="utf-8"))
    group, cell = rules["min_group_n"], rules["min_cell"]
    english = [f"Fewer than {group} respondents in the group.", f"Fewer than {cell} respondents answered one way."]
    french = [f"Moins de {group} répondants dans le groupe.", f"Moins de {cell} répondants ont répondu d'une même façon."]
    english_page = html.unescape((paths.site / "index.html").read_text(encoding="utf-8"))
    french_page = html.unescape(text)
    shown = [f for e, f in zip(english, french) if e in english_page]
    assert shown and all(f in french_page for f in shown)
    assert not any(e.lower().rstrip(".") in french_page for e in english)


def test_french_numbers_use_a_decimal_comma_and_a_space_before_percent(sites) -> None:
    paths, _ = sites
    text = (paths.site / "fr" / "index.html").read_text(encoding="utf-8")
    [(estimate, n)] = published(paths, "SELECT estimate, n FROM published_estimates WHERE indicator_id = 'PREC-03' "
                                       "AND breakdown = 'all' AND wave = 2025")
    whole, decimal = f"{estimate:.1f}".split(".")
    assert f"<strong>{whole},{decimal}{NBSP}%</strong>" in text  # e.g. 46,1 %
    [(big,)] = published(paths, "SELECT max(n) FROM published_estimates WHERE n >= 1000")
    assert f"{big // 1000}{NBSP}{big % 1000:03d}" in text  # e.g. 1 311
    assert f"{big // 1000},{big % 1000:03d}" not in text


def test_no_english_words_leak_into_the_french_chart_captions(sites) -> None:
    paths, _ = sites
    captions = page(paths, "fr/index.html").captions
    assert len(captions) >= 37
    for english in ("by Ontario Health region", "Bars show", "The same figures as a table", "respondents",
                    "suppressed", "Ontario as a whole", "95% interval"):
        assert not [c for c in captions if english in c], english
    assert all("par région de Santé Ontario" in c or "par année de consultation" in c for c in captions)


def test_each_page_links_to_its_translation(sites) -> None:
    paths, _ = sites
    for name in ("index.html", "methods.html"):
        to_french = [a for a in page(paths, name).links if a.get("hreflang") == "fr"]
        to_english = [a for a in page(paths, f"fr/{name}").links if a.get("hreflang") == "en"]
        assert [(a["href"], a["lang"]) for a in to_french] == [(f"fr/{name}", "fr")]
        assert [(a["href"], a["lang"]) for a in to_english] == [(f"../{name}", "en")]


def test_the_french_site_is_recorded_and_not_rendered_again_when_nothing_changed(sites) -> None:
    paths, said = sites
    manifest = json.loads((paths.site / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["fr"]["pages"] == ["fr/index.html", "fr/methods.html"]
    assert manifest["fr"]["inputs_key"] == manifest["inputs_key"]
    assert "the French report is up to date: not rendered again" in said
    assert not [m for m in said if m.startswith("render")]
    # No PDF was asked for: no page links to one.
    for name in ("index.html", "fr/index.html"):
        assert not [a for a in page(paths, name).links if a["href"].endswith(".pdf")]


def test_every_reason_a_figure_is_hidden_for_has_its_french() -> None:
    # Every reason pipeline/disclosure.py can store, as a reader of the French page would meet it.
    from pipeline import disclosure
    from pipeline.translations import french_phrase, report_strings

    phrases = report_strings(REPO / "surveys" / "report_strings.yaml")["phrases"]
    small = disclosure.SMALL_CELL.format(n=5)
    stored = [disclosure.SMALL_GROUP.format(n=11), small, disclosure.BELOW_MIN_N.format(n=30),
              disclosure.COMPLEMENTARY, disclosure.HIDDEN_GROUP, disclosure.HIDDEN_OVERALL,
              disclosure.HIDDEN_REST.format(reason=small), disclosure.HIDDEN_NO_GROUP.format(reason=small),
              disclosure.HIDDEN_LINKED_NO_GROUP, disclosure.HIDDEN_WAVE.format(wave=2024)]
    for english in stored:
        french = french_phrase(english, phrases)
        assert french != english and "fewer" not in french and "figure" not in french, english


def _methods_items(paths: Paths, name: str) -> list[str]:
    """Each list item of a methods page as plain text (tags removed, typographic apostrophes as typed)."""
    return _methods_items_of((paths.site / name).read_text(encoding="utf-8"))


def _question(concept: str) -> dict:
    """A question of the 2025 instrument, read as plain YAML."""
    data = yaml.safe_load((REPO / "surveys" / "2025" / "instrument.yaml").read_text(encoding="utf-8"))
    return next(q for s in data["sections"] for q in s["questions"] if q["id"] == concept)


def test_the_methods_rules_use_question_wording_and_answer_labels_in_both_languages(sites) -> None:
    paths, _ = sites
    role, region = _question("eligible_role"), _question("oh_region")
    paid = next(c for c in role["choices"] if str(c["code"]) == "1")
    quotes = {"en": ("“", "”"), "fr": ("« ", " »")}
    definitions = yaml.safe_load((REPO / "surveys" / "indicators.yaml").read_text(encoding="utf-8"))
    no_caveat = [i["id"] for i in definitions["indicators"] if not str(i.get("caveats") or "").strip()]
    assert no_caveat  # the catalogue has indicators without a caveat
    for lang, name in (("en", "methods.html"), ("fr", "fr/methods.html")):
        items = _methods_items(paths, name)
        left, right = quotes[lang]
        denominators = [i for i in items if i.startswith(("Denominator (n):", "Dénominateur (n) :"))]
        assert len(denominators) == len(definitions["indicators"])
        assert not [d for d in denominators if "eligible_role" in d or " is 1" in d]
        wording = f"{left}{role['label'][lang]}{right}".replace("\u2019", "'")
        assert all(wording in d for d in denominators), denominators[0]
        assert any(f"{left}{paid['label'][lang]}{right}" in d for d in denominators)
        groups = next(i for i in items if i.startswith(("Ontario Health region.", "Région de Santé Ontario.")))
        assert "oh_region" not in groups
        if lang == "en":
            assert f"One group per answer to {left}{region['label']['en']}{right}" in groups
        page_text = " ".join(items)
        assert "no particular caveat" not in page_text and "aucune mise en garde particulière" not in page_text
        assert "règle technique en anglais" not in page_text
    # An indicator without a caveat has no "read with care" line at all.
    english = (paths.site / "methods.html").read_text(encoding="utf-8")
    section = english.split(f'id="{no_caveat[0]}"', 1)[1].split("<h3", 1)[0]
    assert "Read with care" not in section


def test_a_score_without_its_french_definition_is_named(surveys: Path) -> None:
    edit_yaml(surveys / "indicators.fr.yaml", lambda d: d["scores"]["burnout_score"].pop("definition"))
    assert missing_french(surveys / "indicators.yaml", surveys) == [
        "indicators.fr.yaml: score burnout_score has no French definition"]


def test_the_methods_page_says_which_questions_make_up_a_score_and_how(sites) -> None:
    # "Questions used: epi_score" told a reader nothing: an average score is cited with the
    # questions it is made of and how they are scored, in both languages.
    paths, _ = sites
    definitions = yaml.safe_load((REPO / "surveys" / "indicators.yaml").read_text(encoding="utf-8"))
    items = definitions["scores"]["epi_score"]["items"]
    assert len(items) == 10
    for lang, name, made, used in (("en", "methods.html", "How the score is made:", "Questions used:"),
                                   ("fr", "fr/methods.html", "Comment le score est établi :", "Questions utilisées :")):
        text = (paths.site / name).read_text(encoding="utf-8")
        for indicator_id in ("PREC-01", "PREC-07"):  # the average score, and a band of it
            section = text.split(f'id="{indicator_id}"', 1)[1].split("<h3", 1)[0]
            lines = _methods_items_of(section)
            how = [line for line in lines if line.startswith(made)]
            assert len(how) == 1, (lang, indicator_id)
            assert ("ten questions" if lang == "en" else "dix questions") in how[0]
            questions = next(line for line in lines if line.startswith(used))
            assert "epi_score" not in questions
            for item in items:
                wording = " ".join(str(_question(item)["label"][lang]).replace("\u2019", "'").split())
                assert f"{item} ({wording})" in questions, (lang, indicator_id, item)


def _methods_items_of(section: str) -> list[str]:
    """Each list item of (part of) a page as plain text (tags removed, typographic apostrophes as typed)."""
    import html as html_module

    items = re.findall(r"<li[^>]*>(.*?)</li>", section, re.S)
    return [" ".join(html_module.unescape(re.sub(r"<[^>]+>", "", i)).replace("\u2019", "'").split()) for i in items]


def test_french_quotation_marks_never_part_from_their_words(sites) -> None:
    # « and » stay on the line of the words they enclose: the space inside them does not break.
    paths, _ = sites
    for name in ("fr/index.html", "fr/methods.html"):
        text = (paths.site / name).read_text(encoding="utf-8")
        assert text.count("«") >= 3 and text.count("«") == text.count("»"), name
        assert re.findall(r"«\s", text) == ["«\u00a0"] * text.count("«"), name
        assert re.findall(r"\s»", text) == ["\u00a0»"] * text.count("»"), name


def test_consult_report_in_french_names_a_missing_translation_without_a_traceback(loaded) -> None:
    """An analyst adds an indicator for a new question (runbook step 1) and renders the French report:
    the missing French is named in one message, as every known error is, not under a traceback."""
    import subprocess
    import sys

    def add(data: dict) -> None:
        new = dict(next(i for i in data["indicators"] if i["id"] == "PREC-04"), id="PREC-99", title="A new measure")
        new.pop("comparability", None)
        data["indicators"].append(new)

    edit_yaml(loaded.indicators_file, add)
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "--root", str(loaded.root), "report", "--lang", "fr"],
                            capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode != 0
    assert "error: the French report cannot be rendered" in result.stderr
    assert "indicators.fr.yaml: indicator PREC-99 has no French title" in result.stderr
    assert "Traceback" not in result.stderr

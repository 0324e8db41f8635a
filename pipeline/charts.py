"""Charts, tables and sentences for the public report (reports/*.qmd).

Everything here reads the warehouse READ-ONLY and only through what may be published:
`published_estimates` (suppressed cells carry no number), `indicator_catalogue` and `load_ledger`.
Every function returns text (markdown or an HTML fragment), so the same calls work under the real
Quarto CLI and under the offline renderer. Text that comes from the data is always escaped.
"""

from __future__ import annotations

import functools
import html
import math
import os
import re
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pipeline.config import HOLD_WAREHOUSE_VARIABLE
from pipeline.plotly_bundle import check_traces, page_bundle

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
BLUE = "#0072B2"
VERMILLION = "#D55E00"
INK = "#1a1a1a"
MUTED = "#4d4d4d"
GRID = "#d9d9d9"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
# One toolbar button (save as PNG): every button is a tab stop, and zoom or pan tools add nothing to
# charts whose values are labelled and listed in tables.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtons": [["toImage"]]}

BREAKDOWNS = {"all": "All respondents", "oh_region": "Ontario Health region", "work_setting": "Work setting"}
# Indicator ids become HTML ids, anchors and file-safe chart ids: keep them plain.
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}#|~^$@])")
# The report's own words in English and French: the French report is the same calls with CONSULT_LANG=fr.
STRINGS_FILE = Path(__file__).resolve().parent.parent / "surveys" / "report_strings.yaml"
NBSP = "\u00a0"  # French numbers: 1 234 and 12,3 % never break across lines


@functools.cache
def _report_strings() -> dict[str, Any]:
    from pipeline.translations import report_strings

    return report_strings(STRINGS_FILE)


def report_lang() -> str:
    """"fr" when the engine renders the French report (CONSULT_LANG=fr), else "en"."""
    return "fr" if os.environ.get("CONSULT_LANG", "en").strip().lower().startswith("fr") else "en"


def ui(key: str, **values: Any) -> str:
    """One of the report's own words or sentences (surveys/report_strings.yaml), in the report's language."""
    return _report_strings()["strings"][key][report_lang()].format(**values)


def _word(section: str, key: str) -> str:
    entry = _report_strings()[section].get(key)
    return entry[report_lang()] if entry else key


def site_root() -> str:
    """The site's top folder seen from a page: the French pages sit in fr/."""
    return "../" if report_lang() == "fr" else ""


DOMAINS = {domain: names["en"] for domain, names in _report_strings()["domains"].items()}  # in report order
SYNTHETIC_NOTICE = _report_strings()["strings"]["synthetic_notice"]["en"]  # the open data release quotes it


# ---------------------------------------------------------------------------------------------
# Data access: read-only, one short-lived connection per query (the pipeline may write between).


def warehouse_path() -> Path:
    default = Path(__file__).resolve().parent.parent / "data" / "warehouse" / "consultation.duckdb"
    return Path(os.environ.get("CONSULT_WAREHOUSE", str(default)))


def query(sql: str, params: list[Any] | None = None, warehouse: Path | None = None) -> pd.DataFrame:
    """A read-only query of the warehouse (the one named by CONSULT_WAREHOUSE unless given)."""
    path = warehouse or warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet; run the pipeline before rendering the report")
    stat = path.stat()
    return _cached_query(sql, tuple(params or ()), str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns).copy()


@functools.lru_cache(maxsize=1024)
def _cached_query(sql: str, params: tuple, path: str, *file_identity: int) -> pd.DataFrame:
    """A page asks the same questions many times; the file's identity keys the cache, so a
    rewritten warehouse is read afresh. No connection stays open (a writer may come next), unless
    the page's kernel lives for that page only (HOLD_WAREHOUSE_VARIABLE: see _held_connection)."""
    if os.environ.get(HOLD_WAREHOUSE_VARIABLE) == "1":
        return _held_connection(path, *file_identity).execute(sql, list(params)).df()
    con = duckdb.connect(path, read_only=True)
    try:
        return con.execute(sql, list(params)).df()
    finally:
        con.close()


@functools.lru_cache(maxsize=4)
def _held_connection(path: str, *file_identity: int) -> duckdb.DuckDBPyConnection:
    """One read-only connection per warehouse file (its identity: a rewritten file gets its own).
    Opening the warehouse for each of a page's ~150 questions cost about 20 ms each (3 s a page): a
    kernel that runs one page and ends (the offline engine's) keeps one, closed with it. Not a
    kernel that may outlive the page (Quarto's, a notebook's): a writer may come next."""
    return duckdb.connect(path, read_only=True)


def _has_table(name: str) -> bool:
    found = query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ?", [name])
    return int(found["n"].iloc[0]) > 0


def catalogue() -> pd.DataFrame:
    """All indicators, in report order (domain order, then the catalogue's sort order)."""
    cat = query("SELECT * FROM indicator_catalogue")
    domain_rank = {d: i for i, d in enumerate(DOMAINS)}
    cat["_rank"] = cat["domain"].map(domain_rank).fillna(len(DOMAINS))
    return cat.sort_values(["_rank", "sort_order", "indicator_id"]).drop(columns="_rank").reset_index(drop=True)


def indicators(domain: str) -> list[str]:
    cat = catalogue()
    return [str(i) for i in cat.loc[cat["domain"] == domain, "indicator_id"]]


def indicator(indicator_id: str) -> dict[str, Any]:
    """One catalogue row as a dict; raises a clear error for an unknown id."""
    cat = query("SELECT * FROM indicator_catalogue WHERE indicator_id = ?", [indicator_id])
    if cat.empty:
        raise KeyError(f"{indicator_id}: not in indicator_catalogue")
    info = cat.iloc[0].to_dict()
    return _french_text().indicator(info, _comparability_pair, _population_pair) if report_lang() == "fr" else info


def _comparability_pair(before: int, after: int, status: str) -> str:
    return ui("comparability_pair", before=before, after=after, status=_word("comparability", status))


def _population_pair(before: int, after: int, status: str) -> str:
    """A change of who is in scope, as indicators.comparability_text says it in English."""
    return ui("population_pair", before=before, after=after, status=_word("comparability", status))


def _french_text():
    return _french_text_of(str(warehouse_path()))


@functools.cache
def _french_text_of(warehouse: str):
    """The French of the warehouse's English texts (one warehouse per render: cached)."""
    from pipeline.config import project_paths
    from pipeline.translations import FrenchText

    choices = {}
    if _has_table("choices"):  # answer labels, merged groups included; the latest wave's wins
        rows = query("SELECT concept, code, label_fr FROM choices WHERE label_fr IS NOT NULL ORDER BY wave")
        choices = {(str(c), str(k)): str(t) for c, k, t in zip(rows["concept"], rows["code"], rows["label_fr"])}
    paths = project_paths()
    return FrenchText(paths.indicators_file, paths.surveys, choices)


def _in_language(rows: pd.DataFrame) -> pd.DataFrame:
    """Published rows with their group labels and stored phrases (reasons, statements, notes) in the
    report's language. Columns are rebuilt from Python lists (pandas 3 keeps None as None)."""
    if report_lang() != "fr" or rows.empty:
        return rows
    from pipeline.translations import french_phrase

    french, phrases = _french_text(), _report_strings()["phrases"]
    rows = rows.copy()
    everyone = _report_strings()["all_respondents"]["fr"]
    rows["group_label"] = [french.labels.get((str(b), str(c)), everyone if b == "all" else label)
                           for b, c, label in zip(rows["breakdown"], rows["group_code"], rows["group_label"])]
    for column in ("suppression", "statement"):
        if column in rows:
            rows[column] = [None if _missing(v) else french_phrase(str(v), phrases) for v in rows[column]]
    if "comparability_note" in rows:
        rows["comparability_note"] = [None if _missing(v) else french.comparability_note(str(i), str(v))
                                      for i, v in zip(rows["indicator_id"], rows["comparability_note"])]
    return rows


def estimates(indicator_id: str) -> pd.DataFrame:
    """Published rows of one indicator, newest wave first, groups in questionnaire order."""
    est = query("SELECT * FROM published_estimates WHERE indicator_id = ?", [indicator_id])
    if est.empty:
        return est
    est["_b"] = est["breakdown"].map(_breakdown_rank()).fillna(1e9)
    est["_g"] = est["group_code"].map(_group_rank)
    order = ["wave", "_b", "breakdown", "_g", "group_label"]
    est = est.sort_values(order, ascending=[False, True, True, True, True])
    return _in_language(est.drop(columns=["_b", "_g"]).reset_index(drop=True))


def _breakdown_rank() -> dict[str, float]:
    # 'all' first, then the order of surveys/indicators.yaml's breakdowns when the warehouse has them.
    rank = {b: float(i) for i, b in enumerate(BREAKDOWNS)}
    if _has_table("indicator_breakdowns"):
        rows = query("SELECT breakdown, sort_order FROM indicator_breakdowns")
        rank.update({str(b): 1.0 + float(o) for b, o in zip(rows["breakdown"], rows["sort_order"])})
    return rank


def ledger() -> pd.DataFrame:
    return query("SELECT * FROM load_ledger ORDER BY wave, file_name")


def load_summary(warehouse: Path | None = None) -> pd.DataFrame:
    """Responses per wave and what became of them: counts only, nothing about anyone. A response
    read from several exports (a corrected re-export repeats the others) counts once, by its keyed
    response id, with the best of its outcomes (loaded, set aside, excluded, duplicate): the rows
    read from the files would count it once per file. Rows without a response id count each.
    The methods page's table (load_table); `consult run`'s summary prints the same figures."""
    from pipeline.load import RESPONSES_BY_WAVE

    return query(RESPONSES_BY_WAVE, warehouse=warehouse)


def coverage_md() -> str:
    """For "About these figures": the consultation years the report covers and the responses
    included in its figures, per year ("the consultation year 2025" when there is one)."""
    summary = load_summary()
    if summary.empty:
        return ""
    years = ", ".join(str(int(w)) for w in summary["wave"])
    if len(summary) == 1:
        return "\n" + ui("coverage_one", years=years, included=fmt_n(summary["loaded"].iloc[0])) + "\n"
    colon = " : " if report_lang() == "fr" else ": "
    included = "; ".join(f"{int(r.wave)}{colon}{fmt_n(r.loaded)}" for r in summary.itertuples())
    return "\n" + ui("coverage_many", years=years, included=included) + "\n"


def question_labels() -> dict[str, str]:
    """Concept id -> question wording (latest wave), when the warehouse describes its instruments."""
    if not _has_table("concepts"):
        return {}
    label = "coalesce(label_fr, label_en)" if report_lang() == "fr" else "label_en"
    rows = query(
        f"SELECT concept, {label} AS label FROM concepts"
        " QUALIFY row_number() OVER (PARTITION BY concept ORDER BY wave DESC) = 1"
    )
    return dict(zip(rows["concept"].astype(str), rows["label"].astype(str)))


def disclosure_rules() -> dict[str, Any]:
    """surveys/disclosure.yaml (the suppression thresholds), or {} when it cannot be read."""
    import yaml  # only the methods page needs it

    from pipeline.config import project_paths

    try:
        rules = yaml.safe_load(project_paths().disclosure_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return rules if isinstance(rules, dict) else {}


def render_engine() -> str:
    return os.environ.get("CONSULT_RENDER_ENGINE", "Quarto")


# ---------------------------------------------------------------------------------------------
# Small formatting helpers.


def _group_rank(code: Any) -> float:
    # 'all' first, then answer codes in numeric (questionnaire) order, other codes after.
    text = str(code)
    if text == "all":
        return -1.0
    return float(text) if text.isdigit() else 1e9


def _safe_id(indicator_id: str) -> str:
    if not _ID.match(str(indicator_id)):
        raise ValueError(f"{indicator_id!r}: indicator ids must be letters, digits, '-' or '_'")
    return str(indicator_id)


def esc(text: Any) -> str:
    """Escape data text for HTML (and so for raw HTML inside markdown)."""
    return html.escape("" if _missing(text) else str(text), quote=True)


def plot_text(text: Any) -> str:
    """Escape data text for plotly.js, which reads its texts as a little HTML: with <, > and & escaped
    no tag can open. Quotes stay as typed: plotly.js does not decode &quot;, it showed it literally."""
    return html.escape("" if _missing(text) else str(text), quote=False)


def md_text(text: Any) -> str:
    """Escape data text for markdown: HTML first, then markdown/pandoc punctuation ($ is math, @ a citation).

    Quotes stay as they are: markdown text needs no &#x27;, and escaping its '#' would print the entity."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape("" if _missing(text) else str(text), quote=False))


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, (list, dict, str)) and bool(pd.isna(value)))


def _suppressed(row: pd.Series | dict) -> bool:
    flag = row["suppressed"]
    return (not _missing(flag) and bool(flag)) or _missing(row["estimate"])


def _is_percent(info: dict[str, Any]) -> bool:
    return str(info.get("unit", "")).strip() == "%" or info.get("kind") == "proportion"


def fmt_number(value: float, decimals: int = 1) -> str:
    """1,234.5 in English, 1 234,5 in French (no-break space)."""
    value = value if round(value, decimals) != 0 else 0.0  # -0.04 prints 0.0, not -0.0
    text = f"{value:,.{decimals}f}"
    return text.replace(",", NBSP).replace(".", ",") if report_lang() == "fr" else text


def fmt_value(value: float, info: dict[str, Any]) -> str:
    return ui("percent", value=fmt_number(value)).replace(" ", NBSP) if _is_percent(info) else fmt_number(value)


def fmt_interval(row: pd.Series | dict, info: dict[str, Any]) -> str:
    if _missing(row["ci_low"]) or _missing(row["ci_high"]):
        return ui("not_available")
    return ui("interval", low=fmt_value(row["ci_low"], info), high=fmt_value(row["ci_high"], info))


def fmt_n(n: Any) -> str:
    return ui("not_shown") if _missing(n) else fmt_number(int(n), 0)


def _reason(row: pd.Series | dict) -> str:
    return ui("default_reason") if _missing(row.get("suppression")) else str(row["suppression"])


def _sentence(text: str) -> str:
    # Reasons are stored as phrases ("fewer than 10 respondents"); notes read as sentences.
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _latest_wave(est: pd.DataFrame) -> int | None:
    return None if est.empty else int(est["wave"].max())


def _overall(est: pd.DataFrame, wave: int) -> pd.Series | None:
    rows = est[(est["wave"] == wave) & (est["breakdown"] == "all")]
    return None if rows.empty else rows.iloc[0]


# ---------------------------------------------------------------------------------------------
# Markdown pieces (printed from `#| output: asis` cells).


def data_notice() -> str:
    """A prominent callout when the warehouse holds synthetic (or no) data; empty for real data."""
    led = ledger()
    if led.empty:
        return (
            f'\n::: {{.callout-warning .synthetic-banner title="{ui("no_data_title")}"}}\n'
            f"{ui('no_data_text')}\n:::\n"
        )
    if led["synthetic"].fillna(False).astype(bool).any():
        return (
            f'\n::: {{.callout-warning .synthetic-banner title="{ui("synthetic_title")}"}}\n'
            f"**{ui('synthetic_notice')}**\n:::\n"
        )
    return ""


def indicator_heading(indicator_id: str, level: int = 3) -> str:
    """Heading with a stable, citable anchor (the indicator id), plus who is counted."""
    ind = _safe_id(indicator_id)
    info = indicator(ind)
    return (
        f"\n{'#' * level} {md_text(info['title'])} {{#{ind}}}\n\n"
        + ui("indicator_line", id=ind, population=md_text(info["population"]), methods="methods.html") + "\n"
    )


def caveat(indicator_id: str) -> str:
    """The catalogue's caveat as a short "read with care" line, or nothing."""
    text = indicator(_safe_id(indicator_id)).get("caveats")
    if _missing(text) or not str(text).strip():
        return ""
    return f"\n*{ui('read_with_care')}* {md_text(str(text).strip())}\n"


def headline(indicator_id: str) -> str:
    """One plain sentence: the latest wave's Ontario-wide value, its n and 95% interval."""
    info = indicator(_safe_id(indicator_id))
    est = estimates(indicator_id)
    wave = _latest_wave(est)
    row = None if wave is None else _overall(est, wave)
    if row is None:
        return f"\n{ui('no_figure_yet')}\n"
    if _suppressed(row):
        return f"\n{ui('headline_suppressed', wave=wave, reason=md_text(_reason(row)))}\n"
    value, n = fmt_value(row["estimate"], info), fmt_n(row["n"])
    interval = ui("interval_95", interval=fmt_interval(row, info))
    if _is_percent(info):
        people = "" if _missing(row["count"]) else ui("headline_people", count=fmt_n(row["count"]))
        text = ui("headline_percent", wave=wave, value=value, n=n, people=people, interval=interval)
    else:
        text = ui("headline_score", wave=wave, value=value, n=n, interval=interval)
    return f"\n{text}{_previous(est, wave, info, _overall_change(indicator_id, wave))}\n"


def _overall_change(indicator_id: str, wave: int) -> pd.Series | None:
    """The Ontario-wide comparison of `wave` with the year before (published_changes), or None."""
    return _lookup(_comparisons("published_changes", indicator_id), wave=wave, breakdown="all")


def _previous(est: pd.DataFrame, wave: int, info: dict[str, Any], change: pd.Series | None = None) -> str:
    # The wave before, for context only: no claim that a change is real. Set side by side, two
    # figures read as a change: where the question changed, the sentence says whether they compare.
    earlier = est[(est["wave"] < wave) & (est["breakdown"] == "all")]
    if earlier.empty:
        return ""
    row = earlier.iloc[0]  # estimates() sorts newest first
    if _suppressed(row):
        return ui("previous_suppressed", wave=int(row["wave"]))
    values = dict(wave=int(row["wave"]), value=fmt_value(row["estimate"], info), n=fmt_n(row["n"]), latest=wave)
    status = None if change is None or int(change["previous_wave"]) != int(row["wave"]) else change["comparability"]
    if status == "not_comparable":
        return ui("previous_not_comparable", **values)
    note = "" if change is None or _missing(change["comparability_note"]) else str(change["comparability_note"]).strip()
    if status == "comparable_with_caveat" and note:
        return ui("previous_caveat", note=md_text(_sentence(note)), **values)
    return ui("previous_value", **values)


def key_figures() -> str:
    """The report's opening list: one sentence per domain (its first indicator), linked to its section."""
    cat = catalogue()
    items = []
    for domain in DOMAINS:
        ids = list(cat.loc[cat["domain"] == domain, "indicator_id"])
        if ids:
            info = indicator(ids[0])
            name = ui("key_figure", domain=md_text(_word("domains", domain)), title=md_text(info["title"]))
            items.append(f"- **{name}** {headline(ids[0]).strip()}"
                         f" [{ui('more_about')}](#{_safe_id(ids[0])})")
    return "\n" + "\n".join(items) + "\n" if items else f"\n{ui('no_figure')}\n"


def figure_footer(indicator_id: str, settings: Any) -> str:
    """What makes a figure citable: its suppression note, the CSV behind it (data/<ID>.csv in the open
    data release) and a "cite this figure" text. `settings` is pipeline.release.release_settings()."""
    ind = _safe_id(indicator_id)
    info = indicator(ind)
    est = estimates(ind)
    wave = _latest_wave(est)
    if wave is None:
        return ""
    latest = est[est["wave"] == wave]
    hidden = int(latest.apply(_suppressed, axis=1).sum())
    if hidden:
        note = ui("footer_hidden" if hidden > 1 else "footer_hidden_one", hidden=hidden, total=len(latest), wave=wave)
    else:
        note = ui("footer_none", wave=wave)
    return (
        f'<div class="figure-footer">\n<p class="suppression-note">{esc(note)}</p>\n'
        f'<p class="figure-links"><a href="{site_root()}data/{ind}.csv" download>{ui("download_csv")}</a>'
        f' · <a href="#{ind}">{ui("link_to_figure")}</a></p>\n'
        f'<p class="cite"><strong>{ui("cite_figure")}</strong> {esc(cite_text(ind, info["title"], wave, settings))}</p>\n'
        "</div>"
    )


def cite_text(indicator_id: str, title: Any, wave: int, settings: Any) -> str:
    """Plain-text citation: publisher, report title, wave, release version and date, figure id, URL#id."""
    return ui("cite_text", publisher=settings.publisher, year=settings.date.year, title=settings.title, wave=wave,
              version=settings.version, date=settings.date.isoformat(), id=indicator_id, figure=title,
              url=settings.url)


def report_citation(settings: Any) -> str:
    """How to cite the whole report (markdown)."""
    return "\n> " + ui("report_citation", publisher=md_text(settings.publisher), year=settings.date.year,
                       title=md_text(settings.title), version=md_text(settings.version),
                       date=settings.date.isoformat(), url=settings.url) + "\n"


def report_footer() -> str:
    """The page footer (markdown): the engine that rendered the report, and a link to the printable PDF
    when the report builder made one (it names it in CONSULT_PDF; the PDF itself does not link to it)."""
    pdf = os.environ.get("CONSULT_PDF", "").strip()
    link = "" if not pdf or for_print() else f' [{ui("pdf_link")}]({site_root()}{pdf}){{hreflang="en"}}'
    return f"\n::: {{.report-footer}}\n{ui('rendered_by', engine=md_text(render_engine()))}{link}\n:::\n"


def language_switch(page: str) -> str:
    """A link to the same page in the other language (HTML with lang and hreflang), none on paper."""
    if for_print():
        return ""
    if report_lang() == "fr":
        return f'<p class="language-switch"><a href="../{page}" lang="en" hreflang="en">English</a></p>'
    if not os.environ.get("CONSULT_FRENCH"):  # no French pages rendered: no link to nowhere
        return ""
    return f'<p class="language-switch"><a href="fr/{page}" lang="fr" hreflang="fr">Français</a></p>'


# ---------------------------------------------------------------------------------------------
# Charts (HTML fragments; plotly.js itself comes once per page from plotly_js()).


def plotly_js() -> str:
    """plotly.js inline, once per page, so pages work offline and self-contained: the basic bundle
    (bar, pie, scatter: all the charts draw) while it matches plotly.py, see pipeline/plotly_bundle.py.

    Nothing for the printable PDF, whose charts are static images."""
    if for_print():
        return ""
    return (
        '<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};</script>\n'
        f'<script type="text/javascript" charset="utf-8">{page_bundle().text}</script>'
    )


def _layout(height: int, **extra: Any) -> dict[str, Any]:
    return dict(
        template="none",
        height=height,
        font=dict(family=FONT, size=15, color=INK),
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        margin=dict(l=10, r=20, t=20, b=50),
        showlegend=False,
        hoverlabel=dict(font=dict(family=FONT, size=14)),
        **extra,
    )


def _axis_title(info: dict[str, Any]) -> str:
    return ui("axis_percent") if _is_percent(info) else ui("axis_score")


def _bar_axis_title(text: str) -> dict[str, Any]:
    """The value axis title of the bar charts, ending at the plot's right edge.

    plotly.js centres an axis title on the plot area, which the region names push to the right: on a
    phone the title ran past the chart and was cut. Anchored right, it grows leftwards under the names."""
    return dict(text=text, xref="paper", x=1, xanchor="right", yref="paper", y=0, yanchor="top",
                yshift=-28, showarrow=False)


def _hover(row: pd.Series, info: dict[str, Any]) -> str:
    return ui("hover", value=fmt_value(row["estimate"], info), interval=fmt_interval(row, info), n=fmt_n(row["n"]))


def for_print() -> bool:
    """True when the engine renders the printable PDF (it sets CONSULT_OUTPUT=pdf)."""
    return os.environ.get("CONSULT_OUTPUT", "html").strip().lower() == "pdf"


def chart_image(fig: go.Figure, div_id: str, label: str) -> str:
    """The chart as a static SVG (kaleido) in CONSULT_PDF_MEDIA, for print: an <img> with its text alternative."""
    import warnings

    import kaleido  # only the PDF needs a browser

    media = Path(os.environ.get("CONSULT_PDF_MEDIA", "pdf-figures")).resolve()
    media.mkdir(parents=True, exist_ok=True)
    kaleido.start_sync_server(headless=True, silence_warnings=True)  # once per kernel: ~0.2 s a chart after
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "kopts ignored when using a server": expected
        svg = fig.to_image(format="svg", width=900, height=int(fig.layout.height))
    target = media / f"{div_id}.svg"
    target.write_bytes(svg)
    return f'<img src="{esc(target)}" alt="{esc(label)}">'


def _figure_html(fig: go.Figure, div_id: str, label: str, caption: str) -> str:
    check_traces({trace.type for trace in fig.data}, f"chart {div_id}")
    plot = chart_image(fig, div_id, label) if for_print() else fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=PLOTLY_CONFIG,
        default_width="100%",
        default_height=f"{fig.layout.height}px",
    )
    # A labelled group, not role="img": plotly.js 4 draws its toolbar as real <button>s, which an
    # img role would hide from keyboard and screen-reader users (axe: nested-interactive).
    # The caption (and the data table) carries every value in words.
    return (
        f'<figure class="chart" id="figure-{div_id}" aria-labelledby="caption-{div_id}">\n'
        f'<div class="chart-plot" role="group" aria-label="{esc(label)}">\n{plot}\n</div>\n'
        f'<figcaption id="caption-{div_id}">{caption}</figcaption>\n</figure>'
    )


def _summary(rows: pd.DataFrame, info: dict[str, Any], name_col: str) -> str:
    parts = []
    for _, row in rows.iterrows():
        name = esc(row[name_col])
        if _suppressed(row):
            parts.append(ui("summary_hidden", name=name, mark=f'<span class="suppressed">{ui("suppressed")}</span>'))
        else:
            parts.append(ui("summary_value", name=name, value=esc(fmt_value(row["estimate"], info)),
                            n=esc(fmt_n(row["n"]))))
    return "; ".join(parts) + "."


LABEL_CHARS = 12  # a group name wider than this wraps (regions are 10 at most): on a phone it took the bars' room
ROW_PX, LINE_PX = 46, 18  # height of one bar's row, and of one line of its name
# At 320 CSS px a value label ("100,0 %" and its padding) takes 40 % of the value axis's length:
# past INSIDE_FROM (on the 0-115 axis) it does not fit after the interval, so it is drawn inside its
# bar, when the bar is solid up to INSIDE_ROOM; otherwise the axis is made long enough for it.
INSIDE_FROM, INSIDE_ROOM, LABEL_SHARE = 70.0, 50.0, 0.4


def _wrapped_label(name: Any) -> str:
    """A group name as plotly.js tick text: escaped, broken into lines of LABEL_CHARS at most.

    plotly.js never wraps tick labels, so one long name pushed the bars off a phone's screen. Quotes
    stay as they are: plotly.js shows &quot; literally, and with < and > escaped no tag can open."""
    text = "" if _missing(name) else str(name)
    lines = textwrap.wrap(text, LABEL_CHARS, break_long_words=True, break_on_hyphens=False) or [""]
    return "<br>".join(plot_text(line) for line in lines)


def _row_px(ticktext: list[str]) -> int:
    """Every row as tall as the longest name needs, so wrapped names never run into each other."""
    lines = max((t.count("<br>") + 1 for t in ticktext), default=1)
    return max(ROW_PX, LINE_PX * lines + 10)


# A bar's label is an annotation on an opaque backing (the bar's blue inside it, the page's white
# past it): plotly.js draws annotations above the dashed Ontario line, so the line is broken where
# it would cross a label, whatever the screen's width. Scatter text has no backing: the line ran
# through white labels inside the bars and dark ones past them.
LABEL_GAP, LABEL_PAD = 4, 2  # px between the interval and a label's backing; backing around the text


def _bar_label(group: str, x: float, text: str, inside: bool) -> dict[str, Any]:
    """One value label: inside the bar it ends where the interval starts, else it starts past it."""
    return dict(x=x, y=group, text=text, showarrow=False, borderpad=LABEL_PAD,
                xanchor="right" if inside else "left", xshift=-LABEL_GAP if inside else LABEL_GAP,
                bgcolor=BLUE if inside else "#ffffff", font=dict(size=14, color="#ffffff" if inside else INK))


def _suppressed_label(group: str, reason: str) -> dict[str, Any]:
    """The word "suppressed" where a hidden group's bar would start, its reason on hover."""
    return dict(x=0.0, y=group, text=ui("suppressed"), showarrow=False, borderpad=LABEL_PAD, xanchor="left",
                xshift=LABEL_GAP + 4, bgcolor="#ffffff", font=dict(size=14, color=MUTED, style="italic"),
                hovertext=reason)


def region_figure(indicator_id: str) -> go.Figure | None:
    """Bars by Ontario Health region, latest wave. Suppressed regions get a text label, never a bar."""
    info = indicator(_safe_id(indicator_id))
    est = estimates(indicator_id)
    wave = _latest_wave(est)
    if wave is None:
        return None
    rows = est[(est["wave"] == wave) & (est["breakdown"] == "oh_region")]
    if rows.empty:
        return None
    rows = rows.iloc[::-1]  # horizontal bars draw bottom-up: reverse to read top-down
    labels = [plot_text(label) for label in rows["group_label"]]  # plotly.js reads labels as HTML
    ticktext = [_wrapped_label(label) for label in rows["group_label"]]
    hidden_mask = rows.apply(_suppressed, axis=1).astype(bool)
    shown, hidden = rows[~hidden_mask], rows[hidden_mask]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            name="estimate",
            orientation="h",
            y=[plot_text(v) for v in shown["group_label"]],
            x=list(shown["estimate"]),
            marker=dict(color=BLUE),
            error_x=dict(
                type="data",
                symmetric=False,
                array=list(shown["ci_high"] - shown["estimate"]),
                arrayminus=list(shown["estimate"] - shown["ci_low"]),
                color=INK,
                thickness=1.5,
                width=6,
            ),
            hovertext=[_hover(r, info) for _, r in shown.iterrows()],
            hoverinfo="y+text",
        )
    )
    # Value labels sit just past the interval so they never collide with the error bar. Past
    # INSIDE_FROM there is no room left on a phone ("81,9 %" ran off the plot at 320 CSS px): the
    # label goes inside the bar, in white, ending where the interval starts.
    high = shown["ci_high"].fillna(shown["estimate"])
    low = shown["ci_low"].fillna(shown["estimate"])
    inside = ((high > INSIDE_FROM) & (low >= INSIDE_ROOM)).to_numpy()
    axis_end = max([115.0, *(5.0 * np.ceil(high[~inside] / (1 - LABEL_SHARE) / 5))])
    for group, value, at, within in zip(shown["group_label"], shown["estimate"], np.where(inside, low, high), inside):
        fig.add_annotation(_bar_label(plot_text(group), float(at), fmt_value(value, info), within))
    if not hidden.empty:
        # The word is an annotation (with its backing, like the values); the trace keeps the rows
        # and the reason on hover, its markers unseen.
        fig.add_trace(
            go.Scatter(
                name="suppressed",
                mode="markers",
                y=[plot_text(v) for v in hidden["group_label"]],
                x=[0.0] * len(hidden),
                text=[ui("suppressed")] * len(hidden),
                marker=dict(size=24, opacity=0),
                hovertext=[plot_text(_reason(r)) for _, r in hidden.iterrows()],
                hoverinfo="y+text",
            )
        )
        for group, row in zip(hidden["group_label"], hidden.to_dict("records")):
            fig.add_annotation(_suppressed_label(plot_text(group), plot_text(_reason(row))))
    overall = _overall(est, wave)
    if overall is not None and not _suppressed(overall):
        fig.add_vline(
            x=float(overall["estimate"]),
            line=dict(color=VERMILLION, width=2, dash="dash"),
            annotation=dict(text=ui("ontario_line", value=fmt_value(overall["estimate"], info)),
                            font=dict(color=INK, size=13)),
            annotation_position="top",
        )
    fig.update_layout(
        _layout(
            height=110 + _row_px(ticktext) * len(rows),
            # Quarters, drawn level: at 320 CSS px (reflow) fifths were turned on end by plotly.js
            # and ran into the axis title.
            xaxis=dict(range=[0, float(axis_end)], tickvals=[0, 25, 50, 75, 100], tickangle=0,
                       showgrid=True, gridcolor=GRID, zeroline=True, zerolinecolor=MUTED),
            yaxis=dict(categoryorder="array", categoryarray=labels, tickmode="array", tickvals=labels,
                       ticktext=ticktext, automargin=True, ticksuffix="  "),
        )
    )
    fig.update_layout(margin=dict(t=40))
    fig.add_annotation(_bar_axis_title(_axis_title(info)))
    return fig


def region_chart(indicator_id: str) -> str:
    ind = _safe_id(indicator_id)
    fig = region_figure(ind)
    if fig is None:
        return f'<p class="no-chart">{ui("no_region_chart")}</p>'
    info = indicator(ind)
    est = estimates(ind)
    wave = _latest_wave(est)
    rows = est[(est["wave"] == wave) & (est["breakdown"] == "oh_region")]
    what = ui("what_percent") if _is_percent(info) else ui("what_score")
    caption = ui("region_caption", title=esc(info["title"]), wave=wave, what=what, id=ind,
                 summary=_summary(rows, info, "group_label"))
    label = ui("region_label", title=info["title"], wave=wave)
    return _figure_html(fig, f"chart-{ind}-region", label, caption)


def _overall_series(est: pd.DataFrame) -> pd.DataFrame:
    return est[est["breakdown"] == "all"].sort_values("wave")


def has_trend(indicator_id: str) -> bool:
    """True when more than one wave has the indicator (a trend chart makes sense)."""
    est = estimates(indicator_id)
    return (not est.empty) and est["wave"].nunique() > 1


# The trend chart at its narrowest: at 320 CSS px its plot area is about 186 px wide, and each year
# of the x axis range (first - 0.5 to latest + 0.5) gets an equal slot of it. A value label at 14 px
# is at most "100,0 %" (about 57 px in French); a year tick at 15 px is about 36 px.
PHONE_PLOT_PX = 186
VALUE_LABEL_PX = 60  # the widest value label and a gap
YEAR_TICK_PX = 46  # a year and a gap
# On the 0-110 axis: the top of a "suppressed" note, and a gap. The note stands on 10% of the plot
# height (plotly.js anchors a note that low by its bottom) and is 16 px tall: its top is at 17.5 on a
# 270 px plot, 18 on a 250 px one (a chart with a key above its breaks). It was 16, and a low label
# above a suppressed year sat on the note's top.
SUPPRESSED_TOP = 20
SUPPRESSED_HALF_PX = 40  # half a "suppressed" (or "supprimé") note at 14 px, and a gap
TOP_CENTER, TOP_RIGHT, TOP_LEFT = "top center", "top right", "top left"
# A "not comparable" note above the plot at 320 px: "non comparable" at 13 px italic is 106 px wide
# ("not comparable" 103), with a gap. Centred on its break, it may run past the plot area over the y
# axis on the left (58 px to the chart's edge) or into the right margin (20 px), never past the edge.
BREAK_NOTE_PX = 112
BREAK_ROOM_LEFT_PX, BREAK_ROOM_RIGHT_PX = 50, 16
MARKER, LABELLED_MARKER = 10, 14  # px: a trend point, and one whose value is labelled (some are not)
LABELLED_LIFT = 1.0  # on the 0-110 axis: a larger point's label rises by its extra radius (2 px on a 270 px plot)
BREAK_KEY_SHIFT = 20  # px: the key of the break marks, one row above them


class TrendLabel(NamedTuple):
    wave: int
    y: float  # the label sits just above this value
    position: str  # plotly textposition


def _year_px(waves: list[int]) -> float:
    """The width of one year on the x axis at 320 CSS px."""
    return PHONE_PLOT_PX / (max(waves) - min(waves) + 1)


def trend_ticks(waves: list[int]) -> list[int]:
    """Years named on the x axis: all of them while a phone has room, otherwise every k-th year
    counted back from the latest (the year readers look for), so the names never run together."""
    step = max(1, math.ceil(YEAR_TICK_PX / _year_px(waves)))
    if step == 1:
        return list(waves)
    latest = max(waves)
    return [w for w in waves if (latest - w) % step == 0]


def trend_labels(waves: list[int], points: list[tuple[int, float, float]]) -> list[TrendLabel]:
    """Which values of a trend chart carry a label, and where: the same at every width.

    waves: every wave of the chart (suppressed ones too); points: (wave, estimate, top of interval)
    of the waves with a value. While a year's room at 320 px holds the widest label, every value is
    labelled, centred above its interval (as with three years). With more years the labels of
    neighbouring years would run into each other on a phone (four years) and even on a desktop (ten):
    then only the latest value is labelled, and the first where both fit. The first reads rightwards
    from its point and the latest leftwards, so neither runs past the plot's edge, each above all it
    spans at 320 px (the intervals of the years under it, the line on to the next year, a "suppressed"
    note); a wider screen gives each year more room, so the label spans less and stays clear there too."""
    if not points:
        return []
    slot = _year_px(waves)
    if slot >= VALUE_LABEL_PX:
        return [TrendLabel(w, top, TOP_CENTER) for w, _, top in points]
    span = VALUE_LABEL_PX / slot  # in years, the label's width at 320 px
    shown = {w for w, _, _ in points}
    suppressed = [w for w in waves if w not in shown]

    def clear_above(at: int, direction: int) -> float:
        ahead = sorted((p for p in points if 0 <= (p[0] - at) * direction), key=lambda p: abs(p[0] - at))
        under = [p for p in ahead if abs(p[0] - at) <= span]
        beyond = [p for p in ahead if abs(p[0] - at) > span][:1]  # the line runs on to it: its point bounds it
        heights = [max(est, top) for _, est, top in under] + [est for _, est, _ in beyond]
        reach = SUPPRESSED_HALF_PX / slot  # a note is centred on its year, so it reaches either side
        heights += [SUPPRESSED_TOP for w in suppressed if -reach <= (w - at) * direction <= span + reach]
        return max(heights)

    first, latest = min(shown), max(shown)
    labels = [TrendLabel(latest, clear_above(latest, -1), TOP_LEFT)]
    if (latest - first) * slot >= 2 * VALUE_LABEL_PX:  # room for both (not when the years between are suppressed)
        labels.insert(0, TrendLabel(first, clear_above(first, 1), TOP_RIGHT))
    return labels


def trend_break_notes_fit(waves: list[int], pairs: list[tuple[int, int]]) -> bool:
    """True when each break of a trend chart can carry its whole "not comparable" note at 320 px
    (so at every width: a wider screen gives each year more room): centred above its break, clear of
    the next break's note and inside the chart. Two breaks in a row (a year that compares with
    neither neighbour) or a break in a chart of many years leave too little room: the breaks are then
    marked, and the mark is explained once above them (see trend_figure)."""
    slot = _year_px(waves)
    centres = [((before + after) / 2 - (min(waves) - 0.5)) * slot for before, after in pairs]
    half = BREAK_NOTE_PX / 2
    inside = all(c - half >= -BREAK_ROOM_LEFT_PX and c + half <= PHONE_PLOT_PX + BREAK_ROOM_RIGHT_PX for c in centres)
    return inside and all(b - a >= BREAK_NOTE_PX for a, b in zip(centres, centres[1:]))


def trend_figure(indicator_id: str) -> go.Figure | None:
    """Ontario-wide value per wave with intervals; a suppressed wave is labelled, not plotted."""
    info = indicator(_safe_id(indicator_id))
    series = _overall_series(estimates(indicator_id))
    if series["wave"].nunique() < 2:
        return None
    hidden_mask = series.apply(_suppressed, axis=1).astype(bool)
    shown, hidden = series[~hidden_mask], series[hidden_mask]
    waves = [int(w) for w in series["wave"]]
    # One point per wave, None where suppressed: the line breaks there instead of bridging the gap.
    mask = list(~hidden_mask)
    y = [float(v) if ok else None for v, ok in zip(series["estimate"], mask)]
    up = [float(h - v) if ok else None for h, v, ok in zip(series["ci_high"], series["estimate"], mask)]
    down = [float(v - lo) if ok else None for lo, v, ok in zip(series["ci_low"], series["estimate"], mask)]
    hover = [_hover(r, info) if ok else ui("suppressed") for (_, r), ok in zip(series.iterrows(), mask)]
    x: list[float] = list(waves)
    # A line between two years reads as a trend: where the question changed so much that the years
    # do not compare, an empty point between them breaks the line, and the break is labelled.
    pairs = _incomparable_pairs(indicator_id, waves)
    for before, after in reversed(pairs):  # from the right, so earlier insertion points stay put
        at = waves.index(after)
        for values, empty in ((x, (before + after) / 2), (y, None), (up, None), (down, None), (hover, "")):
            values.insert(at, empty)
    # Value labels above the interval's upper end, clear of both the line and the error bar. Every
    # year has one while a phone leaves each year room for it; past that, only the first and the
    # latest (see trend_labels): hovering or tapping a point, the caption and the table give them all.
    placed = trend_labels(waves, [
        (int(r["wave"]), float(r["estimate"]), float(r["estimate"] if _missing(r["ci_high"]) else r["ci_high"]))
        for _, r in shown.iterrows()])
    # Where only some values are labelled, their points are drawn larger: the first label reads
    # rightwards from its point, over the next year's, and the larger point says which it belongs to.
    labelled = {label.wave for label in placed} if len(placed) < len(shown) else set()
    sizes = [LABELLED_MARKER if isinstance(v, int) and v in labelled else MARKER for v in x]
    fig = go.Figure(
        go.Scatter(
            name="Ontario",
            mode="lines+markers",
            x=x,
            y=y,
            connectgaps=False,
            line=dict(color=BLUE, width=3),
            marker=dict(color=BLUE, size=sizes if labelled else MARKER),
            error_y=dict(type="data", symmetric=False, array=up, arrayminus=down,
                         color=INK, thickness=1.5, width=8),
            hovertext=hover,
            hoverinfo="x+text",
        )
    )
    by_wave = {int(r["wave"]): r for _, r in shown.iterrows()}
    fig.add_trace(
        go.Scatter(
            name="value labels",
            mode="text",
            x=[label.wave for label in placed],
            y=[label.y + (LABELLED_LIFT if label.wave in labelled else 0) for label in placed],
            text=[fmt_value(by_wave[label.wave]["estimate"], info) for label in placed],
            textposition=(TOP_CENTER if all(label.position == TOP_CENTER for label in placed)
                          else [label.position for label in placed]),
            textfont=dict(size=14, color=INK),
            hoverinfo="skip",
        )
    )
    for _, row in hidden.iterrows():
        fig.add_annotation(
            x=int(row["wave"]), y=0.1, yref="paper", text=ui("suppressed"), showarrow=False,
            font=dict(color=MUTED, size=14, style="italic"), hovertext=plot_text(_reason(row)),
        )
    # Each break is labelled above the plot, over the gap in the line (down among the points the note
    # ran into them on a phone), the full sentence on hover. Where the notes have no room side by side
    # at 320 px (two breaks in a row, or many years), each break gets a mark instead, and one key above
    # the marks says what it means: the caption says it for every pair of years.
    whole = trend_break_notes_fit(waves, pairs)
    for before, after in pairs:
        fig.add_annotation(
            x=(before + after) / 2, y=1, yref="paper", yanchor="bottom", showarrow=False,
            text=ui("not_comparable") if whole else ui("not_comparable_mark"),
            font=dict(color=MUTED, size=13, style="italic") if whole else dict(color=INK, size=15),
            hovertext=ui("trend_not_comparable", before=before, after=after),
        )
    if pairs and not whole:
        fig.add_annotation(
            x=0, xref="paper", xanchor="left", y=1, yref="paper", yanchor="bottom", yshift=BREAK_KEY_SHIFT,
            text=ui("not_comparable_key", mark=ui("not_comparable_mark")), showarrow=False,
            font=dict(color=MUTED, size=13, style="italic"),
        )
    fig.update_layout(
        _layout(
            height=340,
            xaxis=dict(title=dict(text=ui("axis_year")), tickvals=(ticks := trend_ticks(waves)),
                       ticktext=[str(w) for w in ticks],
                       range=[min(waves) - 0.5, max(waves) + 0.5], showgrid=False),
            yaxis=dict(title=dict(text=ui("axis_percentage") if _is_percent(info) else ui("axis_score")),
                       range=[0, 110], tickvals=[0, 20, 40, 60, 80, 100], automargin=True,
                       showgrid=True, gridcolor=GRID, zeroline=True, zerolinecolor=MUTED),
        )
    )
    if pairs and not whole:  # a row above the marks for their key
        fig.update_layout(margin=dict(t=fig.layout.margin.t + BREAK_KEY_SHIFT))
    return fig


def _incomparable_pairs(indicator_id: str, waves: list[int]) -> list[tuple[int, int]]:
    """(earlier wave, later wave) of the neighbouring years whose Ontario-wide figures do not compare
    (published_changes says not_comparable), in wave order."""
    changes = _comparisons("published_changes", indicator_id)
    pairs = []
    for before, after in zip(waves, waves[1:]):
        change = _lookup(changes, wave=after, breakdown="all")
        if change is not None and int(change["previous_wave"]) == before and change["comparability"] == "not_comparable":
            pairs.append((before, after))
    return pairs


def trend_chart(indicator_id: str) -> str:
    """Chart across waves; empty string when only one wave has the indicator."""
    ind = _safe_id(indicator_id)
    fig = trend_figure(ind)
    if fig is None:
        return ""
    info = indicator(ind)
    series = _overall_series(estimates(ind)).assign(year=lambda d: d["wave"].astype(str))
    what = ui("what_percent") if _is_percent(info) else ui("what_score")
    summary = _summary(series, info, "year")
    for before, after in _incomparable_pairs(ind, [int(w) for w in series["wave"]]):
        summary += " " + ui("trend_not_comparable", before=before, after=after)
    caption = ui("trend_caption", title=esc(info["title"]), what=what, id=ind, summary=summary)
    label = ui("trend_label", title=info["title"])
    return _figure_html(fig, f"chart-{ind}-trend", label, caption)


# ---------------------------------------------------------------------------------------------
# Tables.


def _table(caption: str, head: list[str], body: list[str], notes: list[str], table_id: str) -> str:
    # data-quarto-disable-processing: Quarto would otherwise rebuild the table and drop our markup.
    header = "".join(f'<th scope="col">{h}</th>' for h in head)
    foot = ""
    if notes:
        foot = '<ol class="table-notes">' + "".join(notes) + "</ol>"
    # The scroll box is focusable and named so keyboard users can scroll a wide table on a phone.
    return (
        f'<div class="table-scroll" role="region" tabindex="0" aria-labelledby="caption-{table_id}">'
        f'<table class="data-table" id="{table_id}" data-quarto-disable-processing="true">'
        # The caption's text in its own box, as wide as the scroll box (styles.css): a caption is as
        # wide as its table, so on a phone it ran off the screen and had to be scrolled to be read.
        f'<caption id="caption-{table_id}"><span class="caption-text">{caption}</span></caption>'
        f'<thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{foot}</div>"
    )


class _Notes:
    """Footnotes of one table, numbered in order of first use (a repeated reason reuses its number)."""

    def __init__(self, table_id: str) -> None:
        self.table_id, self.reasons = table_id, []

    def ref(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        k = self.reasons.index(reason) + 1
        return f'<a class="note-ref" href="#note-{self.table_id}-{k}" aria-label="{ui("note", k=k)}"><sup>{k}</sup></a>'

    def items(self) -> list[str]:
        return [f'<li id="note-{self.table_id}-{k}">{esc(_sentence(r))}</li>'
                for k, r in enumerate(self.reasons, start=1)]


def _hidden_cell(row: pd.Series | dict, notes: _Notes) -> str:
    return f'<td class="suppressed">{ui("suppressed")}{notes.ref(_reason(row))}</td>'


def _points(value: float, info: dict[str, Any]) -> str:
    # Gaps and changes: signed, in percentage points or score points; U+2212 reads as "minus". The
    # sign is the printed number's: a gap of -0.04 points is "0.0 points", not "−0.0".
    shown = round(value, 1)
    sign = "+" if shown > 0 else ("\u2212" if shown < 0 else "")
    return f"{sign}{fmt_number(abs(value))}" + (ui("points") if _is_percent(info) else "")


def _signed_interval(low: Any, high: Any) -> str:
    if _missing(low) or _missing(high):
        return ui("interval_not_available")
    return ui("interval", low=fmt_number(low), high=fmt_number(high)).replace("-", "\u2212")


def _gap_cell(gap: pd.Series | None, info: dict[str, Any], notes: _Notes) -> str:
    if gap is None:
        return f'<td class="na">{ui("not_calculated")}</td>'
    if bool(gap["suppressed"]) or _missing(gap["gap"]):
        return _hidden_cell(gap, notes)
    return (f'<td class="num">{esc(_points(gap["gap"], info))} ({esc(_signed_interval(gap["gap_low"], gap["gap_high"]))})'
            f'<span class="statement">{esc(gap["statement"])}</span></td>')


def _change_cell(change: pd.Series | None, info: dict[str, Any], notes: _Notes, earlier: int | None = None) -> str:
    """`earlier`: the indicator's year before this one, if any: a group without a change then had no
    figure that year (its answers were grouped otherwise, or nobody gave them), which "no earlier
    year" would deny."""
    if change is None:
        if earlier is not None:
            return f'<td class="na">{ui("no_group_earlier", wave=earlier)}</td>'
        return f'<td class="na">{ui("no_earlier_year")}</td>'
    if change["comparability"] == "not_comparable":
        note = str(change["comparability_note"]).strip() or ui("question_changed")
        return f'<td class="na">{ui("not_comparable")}{notes.ref(note)}</td>'
    if bool(change["suppressed"]) or _missing(change["change"]):
        return _hidden_cell(change, notes)
    caveat = ""
    if change["comparability"] == "comparable_with_caveat" and str(change["comparability_note"]).strip():
        caveat = notes.ref(str(change["comparability_note"]))
    since = ui("change_from", value=fmt_value(change["previous_estimate"], info), wave=int(change["previous_wave"]))
    return (f'<td class="num">{esc(_points(change["change"], info))} '
            f'({esc(_signed_interval(change["change_low"], change["change_high"]))}){caveat}'
            f'<span class="statement">{esc(since)}; {esc(change["statement"])}</span></td>')


def _value_cells(row: pd.Series, info: dict[str, Any], notes: _Notes, percent: bool) -> list[str]:
    if _suppressed(row):
        return [_hidden_cell(row, notes)] + [f'<td class="suppressed">{ui("not_shown")}</td>'] * (3 if percent else 2)
    cells = [f'<td class="num">{esc(fmt_value(row["estimate"], info))}</td>',
             f'<td class="num">{esc(fmt_interval(row, info))}</td>',
             f'<td class="num">{esc(fmt_n(row["n"]))}</td>']
    return cells + ([f'<td class="num">{esc(fmt_n(row["count"]))}</td>'] if percent else [])


def _value_heads(info: dict[str, Any]) -> list[str]:
    percent = _is_percent(info)
    head = [ui("head_percent") if percent else ui("head_score"), ui("head_interval"), ui("head_n")]
    return head + ([ui("head_count")] if percent else [])


def _comparisons(view: str, indicator_id: str) -> pd.DataFrame:
    # Gaps and changes come with the equity breakdowns; an older warehouse may not have them.
    if not _has_table(view):
        return pd.DataFrame()
    return _in_language(query(f"SELECT * FROM {view} WHERE indicator_id = ?", [indicator_id]))


def _lookup(frame: pd.DataFrame, **match: Any) -> pd.Series | None:
    if frame.empty:
        return None
    mask = np.ones(len(frame), dtype=bool)
    for column, value in match.items():
        mask &= frame[column].astype(str).to_numpy() == str(value)
    hits = np.flatnonzero(mask)
    return frame.iloc[hits[0]] if len(hits) else None


def _overall_table(ind: str, info: dict[str, Any], est: pd.DataFrame, changes: pd.DataFrame) -> str:
    table_id = f"table-{ind}-all"
    notes = _Notes(table_id)
    body = []
    for _, row in est[est["breakdown"] == "all"].iterrows():
        change = _lookup(changes, wave=int(row["wave"]), breakdown="all")
        cells = [f'<th scope="row">{int(row["wave"])}</th>', *_value_cells(row, info, notes, _is_percent(info)),
                 _change_cell(change, info, notes)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = ui("overall_caption", title=esc(info["title"]), id=ind)
    head = [ui("head_year"), *_value_heads(info), ui("head_change")]
    return _table(caption, head, body, notes.items(), table_id)


def _breakdown_table(ind: str, info: dict[str, Any], rows: pd.DataFrame, title: str, wave: int,
                     gaps: pd.DataFrame, changes: pd.DataFrame, earlier: int | None = None) -> str:
    breakdown = str(rows["breakdown"].iloc[0])
    table_id = f"table-{ind}-{breakdown}"
    notes = _Notes(table_id)
    body = []
    for _, row in rows.iterrows():
        key = dict(wave=wave, breakdown=breakdown, group_code=row["group_code"])
        cells = [f'<th scope="row">{esc(row["group_label"])}</th>',
                 *_value_cells(row, info, notes, _is_percent(info)),
                 _gap_cell(_lookup(gaps, **key), info, notes),
                 _change_cell(_lookup(changes, **key), info, notes, earlier)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = ui("breakdown_caption", title=esc(info["title"]), id=ind, wave=wave, breakdown=esc(title))
    head = [ui("head_group"), *_value_heads(info), ui("head_gap"), ui("head_change")]
    return _table(caption, head, body, notes.items(), table_id)


def data_table(indicator_id: str) -> str:
    """The figures behind one indicator's charts, one table per breakdown (each in its own disclosure
    element, so a long equity breakdown never buries the page): Ontario as a whole by year, then each
    group of the latest year with its gap with everyone else and its change since the year before.
    Suppressed cells say so, with the reason as a numbered note; earlier years' groups are in the CSV."""
    ind = _safe_id(indicator_id)
    info = indicator(ind)
    est = estimates(ind)
    if est.empty:
        return f'<p class="no-chart">{ui("no_published_values")}</p>'
    wave = _latest_wave(est)
    gaps, changes = _comparisons("published_gaps", ind), _comparisons("published_changes", ind)
    titles = {**BREAKDOWNS, **breakdown_titles()}
    years = est.loc[est["breakdown"] == "all", "wave"].nunique()
    parts = [_details(ui("every_year", years=ui("year_count" if years == 1 else "years_count", n=years)),
                      _overall_table(ind, info, est, changes))]
    latest = est[(est["wave"] == wave) & (est["breakdown"] != "all")]
    before = est.loc[(est["wave"] < wave) & (est["breakdown"] == "all"), "wave"]
    earlier = int(before.max()) if len(before) else None
    for breakdown, rows in latest.groupby("breakdown", sort=False):
        title = titles.get(str(breakdown), str(breakdown))
        hidden = int(rows.apply(_suppressed, axis=1).sum())
        count = ui("groups_count", n=len(rows)) + (ui("groups_hidden", n=hidden) if hidden else "")
        parts.append(_details(f"{esc(title)}, {wave} ({count})",
                              _breakdown_table(ind, info, rows, title, wave, gaps, changes, earlier)))
    return (f'<div class="figure-tables" id="tables-{ind}">\n<p class="tables-intro">'
            f"{ui('tables_intro', title=esc(info['title']))}</p>\n" + "\n".join(parts) + "\n</div>")


def _details(summary: str, content: str) -> str:
    return f'<details class="data-details"><summary>{summary}</summary>\n{content}\n</details>'


def load_table() -> str:
    """Per-wave load accounting for the methods page (counts of responses only)."""
    summary = load_summary()
    head = ui("load_head").split("|")
    body = []
    for _, row in summary.iterrows():
        data = ui("data_synthetic") if bool(row["synthetic"]) else ui("data_real")
        counts = "".join(f'<td class="num">{esc(fmt_n(row[c]))}</td>'
                         for c in ["read", "loaded", "excluded", "duplicates", "quarantined"])
        body.append(f'<tr><th scope="row">{int(row["wave"])}</th><td>{data}</td>{counts}</tr>')
    caption = ui("load_caption")
    return _table(caption, head, body, [], "table-load")


def protection_table() -> str:
    """For the methods page: per key quasi-identifier and wave, the share of respondents whose answer
    was removed from the stored data (local suppression), so readers see how much smaller a group
    can be than the people who gave that answer. Counts per question and year only."""
    if not (_has_table("column_protection") and _has_table("anonymity_summary")):
        return ""
    rows = query(
        "SELECT p.concept, p.wave, p.cells_suppressed, s.respondents FROM column_protection p"
        " JOIN anonymity_summary s USING (wave) WHERE p.k_anonymity_key ORDER BY p.wave"
    )
    if rows.empty:
        return ""
    waves = sorted(int(w) for w in rows["wave"].unique())
    labels = question_labels()
    shares = {(str(r.concept), int(r.wave)): 100.0 * int(r.cells_suppressed) / int(r.respondents)
              for r in rows.itertuples() if int(r.respondents) > 0}
    body = []
    for concept in dict.fromkeys(rows["concept"].astype(str)):
        cells = "".join(
            f'<td class="num">{esc(ui("percent", value=fmt_number(shares[concept, w], 0)))}</td>'
            if (concept, w) in shares else f'<td>{esc(ui("not_available"))}</td>' for w in waves)
        body.append(f'<tr><th scope="row">{esc(labels.get(concept, concept))}</th>{cells}</tr>')
    return _table(ui("protection_caption"), [ui("protection_question"), *map(str, waves)], body, [],
                  "table-protection")


def questions_md(indicator_id: str, labels: dict[str, str] | None = None) -> str:
    """The questions an indicator uses, inline markdown: concept ids, with wording when known. A
    score stands for the questions it is made of: its id alone tells a reader nothing."""
    info = indicator(_safe_id(indicator_id))
    labels = question_labels() if labels is None else labels
    scores = _score_texts()
    ids = [q.strip() for q in str(info.get("questions") or "").split(",") if q.strip()]
    ids = [item for q in ids for item in (scores[q]["items"] if q in scores else [q])]
    if not ids:
        return ui("not_recorded")
    # Inline <code> rather than backticks: backticks would show escaped entities literally.
    return ", ".join(
        f"<code>{esc(q)}</code>" + (f" ({md_text(labels[q])})" if q in labels else "") for q in ids
    )


def definition_md(indicator_id: str, labels: dict[str, str] | None = None,
                  breakdowns: dict[str, str] | None = None) -> str:
    """The methods-page entry of one indicator, straight from the catalogue (same anchor as the report).

    The rules, breakdowns, minimum n and comparability lines appear when the catalogue has them;
    `breakdowns` maps breakdown ids to their titles (from breakdown_titles())."""
    ind = _safe_id(indicator_id)
    info = indicator(ind)
    measure = ui("measure_percent") if _is_percent(info) else ui("measure_score")
    lines = [
        f"- **{ui('def_id')}** {ind} ({esc(_word('domains', info['domain']))}; {ui('reported_as', measure=measure)})",
        f"- **{ui('def_definition')}** {md_text(info['definition'])}",
        f"- **{ui('def_population')}** {md_text(info['population'])}",
        *_rule_lines(info),
        *_score_lines(info),
        f"- **{ui('def_questions')}** {questions_md(ind, labels)}",
        *_coverage_lines(info, breakdowns or {}),
        # no caveat recorded: say nothing (a "read with care" line with nothing to read was contradictory)
        *([f"- **{ui('def_care')}** {md_text(info['caveats'])}"] if _present(info, "caveats") else []),
        f"- [{ui('see_figures')}](index.html#{ind})",
    ]
    return f"\n### {md_text(info['title'])} {{#{ind}}}\n\n" + "\n".join(lines) + "\n"


def _score_texts() -> dict[str, dict[str, Any]]:
    """Score id -> its definition (report language) and items, from the catalogue the figures were
    computed with ({} when surveys/indicators.yaml is not that catalogue)."""
    catalogue = _current_catalogue()
    if catalogue is None:
        return {}
    french = (_french_text().french.get("scores") or {}) if report_lang() == "fr" else {}
    return {name: {"definition": (french.get(name) or {}).get("definition") or score.definition,
                   "items": list(score.items)}
            for name, score in catalogue.scores.items()}


def _score_lines(info: dict[str, Any]) -> list[str]:
    # How a score is made (its items, their points, how many must be answered): what a reader needs
    # to cite an average score, printed from the same definition the score is computed from.
    scores = _score_texts()
    used = [q.strip() for q in str(info.get("questions") or "").split(",") if q.strip() in scores]
    return [f"- **{ui('def_score_made')}** {md_text(scores[q]['definition'])}" for q in used]


def _present(info: dict[str, Any], key: str) -> bool:
    return key in info and not _missing(info[key]) and str(info[key]).strip() != ""


def _rule_lines(info: dict[str, Any]) -> list[str]:
    # The rules the figure was computed by, in the reader's words: question wording and answer
    # labels (plain_rules). Only when the definitions changed since the figures were computed, the
    # rules stored with the figures (ids and codes, in English) are shown instead.
    plain = plain_rules().get(str(info["indicator_id"]))
    lines = []
    if plain is None:
        if _present(info, "population_rule"):
            lines.append(f"- **{ui('def_denominator_stored')}** {md_text(info['population_rule'])}")
        if _present(info, "condition_rule"):
            lines.append(f"- **{ui('def_numerator_stored')}** {md_text(info['condition_rule'])}")
        if _present(info, "value"):
            lines.append(f"- **{ui('def_score')}** <code>{esc(info['value'])}</code>")
        return lines
    lines.append(f"- **{ui('def_denominator')}** {md_text(plain['population'])}")
    if plain["condition"]:
        lines.append(f"- **{ui('def_numerator')}** {md_text(plain['condition'])}")
    if plain["value"]:
        lines.append(f"- **{ui('def_score')}** {md_text(plain['value'])}")
    return lines


def plain_rules() -> dict[str, dict[str, str]]:
    """Indicator id -> its population, condition and score in words (report language), or {} when
    surveys/indicators.yaml is not the catalogue the warehouse's figures were computed with."""
    return _plain_rules_of(str(warehouse_path()), report_lang())


@functools.cache
def _plain_rules_of(warehouse: str, lang: str) -> dict[str, dict[str, str]]:
    from pipeline.indicators import population_in_words, rule_in_words

    catalogue = _current_catalogue()
    if catalogue is None:
        return {}
    words, kinds = _plain_words(), _concept_kinds()
    derived = _plain_derived_notes()
    found = {}
    for i in catalogue.indicators:
        notes = [derived[c] for c in _concepts_used(i, catalogue) if c in derived]
        found[i.id] = {"population": population_in_words(i, kinds, words, notes),
                       "condition": rule_in_words(i.condition, kinds, words) if i.condition is not None else "",
                       "value": words.question(i.value) if i.value else ""}
    return found


def _concepts_used(indicator, catalogue) -> list[str]:
    from pipeline.indicators import concepts_used

    return concepts_used(indicator, catalogue)


def _current_catalogue():
    """surveys/indicators.yaml when it is the catalogue the warehouse's figures were computed with
    (its hash), else None: the page must describe the rules behind the figures it shows."""
    from pipeline.config import project_paths
    from pipeline.indicators import IndicatorError, load_catalogue

    if not (_has_table("warehouse_meta") and _has_table("concepts")):  # no questionnaire to word the rules with
        return None
    stored = query("SELECT value FROM warehouse_meta WHERE key = 'indicators_sha256'")
    try:
        catalogue = load_catalogue(project_paths().indicators_file)
    except (IndicatorError, OSError):
        return None
    return catalogue if not stored.empty and stored["value"].iloc[0] == catalogue.sha256 else None


def _concept_kinds() -> dict[str, str]:
    """Concept id -> question type (latest wave), scores numeric: what the rules' wording depends on."""
    rows = query("SELECT concept, type FROM concepts QUALIFY row_number() OVER (PARTITION BY concept ORDER BY wave DESC) = 1")
    kinds = dict(zip(rows["concept"].astype(str), rows["type"].astype(str)))
    catalogue = _current_catalogue()
    kinds.update({name: "numeric" for name in (catalogue.scores if catalogue is not None else {})})
    return kinds


def _rule_word(key: str, **values: Any) -> str:
    return _report_strings()["rule_words"][key][report_lang()].format(**values)


def _plain_words():
    """Rules in the report's language: questions by their wording (scores by their title) and
    answers by their labels, from the warehouse's description of the questionnaires."""
    from pipeline.indicators import RuleWords

    questions, answers = question_labels(), _answer_labels()
    catalogue = _current_catalogue()
    scores = {name: s.title for name, s in (catalogue.scores if catalogue is not None else {}).items()}
    if report_lang() == "fr":
        scores.update({name: str(s["title"]) for name, s in (_french_text().french.get("scores") or {}).items()})
    keys = _report_strings()["rule_words"]
    templates = {key: entry[report_lang()] for key, entry in keys.items()}

    def question(concept: str) -> str:
        return _rule_word("quote", text=questions.get(concept) or scores.get(concept) or concept)

    def named(concept: str, codes: list[str]) -> str:
        # A code with no label (an internal merge code, such as answers merged for privacy) adds
        # nothing a reader can use when the answers it merges are named beside it.
        known = [c for c in codes if (concept, c) in answers] or codes
        return _rule_word("answers_join").join(_rule_word("quote", text=answers.get((concept, c), c)) for c in known)

    def number(value: float) -> str:
        text = f"{value:g}"
        return text.replace(".", ",") if report_lang() == "fr" else text

    return RuleWords(templates, question, named, number)


def _answer_labels() -> dict[tuple[str, str], str]:
    """(concept, code) -> the answer's label in the report's language (latest wave)."""
    if not _has_table("choices"):
        return {}
    label = "coalesce(label_fr, label_en)" if report_lang() == "fr" else "label_en"
    rows = query(f"SELECT concept, code, {label} AS label FROM choices"
                 " QUALIFY row_number() OVER (PARTITION BY concept, code ORDER BY wave DESC) = 1")
    return {(str(c), str(k)): str(t) for c, k, t in zip(rows["concept"], rows["code"], rows["label"])}


def _plain_derived_notes() -> dict[str, str]:
    """Derived answer -> how it was worked out, in words (what it reads named by their wording)."""
    if not _has_table("derived_concepts"):
        return {}
    rows = query("SELECT concept, wave, reads, reference, reference_year, note FROM derived_concepts ORDER BY concept, wave")
    words = _plain_words()
    notes = {}
    for concept, group in rows.groupby("concept", sort=True):
        first = group.iloc[0]
        years = "; ".join(
            _rule_word("derived_year", year=int(r.reference_year), wave=int(r.wave))
            # the reference table's notes are written in English only
            + (f" ({str(r.note).strip().rstrip('.')})" if report_lang() == "en" and str(r.note or "").strip() else "")
            for r in group.itertuples())
        reads = _rule_word("derived_reads_join").join(words.question(c.strip()) for c in str(first["reads"]).split(","))
        notes[str(concept)] = _rule_word("derived", derived=words.question(str(concept)), reads=reads,
                                         reference=str(first["reference"]), years=years)
    return notes


def _coverage_lines(info: dict[str, Any], titles: dict[str, str]) -> list[str]:
    lines = []
    if _present(info, "breakdowns"):
        ids = [b.strip() for b in str(info["breakdowns"]).split(",") if b.strip()]
        lines.append(f"- **{ui('shown_by')}** " + ", ".join(md_text(titles.get(b, b)) for b in ids)
                     + ui("shown_by_note"))
    if _present(info, "min_n"):
        lines.append(f"- **{ui('def_smallest')}** {ui('smallest_group', n=int(info['min_n']))}")
    if _present(info, "waves"):
        lines.append(f"- **{ui('def_years')}** {md_text(info['waves'])}")
    if "comparability" in info:
        if _present(info, "comparability"):
            across = md_text(info["comparability"])
        elif _present(info, "waves") and "," not in str(info["waves"]):
            across = ui("one_year")
        else:
            across = ui("same_way")
        lines.append(f"- **{ui('def_across')}** {across}")
    return lines


def breakdown_titles() -> dict[str, str]:
    """Breakdown id -> title, when the warehouse describes its breakdowns."""
    if not _has_table("indicator_breakdowns"):
        return {}
    rows = query("SELECT breakdown, title FROM indicator_breakdowns")
    titles = dict(zip(rows["breakdown"].astype(str), rows["title"].astype(str)))
    if report_lang() == "fr":
        titles = {b: _french_text().breakdown(b).get("title", t) for b, t in titles.items()}
    return titles


def many_comparisons_md() -> str:
    """For "What the figures can and cannot claim": how many gaps and changes the latest year's tables
    give, how many of them 95% intervals would call beyond chance if nothing truly differed (1 in 20),
    and how many are. Why: a reader scanning dozens of tables for the "beyond chance" ones should know
    that some are expected by chance alone. Counts only; "" before any comparison exists."""
    from pipeline.indicators import CHANGE_DOWN, CHANGE_UP, GAP_DOWN, GAP_UP, NOISE

    if not (_has_table("published_gaps") and _has_table("published_changes")):
        return ""
    def counted(view: str, up: str, down: str) -> pd.Series:
        # each indicator's latest year; comparisons with a verdict (not "not comparable"), and those beyond chance
        return query(f"SELECT count(*) AS made, count(*) FILTER (WHERE statement IN (?, ?)) AS beyond "
                     f"FROM {view} JOIN (SELECT indicator_id, max(wave) AS wave FROM published_estimates GROUP BY ALL) "
                     "USING (indicator_id, wave) WHERE statement IN (?, ?, ?)", [up, down, up, down, NOISE]).iloc[0]

    gaps, changes = counted("published_gaps", GAP_UP, GAP_DOWN), counted("published_changes", CHANGE_UP, CHANGE_DOWN)
    if gaps["made"] + changes["made"] == 0:
        return ""
    return "\n" + ui("many_comparisons", gaps=fmt_n(gaps["made"]), changes=fmt_n(changes["made"]),
                     gaps_chance=fmt_n(round(gaps["made"] / 20)), changes_chance=fmt_n(round(changes["made"] / 20)),
                     gaps_beyond=fmt_n(gaps["beyond"]), changes_beyond=fmt_n(changes["beyond"])) + "\n"


def breakdowns_md() -> str:
    """How respondents are grouped, one entry per breakdown, straight from the definitions."""
    if not _has_table("indicator_breakdowns"):
        return ""
    rows = query("SELECT * FROM indicator_breakdowns ORDER BY sort_order, breakdown")
    if report_lang() == "fr":
        return _french_breakdowns_md(rows)
    plain = _plain_groups()
    return "\n".join(
        f"- **{md_text(r['title'])}.** {md_text(r['definition'])} "
        f"*Groups:* {md_text(plain.get(str(r['breakdown']), r['groups']))}"
        for _, r in rows.iterrows()
    ) + "\n"


def _plain_groups() -> dict[str, str]:
    """Breakdown id -> its groups in words (question wording, answer labels), when the catalogue is
    the one the figures were computed with; else {} (the stored text is shown)."""
    from pipeline.indicators import groups_in_words

    catalogue = _current_catalogue()
    if catalogue is None:
        return {}
    words, kinds = _plain_words(), _concept_kinds()
    return {name: groups_in_words(b, kinds, words) for name, b in catalogue.breakdowns.items()}


def _french_breakdowns_md(rows: pd.DataFrame) -> str:
    """breakdowns_md() in French: the groups are the French labels of the groups published."""
    french = _french_text()
    lines = []
    for _, r in rows.iterrows():
        text = french.breakdown(str(r["breakdown"]))
        codes = query("SELECT DISTINCT group_code FROM published_estimates WHERE breakdown = ?", [r["breakdown"]])
        groups = [french.labels.get((str(r["breakdown"]), str(c)), str(c))
                  for c in sorted(codes["group_code"], key=lambda c: (_group_rank(c), str(c)))]
        lines.append(f"- **{md_text(text.get('title', r['title']))}.** {md_text(text.get('definition', r['definition']))}"
                     f" *{ui('groups')}* {md_text('; '.join(groups))}")
    return "\n".join(lines) + "\n"

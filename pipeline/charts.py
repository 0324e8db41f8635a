"""Charts, tables and sentences for the public report (reports/*.qmd).

Everything here reads the warehouse READ-ONLY and only through what may be published:
`published_estimates` (suppressed cells carry no number), `indicator_catalogue` and `load_ledger`.
Every function returns text (markdown or an HTML fragment), so the same calls work under the real
Quarto CLI and under the offline renderer. Text that comes from the data is always escaped.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
BLUE = "#0072B2"
VERMILLION = "#D55E00"
INK = "#1a1a1a"
MUTED = "#4d4d4d"
GRID = "#d9d9d9"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

DOMAINS = {
    "precarity": "Precarity",
    "disrespect": "Disrespect and exploitation",
    "resources": "Resource gaps",
    "drift": "Drift",
    "wellbeing": "Wellbeing",
}
BREAKDOWNS = {"all": "All respondents", "oh_region": "Ontario Health region", "work_setting": "Work setting"}
DEFAULT_REASON = "Hidden to protect respondents: too few answers in this group."
SYNTHETIC_NOTICE = (
    "These figures come from the built-in SYNTHETIC consultation: invented respondents, for testing. "
    "They say nothing about real peer supporters."
)
# Indicator ids become HTML ids, anchors and file-safe chart ids: keep them plain.
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}#|~^$@])")


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
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


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
    return cat.iloc[0].to_dict()


def estimates(indicator_id: str) -> pd.DataFrame:
    """Published rows of one indicator, newest wave first, groups in questionnaire order."""
    est = query("SELECT * FROM published_estimates WHERE indicator_id = ?", [indicator_id])
    if est.empty:
        return est
    est["_b"] = est["breakdown"].map({b: i for i, b in enumerate(BREAKDOWNS)}).fillna(len(BREAKDOWNS))
    est["_g"] = est["group_code"].map(_group_rank)
    order = ["wave", "_b", "breakdown", "_g", "group_label"]
    est = est.sort_values(order, ascending=[False, True, True, True, True])
    return est.drop(columns=["_b", "_g"]).reset_index(drop=True)


def ledger() -> pd.DataFrame:
    return query("SELECT * FROM load_ledger ORDER BY wave, file_name")


def load_summary() -> pd.DataFrame:
    """Ledger totals per wave: counts of responses only, nothing about anyone."""
    return query(
        """
        SELECT wave, bool_or(synthetic) AS synthetic, count(*) AS files,
               sum(rows_read) AS read, sum(rows_loaded) AS loaded, sum(rows_excluded) AS excluded,
               sum(rows_duplicate) AS duplicates, sum(rows_quarantined) AS quarantined
        FROM load_ledger GROUP BY wave ORDER BY wave
        """
    )


def question_labels() -> dict[str, str]:
    """Concept id -> question wording (latest wave), when the warehouse describes its instruments."""
    if not _has_table("concepts"):
        return {}
    rows = query(
        "SELECT concept, label_en FROM concepts"
        " QUALIFY row_number() OVER (PARTITION BY concept ORDER BY wave DESC) = 1"
    )
    return dict(zip(rows["concept"].astype(str), rows["label_en"].astype(str)))


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


def fmt_value(value: float, info: dict[str, Any]) -> str:
    return f"{value:.1f}%" if _is_percent(info) else f"{value:.1f}"


def fmt_interval(row: pd.Series | dict, info: dict[str, Any]) -> str:
    if _missing(row["ci_low"]) or _missing(row["ci_high"]):
        return "not available"
    return f"{fmt_value(row['ci_low'], info)} to {fmt_value(row['ci_high'], info)}"


def fmt_n(n: Any) -> str:
    return "not shown" if _missing(n) else f"{int(n):,}"


def _reason(row: pd.Series | dict) -> str:
    return DEFAULT_REASON if _missing(row.get("suppression")) else str(row["suppression"])


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
            '\n::: {.callout-warning .synthetic-banner title="No data loaded"}\n'
            "No survey responses have been loaded yet, so this report has no figures.\n:::\n"
        )
    if led["synthetic"].fillna(False).astype(bool).any():
        return (
            '\n::: {.callout-warning .synthetic-banner title="Synthetic data: not real results"}\n'
            f"**{SYNTHETIC_NOTICE}**\n:::\n"
        )
    return ""


def indicator_heading(indicator_id: str, level: int = 3) -> str:
    """Heading with a stable, citable anchor (the indicator id), plus who is counted."""
    ind = _safe_id(indicator_id)
    info = indicator(ind)
    return (
        f"\n{'#' * level} {md_text(info['title'])} {{#{ind}}}\n\n"
        f"Indicator {ind} · Who is counted: {md_text(info['population'])} · "
        f"[How it is measured](methods.html#{ind})\n"
    )


def caveat(indicator_id: str) -> str:
    """The catalogue's caveat as a short "read with care" line, or nothing."""
    text = indicator(_safe_id(indicator_id)).get("caveats")
    if _missing(text) or not str(text).strip():
        return ""
    return f"\n*Read with care:* {md_text(str(text).strip())}\n"


def headline(indicator_id: str) -> str:
    """One plain sentence: the latest wave's Ontario-wide value, its n and 95% interval."""
    info = indicator(_safe_id(indicator_id))
    est = estimates(indicator_id)
    wave = _latest_wave(est)
    row = None if wave is None else _overall(est, wave)
    if row is None:
        return "\nNo figure is available for this indicator yet.\n"
    if _suppressed(row):
        reason = md_text(_reason(row))
        return f"\nIn {wave}, the Ontario-wide figure is **suppressed** to protect respondents ({reason}).\n"
    value, n = fmt_value(row["estimate"], info), fmt_n(row["n"])
    interval = f"95% interval {fmt_interval(row, info)}"
    if _is_percent(info):
        people = "" if _missing(row["count"]) else f"{int(row['count']):,} people; "
        text = f"In {wave}, this applied to **{value}** of the {n} respondents who answered ({people}{interval})."
    else:
        text = (f"In {wave}, the average score was **{value}** out of 100 among the {n} respondents who answered"
                f" ({interval}).")
    return f"\n{text}{_previous(est, wave, info)}\n"


def _previous(est: pd.DataFrame, wave: int, info: dict[str, Any]) -> str:
    # The wave before, for context only: no claim that a change is real.
    earlier = est[(est["wave"] < wave) & (est["breakdown"] == "all")]
    if earlier.empty:
        return ""
    row = earlier.iloc[0]  # estimates() sorts newest first
    if _suppressed(row):
        return f" The {int(row['wave'])} figure is suppressed."
    return f" In {int(row['wave'])} it was {fmt_value(row['estimate'], info)} ({fmt_n(row['n'])} respondents)."


# ---------------------------------------------------------------------------------------------
# Charts (HTML fragments; plotly.js itself comes once per page from plotly_js()).


def plotly_js() -> str:
    """The whole plotly.js library inline, once per page, so pages work offline and self-contained."""
    return (
        '<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};</script>\n'
        f'<script type="text/javascript" charset="utf-8">{get_plotlyjs()}</script>'
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
    return "Percentage of respondents" if _is_percent(info) else "Average score (0 to 100)"


def _hover(row: pd.Series, info: dict[str, Any]) -> str:
    return f"{fmt_value(row['estimate'], info)} (95% interval {fmt_interval(row, info)}; n = {fmt_n(row['n'])})"


def _figure_html(fig: go.Figure, div_id: str, label: str, caption: str) -> str:
    plot = fig.to_html(
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
            parts.append(f'{name}: <span class="suppressed">suppressed</span>')
        else:
            parts.append(f"{name}: {esc(fmt_value(row['estimate'], info))} ({esc(fmt_n(row['n']))} respondents)")
    return "; ".join(parts) + "."


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
    labels = [esc(label) for label in rows["group_label"]]  # plotly.js reads labels as HTML
    hidden_mask = rows.apply(_suppressed, axis=1).astype(bool)
    shown, hidden = rows[~hidden_mask], rows[hidden_mask]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            name="estimate",
            orientation="h",
            y=[esc(v) for v in shown["group_label"]],
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
    # Value labels sit just past the interval so they never collide with the error bar.
    fig.add_trace(
        go.Scatter(
            name="value labels",
            mode="text",
            y=[esc(v) for v in shown["group_label"]],
            x=list(shown["ci_high"].fillna(shown["estimate"])),
            text=[f"  {fmt_value(v, info)}" for v in shown["estimate"]],
            textposition="middle right",
            textfont=dict(size=14, color=INK),
            hoverinfo="skip",
        )
    )
    if not hidden.empty:
        fig.add_trace(
            go.Scatter(
                name="suppressed",
                mode="text",
                y=[esc(v) for v in hidden["group_label"]],
                x=[0.0] * len(hidden),
                text=["  suppressed"] * len(hidden),
                textposition="middle right",
                textfont=dict(size=14, color=MUTED, style="italic"),
                hovertext=[esc(_reason(r)) for _, r in hidden.iterrows()],
                hoverinfo="y+text",
            )
        )
    overall = _overall(est, wave)
    if overall is not None and not _suppressed(overall):
        fig.add_vline(
            x=float(overall["estimate"]),
            line=dict(color=VERMILLION, width=2, dash="dash"),
            annotation=dict(text=f"Ontario: {fmt_value(overall['estimate'], info)}",
                            font=dict(color=INK, size=13)),
            annotation_position="top",
        )
    fig.update_layout(
        _layout(
            height=110 + 46 * len(rows),
            xaxis=dict(title=dict(text=_axis_title(info)), range=[0, 115], tickvals=[0, 20, 40, 60, 80, 100],
                       showgrid=True, gridcolor=GRID, zeroline=True, zerolinecolor=MUTED),
            yaxis=dict(categoryorder="array", categoryarray=labels, automargin=True, ticksuffix="  "),
        )
    )
    fig.update_layout(margin=dict(t=40))
    return fig


def region_chart(indicator_id: str) -> str:
    ind = _safe_id(indicator_id)
    fig = region_figure(ind)
    if fig is None:
        return '<p class="no-chart">No figures by Ontario Health region are available for this indicator.</p>'
    info = indicator(ind)
    est = estimates(ind)
    wave = _latest_wave(est)
    rows = est[(est["wave"] == wave) & (est["breakdown"] == "oh_region")]
    title = esc(info["title"])
    caption = (
        f"<strong>{title}, by Ontario Health region, {wave}.</strong> "
        f"Bars show the {'percentage' if _is_percent(info) else 'average score'}; black lines show the 95% "
        f"interval; the dashed line is Ontario as a whole. {_summary(rows, info, 'group_label')}"
    )
    label = f"Bar chart: {info['title']}, by Ontario Health region, {wave}. The values are listed in the caption."
    return _figure_html(fig, f"chart-{ind}-region", label, caption)


def _overall_series(est: pd.DataFrame) -> pd.DataFrame:
    return est[est["breakdown"] == "all"].sort_values("wave")


def has_trend(indicator_id: str) -> bool:
    """True when more than one wave has the indicator (a trend chart makes sense)."""
    est = estimates(indicator_id)
    return (not est.empty) and est["wave"].nunique() > 1


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
    fig = go.Figure(
        go.Scatter(
            name="Ontario",
            mode="lines+markers",
            x=waves,
            y=y,
            connectgaps=False,
            line=dict(color=BLUE, width=3),
            marker=dict(color=BLUE, size=10),
            error_y=dict(type="data", symmetric=False, array=up, arrayminus=down,
                         color=INK, thickness=1.5, width=8),
            hovertext=[_hover(r, info) if ok else "suppressed" for (_, r), ok in zip(series.iterrows(), mask)],
            hoverinfo="x+text",
        )
    )
    # Value labels above the interval's upper end, clear of both the line and the error bar.
    fig.add_trace(
        go.Scatter(
            name="value labels",
            mode="text",
            x=[int(w) for w in shown["wave"]],
            y=list(shown["ci_high"].fillna(shown["estimate"])),
            text=[fmt_value(v, info) for v in shown["estimate"]],
            textposition="top center",
            textfont=dict(size=14, color=INK),
            hoverinfo="skip",
        )
    )
    for _, row in hidden.iterrows():
        fig.add_annotation(
            x=int(row["wave"]), y=0.1, yref="paper", text="suppressed", showarrow=False,
            font=dict(color=MUTED, size=14, style="italic"), hovertext=esc(_reason(row)),
        )
    fig.update_layout(
        _layout(
            height=340,
            xaxis=dict(title=dict(text="Consultation year"), tickvals=waves, ticktext=[str(w) for w in waves],
                       range=[min(waves) - 0.5, max(waves) + 0.5], showgrid=False),
            yaxis=dict(title=dict(text="Percentage" if _is_percent(info) else "Average score (0 to 100)"),
                       range=[0, 110], tickvals=[0, 20, 40, 60, 80, 100], automargin=True,
                       showgrid=True, gridcolor=GRID, zeroline=True, zerolinecolor=MUTED),
        )
    )
    return fig


def trend_chart(indicator_id: str) -> str:
    """Chart across waves; empty string when only one wave has the indicator."""
    ind = _safe_id(indicator_id)
    fig = trend_figure(ind)
    if fig is None:
        return ""
    info = indicator(ind)
    series = _overall_series(estimates(ind)).assign(year=lambda d: d["wave"].astype(str))
    caption = (
        f"<strong>{esc(info['title'])}, Ontario as a whole, by consultation year.</strong> "
        f"Points show the {'percentage' if _is_percent(info) else 'average score'}; "
        f"black lines show the 95% interval. {_summary(series, info, 'year')}"
    )
    label = (f"Line chart: {info['title']}, Ontario as a whole, by consultation year. "
             "The values are listed in the caption.")
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
        f'<caption id="caption-{table_id}">{caption}</caption><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{foot}</div>"
    )


def data_table(indicator_id: str) -> str:
    """Every published value of one indicator; suppressed cells say so, with the reason as a note."""
    ind = _safe_id(indicator_id)
    info = indicator(ind)
    est = estimates(ind)
    if est.empty:
        return '<p class="no-chart">No published values for this indicator yet.</p>'
    percent = _is_percent(info)
    value_head = "Percentage" if percent else "Average score (0 to 100)"
    head = ["Year", "Breakdown", "Group", value_head, "95% interval", "Respondents (n)"]
    head += ["People (count)"] if percent else []
    reasons: list[str] = []  # footnotes in order of first use
    body = []
    titles = {**BREAKDOWNS, **breakdown_titles()}
    for _, row in est.iterrows():
        breakdown = titles.get(row["breakdown"], row["breakdown"])
        cells = [f"<td>{int(row['wave'])}</td>", f"<td>{esc(breakdown)}</td>",
                 f'<th scope="row">{esc(row["group_label"])}</th>']
        if _suppressed(row):
            reason = _reason(row)
            if reason not in reasons:
                reasons.append(reason)
            k = reasons.index(reason) + 1
            mark = f'<a class="note-ref" href="#note-{ind}-{k}" aria-label="note {k}"><sup>{k}</sup></a>'
            cells.append(f'<td class="suppressed">suppressed{mark}</td>')
            cells += ['<td class="suppressed">not shown</td>'] * (len(head) - 4)
        else:
            cells += [f'<td class="num">{esc(fmt_value(row["estimate"], info))}</td>',
                      f'<td class="num">{esc(fmt_interval(row, info))}</td>',
                      f'<td class="num">{esc(fmt_n(row["n"]))}</td>']
            if percent:
                cells.append(f'<td class="num">{esc(fmt_n(row["count"]))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = [f'<li id="note-{ind}-{k}">{esc(_sentence(r))}</li>' for k, r in enumerate(reasons, start=1)]
    caption = f"{esc(info['title'])} ({ind}): every published value, by year and group"
    table = _table(caption, head, body, notes, f"table-{ind}")
    return (
        f'<details class="data-details"><summary>Show the figures as a table: {esc(info["title"])}</summary>\n'
        f"{table}\n</details>"
    )


def load_table() -> str:
    """Per-wave load accounting for the methods page (counts of responses only)."""
    summary = load_summary()
    head = ["Year", "Data", "Responses read", "Loaded", "Excluded", "Duplicates", "Set aside (failed checks)"]
    body = []
    for _, row in summary.iterrows():
        data = "Synthetic (invented, for testing)" if bool(row["synthetic"]) else "Real responses"
        counts = "".join(f'<td class="num">{esc(fmt_n(row[c]))}</td>'
                         for c in ["read", "loaded", "excluded", "duplicates", "quarantined"])
        body.append(f'<tr><th scope="row">{int(row["wave"])}</th><td>{data}</td>{counts}</tr>')
    caption = "Responses received and what happened to them, by consultation year"
    return _table(caption, head, body, [], "table-load")


def questions_md(indicator_id: str, labels: dict[str, str] | None = None) -> str:
    """The questions an indicator uses, inline markdown: concept ids, with wording when known."""
    info = indicator(_safe_id(indicator_id))
    labels = question_labels() if labels is None else labels
    ids = [q.strip() for q in str(info.get("questions") or "").split(",") if q.strip()]
    if not ids:
        return "not recorded"
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
    measure = "a percentage of respondents" if _is_percent(info) else "an average score from 0 to 100"
    lines = [
        f"- **Indicator id:** {ind} ({esc(DOMAINS.get(info['domain'], info['domain']))}; reported as {measure})",
        f"- **Definition:** {md_text(info['definition'])}",
        f"- **Who is counted:** {md_text(info['population'])}",
        *_rule_lines(info),
        f"- **Questions used:** {questions_md(ind, labels)}",
        *_coverage_lines(info, breakdowns or {}),
        f"- **Read with care:** {md_text(info['caveats']) or 'no particular caveat recorded.'}",
        f"- [See the figures](index.html#{ind})",
    ]
    return f"\n### {md_text(info['title'])} {{#{ind}}}\n\n" + "\n".join(lines) + "\n"


def _present(info: dict[str, Any], key: str) -> bool:
    return key in info and not _missing(info[key]) and str(info[key]).strip() != ""


def _rule_lines(info: dict[str, Any]) -> list[str]:
    # The rules as compiled, with question ids and answer codes: what a reader can check the figure against.
    lines = []
    if _present(info, "population_rule"):
        lines.append(f"- **Denominator (n):** {md_text(info['population_rule'])}")
    if _present(info, "condition_rule"):
        lines.append(f"- **Counted (numerator):** {md_text(info['condition_rule'])}")
    if _present(info, "value"):
        lines.append(f"- **Score averaged:** <code>{esc(info['value'])}</code>")
    return lines


def _coverage_lines(info: dict[str, Any], titles: dict[str, str]) -> list[str]:
    lines = []
    if _present(info, "breakdowns"):
        ids = [b.strip() for b in str(info["breakdowns"]).split(",") if b.strip()]
        lines.append("- **Shown by:** " + ", ".join(md_text(titles.get(b, b)) for b in ids)
                     + " (each group also compared with everyone else)")
    if _present(info, "min_n"):
        lines.append(f"- **Smallest group reported:** {int(info['min_n'])} respondents (the suppression rules apply on top)")
    if _present(info, "waves"):
        lines.append(f"- **Years with figures:** {md_text(info['waves'])}")
    if "comparability" in info:
        if _present(info, "comparability"):
            across = md_text(info["comparability"])
        elif _present(info, "waves") and "," not in str(info["waves"]):
            across = "one year so far, nothing to compare with yet."
        else:
            across = "asked the same way in every year with figures, so the years compare directly."
        lines.append(f"- **Across years:** {across}")
    return lines


def breakdown_titles() -> dict[str, str]:
    """Breakdown id -> title, when the warehouse describes its breakdowns."""
    if not _has_table("indicator_breakdowns"):
        return {}
    rows = query("SELECT breakdown, title FROM indicator_breakdowns")
    return dict(zip(rows["breakdown"].astype(str), rows["title"].astype(str)))


def breakdowns_md() -> str:
    """How respondents are grouped, one entry per breakdown, straight from the definitions."""
    if not _has_table("indicator_breakdowns"):
        return ""
    rows = query("SELECT * FROM indicator_breakdowns ORDER BY sort_order, breakdown")
    return "\n".join(
        f"- **{md_text(r['title'])}.** {md_text(r['definition'])} *Groups:* {md_text(r['groups'])}"
        for _, r in rows.iterrows()
    ) + "\n"

"""Indicators: compile `surveys/indicators.yaml` to DuckDB SQL and compute the estimates.

1. `respondent_wide`: one row per respondent, one column per concept (codes as text, numbers as
   DOUBLE, multiple choice as a list), answers that mean "no answer" set to NULL, plus each
   scored item's points, the living wage of the respondent's region, and the scores.
2. Each indicator becomes one aggregate query per breakdown: n (the population who answered),
   count (who meet the condition) or mean and standard deviation of the value.
3. Intervals (Wilson for proportions, t for means) and disclosure control are added, and the
   result replaces `indicator_estimates`.
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Union

import duckdb
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.disclosure import DisclosureRules, suppress

Z_95 = 1.959963984540054


class IndicatorError(ValueError):
    """A definition that cannot be compiled; the message names the indicator and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(Strict):
    question: str
    in_: list[str] | None = Field(default=None, alias="in")
    not_in: list[str] | None = None
    below: float | str | None = None
    at_least: float | str | None = None

    @field_validator("in_", "not_in", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value


class AnyRule(Strict):
    any: list["Expr"]


class AllRule(Strict):
    all: list["Expr"]


Expr = Union[Rule, AnyRule, AllRule]
AnyRule.model_rebuild()
AllRule.model_rebuild()


class Score(Strict):
    title: str
    definition: str
    items: list[str]
    item_max: float
    min_items: int


class Indicator(Strict):
    id: str = Field(pattern=r"^[A-Z]+-\d{2}$")
    title: str
    domain: Literal["precarity", "disrespect", "resources", "drift", "wellbeing"]
    kind: Literal["proportion", "mean"]
    definition: str
    population: Expr
    population_text: str
    questions: list[str]
    condition: Expr | None = None
    value: str | None = None
    unit: str = "%"
    breakdowns: list[str] | None = None
    min_n: int | None = None
    caveats: str = ""


class Catalogue(Strict):
    default_breakdowns: list[str]
    default_min_n: int
    scores: dict[str, Score]
    indicators: list[Indicator]
    sha256: str = ""


def load_checked_catalogue(path: Path, surveys_dir: Path) -> Catalogue:
    """The catalogue, with every concept it names checked against the instruments."""
    catalogue = load_catalogue(path)
    try:
        check_definitions(catalogue, instrument_kinds(surveys_dir))
    except IndicatorError as exc:
        raise IndicatorError(f"{path}: {exc}") from None
    return catalogue


def load_catalogue(path: Path) -> Catalogue:
    raw = Path(path).read_bytes()
    try:
        catalogue = Catalogue.model_validate(yaml.safe_load(raw))
    except ValidationError as exc:
        raise IndicatorError(f"{path}: invalid indicator definitions\n{exc}") from None
    ids = [i.id for i in catalogue.indicators]
    if len(ids) != len(set(ids)):
        raise IndicatorError(f"{path}: an indicator id is used twice")
    for indicator in catalogue.indicators:
        if indicator.kind == "proportion" and indicator.condition is None:
            raise IndicatorError(f"{path}: {indicator.id} is a proportion but has no condition")
        if indicator.kind == "mean" and indicator.value is None:
            raise IndicatorError(f"{path}: {indicator.id} is a mean but names no value")
    return catalogue.model_copy(update={"sha256": hashlib.sha256(raw).hexdigest()})


# --- the wide respondent table ---------------------------------------------------------------


def concept_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute(
        "SELECT concept, any_value(type) FROM concepts WHERE stored AND type <> 'text' GROUP BY concept ORDER BY concept"
    ).fetchall()
    return dict(rows)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def build_wide(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> dict[str, str]:
    """(Re)build respondent_wide; return the type of each of its columns (for compiling rules)."""
    types = concept_types(con)
    scored = {c for (c,) in con.execute("SELECT DISTINCT concept FROM choices WHERE score IS NOT NULL").fetchall()}
    columns = []
    for concept, kind in types.items():
        match = f"a.concept = {_lit(concept)}"
        if kind == "numeric":
            columns.append(f"max(TRY_CAST(a.value AS DOUBLE)) FILTER (WHERE {match}) AS {_q(concept)}")
        elif kind == "multiple":
            columns.append(f"list(a.value ORDER BY a.value) FILTER (WHERE {match} AND NOT ch.missing) AS {_q(concept)}")
        elif kind == "date":
            columns.append(f"max(TRY_CAST(a.value AS DATE)) FILTER (WHERE {match}) AS {_q(concept)}")
        else:
            columns.append(f"max(a.value) FILTER (WHERE {match} AND NOT ch.missing) AS {_q(concept)}")
        if concept in scored:
            columns.append(f"max(ch.score) FILTER (WHERE {match}) AS {_q(concept + '__score')}")
    living_wage = "lw.hourly" if "lw_region" in types else "NULL::DOUBLE"
    score_columns = [_score_sql(name, score, scored) for name, score in catalogue.scores.items()]
    sql = f"""
        CREATE OR REPLACE TABLE respondent_wide AS
        WITH base AS (
            SELECT r.respondent_key, r.wave{''.join(', ' + c for c in columns)}
            FROM respondents r
            LEFT JOIN answers a USING (respondent_key)
            LEFT JOIN choices ch ON ch.wave = a.wave AND ch.concept = a.concept AND ch.code = a.value
            GROUP BY r.respondent_key, r.wave
        )
        SELECT base.*, {living_wage} AS living_wage{''.join(', ' + s for s in score_columns)}
        FROM base
        {"LEFT JOIN living_wage lw ON lw.wave = base.wave AND lw.lw_region = base.lw_region" if "lw_region" in types else ""}
        ORDER BY base.wave, base.respondent_key
    """
    con.execute(sql)
    kinds = {**types, "living_wage": "numeric"}
    kinds.update({name: "numeric" for name in catalogue.scores})
    return kinds


def _score_sql(name: str, score: Score, scored: set[str]) -> str:
    items = [_q(item + "__score") for item in score.items if item in scored]
    if not items:
        return f"NULL::DOUBLE AS {_q(name)}"
    answered = f"list_filter([{', '.join(items)}], lambda x: x IS NOT NULL)"
    return (
        f"CASE WHEN len({answered}) >= {score.min_items} "
        f"THEN 100.0 * list_avg({answered}) / {score.item_max} END AS {_q(name)}"
    )


# --- compiling rules -------------------------------------------------------------------------


def compile_rule(expr: Expr, kinds: dict[str, str]) -> str:
    """A rule as a SQL boolean over respondent_wide. Unknown concepts are an IndicatorError."""
    if isinstance(expr, AnyRule):
        return "(" + " OR ".join(compile_rule(e, kinds) for e in expr.any) + ")"
    if isinstance(expr, AllRule):
        return "(" + " AND ".join(compile_rule(e, kinds) for e in expr.all) + ")"
    if expr.question not in kinds:
        raise IndicatorError(f"rule on {expr.question!r}: no such concept in any loaded wave")
    column, kind = _q(expr.question), kinds[expr.question]
    parts = []
    if expr.in_ is not None:
        parts.append(_membership(column, kind, expr.in_))
    if expr.not_in is not None:
        parts.append(f"NOT {_membership(column, kind, expr.not_in)}")
    if expr.below is not None:
        parts.append(f"{column} < {_operand(expr.below, kinds)}")
    if expr.at_least is not None:
        parts.append(f"{column} >= {_operand(expr.at_least, kinds)}")
    if not parts:
        raise IndicatorError(f"rule on {expr.question!r} says nothing (use in, not_in, below or at_least)")
    # NULL (not answered) never satisfies a rule.
    return "coalesce(" + " AND ".join(parts) + ", false)"


def _membership(column: str, kind: str, codes: list[str]) -> str:
    listed = ", ".join(_lit(c) for c in codes)
    if kind == "multiple":
        return f"list_has_any({column}, [{listed}])"
    return f"{column} IN ({listed})"


def _operand(value: float | str, kinds: dict[str, str]) -> str:
    if isinstance(value, str):
        if value not in kinds:
            raise IndicatorError(f"comparison with {value!r}: no such concept or derived value")
        return _q(value)
    return repr(float(value))


def _answered(questions: list[str], kinds: dict[str, str]) -> str:
    return " AND ".join(f"{_q(q)} IS NOT NULL" for q in questions)


def _available(indicator: Indicator, wave_concepts: set[str], catalogue: Catalogue) -> bool:
    """Whether a wave asked what the indicator needs (scores: enough of their items)."""
    for concept in indicator.questions + ([indicator.value] if indicator.value else []):
        if concept in catalogue.scores:
            score = catalogue.scores[concept]
            if sum(item in wave_concepts for item in score.items) < score.min_items:
                return False
        elif concept == "living_wage":
            if "lw_region" not in wave_concepts:
                return False
        elif concept not in wave_concepts:
            return False
    return True


# --- estimates -------------------------------------------------------------------------------


def compute(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, rules: DisclosureRules
) -> pd.DataFrame:
    """Rebuild respondent_wide, indicator_estimates and indicator_catalogue; return the estimates."""
    kinds = build_wide(con, catalogue)
    waves = {
        wave: {c for (c,) in con.execute("SELECT concept FROM concepts WHERE wave = ?", [wave]).fetchall()}
        for (wave,) in con.execute("SELECT DISTINCT wave FROM respondents ORDER BY wave").fetchall()
    }
    frames = []
    for indicator in catalogue.indicators:
        usable = [w for w, concepts in waves.items() if _available(indicator, concepts, catalogue)]
        if usable:
            frames.append(_aggregate(con, indicator, catalogue, kinds, usable))
    cells = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    estimates = add_intervals(cells) if not cells.empty else cells
    if not estimates.empty:
        min_n = {i.id: i.min_n or catalogue.default_min_n for i in catalogue.indicators}
        estimates["min_n"] = estimates["indicator_id"].map(min_n)
        estimates = suppress(estimates, rules)
    _store(con, estimates, catalogue)
    return estimates


def instrument_kinds(surveys_dir: Path) -> dict[str, str]:
    """The type of every concept of every wave's instrument, plus derived values."""
    from pipeline.instrument import available_waves, instrument_path, load_instrument

    kinds = {"living_wage": "numeric"}
    for wave in available_waves(surveys_dir):
        for question in load_instrument(instrument_path(surveys_dir, wave)).questions:
            kinds.setdefault(question.id, question.type.value)
    return kinds


def check_definitions(catalogue: Catalogue, kinds: dict[str, str]) -> None:
    """Every concept an indicator names must exist in some wave's instrument, loaded or not: a
    misspelt id is an error, not an indicator that silently disappears from the report."""
    kinds = {**kinds, **{name: "numeric" for name in catalogue.scores}}
    for indicator in catalogue.indicators:
        named = indicator.questions + ([indicator.value] if indicator.value else [])
        for concept in named:
            if concept not in kinds:
                raise IndicatorError(f"{indicator.id}: no such concept {concept!r} in any wave's instrument")
        for breakdown in indicator.breakdowns or catalogue.default_breakdowns:
            if kinds.get(breakdown) not in ("single", "likert"):
                raise IndicatorError(
                    f"{indicator.id}: breakdown {breakdown!r} is not a single-choice question of any wave"
                )
        try:
            compile_rule(indicator.population, kinds)
            if indicator.condition is not None:
                compile_rule(indicator.condition, kinds)
        except IndicatorError as exc:
            raise IndicatorError(f"{indicator.id}: {exc}") from None


def _aggregate(
    con: duckdb.DuckDBPyConnection, indicator: Indicator, catalogue: Catalogue, kinds: dict[str, str], waves: list[int]
) -> pd.DataFrame:
    population = compile_rule(indicator.population, kinds)
    answered = _answered(indicator.questions, kinds)
    where = f"{population} AND {answered} AND wave IN ({', '.join(str(w) for w in waves)})"
    if indicator.kind == "proportion":
        measure = (
            f"count(*) FILTER (WHERE {compile_rule(indicator.condition, kinds)}) AS count, "
            "NULL::DECIMAL(38, 6) AS total, NULL::DECIMAL(38, 12) AS total_sq"
        )
    else:
        # Exact decimal sums, not DOUBLE aggregates: parallel floating-point sums vary in their
        # last bits from run to run, and published figures must not.
        value = f"CAST({_q(indicator.value)} AS DECIMAL(18, 6))"
        measure = f"NULL::BIGINT AS count, sum({value}) AS total, sum({value} * {value}) AS total_sq"
    parts = [f"SELECT wave, 'all' AS breakdown, 'all' AS group_code, count(*) AS n, {measure} FROM respondent_wide WHERE {where} GROUP BY wave"]
    for breakdown in indicator.breakdowns or catalogue.default_breakdowns:
        if kinds.get(breakdown) not in ("single", "likert"):
            continue
        column = _q(breakdown)
        parts.append(
            f"SELECT wave, {_lit(breakdown)}, {column}, count(*), {measure} FROM respondent_wide "
            f"WHERE {where} AND {column} IS NOT NULL GROUP BY wave, {column}"
        )
    sql = f"""
        WITH cells AS ({' UNION ALL '.join(parts)})
        SELECT {_lit(indicator.id)} AS indicator_id, {_lit(indicator.kind)} AS kind, cells.*,
               coalesce(ch.label_en, 'All respondents') AS group_label
        FROM cells LEFT JOIN choices ch
          ON ch.wave = cells.wave AND ch.concept = cells.breakdown AND ch.code = cells.group_code
        ORDER BY wave, breakdown, group_code
    """
    return con.execute(sql).df()


def wilson_interval(count: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion, as fractions (0-1)."""
    if n == 0:
        return (math.nan, math.nan)
    p = count / n
    if count in (0, n):  # the closed form, without rounding error at the ends
        bound = n / (n + z * z)
        return (0.0, 1.0 - bound) if count == 0 else (bound, 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def t_interval(mean: float, sd: float, n: int) -> tuple[float, float]:
    from scipy.stats import t  # a dependency of statsmodels and of our t quantiles

    if n < 2 or sd != sd:
        return (math.nan, math.nan)
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return (mean - half, mean + half)


def mean_and_sd(total: Decimal, total_sq: Decimal, n: int) -> tuple[float, float]:
    """Mean and sample standard deviation from exact sums (deterministic to the last bit)."""
    mean = total / n
    if n < 2:
        return float(mean), math.nan
    variance = (total_sq - total * total / n) / (n - 1)
    return float(mean), math.sqrt(max(0.0, float(variance)))


def add_intervals(cells: pd.DataFrame) -> pd.DataFrame:
    cells = cells.copy()
    estimate, low, high = [], [], []
    for row in cells.itertuples():
        if row.kind == "proportion":
            lo, hi = wilson_interval(int(row.count), int(row.n))
            estimate.append(100.0 * row.count / row.n)
            low.append(100.0 * lo)
            high.append(100.0 * hi)
        else:
            mean, sd = mean_and_sd(Decimal(row.total), Decimal(row.total_sq), int(row.n))
            lo, hi = t_interval(mean, sd, int(row.n))
            estimate.append(mean)
            low.append(lo)
            high.append(hi)
    cells["estimate"], cells["ci_low"], cells["ci_high"] = estimate, low, high
    return cells


def _store(con: duckdb.DuckDBPyConnection, estimates: pd.DataFrame, catalogue: Catalogue) -> None:
    con.execute("DELETE FROM indicator_estimates")
    if not estimates.empty:
        table = estimates[[
            "indicator_id", "wave", "breakdown", "group_code", "group_label", "n", "count",
            "estimate", "ci_low", "ci_high", "suppressed", "suppression",
        ]]
        con.register("incoming", table)
        con.execute("INSERT INTO indicator_estimates SELECT * FROM incoming")
        con.unregister("incoming")
    rows = [
        (i.id, i.title, i.domain, i.kind, i.unit, i.definition.strip(), i.population_text,
         ", ".join(i.questions), i.caveats.strip(), order)
        for order, i in enumerate(catalogue.indicators)
    ]
    con.execute("DELETE FROM indicator_catalogue")
    con.executemany("INSERT INTO indicator_catalogue VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute(
        "INSERT OR REPLACE INTO warehouse_meta VALUES ('indicators_sha256', ?)", [catalogue.sha256]
    )

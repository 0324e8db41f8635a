"""An attacker, written apart from the pipeline: it reads only what is published (the warehouse's
published_estimates and published_gaps views, the public disclosure rules and the indicator
definitions YAML) and tries to recover every suppressed cell by combining tables.

What it knows, and how it uses it (interval propagation to a fixed point, whole numbers):
- each table: the groups' n and counts add up to everyone who answered the breakdown, which a
  published gap gives away (group + everyone else);
- indicators with the same population and questions count the same people: the same n;
- nested definitions: an indicator whose population needs more questions answered has the smaller
  n; a condition that implies another (frequent incivility implies any incivility; both answers
  "no" implies one "no") has the smaller count;
- bands of one score that together cover every value add up to n;
- the reasons: "fewer than 10 in the group" bounds n, "fewer than 5 answered one way" means the
  count or its complement is at most 4.
A cell is recovered when its n and count are both pinned, or its count is pinned to 0 or to n
(means are not attacked: their n only links the tables).
"""

from __future__ import annotations

import math
import re
from itertools import combinations
from pathlib import Path

import duckdb
import yaml


class Bounds(dict):
    """Variable -> [low, high] (whole numbers)."""

    def tighten(self, var, low=-math.inf, high=math.inf) -> bool:
        old = self[var]
        new = [old[0] if low == -math.inf else max(old[0], math.ceil(low - 1e-9)),
               old[1] if high == math.inf else min(old[1], math.floor(high + 1e-9))]
        if new != old:
            if new[0] > new[1]:
                raise ValueError(f"contradiction at {var}")
            self[var] = new
            return True
        return False


def recover(con: duckdb.DuckDBPyConnection, definitions: Path) -> dict[tuple, tuple[int | None, int | None]]:
    """Every suppressed cell the attacker pins down: key -> (n, count) as far as learnt."""
    cells = con.execute("SELECT indicator_id, wave, breakdown, group_code, n, count, suppressed, suppression "
                        "FROM published_estimates").fetchall()
    gaps = con.execute("SELECT indicator_id, wave, breakdown, n + rest_n, count + rest_count "
                       "FROM published_gaps WHERE NOT suppressed").fetchall()
    indicators = {i["id"]: i for i in yaml.safe_load(definitions.read_text(encoding="utf-8"))["indicators"]}
    big = 10 ** 6
    bounds, equalities, at_most, either = Bounds(), [], [], []
    keys = {}
    for ind, wave, breakdown, group, n, count, hidden, reason in cells:
        key = (ind, wave, breakdown, group)
        keys[key] = indicators[ind]
        bounds[("n",) + key] = [n, n] if not hidden else [1, big]
        mean = indicators[ind]["kind"] == "mean"  # no count: only its n is used, to link tables
        bounds[("c",) + key] = [0, 0] if mean else [count, count] if not hidden else [0, big]
        at_most.append((("c",) + key, ("n",) + key))
        if hidden:
            small_group = re.search(r"fewer than (\d+) respondents in the group", reason or "")
            if small_group:
                bounds[("n",) + key][1] = int(small_group.group(1)) - 1
            one_way = re.search(r"fewer than (\d+) respondents answered one way", reason or "")
            if one_way:
                either.append((key, int(one_way.group(1)) - 1))
    # tables: groups add up to everyone who answered the breakdown (from any published gap)
    answered = {}
    for ind, wave, breakdown, n_total, c_total in gaps:
        answered[(ind, wave, breakdown)] = (n_total, c_total)
    for (ind, wave, breakdown), (n_total, c_total) in answered.items():
        members = [k for k in keys if k[:3] == (ind, wave, breakdown)]
        equalities.append(([("n",) + k for k in members], n_total))
        if c_total is not None:
            equalities.append(([("c",) + k for k in members], c_total))
    # links between indicators, from their definitions
    by_cell: dict[tuple, list[str]] = {}
    for ind, wave, breakdown, group in keys:
        by_cell.setdefault((wave, breakdown, group), []).append(ind)
    for (wave, breakdown, group), inds in by_cell.items():
        def var(kind, i):
            return (kind, i, wave, breakdown, group)
        for a, b in combinations(sorted(inds), 2):
            da, db = indicators[a], indicators[b]
            if da["population"] == db["population"]:
                if set(da["questions"]) == set(db["questions"]):
                    equalities.append(([var("n", a)], None, [var("n", b)]))
                elif set(da["questions"]) > set(db["questions"]):
                    at_most.append((var("n", a), var("n", b)))
                elif set(da["questions"]) < set(db["questions"]):
                    at_most.append((var("n", b), var("n", a)))
            for x, y in ((a, b), (b, a)):
                if "condition" in indicators[x] and "condition" in indicators[y] and \
                        implies(indicators[x]["condition"], indicators[y]["condition"]) and \
                        set(indicators[x]["questions"]) >= set(indicators[y]["questions"]):
                    at_most.append((var("c", x), var("c", y)))
        for band in bands(inds, indicators):
            equalities.append(([var("c", i) for i in band], None, [var("n", band[0])]))
    _propagate(bounds, equalities, at_most, either)
    found = {}
    for key, definition in keys.items():
        n, c = bounds[("n",) + key], bounds[("c",) + key]
        hidden = next(h for i, w, b, g, _, _, h, _ in cells if (i, w, b, g) == key)
        if not hidden or definition["kind"] == "mean":
            continue
        if (n[0] == n[1] and c[0] == c[1]) or c[1] == 0 or (c[0] == n[1] and n[0] == n[1]):
            found[key] = (n[0] if n[0] == n[1] else None, c[0] if c[0] == c[1] else None)
    return found


def implies(x: dict, y: dict) -> bool:
    """Whether condition x implies condition y, for conditions made of code lists: a rule, any-of
    rules, or all-of rules."""
    if "all" in x:
        return any(implies(part, y) for part in x["all"])
    if "all" in y:
        return all(implies(x, part) for part in y["all"])
    xs, ys = x.get("any", [x]), y.get("any", [y])
    if any("in" not in r for r in xs + ys):
        return False
    allowed = {}
    for r in ys:
        allowed.setdefault(r["question"], set()).update(map(str, r["in"]))
    return all(set(map(str, r["in"])) <= allowed.get(r["question"], set()) for r in xs)


def bands(inds: list[str], indicators: dict) -> list[list[str]]:
    """Indicators that cut one score into intervals covering every value, same population."""
    by_score: dict[tuple, list[tuple[float, float, str]]] = {}
    for i in inds:
        cond = indicators[i].get("condition", {})
        if "question" in cond and ({"below", "at_least"} & set(cond)) and not ({"in", "not_in", "only"} & set(cond)):
            if isinstance(cond.get("below", 0), str) or isinstance(cond.get("at_least", 0), str):
                continue
            key = (cond["question"], repr(indicators[i]["population"]), tuple(indicators[i]["questions"]))
            by_score.setdefault(key, []).append((cond.get("at_least", -math.inf), cond.get("below", math.inf), i))
    found = []
    for parts in by_score.values():
        parts.sort()
        if parts[0][0] == -math.inf and parts[-1][1] == math.inf and all(
                a[1] == b[0] for a, b in zip(parts, parts[1:])):
            found.append([p[2] for p in parts])
    return found


def _propagate(bounds: Bounds, equalities: list, at_most: list, either: list) -> None:
    changed = True
    while changed:
        changed = False
        for eq in equalities:
            left, total = eq[0], eq[1]
            right = eq[2] if len(eq) > 2 else []
            # sum(left) - sum(right) = total (or 0 when total is None)
            terms = [(v, 1) for v in left] + [(v, -1) for v in right]
            value = total or 0
            for k, (v, sign) in enumerate(terms):
                others = terms[:k] + terms[k + 1:]
                others_low = sum(bounds[u][0] if s > 0 else -bounds[u][1] for u, s in others)
                others_high = sum(bounds[u][1] if s > 0 else -bounds[u][0] for u, s in others)
                if sign > 0:
                    changed |= bounds.tighten(v, value - others_high, value - others_low)
                else:
                    changed |= bounds.tighten(v, others_low - value, others_high - value)
        for small, large in at_most:
            changed |= bounds.tighten(small, high=bounds[large][1])
            changed |= bounds.tighten(large, low=bounds[small][0])
        for key, m in either:
            n, c = ("n",) + key, ("c",) + key
            if bounds[c][0] > m:  # not "few said yes": few said no
                changed |= bounds.tighten(c, low=bounds[n][0] - m)
                changed |= bounds.tighten(n, high=bounds[c][1] + m)
            if bounds[n][0] - m > bounds[c][1]:  # not "few said no": few said yes
                changed |= bounds.tighten(c, high=m)

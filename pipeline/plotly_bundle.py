"""Which plotly.js the report pages embed: the small basic bundle vendored in pipeline/vendor/, or
the full library that ships with plotly.py.

The charts only draw bar and scatter traces, which plotly.js's basic bundle (bar, pie, scatter;
about 1.2 MB) draws as well as the full one (about 4.8 MB). It is kept in the repository, not
fetched, so a report renders on an air-gapped machine with no npm or node. The figures' JSON is
written by plotly.py for the plotly.js it ships: the basic bundle is embedded only while it is
that same version; after a plotly upgrade the pages carry the full library again, and the run
says so, until the vendored bundle is updated (docs/runbook.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import NamedTuple

VENDOR = Path(__file__).resolve().with_name("vendor")
BASIC_BUNDLE = VENDOR / "plotly-basic.min.js"
BASIC_PROVENANCE = VENDOR / "plotly-basic.json"
# The first lines of the bundle: "* plotly.js (basic - minified) v4.1.1"
_HEADER_VERSION = re.compile(r"\*\s*plotly\.js \(basic(?: - minified)?\) v(\S+)")
# Each trace module the bundle registers is an object literal {moduleType:"trace",name:"bar",...}.
_TRACE_MODULE = re.compile(r'moduleType:"trace",name:"([a-z0-9]+)"')


class Bundle(NamedTuple):
    name: str  # what the manifest records, e.g. "plotly.js-basic-dist-min 4.1.1 (pipeline/vendor)"
    text: str  # the library's code, embedded verbatim once per page
    notice: str  # why the full library is embedded instead of the basic one; "" when it is not


def header_version(text: str) -> str | None:
    """The basic bundle's version, from its own header comment (None when it has none)."""
    found = _HEADER_VERSION.search(text[:500])
    return found.group(1) if found else None


def registered_traces(text: str) -> frozenset[str]:
    """The trace types a plotly.js bundle can draw, read from its code."""
    return frozenset(_TRACE_MODULE.findall(text))


@functools.cache
def basic_bundle_text() -> str | None:
    """The vendored basic bundle, when it is there and is the file its provenance names (by sha256)."""
    try:
        data = BASIC_BUNDLE.read_bytes()
        provenance = json.loads(BASIC_PROVENANCE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if hashlib.sha256(data).hexdigest() != provenance.get("file_sha256"):
        return None
    return data.decode("utf-8")


@functools.cache
def page_bundle() -> Bundle:
    """The plotly.js to embed in the pages: the basic bundle when it is the version plotly.py writes
    figures for, else the full library, with a notice saying why and what to do."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    wanted = get_plotlyjs_version()
    basic = basic_bundle_text()
    have = header_version(basic) if basic is not None else None
    if basic is not None and have == wanted:
        return Bundle(f"plotly.js-basic-dist-min {have} (pipeline/vendor)", basic, "")
    if basic is None:
        why = (f"{BASIC_BUNDLE} is missing, unreadable or not the file {BASIC_PROVENANCE.name} names "
               "(its sha256 differs)")
    else:
        why = f"the basic bundle in {BASIC_BUNDLE} is plotly.js {have}, plotly.py writes charts for plotly.js {wanted}"
    notice = (f"charts: the pages embed the full plotly.js {wanted} (about 4.8 MB a page, not 1.2 MB) because {why}; "
              "to make them small again, update the vendored bundle (docs/runbook.md, "
              "'Updating the chart library after a plotly upgrade')")
    return Bundle(f"plotly.js {wanted} (full, from plotly.py)", get_plotlyjs(), notice)


@functools.cache
def page_traces() -> frozenset[str]:
    return registered_traces(page_bundle().text)


def check_traces(trace_types: set[str], where: str) -> None:
    """A chart with a trace type the embedded bundle cannot draw would stay blank in the browser
    without any error at render time: stop with one that says what to do."""
    drawn = page_traces()
    missing = sorted(set(trace_types) - drawn)
    if missing:
        raise ValueError(f"{where}: trace type {', '.join(missing)} is not in the plotly.js the pages embed "
                         f"({page_bundle().name}, which draws {', '.join(sorted(drawn))}): "
                         "draw the chart with those, or vendor a plotly.js bundle that has it (docs/runbook.md)")

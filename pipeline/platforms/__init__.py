"""Survey-platform adapters: one module per platform, each turning that platform's own export
formats into a `Layout` (classified columns and data records) behind one interface.

`reading` decodes files (any encoding, delimiter, line end, or an .xlsx workbook), `detect`
names the platform, `answers` maps a layout onto an instrument's concepts, `draft` writes a
starting instrument from an export, an XLSForm or a REDCap data dictionary.
"""

from __future__ import annotations

from pipeline.platforms.common import Detection, Layout, PlatformAdapter, SourceColumn
from pipeline.platforms.generic import GenericTable
from pipeline.platforms.googleforms import GoogleForms
from pipeline.platforms.kobo import Kobo
from pipeline.platforms.limesurvey import LimeSurvey
from pipeline.platforms.qualtrics import Qualtrics
from pipeline.platforms.redcap import REDCap
from pipeline.platforms.surveymonkey import SurveyMonkey

ADAPTERS: dict[str, PlatformAdapter] = {
    adapter.name: adapter
    for adapter in (Qualtrics(), SurveyMonkey(), LimeSurvey(), GoogleForms(), Kobo(), REDCap(), GenericTable())
}
PLATFORMS = tuple(ADAPTERS)

__all__ = ["ADAPTERS", "PLATFORMS", "Detection", "Layout", "PlatformAdapter", "SourceColumn"]

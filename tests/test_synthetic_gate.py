"""The synthetic-data gate: a report of the synthetic consultation says so on every page, English
and French, or the whole site is removed and nothing is published."""

from __future__ import annotations

import pytest

from pipeline.cli import _report_labelled
from pipeline.config import Paths

BANNER_EN = '<div class="synthetic-banner">These figures come from the built-in SYNTHETIC consultation.</div>'
BANNER_FR = '<div class="synthetic-banner">Ces chiffres viennent de la consultation SYNTHÉTIQUE intégrée.</div>'


def write_site(paths: Paths, pages: dict[str, str]) -> None:
    for name, text in pages.items():
        page = paths.site / name
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f"<html><body>{text}<p>Figures.</p></body></html>", encoding="utf-8")


def test_every_page_labelled_in_its_language_passes(loaded: Paths) -> None:
    write_site(loaded, {"index.html": BANNER_EN, "methods.html": BANNER_EN,
                        "fr/index.html": BANNER_FR, "fr/methods.html": BANNER_FR})
    assert _report_labelled(loaded)
    assert (loaded.site / "fr" / "index.html").exists()


@pytest.mark.parametrize("unlabelled", ["methods.html", "fr/methods.html"])
def test_one_unlabelled_page_removes_the_whole_site(loaded: Paths, unlabelled: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    pages = {"index.html": BANNER_EN, "methods.html": BANNER_EN, "fr/index.html": BANNER_FR, "fr/methods.html": BANNER_FR}
    pages[unlabelled] = "<h1>Results</h1>"
    write_site(loaded, pages)
    assert not _report_labelled(loaded)
    assert not loaded.site.exists()
    assert unlabelled in capsys.readouterr().err


def test_real_data_need_no_synthetic_label(loaded: Paths) -> None:
    import duckdb

    con = duckdb.connect(str(loaded.warehouse))
    con.execute("UPDATE load_ledger SET synthetic = false")
    con.close()
    write_site(loaded, {"index.html": "<h1>Results</h1>"})
    assert _report_labelled(loaded)

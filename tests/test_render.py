"""Tests of pipeline.render: the offline engine end to end, and the Quarto engine's selection logic.

Renders run real Jupyter kernels and pandoc, on copies of tests/fixtures/quarto_mini (never in the
repository itself) or on small projects written by the test.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from pipeline import render
from pipeline.render import RenderError, RenderResult, choose_engine, parse_page, render_project

FIXTURE = Path(__file__).parent / "fixtures" / "quarto_mini"
EXTERNAL = re.compile(r"<(script|link|img|iframe)\b[^>]*(src|href)=\"?(https?:)?//", re.IGNORECASE)


def _copy_fixture(dest: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, dest, ignore=shutil.ignore_patterns("_site", ".*")))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _project(root: Path, pages: dict[str, str], quarto_yml: str = "project:\n  type: website\n") -> Path:
    """A small project written by the test: `_quarto.yml` plus the given pages."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "_quarto.yml").write_text(quarto_yml, encoding="utf-8")
    for name, text in pages.items():
        (root / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[RenderResult, list[str]]:
    """The mini fixture rendered once with engine="auto" on a machine without Quarto."""
    project = _copy_fixture(tmp_path_factory.mktemp("mini") / "reports")
    messages: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render.shutil, "which", lambda name: None)
        result = render_project(project, engine="auto", env={"CONSULT_TEST_VALUE": "hello"},
                                progress=messages.append)
    return result, messages


def _page(rendered: tuple[RenderResult, list[str]], name: str) -> str:
    return (rendered[0].output_dir / name).read_text(encoding="utf-8")


# --- engine choice ----------------------------------------------------------------------------


def test_choose_engine_auto_prefers_quarto_when_installed() -> None:
    assert choose_engine("auto", "/usr/local/bin/quarto") == "quarto"
    assert choose_engine("auto", None) == "offline"
    assert choose_engine("offline", "/usr/local/bin/quarto") == "offline"
    assert choose_engine("quarto", "/usr/local/bin/quarto") == "quarto"


def test_choose_engine_rejects_missing_quarto_and_unknown_names() -> None:
    with pytest.raises(RenderError, match="Quarto CLI is not installed"):
        choose_engine("quarto", None)
    with pytest.raises(RenderError, match="unknown render engine"):
        choose_engine("latex", None)


def test_forcing_quarto_without_quarto_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _copy_fixture(tmp_path / "reports")
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    with pytest.raises(RenderError, match="Quarto CLI is not installed.*engine='offline'"):
        render_project(project, engine="quarto")
    assert not (project / "_site").exists()


# --- the offline engine on the mini fixture --------------------------------------------------


def test_offline_engine_writes_both_pages_and_resources(rendered: tuple[RenderResult, list[str]]) -> None:
    result, messages = rendered
    site = result.output_dir
    assert site.name == "_site"
    assert result.pages == [site / "index.html", site / "results.html"]
    assert all(p.is_file() for p in result.pages)
    assert (site / "data" / "notes.txt").read_text().startswith("Notes copied")
    assert result.engine.startswith("offline: Jupyter kernel (ipykernel ")
    assert "+ pandoc 3." in result.engine
    assert any(m.startswith("render index.qmd (1/2)") for m in messages)
    assert not [p for p in site.parent.iterdir() if ".rendering-" in p.name or ".old-" in p.name]


def test_page_has_markdown_include_callout_and_anchors(rendered: tuple[RenderResult, list[str]]) -> None:
    page = _page(rendered, "index.html")
    assert '<html lang="en">' in page
    assert "<title>Mini report – Mini consultation report</title>" in page
    assert '<h1 class="title">Mini report</h1>' in page
    assert "This paragraph comes from an included file." in page  # {{< include >}}
    assert '<h2 id="intro">Introduction</h2>' in page  # {#id} header attributes
    assert '<h2 id="sec-method">Method</h2>' in page
    assert 'href="#sec-method"' in page  # toc: true
    assert '<div class="callout callout-note" role="note">' in page
    assert "<p>Counts under five are suppressed.</p>" in page
    # IPython Markdown output, using a variable set by a cell of the included file.
    assert "<p><strong>Respondents:</strong> 128</p>" in page
    assert "{{<" not in page and "```" not in page


def test_echo_options_and_cell_output(rendered: tuple[RenderResult, list[str]]) -> None:
    index = _page(rendered, "index.html")
    assert "import os" not in index  # execute: {echo: false} in _quarto.yml
    assert "shown_total" in index and "shown total = 42" in index  # #| echo: true
    assert "not_executed" in index  # plain ```python stays a code block, not run
    results = _page(rendered, "results.html")
    assert 'class="sourceCode python cell-code"' in results  # front matter execute: {echo: true}
    assert "CONSULT_TEST_VALUE" not in results  # ...but #| echo: false wins for that cell
    assert "context value: hello" in results  # env= reaches the kernel


def test_html_asis_and_lang_on_second_page(rendered: tuple[RenderResult, list[str]]) -> None:
    page = _page(rendered, "results.html")
    assert '<html lang="fr">' in page
    assert '<table class="mini-table"><tr><th>Région</th>' in page  # text/html passes raw
    assert '<h3 id="asis-heading">Asis heading</h3>' in page  # output: asis is markdown
    assert "<em>markdown</em>" in page
    assert '<h2 id="tbl-anchor">Tableau</h2>' in page
    assert '<div class="callout-title">\nMise en garde\n</div>' in page
    assert "Aller au contenu principal" in page  # engine text follows the page language


def test_navbar_links_pages_and_marks_current(rendered: tuple[RenderResult, list[str]]) -> None:
    index, results = _page(rendered, "index.html"), _page(rendered, "results.html")
    assert '<a class="site-title" href="index.html">Mini consultation report</a>' in index
    assert '<li><a href="index.html" aria-current="page">Home</a></li>' in index
    assert '<li><a href="results.html">Results</a></li>' in index
    assert '<li><a href="results.html" aria-current="page">Results</a></li>' in results
    assert '<a class="skip-link" href="#content">' in index


def test_pages_are_self_contained(rendered: tuple[RenderResult, list[str]]) -> None:
    for path in rendered[0].pages:
        page = path.read_text(encoding="utf-8")
        assert '<script src="http' not in page and '<link href="http' not in page
        assert not EXTERNAL.search(page)
        assert "<link" not in page  # every stylesheet was inlined
        assert ".mini-table { border: 2px solid #000; }" in page  # format.html css
        assert ":focus-visible" in page  # our stylesheet
        assert "mathjax" not in page.lower()


def test_engine_description_is_visible_to_cells(rendered: tuple[RenderResult, list[str]]) -> None:
    result, _ = rendered
    page = _page(rendered, "index.html")
    assert f"Rendered by: {result.engine}</code>" in page
    assert f'<meta name="generator" content="{result.engine}">' in page


def test_rendering_twice_is_byte_identical(tmp_path: Path) -> None:
    project = _copy_fixture(tmp_path / "reports")
    first = render_project(project, engine="offline")
    before = _snapshot(first.output_dir)
    second = render_project(project, engine="offline")
    assert _snapshot(second.output_dir) == before
    assert set(before) == {"index.html", "results.html", "data/notes.txt"}


# --- failures ---------------------------------------------------------------------------------


def test_failing_cell_names_file_and_cell_and_keeps_previous_site(tmp_path: Path) -> None:
    project = _copy_fixture(tmp_path / "reports")
    site = render_project(project, engine="offline").output_dir
    before = _snapshot(site)
    results = project / "results.qmd"
    results.write_text(results.read_text() + "\n```{python}\n#| label: boom\nratio = 1 / 0\n```\n")
    with pytest.raises(RenderError) as caught:
        render_project(project, engine="offline")
    message = str(caught.value)
    assert "results.qmd:" in message and "label: boom" in message
    assert "ratio = 1 / 0" in message and "ZeroDivisionError" in message
    assert _snapshot(site) == before  # the previous site is untouched
    assert not [p for p in project.iterdir() if ".rendering-" in p.name or ".old-" in p.name]


def test_failing_unlabelled_cell_in_include_names_included_file(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", {
        "index.qmd": """
            ---
            title: Failing
            ---
            {{< include _part.qmd >}}
            """,
        "_part.qmd": """
            Some text.

            ```{python}
            x = 1
            ```

            ```{python}
            undefined_name + 1
            ```
            """,
    })
    with pytest.raises(RenderError) as caught:
        render_project(project, engine="offline")
    message = str(caught.value)
    assert message.startswith("_part.qmd:7: cell 2 of index.qmd failed")
    assert "undefined_name + 1" in message and "NameError" in message
    assert not (project / "_site").exists()


def test_external_resources_are_refused(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", {"index.qmd": """
        ```{python}
        from IPython.display import HTML
        HTML('<script src="https://cdn.example.org/lib.js"></script>')
        ```
        """})
    with pytest.raises(RenderError, match="index.qmd: the page loads an external resource"):
        render_project(project, engine="offline")


# --- more cell options, Plotly, parsing ----------------------------------------------------


def test_cell_options_plotly_bundle_once_and_working_directory(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", {
        "index.qmd": """
            ---
            title: Charts
            ---
            ```{python}
            #| echo: false
            import os, sys
            import plotly.graph_objects as go
            from plotly.offline import get_plotlyjs
            from IPython.display import HTML, display

            def show(fig, div_id):
                display(HTML(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)))

            display(HTML("<script>" + get_plotlyjs() + "</script>"))
            ```

            ```{python}
            #| label: fig-one
            #| fig-cap: First chart
            show(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])), "chart-one")
            ```

            ```{python}
            show(go.Figure(go.Bar(x=["c", "d"], y=[3, 4])), "chart-two")
            print(os.getcwd())
            ```

            ```{python}
            #| warning: false
            print("kept stdout"); print("dropped stderr", file=sys.stderr)
            ```

            ```{python}
            #| error: true
            raise ValueError("shown, not fatal")
            ```

            ```{python}
            #| eval: false
            #| echo: true
            never_run()
            ```

            ```{python}
            #| output: false
            print("hidden output")
            ```

            ```{python}
            #| include: false
            excluded = "excluded " + "entirely"
            print(excluded)
            ```

            ```{python}
            print(excluded.upper())
            ```
            """,
    })
    result = render_project(project, engine="offline")
    page = result.pages[0].read_text(encoding="utf-8")
    assert "def show" not in page  # echo: false
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()[:40]) == 1  # the bundle once per page, not per chart
    assert 'id="chart-one"' in page and 'id="chart-two"' in page
    assert '<div id="fig-one" class="cell">' in page and "First chart" in page
    assert not EXTERNAL.search(page) and "<link" not in page
    assert f"<code>{project}\n</code>" in page or f"<code>{project}</code>" in page  # cwd
    assert "kept stdout" in page and "cell-output-stderr" not in page  # warning: false
    assert "ValueError: shown, not fatal" in page
    assert "never_run()" in page
    assert "<code>hidden output" not in page  # output: false (the code is still echoed)
    assert "excluded entirely" not in page and "EXCLUDED ENTIRELY" in page  # include: false still runs


def test_parser_reads_options_includes_and_escapes(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", {
        "page.qmd": """
            ---
            title: Parse
            lang: fr
            ---
            {{< include sub/_inc.qmd >}}

            Literal {{{< include x.qmd >}}} stays.

            ````markdown
            ```{python}
            #| label: in-a-code-block
            ```
            ````

            ```{python}
            #| label: b
            #| fig-cap: "A: caption"
            y = 2
            ```
            """,
    })
    (project / "sub").mkdir()
    (project / "sub" / "_inc.qmd").write_text("```{python}\n#| label: a\n#| echo: true\n\nx = 1\n```\n")
    page = parse_page(project / "page.qmd", project.resolve())
    assert page.front == {"title": "Parse", "lang": "fr"}
    cells = page.cells
    assert [c.label for c in cells] == ["a", "b"]
    assert cells[0].options == {"label": "a", "echo": True} and cells[0].code == "x = 1"
    assert cells[0].file.name == "_inc.qmd" and cells[0].lineno == 1
    assert cells[1].options["fig-cap"] == "A: caption"
    text = "\n".join(b for b in page.blocks if isinstance(b, str))
    assert "Literal {{< include x.qmd >}} stays." in text
    assert "#| label: in-a-code-block" in text  # a cell shown inside a code block is not run


@pytest.mark.parametrize(("body", "error"), [
    ("```{python}\nx = 1\n", "code cell is not closed"),
    ("```{r}\n1\n```\n", r"\{r\} cells are not supported"),
    ("{{< meta title >}}\n", "shortcode .* not supported"),
    ("{{< include _missing.qmd >}}\n", "included file '_missing.qmd' not found"),
    ("```{python}\n#| echo: [unclosed\nx = 1\n```\n", "page.qmd:1 \\(cell options\\): invalid YAML"),
])
def test_parser_errors_name_file_and_line(tmp_path: Path, body: str, error: str) -> None:
    project = _project(tmp_path / "p", {"page.qmd": body})
    with pytest.raises(RenderError, match=error):
        parse_page(project / "page.qmd", project.resolve())


def test_default_pages_skip_underscore_files_and_output_and_nav_links_are_relative(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", {"index.qmd": "# Home\n", "_draft.qmd": "x\n"}, quarto_yml=(
        "project:\n  type: website\nwebsite:\n  title: Site & Co\n"
        "  navbar:\n    left:\n      - index.qmd\n      - href: sub/page.qmd\n        text: Sub\n"))
    for name in ("sub/page.qmd", "_site/old.qmd", "_partials/p.qmd"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("---\ntitle: Nested page\n---\n")
    loaded = render.load_project(project.resolve())
    assert [p.relative_to(loaded.root).as_posix() for p in loaded.inputs] == ["index.qmd", "sub/page.qmd"]
    page = parse_page(loaded.inputs[1], loaded.root)
    titles = {"index.html": "Home page", "sub/page.html": "Nested page"}
    nav = render.navbar_html(page, loaded, titles, render.UI_TEXT["en"])
    assert '<a class="site-title" href="../index.html">Site &amp; Co</a>' in nav
    assert '<li><a href="../index.html">Home page</a></li>' in nav  # bare entry: the page's title
    assert '<li><a href="page.html" aria-current="page">Sub</a></li>' in nav

"""The public report as one PDF, for people who print it.

The same .qmd pages as the website, in the order `_quarto.yml` renders them, with the options of its
`format: typst` block. Two engines, as for the website:

- "quarto": `quarto render <page> --to typst`, the Quarto CLI's own Typst route (not testable here).
- "offline": every page's cells run again in a fresh Jupyter kernel with CONSULT_OUTPUT=pdf, so the
  charts come out as static SVG images (kaleido) instead of Plotly; the HTML fragments the cells
  print (figures, captions, data tables) are read back into pandoc's document model by a Lua
  filter, and pandoc writes Typst, which `typst.compile` turns into the PDF. Text alternatives,
  captions, data tables and "suppressed" marks come from the same chart functions as on the website.

All pages go into one document: the first page's anchors are kept as they are (the figure ids),
the other pages' anchors get the page's name as a prefix (`methods-PREC-01`), links between pages
become links inside the PDF, and a link to anything the PDF does not hold becomes plain text.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pipeline.render import (
    CALLOUT_LUA,
    Progress,
    RawHtml,
    RenderError,
    _kernel_env,
    _lua_titles,
    _mapping,
    _read_quarto_yml,
    _run_streaming,
    _ui,
    _write_kernelspec,
    choose_engine,
    engine_description,
    executed_markdown,
    load_project,
    page_options,
    parse_page,
    run_pandoc,
)

__all__ = ["PDF_NAME", "PdfResult", "build_pdf"]

PDF_NAME = "peer-support-consultation.pdf"
# Options of `format: typst` in _quarto.yml that are also pandoc Typst template variables.
TYPST_OPTIONS = {"papersize", "margin", "fontsize", "mainfont", "toc-title", "section-numbering",
                 "page-numbering", "columns", "linkcolor"}
SYNTHETIC_HEADER = {"en": "Synthetic data: not real results",
                    "fr": "Données synthétiques : pas de vrais résultats"}

# No creation date in the PDF: same inputs, same bytes (this must come before any content).
PRINT_HEADER = "#set document(date: none)\n"
# Print layout on top of pandoc's Typst template (after it, so these win): ragged right, long
# tables break across pages, small table text so wide tables fit the page.
PRINT_STYLE = """\
#set par(justify: false)
#show figure.where(kind: table): set block(breakable: true)
#show table: set text(size: 8pt)
#show figure.caption: set align(left)
#show figure.caption: set text(size: 0.9em)
#set table(stroke: 0.5pt + luma(190))
#show table.cell.where(y: 0): set text(weight: "bold")
"""

PRINT_LUA = r"""
-- Cell HTML (figures, data tables) becomes pandoc blocks the Typst writer can print; the
-- "show the table" toggle means nothing on paper.
local function from_html(el)
  if el.format ~= "html" then return nil end
  local text = el.text:gsub("<summary.-</summary>", "")
  return pandoc.read(text, "html").blocks
end

-- Callouts (already given a title by callouts.lua) as framed boxes with a bold title.
local function callout_box(div)
  if not div.classes:includes("callout") then return nil end
  if div.content[1] and div.content[1].classes and div.content[1].classes:includes("callout-title") then
    div.content[1] = pandoc.Para({ pandoc.Strong(pandoc.utils.stringify(div.content[1])) })
  end
  return { pandoc.RawBlock("typst", "#block(width: 100%, inset: 8pt, stroke: 1pt + rgb(\"#995200\"))["),
           div, pandoc.RawBlock("typst", "]") }
end

-- One document holds every page: page anchors get the page's prefix, links between pages become
-- links inside the document.
local pages = {}  -- "methods.html" -> { prefix = "methods-", id = "page-methods" }

local function retarget(target, prefix)
  if target:match("^%a[%w+.-]*:") then return target end
  local file, anchor = target:match("^([^#]*)#?(.*)$")
  if file == "" then
    return anchor ~= "" and ("#" .. prefix .. anchor) or target
  end
  local page = pages[file:gsub("^%./", "")]
  if not page then return target end
  return anchor ~= "" and ("#" .. page.prefix .. anchor) or ("#" .. page.id)
end

local function prefixed(prefix)
  local function add(el)
    if el.identifier and el.identifier ~= "" then el.identifier = prefix .. el.identifier end
    return el
  end
  return { Header = add, Div = add, Span = add, Figure = add, Table = add, CodeBlock = add, Image = add,
           Link = function(link) add(link); link.target = retarget(link.target, prefix); return link end }
end

local function join_pages(doc)
  for _, block in ipairs(doc.blocks) do
    if block.t == "Div" and block.classes:includes("consult-page") then
      pages[block.attributes.file] = { prefix = block.attributes.prefix, id = block.identifier }
    end
  end
  for _, block in ipairs(doc.blocks) do
    if block.t == "Div" and block.classes:includes("consult-page") then
      block.content = pandoc.Blocks(block.content):walk(prefixed(block.attributes.prefix))
    end
  end
  return doc
end

-- A link to an anchor the PDF does not hold (a table note, a page left out) prints as its text.
local function drop_dangling(doc)
  local ids = {}
  local function seen(el) if el.identifier and el.identifier ~= "" then ids[el.identifier] = true end end
  doc:walk({ Header = seen, Div = seen, Span = seen, Figure = seen, Table = seen, CodeBlock = seen })
  return doc:walk({ Link = function(link)
    local anchor = link.target:match("^#(.+)$")
    if anchor and not ids[anchor] then return link.content end
  end })
end

-- The kernel writes chart images under the work folder, which is Typst's root: "/media/x.svg".
local work = nil
local function read_work(meta)
  work = meta["consult-work"] and pandoc.utils.stringify(meta["consult-work"])
  meta["consult-work"] = nil
  return meta
end

local function media_path(img)
  if work and img.src:sub(1, #work + 1) == work .. "/" then img.src = img.src:sub(#work + 1) end
  img.attributes.width = "100%"
  return img
end

-- The website shows a table cell's statement ("not distinguishable from noise") on its own line.
local function statement_line(span)
  if span.classes:includes("statement") then return { pandoc.LineBreak(), span } end
end

return { { Meta = read_work }, { RawBlock = from_html }, { Div = callout_box, Span = statement_line },
         { Pandoc = join_pages },
         { Pandoc = drop_dangling }, { Image = media_path } }
"""


@dataclass(frozen=True)
class PdfResult:
    engine: str  # e.g. "offline: Jupyter kernel (ipykernel 7.1) + pandoc 3.9 + Typst 0.15.2"
    path: Path
    typst_source: str  # what Typst compiled ("" with the Quarto CLI, which keeps its own)
    images: list[str]  # chart images in the PDF, by file name


class _InlineHtml(RawHtml):
    """Cell HTML passed to pandoc as a raw HTML block (read back into blocks by PRINT_LUA)."""

    def block(self, content: str) -> str:
        fence = "`" * max(3, 1 + max((len(r) for r in content.split("\n") if set(r) == {"`"}), default=0))
        return f"{fence}{{=html}}\n{content}\n{fence}"


def typst_description() -> str:
    return f"Typst {importlib.metadata.version('typst')}"


def build_pdf(project_dir: Path, target: Path, *, engine: str = "auto", synthetic: bool = False,
              env: dict[str, str] | None = None, progress: Progress | None = None) -> PdfResult:
    """Render the project's pages into one PDF at `target` (replaced only once it is complete)."""
    root = Path(project_dir).resolve()
    say: Progress = progress or (lambda _msg: None)
    extra = {str(k): str(v) for k, v in (env or {}).items()}
    if choose_engine(engine, shutil.which("quarto")) == "quarto":
        return _pdf_with_quarto(root, Path(target), extra, say)
    return _pdf_offline(root, Path(target), extra, synthetic, say)


def _typst_options(root: Path) -> dict[str, Any]:
    """`format.typst` of _quarto.yml, limited to what pandoc's Typst template understands."""
    typst_fmt = _mapping(_mapping(_read_quarto_yml(root).get("format")).get("typst"))
    return {k: v for k, v in typst_fmt.items() if k in TYPST_OPTIONS}


def _pdf_offline(root: Path, target: Path, extra: dict[str, str], synthetic: bool, say: Progress) -> PdfResult:
    import typst

    project = load_project(root)
    if not project.inputs:
        raise RenderError(f"{root}: no .qmd pages to render")
    description = f"{engine_description('offline')} + {typst_description()}"
    pages = [parse_page(src, root) for src in project.inputs]
    first = page_options(project, pages[0])
    lang = str(first.get("lang", "en"))
    with tempfile.TemporaryDirectory(prefix="consult-pdf-") as tmp:
        work = Path(tmp)
        media = work / "media"
        env = {**_kernel_env(extra, description), "CONSULT_OUTPUT": "pdf", "CONSULT_PDF_MEDIA": str(media)}
        kernels = _write_kernelspec(work)
        bodies = []
        for n, page in enumerate(pages, start=1):
            say(f"PDF: run {page.out_rel.with_suffix('.qmd')} ({n}/{len(pages)}) with {description}")
            ui = _ui(str(page_options(project, page).get("lang", lang)))
            body = executed_markdown(page, project, env, kernels, _InlineHtml(), ui, say)
            bodies.append(_page_block(page, body, n == 1, page_options(project, page)))
        meta = {**_metadata(first, _typst_options(root), lang, synthetic), "consult-work": str(work)}
        markdown = f"---\n{yaml.safe_dump(meta, sort_keys=True, allow_unicode=True)}---\n\n" + "\n\n".join(bodies)
        source = _to_typst(markdown, [*_print_variables(lang, synthetic), *_toc_args(root)], work, say)
        (work / "report.typ").write_text(source, encoding="utf-8")
        say(f"PDF: typeset with {typst_description()}")
        try:
            pdf = typst.compile(str(work / "report.typ"), root=str(work))
        except Exception as exc:  # typst raises its own error types; say which file failed
            raise RenderError(f"{_where(root)}: Typst could not typeset the PDF: {exc}") from None
        images = sorted(p.name for p in media.glob("*.svg")) if media.is_dir() else []
    _write_atomic(target, pdf)
    return PdfResult(description, target, source, images)


def _where(root: Path) -> str:
    return f"{root}/_quarto.yml (format: typst)"


def _page_block(page: Any, body: str, first: bool, opts: dict[str, Any]) -> str:
    """One page as a fenced div the Lua filter recognises; pages after the first get a title heading."""
    stem = PurePosixPath(page.out_rel).with_suffix("").as_posix().replace("/", "-")
    prefix = "" if first else f"{stem}-"
    heading = "" if first or not opts.get("title") else f"# {opts['title']} {{.unnumbered}}\n\n"
    fence = ":" * 12
    return (f'{fence} {{#page-{stem} .consult-page file="{page.out_rel}" prefix="{prefix}"}}\n'
            f"{heading}{body}\n{fence}")


def _metadata(first: dict[str, Any], typst_opts: dict[str, Any], lang: str, synthetic: bool) -> dict[str, Any]:
    """Title block and layout from the first page and `format: typst`."""
    meta = {k: first[k] for k in ("title", "subtitle") if first.get(k)}
    meta.update(typst_opts)
    meta["lang"] = lang
    return meta


def _toc_args(root: Path) -> list[str]:
    """`toc` and `toc-depth` of `format: typst` are pandoc options, not template variables."""
    typst_fmt = _mapping(_mapping(_read_quarto_yml(root).get("format")).get("typst"))
    if not typst_fmt.get("toc"):
        return []
    return ["--toc", f"--toc-depth={int(typst_fmt.get('toc-depth', 3))}"]


def _print_variables(lang: str, synthetic: bool) -> list[str]:
    """pandoc variables (inserted verbatim, unlike metadata): the print style around the template's."""
    header = PRINT_HEADER
    if synthetic:  # every printed page says so, not only the first
        notice = SYNTHETIC_HEADER.get(lang.split("-")[0], SYNTHETIC_HEADER["en"])
        header += f'#set page(header: align(right, text(size: 8pt, weight: "bold")[{notice}]))\n'
    return ["--variable", f"header-includes={header}", "--variable", f"include-before={PRINT_STYLE}"]


def _to_typst(markdown: str, variables: list[str], work: Path, say: Progress) -> str:
    callouts = work / "callouts.lua"
    callouts.write_text(CALLOUT_LUA % _lua_titles(), encoding="utf-8")
    printing = work / "print.lua"
    printing.write_text(PRINT_LUA, encoding="utf-8")
    # --quiet: every page repeats the indicator ids as anchors; the filter prefixes them, but pandoc
    # warns about the duplicates before it runs.
    args = ["--from", "markdown", "--to", "typst", "--standalone", "--quiet",
            "--lua-filter", str(callouts), "--lua-filter", str(printing), *variables]
    return run_pandoc(markdown, args, work, "PDF", say)


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.replace(target)


def _pdf_with_quarto(root: Path, target: Path, extra: dict[str, str], say: Progress) -> PdfResult:
    """Quarto's own Typst route for the first page (Quarto writes one PDF per page)."""
    quarto = shutil.which("quarto")
    assert quarto is not None
    description = engine_description("quarto")
    first = load_project(root).inputs[0]
    env = {"QUARTO_PYTHON": sys.executable, **_kernel_env(extra, description), "CONSULT_OUTPUT": "pdf"}
    with tempfile.TemporaryDirectory(prefix="consult-pdf-") as tmp:
        env["CONSULT_PDF_MEDIA"] = str(Path(tmp) / "media")
        out = f"{first.stem}.pdf"
        _run_streaming([quarto, "render", str(first), "--to", "typst", "--output", out], root, env, say)
        produced = next(root.rglob(out), None)
        if produced is None:
            raise RenderError(f"{first}: quarto render --to typst wrote no {out}")
        _write_atomic(target, produced.read_bytes())
        produced.unlink()
    return PdfResult(description, target, "", [])


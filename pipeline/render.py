"""Render the Quarto report project (`reports/`) to a self-contained HTML website.

Two engines sit behind `render_project`:

- "quarto": the real Quarto CLI (`quarto render <project>`), used wherever it is installed.
- "offline": for machines where Quarto cannot be installed (air-gapped, locked down). It reads the
  same `_quarto.yml` and `.qmd` files, runs each page's ```{python} cells in one Jupyter kernel
  (nbclient + ipykernel), turns the outputs into pandoc markdown and converts that with pandoc 3
  (from pypandoc-binary) into standalone HTML pages that need no network.

Either way the site is rendered into a staging folder next to the output folder and swapped in
only when every page succeeded, so a failed render never leaves a half-written site, and the
environment variable CONSULT_RENDER_ENGINE tells the cells which engine rendered the report.
"""

from __future__ import annotations

import datetime as dt
import functools
import glob
import hashlib
import html
import importlib.metadata
import itertools
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pipeline.config import HOLD_WAREHOUSE_VARIABLE

__all__ = ["RenderError", "RenderResult", "choose_engine", "engine_description", "render_project"]

Progress = Callable[[str], None]

ENGINES = ("auto", "quarto", "offline")
CELL_TIMEOUT_S = 600
KERNEL_NAME = "python3"
# Quarto's own defaults for cell options; a project sets `execute: {echo: false}` to hide code.
EXECUTE_DEFAULTS: dict[str, Any] = {
    "echo": True, "eval": True, "output": True, "include": True, "warning": True, "error": False,
}
# format.html options the offline engine honours; others are reported once and ignored.
HONOURED_HTML = {
    "css", "toc", "toc-depth", "toc-title", "lang", "title-prefix", "number-sections",
    "highlight-style", "dir",
}
# Front-matter keys handed to pandoc's template (the rest are Quarto or pipeline settings).
PANDOC_META = {
    "title", "subtitle", "author", "date", "abstract", "abstract-title", "description",
    "keywords", "lang", "dir", "title-prefix", "toc-title",
}
# Words the engine itself adds to pages, per language (reports are bilingual en/fr).
UI_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "skip": "Skip to main content", "site": "Site", "toc": "On this page",
        "note": "Note", "tip": "Tip", "warning": "Warning", "important": "Important",
        "caution": "Caution", "figure": "Figure",
    },
    "fr": {
        "skip": "Aller au contenu principal", "site": "Site", "toc": "Sur cette page",
        "note": "Remarque", "tip": "Astuce", "warning": "Avertissement", "important": "Important",
        "caution": "Attention", "figure": "Figure",
    },
}


class RenderError(RuntimeError):
    """The report could not be rendered; the message names the file (and cell) at fault."""


@dataclass(frozen=True)
class RenderResult:
    engine: str  # human-readable description, e.g. "Quarto 1.6.40"
    output_dir: Path
    pages: list[Path]  # written HTML files, in render order
    rendered: bool = True  # False: nothing changed, the pages of the last rendering stay


class Detail(str):
    """A progress line shown only on request (`consult run --verbose`): one per executed cell, the
    engine's own output. The page-level lines stay, so a long render still shows it is moving."""


# --------------------------------------------------------------------------------------------
# Entry point and engine choice
# --------------------------------------------------------------------------------------------


def choose_engine(requested: str, quarto_path: str | None) -> str:
    """Pick "quarto" or "offline" for a requested engine, given where `quarto` is (or None)."""
    if requested not in ENGINES:
        raise RenderError(f"unknown render engine {requested!r}; use one of {', '.join(ENGINES)}")
    if requested == "quarto" and not quarto_path:
        raise RenderError(
            "render engine 'quarto' was requested but the Quarto CLI is not installed "
            "(`quarto` is not on PATH); install Quarto or use engine='offline'"
        )
    if requested == "auto":
        return "quarto" if quarto_path else "offline"
    return requested


def render_project(
    project_dir: Path,
    *,
    engine: str = "auto",
    env: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> RenderResult:
    """Render the Quarto website in `project_dir` with the chosen engine; see module docstring."""
    project_dir = Path(project_dir).resolve()
    say: Progress = progress or (lambda _msg: None)
    if not (project_dir / "_quarto.yml").is_file():
        raise RenderError(f"{project_dir}: no _quarto.yml, not a Quarto project")
    quarto = shutil.which("quarto")
    chosen = choose_engine(engine, quarto)
    extra = {str(k): str(v) for k, v in (env or {}).items()}
    if chosen == "quarto":
        assert quarto is not None
        return _render_with_quarto(project_dir, quarto, extra, say)
    return _render_offline(project_dir, extra, say)


def engine_description(engine: str) -> str:
    """The text CONSULT_RENDER_ENGINE gets for an engine ("quarto" or "offline")."""
    if engine == "quarto":
        quarto = shutil.which("quarto")
        if not quarto:
            raise RenderError("the Quarto CLI is not installed")
        return f"Quarto {_command_version([quarto, '--version'])}"
    ipykernel = importlib.metadata.version("ipykernel")
    pandoc = ".".join(map(str, _pandoc_version()))
    return f"offline: Jupyter kernel (ipykernel {ipykernel}) + pandoc {pandoc}"


def _command_version(cmd: list[str]) -> str:
    """First line of a `--version` output (e.g. "pandoc 3.9" or "1.6.40")."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RenderError(f"cannot run {' '.join(cmd)}: {exc}") from None
    return out.strip().splitlines()[0].strip() if out.strip() else "unknown version"


@functools.cache
def _pandoc_path() -> str:
    import pypandoc  # imported late: only the offline engine needs it

    return pypandoc.get_pandoc_path()


@functools.cache
def _pandoc_version() -> tuple[int, ...]:
    """(3, 9) for "pandoc 3.9"; pandoc 3 is required (fenced divs, --embed-resources)."""
    text = _command_version([_pandoc_path(), "--version"])
    version = tuple(int(n) for n in re.findall(r"\d+", text.split()[-1]))
    if version < (3,):
        raise RenderError(f"the offline engine needs pandoc 3 (pypandoc-binary), found {text}")
    return version


# --------------------------------------------------------------------------------------------
# Staging and swapping the output folder (both engines)
# --------------------------------------------------------------------------------------------


def _staging_dir(output_dir: Path) -> Path:
    """A fresh folder beside the output, so the final swap is a rename on one file system."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.rendering-", dir=output_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a published site must stay readable
    return staging


def _swap_in(staging: Path, output_dir: Path) -> None:
    """Replace `output_dir` by `staging`; the old site is removed only once the new one is in."""
    backup = None
    if output_dir.exists():
        backup = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        if backup.exists():
            shutil.rmtree(backup)
        output_dir.rename(backup)
    try:
        staging.rename(output_dir)
    except OSError:
        if backup is not None:
            backup.rename(output_dir)  # put the previous site back
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _kernel_env(extra: dict[str, str], description: str) -> dict[str, str]:
    # The engine's own description wins: it is the one that knows what actually renders.
    return {**os.environ, **extra, "CONSULT_RENDER_ENGINE": description}


# --------------------------------------------------------------------------------------------
# Quarto CLI engine (not testable here: Quarto cannot be installed on these machines)
# --------------------------------------------------------------------------------------------


def _render_with_quarto(root: Path, quarto: str, extra: dict[str, str], say: Progress) -> RenderResult:
    description = engine_description("quarto")
    output_dir = _project_output_dir(root, _read_quarto_yml(root))
    staging = _staging_dir(output_dir)
    say(f"render {root.name} with {description}")
    # --to html: the typst format of _quarto.yml is the PDF, rendered on request (pipeline/pdf.py).
    cmd = [quarto, "render", str(root), "--to", "html", "--output-dir", str(staging)]
    # Quarto must run the cells with this interpreter, the one that has the pipeline's packages.
    env = {"QUARTO_PYTHON": sys.executable, **_kernel_env(extra, description)}
    try:
        _run_streaming(cmd, root, env, say)
        pages = sorted(p.relative_to(staging) for p in staging.rglob("*.html")
                       if "site_libs" not in p.parts)
        _swap_in(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RenderResult(description, output_dir, [output_dir / p for p in pages])


def _run_streaming(cmd: list[str], cwd: Path, env: dict[str, str], say: Progress) -> None:
    """Run a command, passing its output lines to `say`; RenderError with the tail on failure."""
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            say(Detail(line.rstrip()))
            tail.append(line.rstrip())
    if proc.returncode != 0:
        raise RenderError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n" + "\n".join(tail))


# --------------------------------------------------------------------------------------------
# Project configuration (_quarto.yml)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    root: Path
    output_dir: Path
    inputs: list[Path]
    site_title: str
    navbar: dict[str, list[Any]]  # "left" / "right" entries as written in _quarto.yml
    defaults: dict[str, Any]  # page options from the project (css made absolute)
    execute: dict[str, Any]
    resources: list[str]
    execute_dir: Path | None  # None: each page runs in its own folder (Quarto's default)
    ignored_options: list[str]


def _load_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise RenderError(f"{where}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RenderError(f"{where}: expected a YAML mapping, got {type(data).__name__}")
    return data


def _read_quarto_yml(root: Path) -> dict[str, Any]:
    path = root / "_quarto.yml"
    return _load_yaml(path.read_text(encoding="utf-8"), str(path))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _project_output_dir(root: Path, cfg: dict[str, Any]) -> Path:
    name = _mapping(cfg.get("project")).get("output-dir", "_site")
    output_dir = (root / str(name)).resolve()
    # Swapping the output folder must never touch the sources.
    if output_dir == root or root.is_relative_to(output_dir):
        raise RenderError(f"{root}/_quarto.yml: output-dir {name!r} would replace the project itself")
    return output_dir


def _html_options(level: dict[str, Any], base: Path) -> dict[str, Any]:
    """Page options of one level (project or page): top-level keys, then format.html on top.

    css paths are made absolute here, because Quarto resolves them from the file that names them.
    """
    html_fmt = _mapping(_mapping(level.get("format")).get("html"))
    skip = {"project", "website", "format", "execute", "book"}
    merged = {k: v for k, v in level.items() if k not in skip}
    merged.update(html_fmt)
    if "css" in merged:
        merged["css"] = [str((base / str(c)).resolve()) for c in _as_list(merged["css"])]
    return merged


def load_project(root: Path) -> Project:
    """Read `_quarto.yml` into the settings the offline engine needs."""
    cfg = _read_quarto_yml(root)
    project = _mapping(cfg.get("project"))
    website = _mapping(cfg.get("website"))
    navbar = _mapping(website.get("navbar"))
    output_dir = _project_output_dir(root, cfg)
    html_fmt = _mapping(_mapping(cfg.get("format")).get("html"))
    return Project(
        root=root,
        output_dir=output_dir,
        inputs=_input_files(root, project.get("render"), output_dir),
        site_title=str(website.get("title", "")),
        navbar={"left": _as_list(navbar.get("left")), "right": _as_list(navbar.get("right"))},
        defaults=_html_options(cfg, root),
        execute=_mapping(cfg.get("execute")),
        resources=[str(r) for r in _as_list(project.get("resources"))],
        execute_dir=root if project.get("execute-dir") == "project" else None,
        ignored_options=sorted(k for k in html_fmt if k not in HONOURED_HTML),
    )


def _skipped(rel: Path) -> bool:
    # Quarto skips files and folders whose name starts with "_" or ".".
    return any(part.startswith(("_", ".")) for part in rel.parts)


def _input_files(root: Path, render: Any, output_dir: Path) -> list[Path]:
    """Pages to render: `project.render` (files or globs, "!" excludes) or every page .qmd."""
    if not render:
        found = [p for p in root.rglob("*.qmd") if not _skipped(p.relative_to(root))
                 and not p.resolve().is_relative_to(output_dir)]
        return sorted(found, key=lambda p: p.relative_to(root).as_posix())
    chosen: list[Path] = []
    for pattern in (str(r) for r in _as_list(render)):
        if pattern.startswith("!"):
            excluded = {p.resolve() for p in root.glob(pattern[1:])}
            chosen = [p for p in chosen if p.resolve() not in excluded]
        elif glob.has_magic(pattern):
            chosen += sorted(p for p in root.glob(pattern) if p.suffix in (".qmd", ".md"))
        elif (root / pattern).is_file():
            chosen.append(root / pattern)
        else:
            raise RenderError(f"{root}/_quarto.yml: project.render lists {pattern!r}, which does not exist")
    unique = list(dict.fromkeys(p.resolve() for p in chosen))
    for page in unique:
        if page.suffix not in (".qmd", ".md"):
            raise RenderError(f"{page}: the offline engine renders only .qmd and .md files")
    return unique


# --------------------------------------------------------------------------------------------
# Parsing .qmd files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SrcLine:
    text: str
    file: Path
    lineno: int  # 1-based, in `file` (an included file keeps its own line numbers)


@dataclass
class Cell:
    index: int  # 1-based among the page's executable cells
    code: str
    options: dict[str, Any]
    file: Path
    lineno: int  # line of the opening fence

    @property
    def label(self) -> str | None:
        label = self.options.get("label")
        return str(label) if label else None


@dataclass
class Page:
    source: Path
    out_rel: PurePosixPath  # output path relative to the output folder
    front: dict[str, Any]
    blocks: list[str | Cell] = field(default_factory=list)

    @property
    def cells(self) -> list[Cell]:
        return [b for b in self.blocks if isinstance(b, Cell)]


FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>.*?)\s*$")
INCLUDE = re.compile(r"^\s*\{\{<\s*include\s+(?P<path>\"[^\"]+\"|'[^']+'|\S+)\s*>\}\}\s*$")
SHORTCODE = re.compile(r"(?<!\{)\{\{<\s*(?P<name>[\w-]+)")
ESCAPED_SHORTCODE = re.compile(r"\{\{\{<(.*?)>\}\}\}")
INLINE_EXPR = re.compile(r"`\{python\}\s")
CELL_INFO = re.compile(r"^\{(?P<lang>[A-Za-z][\w+-]*)(?P<rest>[\s,].*)?\}$")
DISPLAY_CELL_INFO = re.compile(r"^\{\{(?P<lang>[A-Za-z][\w+-]*)\}\}$")
OPTION_LINE = re.compile(r"^#\|\s?(?P<yaml>.*)$")


def _where(line: SrcLine, root: Path) -> str:
    return f"{_rel(line.file, root)}:{line.lineno}"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _fence_of(line: str) -> tuple[str, str] | None:
    """(fence, info) if `line` opens a fenced code block."""
    match = FENCE_OPEN.match(line)
    if not match or (match["fence"][0] == "`" and "`" in match["info"]):
        return None
    return match["fence"], match["info"]


def _closes(line: str, fence: str) -> bool:
    """True if `line` closes a block opened by `fence` (same character, at least as long)."""
    return re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", line) is not None


def _split_front_matter(lines: list[SrcLine], root: Path) -> tuple[dict[str, Any], list[SrcLine]]:
    """YAML front matter (a leading `---` block) and the remaining lines."""
    if not lines or lines[0].text.strip() != "---":
        return {}, lines
    for i in range(1, len(lines)):
        if lines[i].text.strip() in ("---", "..."):
            text = "\n".join(line.text for line in lines[1:i])
            return _load_yaml(text, f"{_where(lines[0], root)} (front matter)"), lines[i + 1:]
    raise RenderError(f"{_where(lines[0], root)}: front matter is not closed by ---")


def _read_lines(path: Path) -> list[SrcLine]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RenderError(f"cannot read {path}: {exc}") from None
    return [SrcLine(t, path, n) for n, t in enumerate(text.splitlines(), start=1)]


def _outside_fences(lines: list[SrcLine]) -> Iterator[tuple[SrcLine, bool]]:
    """Each line with a flag: True when it is ordinary markdown (not inside a fenced block)."""
    fence: str | None = None
    for line in lines:
        if fence is None:
            opened = _fence_of(line.text)
            if opened:
                fence = opened[0]
            yield line, opened is None
        else:
            if _closes(line.text, fence):
                fence = None
            yield line, False


def _expand_includes(lines: list[SrcLine], root: Path, depth: int = 0) -> list[SrcLine]:
    """Replace `{{< include file >}}` lines by the file's lines (recursively, before execution)."""
    if depth > 20:
        raise RenderError(f"{_where(lines[0], root)}: includes nested too deeply (a cycle?)")
    out: list[SrcLine] = []
    for line, is_text in _outside_fences(lines):
        match = INCLUDE.match(line.text) if is_text else None
        if not match:
            out.append(line)
            continue
        target = _include_target(match["path"].strip("\"'"), line, root)
        _front, body = _split_front_matter(_read_lines(target), root)
        out.extend(_expand_includes(body, root, depth + 1) if body else [])
    return out


def _include_target(name: str, line: SrcLine, root: Path) -> Path:
    # Quarto: "/x" is relative to the project root, anything else to the including file.
    target = root / name.lstrip("/") if name.startswith("/") else line.file.parent / name
    if not target.is_file():
        raise RenderError(f"{_where(line, root)}: included file {name!r} not found")
    return target


def _check_shortcodes(lines: list[SrcLine], root: Path) -> list[SrcLine]:
    """Fail on Quarto features the offline engine would otherwise print literally."""
    out: list[SrcLine] = []
    for line, is_text in _outside_fences(lines):
        if is_text:
            unescaped = ESCAPED_SHORTCODE.sub("", line.text)
            match = SHORTCODE.search(unescaped)
            if match:
                raise RenderError(f"{_where(line, root)}: shortcode {{{{< {match['name']} >}}}} is not "
                                  "supported by the offline engine (only include is)")
            if INLINE_EXPR.search(line.text):
                raise RenderError(f"{_where(line, root)}: inline `{{python}}` expressions are not "
                                  "supported by the offline engine; use a cell with output: asis")
            line = SrcLine(ESCAPED_SHORTCODE.sub(r"{{<\1>}}", line.text), line.file, line.lineno)
        out.append(line)
    return out


def _cell_options(body: list[SrcLine], root: Path, opener: SrcLine) -> tuple[dict[str, Any], list[str]]:
    """Split a cell body into its `#| key: value` options and its code."""
    option_lines: list[str] = []
    for line in body:
        match = OPTION_LINE.match(line.text)
        if not match:
            break
        option_lines.append(match["yaml"])
    code = [line.text for line in body[len(option_lines):]]
    options = _load_yaml("\n".join(option_lines), f"{_where(opener, root)} (cell options)")
    return options, code


def _parse_blocks(lines: list[SrcLine], root: Path) -> list[str | Cell]:
    """Markdown text (str, passed to pandoc as is) and executable cells, in document order."""
    blocks: list[str | Cell] = []
    text: list[str] = []
    i = 0
    while i < len(lines):
        opened = _fence_of(lines[i].text)
        if not opened:
            text.append(lines[i].text)
            i += 1
            continue
        end = _fence_end(lines, i, opened[0])
        body = lines[i + 1:end]
        cell_match = CELL_INFO.match(opened[1])
        if cell_match:
            _require_python(cell_match["lang"], lines[i], root)
            if end == len(lines):
                raise RenderError(f"{_where(lines[i], root)}: code cell is not closed")
            blocks.append("\n".join(text))
            text = []
            options, code = _cell_options(body, root, lines[i])
            index = sum(isinstance(b, Cell) for b in blocks) + 1
            blocks.append(Cell(index, "\n".join(code).strip("\n"), options, lines[i].file, lines[i].lineno))
        elif shown := DISPLAY_CELL_INFO.match(opened[1]):
            # ```{{python}} shows a cell's source, fences included, without running it.
            source = "\n".join([f"```{{{shown['lang']}}}", *(b.text for b in body), "```"])
            text += _code_block(source, ".markdown").splitlines()
        else:
            text += [line.text for line in lines[i:end + 1]]
        i = end + 1
    blocks.append("\n".join(text))
    return blocks


def _fence_end(lines: list[SrcLine], start: int, fence: str) -> int:
    """Index of the line closing the fence opened at `start` (len(lines) if never closed)."""
    for j in range(start + 1, len(lines)):
        if _closes(lines[j].text, fence):
            return j
    return len(lines)


def _require_python(lang: str, line: SrcLine, root: Path) -> None:
    if lang not in ("python", "python3"):
        raise RenderError(f"{_where(line, root)}: ```{{{lang}}} cells are not supported by the offline "
                          "engine (only ```{python})")


def parse_page(source: Path, root: Path) -> Page:
    """Read one .qmd file of the project at `root`: front matter, includes expanded, blocks split."""
    front, body = _split_front_matter(_read_lines(source), root)
    lines = _check_shortcodes(_expand_includes(body, root), root) if body else []
    out_rel = PurePosixPath(source.resolve().relative_to(root).with_suffix(".html").as_posix())
    return Page(source, out_rel, front, _parse_blocks(lines, root))


# --------------------------------------------------------------------------------------------
# Executing cells in one Jupyter kernel per page
# --------------------------------------------------------------------------------------------


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _write_kernelspec(work: Path) -> Path:
    """A kernelspec running this very interpreter's ipykernel, whatever else is installed."""
    spec_dir = work / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher",
                 "-f", "{connection_file}"],
        "display_name": "Python 3 (report render)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return spec_dir.parent


def _cell_error(page: Page, cell: Cell, root: Path, outputs: list[dict[str, Any]], fallback: str) -> RenderError:
    """The error raised when a cell fails: file, line, cell number/label, first code line, error."""
    err = next((o for o in outputs if o.get("output_type") == "error"), None)
    detail = fallback
    if err is not None:
        trace = ANSI.sub("", "\n".join(err.get("traceback", [])))
        detail = f"{err.get('ename', 'Error')}: {err.get('evalue', '')}\n{trace}".rstrip()
    first = next((ln for ln in cell.code.splitlines() if ln.strip()), "")
    name = f"cell {cell.index}" + (f" (label: {cell.label})" if cell.label else "")
    if cell.file.resolve() != page.source.resolve():  # the cell came from an included file
        name += f" of {_rel(page.source, root)}"
    return RenderError(f"{_rel(cell.file, root)}:{cell.lineno}: {name} failed; first line: {first!r}\n{detail}")


_KERNEL_IDS = itertools.count(1)


def execute_page(page: Page, cells: list[Cell], *, cwd: Path, env: dict[str, str], kernels: Path,
                 root: Path, say: Progress) -> dict[int, list[dict[str, Any]]]:
    """Run `cells` in order in one fresh kernel; outputs by cell index. RenderError on failure."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    nb = nbformat.v4.new_notebook()
    for cell in cells:
        nb_cell = nbformat.v4.new_code_cell(cell.code)
        if cell.options.get("error") is True:
            nb_cell.metadata["tags"] = ["raises-exception"]  # error: true shows the error instead
        nb.cells.append(nb_cell)
    # IPC (Unix sockets in our private work folder) rather than TCP: survey data never crosses
    # a network port, and ipykernel has no unencrypted-TCP warning to print. Each kernel gets its
    # own socket prefix: pages run side by side, and jupyter_client numbers sockets by looking for
    # names not taken yet, which two kernels starting at once would both pick.
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, transport="ipc",
                            ip=str(kernels / f"ipc{next(_KERNEL_IDS)}"),
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, allow_errors=False,
                            coalesce_streams=True, record_timing=False,
                            resources={"metadata": {"path": str(cwd)}})
    try:
        with client.setup_kernel(env=env, cleanup_kc=True):
            for pos, (cell, nb_cell) in enumerate(zip(cells, nb.cells)):
                label = f" ({cell.label})" if cell.label else ""
                say(Detail(f"  {page.out_rel.with_suffix('.qmd')}: cell {cell.index}{label}"))
                try:
                    client.execute_cell(nb_cell, pos)
                except (CellControlSignal, DeadKernelError) as exc:
                    fallback = str(exc) or type(exc).__name__
                    raise _cell_error(page, cell, root, nb_cell.outputs, fallback) from None
    except RenderError:
        raise
    except Exception as exc:  # kernel start-up or transport failures: say which page was running
        raise RenderError(f"{_rel(page.source, root)}: Jupyter kernel failed: {exc}") from exc
    return {cell.index: list(nb_cell.outputs) for cell, nb_cell in zip(cells, nb.cells)}


# --------------------------------------------------------------------------------------------
# Outputs to pandoc markdown
# --------------------------------------------------------------------------------------------


class RawHtml:
    """Cell HTML kept out of pandoc's way.

    Big HTML outputs (plotly.js, tables) are replaced by placeholder comments before pandoc and put
    back afterwards, so pandoc neither parses nor rewrites them; the placeholders are derived from
    the content so the result stays deterministic.
    """

    PATTERN = re.compile(r"<!--(consult-raw-\d+-[0-9a-f]{16})-->")

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def block(self, content: str) -> str:
        token = f"consult-raw-{len(self.items)}-{hashlib.sha256(content.encode()).hexdigest()[:16]}"
        self.items[token] = content
        return f"```{{=html}}\n<!--{token}-->\n```"

    def restore(self, page_html: str, where: str) -> str:
        found = self.PATTERN.findall(page_html)
        if sorted(found) != sorted(self.items):
            raise RenderError(f"{where}: pandoc dropped or duplicated cell HTML output")
        return self.PATTERN.sub(lambda m: self.items[m.group(1)], page_html)


def _code_block(text: str, classes: str) -> str:
    """A fenced code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence} {{{classes}}}\n{text}\n{fence}"


def _div(content: str, attrs: str) -> str:
    return f"::: {{{attrs}}}\n{content}\n:::"


MIME_ORDER = ("text/html", "text/markdown", "image/svg+xml", "image/png", "image/jpeg", "text/plain")


def _display_markdown(data: dict[str, Any], asis: bool, alt: str, raw: RawHtml) -> tuple[str, bool]:
    """One display_data / execute_result output by the richest MIME type we can show.

    Returns the markdown and whether it still needs Quarto's .cell-output-display wrapper.
    """
    mime = next((m for m in MIME_ORDER if m in data), None)
    value = data.get(mime, "") if mime else ""
    value = "".join(value) if isinstance(value, list) else str(value)
    if mime == "text/html":
        return raw.block(value), True
    if mime == "text/markdown":
        return value, True
    if mime == "image/svg+xml":
        return raw.block(re.sub(r"^<\?xml[^>]*>\s*", "", value)), True
    if mime in ("image/png", "image/jpeg"):
        payload = re.sub(r"\s+", "", value)
        return raw.block(f'<img src="data:{mime};base64,{payload}" alt="{html.escape(alt)}">'), True
    if mime == "text/plain":  # already a code block, or raw markdown for output: asis
        return (value if asis else _code_block(ANSI.sub("", value), ".cell-output .cell-output-display")), False
    return "", False  # only MIME types a static page cannot show (widgets, javascript)


def _output_markdown(output: dict[str, Any], opts: dict[str, Any], alt: str, raw: RawHtml) -> str:
    """One Jupyter output as markdown; `output: asis` inserts text and markdown unwrapped."""
    asis = opts.get("output") == "asis"
    kind = output.get("output_type")
    if kind == "stream":
        if output.get("name") == "stderr" and opts.get("warning") is False:
            return ""
        text = ANSI.sub("", output.get("text", ""))
        return text if asis else _code_block(text.rstrip("\n"), f".cell-output .cell-output-{output.get('name')}")
    if kind in ("display_data", "execute_result"):
        shown, wrap = _display_markdown(output.get("data", {}), asis, alt, raw)
        return _div(shown, ".cell-output-display") if wrap and shown and not asis else shown
    if kind == "error":  # only reached for cells with `error: true`
        trace = ANSI.sub("", "\n".join(output.get("traceback", [])))
        return _code_block(trace, ".cell-output .cell-output-error")
    return ""


def _echo_markdown(cell: Cell, echo: Any) -> str:
    if echo == "fenced":
        options = [f"#| {k}: {json.dumps(v)}" for k, v in cell.options.items()]
        return _code_block("\n".join(["```{python}", *options, cell.code, "```"]), ".markdown .cell-code")
    return _code_block(cell.code, ".python .cell-code")


def cell_markdown(cell: Cell, opts: dict[str, Any], outputs: list[dict[str, Any]], raw: RawHtml,
                  ui: dict[str, str]) -> str:
    """A cell as Quarto shows it: optional code, then its outputs, wrapped in a .cell div."""
    if opts.get("include") is False:
        return ""
    parts = [_echo_markdown(cell, opts.get("echo"))] if opts.get("echo") not in (False, None) else []
    alt = str(opts.get("fig-alt") or opts.get("fig-cap") or f"{ui['figure']} {cell.label or cell.index}")
    if opts.get("output") is not False:
        parts += [_output_markdown(o, opts, alt, raw) for o in outputs]
    parts = [p for p in parts if p]
    if opts.get("tbl-cap"):
        parts.insert(0, _div(str(opts["tbl-cap"]), ".cell-caption .table-caption"))
    if opts.get("fig-cap"):
        parts.append(_div(str(opts["fig-cap"]), ".cell-caption .figure-caption"))
    if opts.get("output") == "asis":
        return "\n\n".join(parts)  # Quarto inserts asis output with no wrapper
    attrs = (f"#{cell.label} " if cell.label else "") + ".cell"
    return _div("\n\n".join(parts), attrs) if parts else ""


def page_markdown(page: Page, project: Project, outputs: dict[int, list[dict[str, Any]]],
                  raw: RawHtml, ui: dict[str, str]) -> str:
    """The whole page as pandoc markdown (front matter is passed separately)."""
    parts: list[str] = []
    for block in page.blocks:
        if isinstance(block, Cell):
            opts = _cell_exec_options(project, page, block)
            parts.append("\n" + cell_markdown(block, opts, outputs.get(block.index, []), raw, ui) + "\n")
        else:
            parts.append(block)
    return "\n".join(parts) + "\n"


def _cell_exec_options(project: Project, page: Page, cell: Cell) -> dict[str, Any]:
    # Quarto's precedence: cell options over page `execute:` over project `execute:`.
    return {**EXECUTE_DEFAULTS, **project.execute, **_mapping(page.front.get("execute")), **cell.options}


# --------------------------------------------------------------------------------------------
# Page chrome: template, CSS, callouts, navbar
# --------------------------------------------------------------------------------------------


TEMPLATE = """<!DOCTYPE html>
<html lang="$lang$"$if(dir)$ dir="$dir$"$endif$>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
$for(author-meta)$
<meta name="author" content="$author-meta$">
$endfor$
$if(description-meta)$
<meta name="description" content="$description-meta$">
$endif$
<title>$if(title-prefix)$$title-prefix$ – $endif$$pagetitle$$if(site-title)$ – $site-title$$endif$</title>
$if(highlighting-css)$
<style>
$highlighting-css$
</style>
$endif$
$for(css)$
<link rel="stylesheet" href="$css$">
$endfor$
$for(header-includes)$
$header-includes$
$endfor$
</head>
<body>
$for(include-before)$
$include-before$
$endfor$
<main id="content" tabindex="-1">
$if(title)$
<header id="title-block-header">
<h1 class="title">$title$</h1>
$if(subtitle)$
<p class="subtitle">$subtitle$</p>
$endif$
$for(author)$
<p class="author">$author$</p>
$endfor$
$if(date)$
<p class="date">$date$</p>
$endif$
$if(abstract)$
<div class="abstract">
$abstract$
</div>
$endif$
</header>
$endif$
$if(toc)$
$if(table-of-contents)$
<nav id="TOC" role="doc-toc" aria-labelledby="toc-title">
<h2 id="toc-title">$toc-title$</h2>
$table-of-contents$
</nav>
$endif$
$endif$
$body$
</main>
$for(include-after)$
$include-after$
$endfor$
</body>
</html>
"""

CSS = """\
:root { --fg: #1b1b1b; --bg: #ffffff; --muted: #454545; --link: #0b4fa8; --visited: #5c2d91;
  --accent: #0b4fa8; --border: #b8b8b8; --code-bg: #f3f4f6; --nav-bg: #12263f; --focus: #ffbf00; }
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: var(--bg); line-height: 1.6; font-size: 1.0625rem;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Liberation Sans", Arial, sans-serif; }
a { color: var(--link); text-underline-offset: 0.15em; }
a:visited { color: var(--visited); }
:focus-visible { outline: 3px solid var(--fg); outline-offset: 2px; box-shadow: 0 0 0 6px var(--focus); }
main:focus { outline: none; }
.skip-link { position: absolute; left: 0.5rem; top: -10rem; z-index: 10; padding: 0.5rem 1rem;
  background: var(--focus); color: #000; font-weight: 700; }
.skip-link:focus { top: 0.5rem; }
.site-header { background: var(--nav-bg); color: #fff; }
.navbar { max-width: 72rem; margin: 0 auto; padding: 0.5rem 1rem; display: flex; flex-wrap: wrap;
  align-items: center; gap: 0.25rem 1.5rem; }
.navbar a, .navbar a:visited { color: #fff; text-decoration: none; padding: 0.35rem 0.5rem; border-radius: 3px; }
.navbar a:hover { text-decoration: underline; }
.navbar a[aria-current="page"] { text-decoration: underline; text-decoration-thickness: 3px; font-weight: 700; }
.navbar :focus-visible { outline-color: var(--focus); box-shadow: none; }
.navbar .site-title { font-weight: 700; font-size: 1.15rem; }
.navbar ul { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 0.25rem 0.75rem; }
.navbar ul.nav-right { margin-left: auto; }
main { display: block; max-width: 72rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
main > p, main > ul, main > ol, main > blockquote, main > .callout { max-width: 46rem; }
h1, h2, h3, h4 { line-height: 1.25; margin: 1.75em 0 0.5em; }
h1.title { margin-top: 0.5rem; font-size: 2rem; }
.subtitle { font-size: 1.25rem; color: var(--muted); margin-top: 0; }
.author, .date { color: var(--muted); margin: 0.25rem 0; }
#TOC { border: 1px solid var(--border); border-radius: 4px; padding: 0.75rem 1rem; margin: 1.5rem 0;
  max-width: 46rem; }
#TOC h2 { font-size: 1rem; margin: 0 0 0.25rem; }
#TOC ul { margin: 0; padding-left: 1.25rem; }
pre, code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; }
code { font-size: 0.92em; }
pre { background: var(--code-bg); border: 1px solid var(--border); border-radius: 4px;
  padding: 0.75rem 1rem; overflow-x: auto; line-height: 1.45; }
div.sourceCode { margin: 1rem 0; }
pre.cell-output { background: var(--bg); border-left: 4px solid var(--border); }
table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--border); padding: 0.35rem 0.75rem; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid var(--fg); }
caption { caption-side: top; text-align: left; font-weight: 700; padding-bottom: 0.25rem; }
img, svg, video { max-width: 100%; height: auto; }
.cell-output-display { overflow-x: auto; margin: 1rem 0; }
.cell-caption { font-style: italic; color: var(--muted); margin: 0.25rem 0 1rem; }
.callout { border: 1px solid var(--border); border-left: 0.4rem solid var(--accent); border-radius: 4px;
  background: #f5f8fc; padding: 0.75rem 1rem; margin: 1.25rem 0; }
.callout-title { font-weight: 700; margin-bottom: 0.25rem; }
.callout-body > :first-child { margin-top: 0; }
.callout-body > :last-child { margin-bottom: 0; }
.callout-tip { border-left-color: #1a6b36; background: #f3f9f5; }
.callout-warning { border-left-color: #995200; background: #fdf7ef; }
.callout-caution { border-left-color: #8a4b00; background: #fdf7ef; }
.callout-important { border-left-color: #b3001b; background: #fcf3f4; }
blockquote { margin: 1rem 0; padding-left: 1rem; border-left: 4px solid var(--border); color: var(--muted); }
@media (max-width: 40rem) { body { font-size: 1rem; } h1.title { font-size: 1.6rem; }
  .navbar ul.nav-right { margin-left: 0; } }
@media print { .site-header, .skip-link { display: none; } main { max-width: none; padding: 0; } }
"""

# Quarto callouts: `::: {.callout-note}` with an optional `title=` or leading header as title.
CALLOUT_LUA = """\
local titles = %s
local lang = "en"

local function set_lang(meta)
  if meta.lang then lang = pandoc.utils.stringify(meta.lang):sub(1, 2) end
end

local function callout(div)
  for _, cls in ipairs(div.classes) do
    local kind = cls:match("^callout%%-(%%a+)$")
    if kind and (titles[lang] or titles.en)[kind] then
      local body = div.content
      local head
      if div.attributes.title then
        head = pandoc.read(div.attributes.title, "markdown").blocks
        div.attributes.title = nil
      elseif body[1] and body[1].t == "Header" then
        head = { pandoc.Plain(body[1].content) }
        body:remove(1)
      else
        head = { pandoc.Plain(pandoc.Str((titles[lang] or titles.en)[kind])) }
      end
      div.classes:insert(1, "callout")
      div.attributes.role = "note"
      div.content = { pandoc.Div(head, pandoc.Attr("", {"callout-title"})),
                      pandoc.Div(body, pandoc.Attr("", {"callout-body"})) }
      return div
    end
  end
end

return { { Meta = set_lang }, { Div = callout } }
"""


def _ui(lang: str) -> dict[str, str]:
    return UI_TEXT.get(lang.split("-")[0].lower(), UI_TEXT["en"])


def _lua_titles() -> str:
    kinds = ("note", "tip", "warning", "important", "caution")
    rows = [f'{lang} = {{ {", ".join(f"{k} = {json.dumps(t[k])}" for k in kinds)} }}'
            for lang, t in sorted(UI_TEXT.items())]
    return "{ " + ", ".join(rows) + " }"


def _nav_entry(entry: Any) -> tuple[str, str | None]:
    """(href, text) of a navbar entry: either a bare "page.qmd" or {href:, text:}."""
    if isinstance(entry, dict):
        return str(entry.get("href", "")), (str(entry["text"]) if entry.get("text") else None)
    return str(entry), None


def _nav_href(href: str, page: Page, project: Project) -> str:
    """Link to another page, relative to the current one; external links stay as written."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", href, re.I) or href.startswith("#"):
        return href
    base, _, anchor = href.partition("#")
    target = PurePosixPath(base.lstrip("/"))
    if target.suffix in (".qmd", ".md", ".ipynb"):
        target = target.with_suffix(".html")
    rel = posixpath.relpath(str(target), str(page.out_rel.parent) or ".")
    return rel + (f"#{anchor}" if anchor else "")


def navbar_html(page: Page, project: Project, titles: dict[str, str], ui: dict[str, str]) -> str:
    """Skip link plus the site navbar (site title, left and right entries); none for a bare project."""
    if not project.site_title and not any(project.navbar.values()):
        return ""
    lines = [f'<a class="skip-link" href="#content">{html.escape(ui["skip"])}</a>',
             '<header class="site-header">',
             f'<nav class="navbar" aria-label="{html.escape(ui["site"])}">']
    if project.site_title:
        home = "index.qmd" if "index.html" in titles else next(iter(titles), "index.qmd")
        lines.append(f'<a class="site-title" href="{html.escape(_nav_href(home, page, project))}">'
                     f"{html.escape(project.site_title)}</a>")
    for side in ("left", "right"):
        items = [_nav_item(entry, page, project, titles) for entry in project.navbar[side]]
        if items:
            lines += [f'<ul class="nav-{side}">', *items, "</ul>"]
    lines += ["</nav>", "</header>"]
    return "\n".join(lines) + "\n"


def _nav_item(entry: Any, page: Page, project: Project, titles: dict[str, str]) -> str:
    href, text = _nav_entry(entry)
    link = _nav_href(href, page, project)
    target = posixpath.normpath(posixpath.join(str(page.out_rel.parent), link.partition("#")[0]))
    label = text or titles.get(target) or PurePosixPath(href).stem
    current = ' aria-current="page"' if target == str(page.out_rel) else ""
    return f'<li><a href="{html.escape(link)}"{current}>{html.escape(label)}</a></li>'


# --------------------------------------------------------------------------------------------
# pandoc
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chrome:
    """Files shared by every page's pandoc run (written once into the work folder)."""

    template: Path
    css: Path
    lua: Path


def _write_chrome(work: Path) -> Chrome:
    chrome = Chrome(work / "page.html5", work / "consult-report.css", work / "callouts.lua")
    chrome.template.write_text(TEMPLATE, encoding="utf-8")
    chrome.css.write_text(CSS, encoding="utf-8")
    chrome.lua.write_text(CALLOUT_LUA % _lua_titles(), encoding="utf-8")
    return chrome


def page_options(project: Project, page: Page) -> dict[str, Any]:
    """Merged page options: project defaults, then the page's front matter (and its format.html)."""
    own = _html_options(page.front, page.source.parent)
    merged = {**project.defaults, **own}
    merged["css"] = list(dict.fromkeys(_as_list(project.defaults.get("css")) + _as_list(own.get("css"))))
    merged.setdefault("lang", "en")
    return merged


def _resolve_date(value: Any) -> Any:
    # Quarto's date keywords; SOURCE_DATE_EPOCH keeps reproducible builds reproducible.
    if str(value) not in ("today", "now", "last-modified"):
        return value
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    day = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).date() if epoch else dt.date.today()
    return day.isoformat()


def pandoc_metadata(opts: dict[str, Any], page: Page, project: Project, ui: dict[str, str]) -> dict[str, Any]:
    """The metadata pandoc's template sees: title block, lang, <title> pieces, toc title."""
    meta = {k: v for k, v in opts.items() if k in PANDOC_META}
    meta["lang"] = str(meta.get("lang") or "en")
    meta.setdefault("toc-title", ui["toc"])
    if "date" in meta:
        meta["date"] = _resolve_date(meta["date"])
    if "author" in meta:
        meta["author"] = [a.get("name", "") if isinstance(a, dict) else a for a in _as_list(meta["author"])]
    if not meta.get("title"):
        meta["pagetitle"] = page.source.stem
    if project.site_title and not meta.get("title-prefix") and meta.get("title") != project.site_title:
        meta["site-title"] = project.site_title
    return meta


def pandoc_args(opts: dict[str, Any], chrome: Chrome, includes: dict[str, Path], page: Page,
                project: Project) -> list[str]:
    """Command-line options for one page; no --mathjax and no URL, so nothing loads from a CDN."""
    args = ["--from", "markdown", "--to", "html5", "--standalone", "--embed-resources",
            "--template", str(chrome.template), "--lua-filter", str(chrome.lua),
            "--css", str(chrome.css),
            "--include-in-header", str(includes["head"]), "--include-before-body", str(includes["nav"]),
            "--resource-path", os.pathsep.join([str(page.source.parent), str(project.root)]),
            *_highlight_args(str(opts.get("highlight-style", "")))]
    for css in _as_list(opts.get("css")):
        if not Path(css).is_file():
            raise RenderError(f"{_rel(page.source, project.root)}: css file {css} not found")
        args += ["--css", str(css)]
    if opts.get("toc"):
        args += ["--toc", f"--toc-depth={int(opts.get('toc-depth', 3))}"]
    if opts.get("number-sections"):
        args.append("--number-sections")
    return args


PANDOC_STYLES = {"pygments", "tango", "espresso", "zenburn", "kate", "monochrome", "breezedark", "haddock"}


def _highlight_args(style: str) -> list[str]:
    # Quarto's own themes (a11y, github, ...) are unknown to pandoc: monochrome has the best contrast.
    style = style if style in PANDOC_STYLES else "monochrome"
    flag = "--syntax-highlighting" if _pandoc_version() >= (3, 8) else "--highlight-style"
    return [f"{flag}={style}"]


def run_pandoc(markdown: str, args: list[str], cwd: Path, where: str, say: Progress) -> str:
    proc = subprocess.run([_pandoc_path(), *args], input=markdown.encode("utf-8"), capture_output=True,
                          cwd=cwd, timeout=CELL_TIMEOUT_S)
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        raise RenderError(f"{where}: pandoc failed (exit {proc.returncode}):\n{stderr}")
    for line in stderr.splitlines():
        say(f"  pandoc: {line}")
    return proc.stdout.decode("utf-8")


EXTERNAL_RESOURCE = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?\s(?:src|href|data)\s*=\s*"
    r"[\"']?(?:https?:)?//[^\s\"'>]*", re.IGNORECASE)


def check_self_contained(page_html: str, where: str) -> None:
    """A report must open from disk on an air-gapped machine: no CDN scripts, styles or images."""
    found = EXTERNAL_RESOURCE.search(page_html)
    if found:
        raise RenderError(f"{where}: the page loads an external resource ({found.group(0)[:120]}); "
                          "reports must be self-contained (e.g. plotly: include_plotlyjs=False plus "
                          "the bundle inline once)")


# --------------------------------------------------------------------------------------------
# Offline engine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteRun:
    """What every page of one offline render shares."""

    project: Project
    env: dict[str, str]  # kernel environment
    description: str  # engine description
    titles: dict[str, str]  # page title by output path, for the navbar
    chrome: Chrome
    kernels: Path  # kernelspec folder
    work: Path  # private scratch folder
    staging: Path  # where pages are written before the swap
    say: Progress


def _render_offline(root: Path, extra: dict[str, str], say: Progress) -> RenderResult:
    project = load_project(root)
    if not project.inputs:
        raise RenderError(f"{root}: no .qmd pages to render")
    description = engine_description("offline")
    if project.ignored_options:
        say(Detail(f"offline engine ignores format.html options: {', '.join(project.ignored_options)}"))
    # Parse every page before running anything: syntax errors surface in seconds.
    pages = [parse_page(src, root) for src in project.inputs]
    titles = {str(p.out_rel): str(page_options(project, p).get("title") or p.source.stem) for p in pages}
    staging = _staging_dir(project.output_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="consult-render-") as tmp:
            work = Path(tmp)
            env = {**_kernel_env(extra, description), HOLD_WAREHOUSE_VARIABLE: "1"}  # a kernel per page
            run = SiteRun(project, env, description, titles,
                          _write_chrome(work), _write_kernelspec(work), work, staging, say)
            for page, (body, raw) in zip(pages, _execute_pages(pages, run)):
                _render_page(page, run, body, raw)
        _copy_resources(project, staging, say)
        _swap_in(staging, project.output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RenderResult(description, project.output_dir, [project.output_dir / p.out_rel for p in pages])


def _execute_pages(pages: list[Page], run: SiteRun) -> list[tuple[str, RawHtml]]:
    """Each page's cells in its own kernel, as pandoc markdown and its raw HTML, in page order.

    Pages run side by side, one per core: each kernel is its own process, so a site renders in
    the time of its slowest page rather than the sum of all. The first failing page (in page
    order) raises; pages not started yet are not run."""

    def execute(n: int, page: Page) -> tuple[str, RawHtml]:
        run.say(f"render {page.out_rel.with_suffix('.qmd')} ({n}/{len(pages)}) with {run.description}")
        raw = RawHtml()
        ui = _ui(str(page_options(run.project, page)["lang"]))
        return executed_markdown(page, run.project, run.env, run.kernels, raw, ui, run.say), raw

    with ThreadPoolExecutor(max_workers=max(1, min(len(pages), os.cpu_count() or 1))) as pool:
        futures = [pool.submit(execute, n, page) for n, page in enumerate(pages, start=1)]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _render_page(page: Page, run: SiteRun, body: str, raw: RawHtml) -> None:
    """Convert one executed page (its markdown and raw HTML) and write it into the staging folder."""
    project = run.project
    where = _rel(page.source, project.root)
    opts = page_options(project, page)
    ui = _ui(str(opts["lang"]))
    front = yaml.safe_dump(pandoc_metadata(opts, page, project, ui), sort_keys=True, allow_unicode=True)
    args = pandoc_args(opts, run.chrome, _write_includes(page, run, ui), page, project)
    converted = run_pandoc(f"---\n{front}---\n\n{body}", args, page.source.parent, where, run.say)
    page_html = raw.restore(converted, where)
    check_self_contained(page_html, where)
    target = run.staging / page.out_rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(page_html.encode("utf-8"))


def executed_markdown(page: Page, project: Project, env: dict[str, str], kernels: Path, raw: RawHtml,
                      ui: dict[str, str], say: Progress) -> str:
    """Run a page's cells in a fresh kernel; the page as pandoc markdown (the HTML and the PDF share it)."""
    runnable = [c for c in page.cells if _cell_exec_options(project, page, c).get("eval") is not False]
    cwd = project.execute_dir or page.source.parent
    outputs = execute_page(page, runnable, cwd=cwd, env=env, kernels=kernels, root=project.root,
                           say=say) if runnable else {}
    return page_markdown(page, project, outputs, raw, ui)


def _write_includes(page: Page, run: SiteRun, ui: dict[str, str]) -> dict[str, Path]:
    """Per-page files pandoc inlines: the generator <meta> and the navbar."""
    head = run.work / "head.html"
    head.write_text(f'<meta name="generator" content="{html.escape(run.description)}">\n', encoding="utf-8")
    nav = run.work / "nav.html"
    nav.write_text(navbar_html(page, run.project, run.titles, ui), encoding="utf-8")
    return {"head": head, "nav": nav}


def _copy_resources(project: Project, staging: Path, say: Progress) -> None:
    """Copy `project.resources` (globs relative to the project) into the site."""
    for pattern in project.resources:
        matches = [p for p in sorted(project.root.glob(pattern))
                   if not p.resolve().is_relative_to(project.output_dir) and not _ours(p, project)]
        if not matches:
            say(f"resource pattern {pattern!r} matched no file")
        for src in matches:
            dest = staging / src.relative_to(project.root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dest)


def _ours(path: Path, project: Project) -> bool:
    # Staging and backup folders of a render are never resources.
    name = project.output_dir.name
    return any(part.startswith((f".{name}.rendering-", f".{name}.old-")) for part in path.parts)

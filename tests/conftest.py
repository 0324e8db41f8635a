"""Shared fixtures: a throw-away project folder wired to the repository's definitions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipeline.config import Paths

REPO = Path(__file__).resolve().parent.parent
# Real platform exports written by others: `shared/` sits beside the checkout (as in CI).
SHARED_FIXTURES = Path(os.environ.get("CONSULT_SHARED", REPO.parent / "shared")) / "fixtures" / "exports"

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def _secret(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyed hashes use a per-session secret outside the repository, never the user's own."""
    secret = tmp_path_factory.getbasetemp() / "secret.key"
    monkeypatch.setenv("CONSULT_SECRET_FILE", str(secret))


@pytest.fixture(scope="session")
def synthetic_exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in synthetic consultation, generated once per test session."""
    from pipeline.synth import write_synthetic_consultation

    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic_consultation(Paths(REPO), out_dir=out)
    return out


def make_project(root: Path, synthetic: Path | None = None) -> Paths:
    """A project folder: the repository's surveys/ and reports/ sources, fresh data/ folders."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "surveys", root / "surveys")
    (root / "pipeline").symlink_to(REPO / "pipeline")
    if (REPO / "reports").is_dir():
        shutil.copytree(REPO / "reports", root / "reports", ignore=shutil.ignore_patterns("_site", ".quarto"))
    for folder in ("data/raw", "data/warehouse"):
        (root / folder).mkdir(parents=True)
    if synthetic is not None:
        shutil.copytree(synthetic, root / "data" / "synthetic")
    return Paths(root)


@pytest.fixture
def project(tmp_path: Path, synthetic_exports: Path) -> Paths:
    return make_project(tmp_path / "project", synthetic_exports)


@pytest.fixture
def empty_project(tmp_path: Path) -> Paths:
    return make_project(tmp_path / "project")


@pytest.fixture(scope="session")
def loaded_template(tmp_path_factory: pytest.TempPathFactory, synthetic_exports: Path) -> Path:
    """A project with the synthetic consultation loaded once; tests get their own copy."""
    from pipeline.run import run_load

    root = tmp_path_factory.mktemp("loaded") / "project"
    paths = make_project(root, synthetic_exports)
    secret = tmp_path_factory.getbasetemp() / "secret.key"
    previous = os.environ.get("CONSULT_SECRET_FILE")
    os.environ["CONSULT_SECRET_FILE"] = str(secret)
    try:
        run_load(paths)
    finally:
        if previous is None:
            os.environ.pop("CONSULT_SECRET_FILE", None)
        else:
            os.environ["CONSULT_SECRET_FILE"] = previous
    return root


def loaded_copy(template: Path, root: Path) -> Paths:
    """A private copy, at `root`, of a project whose warehouse holds the synthetic consultation."""
    shutil.copytree(template, root, symlinks=True)
    return Paths(root)


@pytest.fixture
def loaded(tmp_path: Path, loaded_template: Path) -> Paths:
    """A project whose warehouse holds the synthetic consultation (a private copy)."""
    return loaded_copy(loaded_template, tmp_path / "project")

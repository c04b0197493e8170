"""Shared fixtures: a committed snapshot of the template, rendered projects, one shared venv."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import copier
import pytest
from support import OLD_VERSION, TEMPLATE_ROOT, build_generated_venv, git, preset, snapshot_template

sys.path.insert(0, str(TEMPLATE_ROOT / "hooks"))


@pytest.fixture(scope="session")
def template_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template as it is on disk, committed in a temporary repository."""
    return snapshot_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def versioned_template(template_snapshot: Path, tmp_path: Path) -> Path:
    """A copy of the snapshot tagged OLD_VERSION, which a test may change and tag again."""
    template = tmp_path / "template"
    shutil.copytree(template_snapshot, template)
    git(template, "tag", OLD_VERSION)
    return template


RenderFn = Callable[..., Path]


@pytest.fixture(scope="session")
def render(template_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> RenderFn:
    """Render the template with a preset plus overrides into a new folder."""

    def _render(size: str = "small", skip_tasks: bool = False, **overrides: object) -> Path:
        destination = tmp_path_factory.mktemp(f"{size}-project")
        copier.run_copy(str(template_snapshot), str(destination), data={**preset(size), **overrides},
                        defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True, skip_tasks=skip_tasks)
        return destination

    return _render


@pytest.fixture(scope="session")
def small_project(render: RenderFn) -> Path:
    """The small preset rendered once, with the hooks; tests that modify it take a copy."""
    return render("small")


@pytest.fixture(scope="session")
def medium_project(render: RenderFn) -> Path:
    """The medium preset (tooling, staging and prod accounts) rendered once, with the hooks."""
    return render("medium")


def _copy(project: Path, destination: Path) -> Path:
    """A copy of a session-wide rendered project that one test may change."""
    shutil.copytree(project, destination)
    return destination


@pytest.fixture
def medium_copy(medium_project: Path, tmp_path: Path) -> Path:
    return _copy(medium_project, tmp_path / "medium-project")


@pytest.fixture(scope="session")
def large_project(render: RenderFn) -> Path:
    """The large preset (governance, tooling, dev, staging, prod) rendered once, with the hooks."""
    return render("large")


@pytest.fixture
def large_copy(large_project: Path, tmp_path: Path) -> Path:
    return _copy(large_project, tmp_path / "large-project")


@pytest.fixture
def project_copy(small_project: Path, tmp_path: Path) -> Path:
    return _copy(small_project, tmp_path / "project")


@pytest.fixture(scope="session")
def generated_python(small_project: Path) -> Path:
    """Python of the one virtual environment shared by every generated project's checks."""
    return build_generated_venv(small_project)

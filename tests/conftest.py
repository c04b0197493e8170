"""Shared fixtures: a committed snapshot of the template, rendered projects, one shared venv."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import copier
import pytest
import yaml
from filelock import FileLock

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
VARIANTS = TEMPLATE_ROOT / "variants"
# Built once per dependency set and reused across tests and runs (CI starts from a clean clone).
CACHE_DIR = TEMPLATE_ROOT / ".cache"

sys.path.insert(0, str(TEMPLATE_ROOT / "hooks"))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def preset(size: str) -> dict:
    return yaml.safe_load((VARIANTS / f"{size}.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def template_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree (tracked and new files, honouring .gitignore) committed in a temporary
    repository, so tests render exactly what is on disk and can add tags without touching the
    developer's repository."""
    snapshot = tmp_path_factory.mktemp("template")
    files = git(TEMPLATE_ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for relative in filter(None, files.split("\0")):
        source = TEMPLATE_ROOT / relative
        if source.is_file():
            target = snapshot / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(snapshot, "init", "-q", "-b", "main")
    git(snapshot, "add", "-A")
    git(snapshot, "-c", "user.name=tests", "-c", "user.email=tests@example.com",
        "commit", "-q", "-m", "snapshot")
    return snapshot


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


@pytest.fixture
def project_copy(small_project: Path, tmp_path: Path) -> Path:
    destination = tmp_path / "project"
    shutil.copytree(small_project, destination)
    return destination


def _dependencies(project: Path) -> list[str]:
    metadata = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return sorted({*metadata.get("dependencies", []),
                   *metadata.get("optional-dependencies", {}).get("dev", [])})


@pytest.fixture(scope="session")
def generated_python(small_project: Path) -> Path:
    """Python of one virtual environment with the generated projects' pinned runtime and dev
    dependencies. Every generated project pins the same set, so it is built once (keyed by a
    hash of that set) and shared by all tests, xdist workers and later runs."""
    dependencies = _dependencies(small_project)
    key = hashlib.sha256("\n".join(dependencies).encode()).hexdigest()[:12]
    venv = CACHE_DIR / f"generated-venv-{key}"
    python = venv / "bin" / "python"
    CACHE_DIR.mkdir(exist_ok=True)
    with FileLock(str(CACHE_DIR / f"{venv.name}.lock")):
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            uv = Path(sys.executable).with_name("uv")
            subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
            subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python), *dependencies],
                           check=True)
            (venv / ".complete").touch()
    return python


def offline_env(python: Path) -> dict[str, str]:
    """Environment for running a generated project's tools: its venv first on PATH, no real
    AWS credentials or profile, and no network-backed SDK telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    return env

"""Helpers shared by the tests and scripts/benchmark.py: template snapshots, presets, and the one
virtual environment in which every generated project's tests run."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from filelock import FileLock

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
VARIANTS = TEMPLATE_ROOT / "variants"
# Built once per dependency set and reused across tests and runs (gitignored).
CACHE_DIR = TEMPLATE_ROOT / ".cache"
# Fixture versions above any real release, so Copier treats them as the newest of a snapshot.
OLD_VERSION, NEW_VERSION = "1000.0.0", "1000.1.0"
GIT_IDENTITY = ("-c", "user.name=tests", "-c", "user.email=tests@example.com")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_IDENTITY, *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


def preset(size: str) -> dict:
    return yaml.safe_load((VARIANTS / f"{size}.yml").read_text(encoding="utf-8"))


def snapshot_template(destination: Path) -> Path:
    """Commit the working tree (tracked and new files, honouring .gitignore) into a new
    repository at `destination`, so renders use exactly what is on disk and tests can tag
    versions without touching the developer's repository."""
    files = git(TEMPLATE_ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for relative in filter(None, files.split("\0")):
        source = TEMPLATE_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(destination, "init", "-q", "-b", "main")
    git(destination, "add", "-A")
    git(destination, "commit", "-q", "-m", "snapshot")
    return destination


def project_dependencies(project: Path) -> list[str]:
    """Requirements of `pip install -e '.[dev]'` without the project itself: its dependencies and
    the dev extra, following the extra's references to the project's own extras."""
    metadata = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = metadata.get("optional-dependencies", {})
    own_extra = re.compile(rf"^{re.escape(metadata['name'])}\[(.+)\]$")
    requirements, pending = set(metadata.get("dependencies", [])), ["dev"]
    while pending:
        for requirement in extras.get(pending.pop(), []):
            if match := own_extra.match(requirement):
                pending.extend(name.strip() for name in match.group(1).split(","))
            else:
                requirements.add(requirement)
    return sorted(requirements)


def build_generated_venv(project: Path) -> Path:
    """Return the Python of a virtual environment holding `project`'s pinned runtime and dev
    dependencies. Every generated project pins the same set, so it is built once (keyed by a
    hash of that set) under a file lock and shared by all tests, xdist workers and runs."""
    dependencies = project_dependencies(project)
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
    """Environment for a generated project's tools: its venv first on PATH and no AWS
    credentials, profile or region from the machine, so nothing can reach a real account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    return env

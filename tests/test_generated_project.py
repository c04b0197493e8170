"""A generated repository passes its own lint and tests straight after `copier copy`, offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support import CACHE_DIR, git, offline_env


def run(python: Path, project: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", *command], cwd=project, capture_output=True, text=True,
                          env=offline_env(python))


@pytest.fixture(scope="module", params=["regression", "binary_classification", "medium", "large"])
def generated_project(request: pytest.FixtureRequest, render, small_project: Path) -> Path:
    if request.param == "regression":
        return small_project
    if request.param in ("medium", "large"):
        return request.getfixturevalue(f"{request.param}_project")
    return render("small", problem_type="binary_classification", project_name="fraud-model",
                  repository_id="my-org/fraud-model")


def test_generated_test_suite_passes(generated_project: Path, generated_python: Path) -> None:
    result = run(generated_python, generated_project, "pytest", "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_generated_code_is_ruff_clean(generated_project: Path, generated_python: Path) -> None:
    for command in (("ruff", "check", "--no-cache", "."), ("ruff", "format", "--check", "--no-cache", ".")):
        result = run(generated_python, generated_project, *command)
        assert result.returncode == 0, result.stdout + result.stderr


def test_generated_yaml_is_yamllint_clean(generated_project: Path, generated_python: Path) -> None:
    result = run(generated_python, generated_project, "yamllint", "--strict", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_suite_fails_when_generated_code_is_broken(small_project: Path, tmp_path: Path,
                                                            generated_python: Path) -> None:
    """The generated tests are real: breaking the evaluation report makes them fail."""
    project = tmp_path / "project"
    shutil.copytree(small_project, project)
    evaluate = project / "src" / "ml_pipeline" / "evaluate.py"
    evaluate.write_text(evaluate.read_text().replace("regression_metrics", "regresion_metrics"))
    result = run(generated_python, project, "pytest", "-q", "-p", "no:cacheprovider", "-x")
    assert result.returncode == 1, result.stdout[-3000:]


def test_pre_commit_hooks_are_hermetic_and_pass(small_project: Path, tmp_path: Path,
                                                generated_python: Path) -> None:
    """`pre-commit run` builds every hook from PyPI alone (local hooks, no hook repositories to
    clone) and the freshly generated project passes all of them."""
    project = tmp_path / "project"
    shutil.copytree(small_project, project)
    git(project, "init", "-q")
    git(project, "add", "-A")
    env = {**offline_env(generated_python), "PRE_COMMIT_HOME": str(CACHE_DIR / "pre-commit")}
    result = subprocess.run([str(generated_python), "-m", "pre_commit", "run", "--all-files"],
                            cwd=project, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    for hook in ("ruff check", "ruff format", "cfn-lint (CloudFormation)",
                 "buildspec schema (CodeBuild 0.2)", "yamllint"):
        assert re.search(rf"^{re.escape(hook)}\.+Passed$", result.stdout, re.MULTILINE), result.stdout

"""`copier update` keeps the user's edits, brings the template's change and validates the result."""

from __future__ import annotations

import shutil
from pathlib import Path

import copier
import pytest
from copier.errors import TaskError
import yaml
from support import git, preset

# Above any real release, so Copier treats them as the newest versions of the snapshot.
OLD, NEW = "1000.0.0", "1000.1.0"
USER_LINE = "# Our team's note: keep the seed fixed so runs are comparable.\n"


@pytest.fixture
def versioned_template(template_snapshot: Path, tmp_path: Path) -> Path:
    template = tmp_path / "template"
    shutil.copytree(template_snapshot, template)
    git(template, "tag", OLD)
    return template


def release(template: Path, relative: str, addition: str) -> None:
    path = template / "template" / relative
    path.write_text(path.read_text(encoding="utf-8") + addition, encoding="utf-8")
    git(template, "commit", "-q", "-am", "template change")
    git(template, "tag", NEW)


def generate(template: Path, destination: Path) -> None:
    copier.run_copy(str(template), str(destination), data=preset("small"), defaults=True,
                    unsafe=True, vcs_ref=OLD, quiet=True)
    git(destination, "init", "-q", "-b", "main")
    git(destination, "add", "-A")
    git(destination, "commit", "-q", "-m", "generated")


def test_update_keeps_user_edits_and_brings_template_change(versioned_template: Path,
                                                            tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)

    pipeline = project / "src" / "ml_pipeline" / "pipeline.py"
    pipeline.write_text(USER_LINE + pipeline.read_text(encoding="utf-8"), encoding="utf-8")
    (project / "notes.md").write_text("Our own file.\n", encoding="utf-8")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "user edits")

    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")
    copier.run_update(str(project), vcs_ref=NEW, defaults=True, overwrite=True, unsafe=True, quiet=True)

    assert pipeline.read_text(encoding="utf-8").startswith(USER_LINE)
    assert (project / "notes.md").read_text(encoding="utf-8") == "Our own file.\n"
    assert "## Added in the new template version" in (project / "README.md").read_text(encoding="utf-8")
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == NEW
    leftovers = [p for p in project.rglob("*") if ".git" not in p.parts and
                 (p.suffix == ".rej" or (p.is_file() and "<<<<<<<" in p.read_text(errors="ignore")))]
    assert leftovers == []


def test_update_runs_the_hooks_on_the_result(versioned_template: Path, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    release(versioned_template, "README.md.jinja", "\nRendered from {{ '{{' }} project_name }}\n")
    with pytest.raises(TaskError):
        copier.run_update(str(project), vcs_ref=NEW, defaults=True, overwrite=True, unsafe=True,
                          quiet=True)
    assert "[leftover-jinja] unrendered Jinja '{{ project_name }}'" in capfd.readouterr().err

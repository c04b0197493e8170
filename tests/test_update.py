"""`copier update` keeps the user's edits, brings the template's change and validates the result."""

from __future__ import annotations

import shutil
from pathlib import Path

import copier
import pytest
from copier.errors import TaskError, UserMessageError
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


def generate(template: Path, destination: Path, ref: str = OLD) -> None:
    copier.run_copy(str(template), str(destination), data=preset("small"), defaults=True,
                    unsafe=True, vcs_ref=ref, quiet=True)
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


def tree_state(project: Path) -> tuple[dict[str, bytes], str]:
    files = {str(p.relative_to(project)): p.read_bytes() for p in project.rglob("*")
             if p.is_file() and ".git" not in p.relative_to(project).parts}
    return files, git(project, "status", "--porcelain", "--untracked-files=all")


def test_update_refuses_a_dirty_tree_and_changes_nothing(versioned_template: Path,
                                                         tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    pipeline = project / "src" / "ml_pipeline" / "pipeline.py"
    pipeline.write_text(USER_LINE + pipeline.read_text(encoding="utf-8"), encoding="utf-8")
    (project / "notes.md").write_text("Not committed yet.\n", encoding="utf-8")
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")
    before = tree_state(project)

    with pytest.raises(UserMessageError, match="Destination repository is dirty.*commit or stash"):
        copier.run_update(str(project), vcs_ref=NEW, defaults=True, overwrite=True, unsafe=True,
                          quiet=True)
    assert tree_state(project) == before


def test_update_without_answers_file_names_it(versioned_template: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    git(project, "rm", "-q", ".copier-answers.yml")
    git(project, "commit", "-q", "-m", "answers file deleted")
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")

    with pytest.raises(UserMessageError,
                       match="Cannot update because cannot obtain old template references "
                             "from `.copier-answers.yml`"):
        copier.run_update(str(project), vcs_ref=NEW, defaults=True, overwrite=True, unsafe=True,
                          quiet=True)
    # Copier's message does not say how to recover; the generated README does.
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "git checkout <commit> -- .copier-answers.yml" in readme
    assert "copier recopy" in readme


def test_update_refuses_a_downgrade(versioned_template: Path, tmp_path: Path) -> None:
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")
    project = tmp_path / "project"
    generate(versioned_template, project, ref=NEW)
    before = tree_state(project)

    with pytest.raises(UserMessageError,
                       match=f"You are downgrading from {NEW} to {OLD}. Downgrades are not supported."):
        copier.run_update(str(project), vcs_ref=OLD, defaults=True, overwrite=True, unsafe=True,
                          quiet=True)
    assert tree_state(project) == before

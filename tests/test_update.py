"""`copier update` keeps the user's edits, brings the template's change and validates the result."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import copier
import pytest
import yaml
from copier.errors import TaskError, UserMessageError
from support import NEW_VERSION, OLD_VERSION, VARIANTS, git, preset

USER_LINE = "# Our team's note: keep the seed fixed so runs are comparable.\n"



def release(template: Path, relative: str, addition: str) -> None:
    path = template / "template" / relative
    path.write_text(path.read_text(encoding="utf-8") + addition, encoding="utf-8")
    git(template, "commit", "-q", "-am", "template change")
    git(template, "tag", NEW_VERSION)


def generate(template: Path, destination: Path, ref: str = OLD_VERSION, answers: dict | None = None) -> None:
    copier.run_copy(str(template), str(destination), data=answers or preset("small"), defaults=True,
                    unsafe=True, vcs_ref=ref, quiet=True)
    git(destination, "init", "-q", "-b", "main")
    git(destination, "add", "-A")
    git(destination, "commit", "-q", "-m", "generated")


def update(project: Path, vcs_ref: str, **options: object) -> None:
    copier.run_update(str(project), vcs_ref=vcs_ref, defaults=True, overwrite=True, unsafe=True,
                      quiet=True, **options)


def add_user_line(project: Path) -> Path:
    """The user's edit of generated code: a line at the top of the pipeline module."""
    pipeline = project / "src" / "ml_pipeline" / "pipeline.py"
    pipeline.write_text(USER_LINE + pipeline.read_text(encoding="utf-8"), encoding="utf-8")
    return pipeline


def files_of(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(project).parts}


def merge_leftovers(project: Path) -> list[str]:
    """Files a merge left unfinished: .rej files, or conflict markers in a file."""
    return [relative for relative in sorted(files_of(project))
            if relative.endswith(".rej") or "<<<<<<<" in (project / relative).read_text(errors="ignore")]


def test_update_keeps_user_edits_and_brings_template_change(versioned_template: Path,
                                                            tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)

    pipeline = add_user_line(project)
    (project / "notes.md").write_text("Our own file.\n", encoding="utf-8")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "user edits")

    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")
    update(project, NEW_VERSION)

    assert pipeline.read_text(encoding="utf-8").startswith(USER_LINE)
    assert (project / "notes.md").read_text(encoding="utf-8") == "Our own file.\n"
    assert "## Added in the new template version" in (project / "README.md").read_text(encoding="utf-8")
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == NEW_VERSION
    assert merge_leftovers(project) == []


def test_update_runs_the_hooks_on_the_result(versioned_template: Path, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    release(versioned_template, "README.md.jinja", "\nRendered from {{ '{{' }} project_name }}\n")
    with pytest.raises(TaskError):
        update(project, NEW_VERSION)
    assert "[leftover-jinja] unrendered Jinja '{{ project_name }}'" in capfd.readouterr().err


def tree_state(project: Path) -> tuple[dict[str, bytes], str]:
    files = {relative: (project / relative).read_bytes() for relative in files_of(project)}
    return files, git(project, "status", "--porcelain", "--untracked-files=all")


def test_update_refuses_a_dirty_tree_and_changes_nothing(versioned_template: Path,
                                                         tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    add_user_line(project)
    (project / "notes.md").write_text("Not committed yet.\n", encoding="utf-8")
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")
    before = tree_state(project)

    with pytest.raises(UserMessageError, match=r"Destination repository is dirty.*commit or stash"):
        update(project, NEW_VERSION)
    assert tree_state(project) == before


def test_update_without_answers_file_names_it(versioned_template: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    git(project, "rm", "-q", ".copier-answers.yml")
    git(project, "commit", "-q", "-m", "answers file deleted")
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")

    with pytest.raises(UserMessageError,
                       match=re.escape("Cannot update because cannot obtain old template references "
                                       "from `.copier-answers.yml`")):
        update(project, NEW_VERSION)
    # Copier's message does not say how to recover; the generated README does.
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "git checkout <commit> -- .copier-answers.yml" in readme
    assert "copier recopy" in readme


def test_update_refuses_a_downgrade(versioned_template: Path, tmp_path: Path) -> None:
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")
    project = tmp_path / "project"
    generate(versioned_template, project, ref=NEW_VERSION)
    before = tree_state(project)

    with pytest.raises(UserMessageError,
                       match=re.escape(f"You are downgrading from {NEW_VERSION} to {OLD_VERSION}. "
                                       "Downgrades are not supported.")):
        update(project, OLD_VERSION)
    assert tree_state(project) == before


MEDIUM_ONLY = ("org_size", "tooling_account_id", "staging_account_id", "prod_account_id")
LARGE_ONLY = ("org_size", "dev_account_id", "governance_account_id", "permissions_boundary_arn",
              "required_tags", "segment_attributes")


def edit_as_user(project: Path) -> dict[str, str]:
    """The edits of the issue's acceptance: a pipeline line, a quality threshold, an own file.
    Committed; returns the expected content of each edited file."""
    pipeline = add_user_line(project)
    config = project / "config" / "pipeline.yml"
    text = config.read_text(encoding="utf-8")
    for default, ours in (("threshold: 70.0", "threshold: 65.0"), ("threshold: 0.9", "threshold: 0.85")):
        text = text.replace(default, ours)
    config.write_text(text, encoding="utf-8")
    (project / "notes.md").write_text("Our own file.\n", encoding="utf-8")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "user edits")
    return {str(path.relative_to(project)): path.read_text(encoding="utf-8")
            for path in (pipeline, config, project / "notes.md")}


def assert_switched(project: Path, template: Path, answers: dict, edits: dict[str, str],
                    tmp_path: Path) -> None:
    """The project is what a fresh render of `answers` at NEW_VERSION is, plus the user's edits."""
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert recorded["org_size"] == answers["org_size"]
    assert recorded["_commit"] == NEW_VERSION
    for relative, content in edits.items():
        assert (project / relative).read_text(encoding="utf-8") == content, relative
    assert (project / "infra" / "target-account.yml").is_file()
    # A fresh render of the same answers is what the project must hold besides the user's own
    # file: anything more is a file of the smaller size that the switch left behind.
    fresh = tmp_path / f"fresh-{answers['org_size']}"
    copier.run_copy(str(template), str(fresh), data=answers, defaults=True, unsafe=True,
                    vcs_ref=NEW_VERSION, quiet=True, skip_tasks=True)
    assert files_of(project) == files_of(fresh) | {"notes.md"}
    assert merge_leftovers(project) == []


def test_update_switches_small_to_medium_keeping_edits(versioned_template: Path,
                                                       tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    edits = edit_as_user(project)
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")

    new_answers = {key: preset("medium")[key] for key in MEDIUM_ONLY}
    update(project, NEW_VERSION, data=new_answers)

    assert_switched(project, versioned_template, {**preset("small"), **new_answers}, edits, tmp_path)


def test_small_readme_documents_the_switch_and_its_deploy_order(versioned_template: Path,
                                                               tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    readme = (project / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Switching organisation size"):]
    assert "copier update --trust --data org_size=medium" in section
    bootstrap, toolchain = section.index("target-account.yml"), section.index("toolchain` in the tooling")
    assert bootstrap < toolchain
    assert "CAPABILITY_NAMED_IAM" in section[toolchain:]


def test_update_cli_switches_to_the_medium_preset(versioned_template: Path, tmp_path: Path) -> None:
    """The documented command, on a project whose other answers already match the preset."""
    project = tmp_path / "project"
    as_small = {key: value for key, value in preset("medium").items() if key not in MEDIUM_ONLY}
    generate(versioned_template, project, answers={**as_small, "org_size": "small"})
    edits = edit_as_user(project)
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")

    subprocess.run([str(Path(sys.executable).with_name("copier")), "update", "--trust", "--defaults",
                    "--data-file", str(VARIANTS / "medium.yml"), "--vcs-ref", NEW_VERSION, "--quiet"],
                   cwd=project, check=True, capture_output=True, text=True)

    assert_switched(project, versioned_template, preset("medium"), edits, tmp_path)


def test_update_cli_switches_medium_to_the_large_preset(versioned_template: Path, tmp_path: Path,
                                                        record_property) -> None:
    """Medium to large with the documented command; the update's duration goes to the report."""
    project = tmp_path / "project"
    as_medium = {key: value for key, value in preset("large").items() if key not in LARGE_ONLY}
    generate(versioned_template, project, answers={**as_medium, "org_size": "medium"})
    edits = edit_as_user(project)
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")

    started = time.monotonic()
    subprocess.run([str(Path(sys.executable).with_name("copier")), "update", "--trust", "--defaults",
                    "--data-file", str(VARIANTS / "large.yml"), "--vcs-ref", NEW_VERSION, "--quiet"],
                   cwd=project, check=True, capture_output=True, text=True)
    record_property("copier_update_to_large_seconds", round(time.monotonic() - started, 1))

    assert_switched(project, versioned_template, preset("large"), edits, tmp_path)
    assert (project / "infra" / "network.yml").is_file()
    assert (project / "infra" / "governance-account.yml").is_file()


def test_large_update_to_a_newer_version_keeps_edits(versioned_template: Path, tmp_path: Path,
                                                     record_property) -> None:
    """The issue's measured case: one `copier update` of a large project to a newer tag."""
    project = tmp_path / "project"
    generate(versioned_template, project, answers=preset("large"))
    edits = edit_as_user(project)
    release(versioned_template, "infra/{% if org_size == 'large' %}network.yml{% endif %}",
            "# Added in the new template version.\n")

    started = time.monotonic()
    update(project, NEW_VERSION)
    record_property("copier_update_large_seconds", round(time.monotonic() - started, 1))

    for relative, content in edits.items():
        assert (project / relative).read_text(encoding="utf-8") == content, relative
    assert (project / "infra" / "network.yml").read_text(encoding="utf-8").endswith(
        "# Added in the new template version.\n")
    assert merge_leftovers(project) == []


def test_update_leaves_data_alone_and_merges_config(versioned_template: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    data = project / "data" / "diabetes.csv"
    ours = data.read_text(encoding="utf-8")

    template_data = versioned_template / "template" / "data" / (
        "{% if problem_type == 'regression' %}diabetes.csv{% endif %}")
    template_data.write_text(template_data.read_text(encoding="utf-8") + "9,9,9,9,9,9,9,9,9,9,9\n",
                             encoding="utf-8")
    release(versioned_template, "config/pipeline.yml.jinja", "\n# Added in the new template version\n")
    update(project, NEW_VERSION)

    assert data.read_text(encoding="utf-8") == ours
    assert "# Added in the new template version" in (
        project / "config" / "pipeline.yml").read_text(encoding="utf-8")


def test_migration_carries_user_edits_to_a_moved_file(versioned_template: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(versioned_template, project)
    old, new = "src/ml_pipeline/pipeline.py", "src/ml_pipeline/workflow.py"
    old_path = project / old
    old_path.write_text(USER_LINE + old_path.read_text(encoding="utf-8"), encoding="utf-8")
    git(project, "commit", "-q", "-am", "user edit")

    git(versioned_template, "mv", f"template/{old}", f"template/{new}")
    moved_in_template = versioned_template / "template" / new
    moved_in_template.write_text(moved_in_template.read_text(encoding="utf-8")
                                 + "# Moved in the new template version.\n", encoding="utf-8")
    config = yaml.safe_load((versioned_template / "copier.yml").read_text(encoding="utf-8"))
    config["_migrations"].insert(0, {
        "version": NEW_VERSION,
        "command": ["{{ _copier_python }}", "{{ _copier_conf.src_path }}/migrations/move_file.py", old, new],
        "when": "{{ _stage == 'after' }}",
    })
    (versioned_template / "copier.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    release(versioned_template, "README.md.jinja", "\n## Added in the new template version\n")
    update(project, NEW_VERSION)

    assert not old_path.exists()
    moved = (project / new).read_text(encoding="utf-8")
    assert moved.startswith(USER_LINE)
    assert moved.endswith("# Moved in the new template version.\n")
    assert "<<<<<<<" not in moved
    assert not (project / f"{new}.rej").exists()

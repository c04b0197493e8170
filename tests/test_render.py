"""Every answer combination that changes files renders a repository that is lint- and policy-clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import validate
import yaml
from support import VARIANTS

# Answer sets beyond the preset that change which files or resources are rendered: the other
# problem type, the CodeCommit opt-in, and the longest project name with an existing connection.
LONGEST_NAME = "a" + "-b" * 15 + "c"
COMBINATIONS = {
    "binary-codecommit": {"problem_type": "binary_classification", "git_provider": "codecommit",
                          "repository_id": "fraud-model"},
    "longest-name-gitlab": {"project_name": LONGEST_NAME, "git_provider": "gitlab",
                            "repository_id": "group/sub/" + LONGEST_NAME,
                            "codeconnections_arn": "arn:aws:codeconnections:eu-west-1:123456789012:"
                                                   "connection/0123abcd-0123-4567-89ab-0123456789ab"},
}


def checkov(project: Path) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).with_name("checkov")
    return subprocess.run([str(executable), "--directory", str(project / "infra"), "--framework",
                           "cloudformation", "--skip-download", "--quiet", "--compact"],
                          capture_output=True, text=True)


def copy_preset_like_a_user(template: Path, size: str, destination: Path) -> None:
    """`copier copy --trust --defaults --vcs-ref HEAD --data-file variants/<size>.yml`, hooks on."""
    result = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref", "HEAD",
         "--data-file", str(VARIANTS / f"{size}.yml"), str(template), str(destination)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert f"Generated repository checks passed ({len(validate.CHECKS)} of {len(validate.CHECKS)} run)" in result.stderr


def test_readme_command_renders_the_small_preset(template_snapshot: Path, tmp_path: Path) -> None:
    """The README's generate command, run as a user would (CLI, --data-file, hooks on)."""
    destination = tmp_path / "demand-forecast"
    copy_preset_like_a_user(template_snapshot, "small", destination)
    answers = yaml.safe_load((destination / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == str(template_snapshot)
    assert answers["org_size"] == "small" and answers["project_name"] == "demand-forecast"
    assert (destination / "data" / "diabetes.csv").is_file()
    assert not (destination / "data" / "breast_cancer.csv").exists()


def test_small_preset_is_checkov_clean(small_project: Path) -> None:
    result = checkov(small_project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_acceptance_command_renders_the_medium_preset(template_snapshot: Path, tmp_path: Path) -> None:
    """Issue 3's acceptance command: the medium preset through the CLI, hooks on."""
    destination = tmp_path / "churn-model"
    copy_preset_like_a_user(template_snapshot, "medium", destination)
    answers = yaml.safe_load((destination / ".copier-answers.yml").read_text())
    assert answers["org_size"] == "medium"
    assert (answers["tooling_account_id"], answers["staging_account_id"],
            answers["prod_account_id"]) == ("111111111111", "222222222222", "333333333333")
    assert (destination / "infra" / "target-account.yml").is_file()
    assert (destination / "tests" / "test_target_account.py").is_file()


def test_medium_preset_renders_clean(medium_project: Path) -> None:
    assert validate.validate(medium_project) == ([], [])
    result = checkov(medium_project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_medium_longest_names_render_clean(render) -> None:
    """Fixed role, alias and bucket names of the multi-account stacks fit their limits."""
    project = render("medium", project_name=LONGEST_NAME, repository_id="my-org/" + LONGEST_NAME)
    assert validate.validate(project) == ([], [])


def test_acceptance_command_renders_the_large_preset(template_snapshot: Path, tmp_path: Path) -> None:
    """Issue 3's acceptance command for large: KMS keys, cross-account roles, VpcConfig."""
    destination = tmp_path / "fraud-scoring"
    copy_preset_like_a_user(template_snapshot, "large", destination)
    answers = yaml.safe_load((destination / ".copier-answers.yml").read_text())
    assert answers["org_size"] == "large"
    assert answers["permissions_boundary_arn"] == "arn:aws:iam::555555555555:policy/org/WorkloadBoundary"
    assert answers["required_tags"]["cost-centre"] == "CC-4711"
    infra = {path.name: validate.load_yaml(path) for path in (destination / "infra").glob("*.yml")}
    assert set(infra) == {"toolchain.yml", "target-account.yml", "governance-account.yml", "network.yml",
                          "endpoint.yml", "monitoring.yml"}
    kinds = {name: {r["Type"] for r in template["Resources"].values()} for name, template in infra.items()}
    assert "AWS::KMS::Key" in kinds["toolchain.yml"] and "AWS::KMS::Key" in kinds["target-account.yml"]
    assert "AWS::SageMaker::ModelPackageGroup" in kinds["governance-account.yml"]
    assert "AWS::SageMaker::ModelPackageGroup" not in kinds["toolchain.yml"]
    assert {"DeployerRole", "SmokeTesterRole"} <= set(infra["target-account.yml"]["Resources"])
    (model,) = [r for r in infra["endpoint.yml"]["Resources"].values() if r["Type"] == "AWS::SageMaker::Model"]
    assert "VpcConfig" in model["Properties"]


def test_large_preset_renders_clean(large_project: Path) -> None:
    assert validate.validate(large_project) == ([], [])
    result = checkov(large_project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_large_longest_names_render_clean(render) -> None:
    """Named roles, exports, log groups and the registry fit their limits with a 32-character name."""
    project = render("large", project_name=LONGEST_NAME, repository_id="my-org/" + LONGEST_NAME)
    assert validate.validate(project) == ([], [])


def test_small_renders_no_multi_account_files(small_project: Path) -> None:
    assert not (small_project / "infra" / "target-account.yml").exists()
    assert not (small_project / "tests" / "test_target_account.py").exists()
    answers = yaml.safe_load((small_project / ".copier-answers.yml").read_text())
    assert "tooling_account_id" not in answers


def test_medium_renders_no_large_only_files(medium_project: Path) -> None:
    for relative in ("infra/network.yml", "infra/governance-account.yml", "tests/test_large_guardrails.py"):
        assert not (medium_project / relative).exists(), relative
    answers = yaml.safe_load((medium_project / ".copier-answers.yml").read_text())
    assert not {"permissions_boundary_arn", "required_tags", "governance_account_id"} & set(answers)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_combination_renders_clean(render, name: str) -> None:
    project = render("small", **COMBINATIONS[name])  # hooks run: cfn-lint, schema, invariants
    assert validate.validate(project) == ([], [])
    result = checkov(project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_codecommit_opt_in_creates_the_repository_instead_of_a_connection(render) -> None:
    project = render("small", skip_tasks=True, **COMBINATIONS["binary-codecommit"])
    types = {r["Type"] for r in validate.load_yaml(project / "infra" / "toolchain.yml")["Resources"].values()}
    assert "AWS::CodeCommit::Repository" in types
    assert "AWS::CodeConnections::Connection" not in types
    assert (project / "data" / "breast_cancer.csv").is_file()
    assert not (project / "data" / "diabetes.csv").exists()


def test_every_policy_check_skip_carries_a_reason(small_project: Path) -> None:
    """A checkov suppression without a written reason hides a decision nobody can review."""
    skips = []
    for template in sorted((small_project / "infra").glob("*.yml")):
        for logical_id, resource in validate.load_yaml(template)["Resources"].items():
            metadata = resource.get("Metadata") or {}
            for skip in (metadata.get("checkov") or {}).get("skip", []):
                skips.append((template.name, logical_id, skip["id"], skip.get("comment", "")))
    assert skips, "the access-log bucket's logging skip is expected"
    for template_name, logical_id, check, comment in skips:
        assert len(comment.split()) >= 8, f"{template_name} {logical_id}: {check} has no written reason"


MONITORING_SCHEDULE = "AWS::SageMaker::MonitoringSchedule"


def rendered_text(project: Path) -> str:
    """Every rendered text file, as `grep -r` sees them (the sample data included)."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(project.rglob("*"))
                     if p.is_file() and ".git" not in p.parts)


@pytest.mark.parametrize("size", ["small", "medium"])
def test_default_engine_monitors_without_model_monitor(size: str, small_project: Path,
                                                      medium_project: Path) -> None:
    """Issue 4's acceptance: alarms, an SNS topic and a scheduled run, and no Model Monitor."""
    project = small_project if size == "small" else medium_project
    assert "MonitoringSchedule" not in rendered_text(project)
    assert not (project / "infra" / "model-monitor.yml").exists()
    types = [r["Type"] for r in validate.load_yaml(project / "infra" / "monitoring.yml")["Resources"].values()]
    assert {"AWS::Scheduler::Schedule", "AWS::SNS::Topic", "AWS::SNS::Subscription"} <= set(types)
    assert types.count("AWS::CloudWatch::Alarm") >= 4
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["monitoring_engine"] == "pipeline"
    config = yaml.safe_load((project / "config" / "monitoring.yml").read_text())
    # Retraining and model quality are opt-in for one account, on for several.
    assert config["retraining"]["enabled"] is (size != "small")
    assert config["quality"]["enabled"] is (size != "small")


@pytest.mark.parametrize("size", ["small", "medium"])
def test_model_monitor_engine_renders_its_schedules_clean(render, size: str) -> None:
    project = render(size, monitoring_engine="model_monitor")  # hooks run
    assert validate.validate(project) == ([], [])
    result = checkov(project)
    assert result.returncode == 0, result.stdout + result.stderr
    template = validate.load_yaml(project / "infra" / "model-monitor.yml")
    schedules = {r["Properties"]["MonitoringScheduleConfig"]["MonitoringType"]
                 for r in template["Resources"].values() if r["Type"] == MONITORING_SCHEDULE}
    assert schedules == {"DataQuality", "ModelQuality"}
    # The same alarms, topic and retraining trigger stay in the monitoring stack.
    assert (project / "infra" / "monitoring.yml").is_file()
    toolchain = (project / "infra" / "toolchain.yml").read_text(encoding="utf-8")
    target = project / "infra" / "target-account.yml"
    policies = target.read_text(encoding="utf-8") if target.is_file() else toolchain
    assert "sagemaker:CreateMonitoringSchedule" in policies


def test_model_monitor_permissions_are_only_rendered_for_its_engine(small_project: Path) -> None:
    assert "sagemaker:CreateMonitoringSchedule" not in (small_project / "infra" / "toolchain.yml").read_text()

"""The generation hook passes the rendered project and fails, precisely, on each broken output."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import validate
from support import TEMPLATE_ROOT

HOOK = TEMPLATE_ROOT / "hooks" / "validate.py"


def run_hook(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HOOK), str(project)], capture_output=True, text=True)


def rewrite_template(project: Path, relative: str, change: Callable[[dict], None]) -> None:
    """Apply `change` to a CloudFormation template and write it back as JSON (valid YAML too)."""
    path = project / relative
    document = validate.load_yaml(path)
    change(document)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")


def first_resource(document: dict, resource_type: str) -> dict:
    return next(r for r in document["Resources"].values() if r["Type"] == resource_type)


def rules(findings: list[validate.Finding]) -> set[str]:
    return {f.rule for f in findings}


def test_rendered_project_passes_every_check_without_skips(small_project: Path) -> None:
    findings, skipped = validate.validate(small_project)
    assert findings == []
    assert skipped == []


def test_hook_exit_status_and_report_name_the_file_rule_and_fix(project_copy: Path) -> None:
    (project_copy / "README.md").write_text("Welcome to {{ project_name }}\n", encoding="utf-8")
    result = run_hook(project_copy)
    assert result.returncode == 1
    assert "README.md:1: [leftover-jinja] unrendered Jinja '{{ project_name }}'" in result.stderr
    assert "fix: give the template file the .jinja suffix" in result.stderr


def test_hook_succeeds_on_clean_project(small_project: Path) -> None:
    result = run_hook(small_project)
    assert result.returncode == 0, result.stderr
    assert f"checks passed ({len(validate.CHECKS)} of {len(validate.CHECKS)} run)" in result.stderr


def test_broken_yaml_is_reported(project_copy: Path) -> None:
    (project_copy / "buildspecs" / "build.yml").write_text("version: 0.2\nphases: [unclosed\n")
    findings = validate.check_parse(project_copy)
    assert [(f.path, f.rule) for f in findings] == [("buildspecs/build.yml", "parse")]


def test_broken_json_is_reported(project_copy: Path) -> None:
    (project_copy / "schemas" / "buildspec.schema.json").write_text('{"type": "object",}')
    findings = validate.check_parse(project_copy)
    assert [(f.path, f.rule) for f in findings] == [("schemas/buildspec.schema.json", "parse")]


def test_unrendered_file_name_is_reported(project_copy: Path) -> None:
    (project_copy / "config" / "extra.yml.jinja").write_text("a: 1\n")
    findings = validate.check_leftover_jinja(project_copy)
    assert [f.path for f in findings] == ["config/extra.yml.jinja"]


def test_python_syntax_error_is_reported_with_line(project_copy: Path) -> None:
    cli = project_copy / "src" / "ml_pipeline" / "cli.py"
    cli.write_text(cli.read_text() + "\ndef broken(:\n")
    findings = validate.check_python_compiles(project_copy)
    assert len(findings) == 1
    assert findings[0].path.startswith("src/ml_pipeline/cli.py:")
    assert findings[0].rule == "python-compile"


def test_cfn_lint_error_is_reported(project_copy: Path) -> None:
    rewrite_template(project_copy, "infra/endpoint.yml",
                     lambda t: first_resource(t, "AWS::SageMaker::Endpoint")["Properties"]
                     .update(NotAProperty="x"))
    findings = validate.check_cfn_lint(project_copy)
    assert any(f.rule == "cfn-lint E3002" and f.path.startswith("infra/endpoint.yml:")
               and "NotAProperty" in f.message for f in findings)


def test_buildspec_typo_is_reported(project_copy: Path) -> None:
    path = project_copy / "buildspecs" / "build.yml"
    path.write_text(path.read_text().replace("phases:", "phase:", 1))
    findings = validate.check_buildspecs(project_copy)
    assert findings and {f.path for f in findings} == {"buildspecs/build.yml"}
    assert any("unknown key(s) 'phase'" in f.message and "rename 'phase' to 'phases'" in f.fix
               for f in findings)


@pytest.mark.parametrize("relative", ["schemas/buildspec.schema.json", "scripts/check_buildspecs.py"])
def test_missing_buildspec_checker_is_reported(project_copy: Path, relative: str) -> None:
    (project_copy / relative).unlink()
    findings = validate.check_buildspecs(project_copy)
    assert [(f.path, f.rule) for f in findings] == [(relative, "buildspec-schema")]


def test_unencrypted_bucket_is_reported(project_copy: Path) -> None:
    rewrite_template(project_copy, "infra/toolchain.yml",
                     lambda t: first_resource(t, "AWS::S3::Bucket")["Properties"].pop("BucketEncryption"))
    assert rules(validate.check_encryption(project_copy)) == {"encryption-at-rest"}


def test_bucket_without_tls_only_policy_is_reported(project_copy: Path) -> None:
    def drop_policies(template: dict) -> None:
        for logical_id in [k for k, r in template["Resources"].items()
                           if r["Type"] == "AWS::S3::BucketPolicy"]:
            del template["Resources"][logical_id]

    rewrite_template(project_copy, "infra/toolchain.yml", drop_policies)
    assert rules(validate.check_encryption(project_copy)) == {"encryption-in-transit"}


def test_key_without_rotation_is_reported(project_copy: Path) -> None:
    rewrite_template(project_copy, "infra/toolchain.yml",
                     lambda t: first_resource(t, "AWS::KMS::Key")["Properties"]
                     .update(EnableKeyRotation=False))
    assert rules(validate.check_encryption(project_copy)) == {"key-rotation"}


@pytest.mark.parametrize(("relative", "resource_type", "prop"), [
    ("infra/toolchain.yml", "AWS::SNS::Topic", "KmsMasterKeyId"),
    ("infra/endpoint.yml", "AWS::SageMaker::EndpointConfig", "KmsKeyId"),
    ("infra/toolchain.yml", "AWS::CodeBuild::Project", "EncryptionKey"),
])
def test_resource_without_kms_key_is_reported(project_copy: Path, relative: str,
                                              resource_type: str, prop: str) -> None:
    rewrite_template(project_copy, relative,
                     lambda t: first_resource(t, resource_type)["Properties"].pop(prop))
    findings = validate.check_encryption(project_copy)
    assert [(f.path, f.rule) for f in findings] == [(relative, "encryption-at-rest")]
    assert resource_type in findings[0].message


def test_untagged_resource_is_reported(project_copy: Path) -> None:
    rewrite_template(project_copy, "infra/endpoint.yml",
                     lambda t: first_resource(t, "AWS::SageMaker::Endpoint")["Properties"].pop("Tags"))
    findings = validate.check_project_tags(project_copy)
    assert len(findings) == 1
    assert "AWS::SageMaker::Endpoint" in findings[0].message


def test_name_too_long_for_longest_project_name_is_reported(project_copy: Path) -> None:
    rewrite_template(project_copy, "infra/endpoint.yml",
                     lambda t: first_resource(t, "AWS::SageMaker::Endpoint")["Properties"]
                     .update(EndpointName={"Fn::Sub": "${ProjectName}-${Stage}-endpoint-for-real-time-use"}))
    findings = validate.check_name_lengths(project_copy)
    assert len(findings) == 1
    assert "EndpointName can be" in findings[0].message and "AWS allows 63" in findings[0].message


def test_name_from_unbounded_parameter_is_reported(project_copy: Path) -> None:
    rewrite_template(project_copy, "infra/endpoint.yml",
                     lambda t: t["Parameters"]["ProjectName"].pop("MaxLength"))
    findings = validate.check_name_lengths(project_copy)
    assert findings and all("ProjectName, which has no MaxLength" in f.message for f in findings)


@pytest.mark.parametrize(("name", "expected"), [
    ({"Fn::Sub": "${ProjectName}-${AWS::Region}"}, 32 + 1 + 14),
    ({"Fn::Join": ["-", [{"Ref": "ProjectName"}, "prod"]]}, 32 + 1 + 4),
    ({"Fn::Sub": ["${Name}-x", {"Name": {"Ref": "Stage"}}]}, len("staging") + 2),
    ({"Fn::If": ["IsProd", "short", {"Fn::Sub": "${ProjectName}-long"}]}, 32 + 5),
])
def test_worst_case_name_length(name: dict, expected: int) -> None:
    parameters = {"ProjectName": {"Type": "String", "MaxLength": 32},
                  "Stage": {"Type": "String", "AllowedValues": ["staging", "prod"]}}
    assert validate._worst_case_length(name, parameters) == expected


def test_missing_tool_is_reported_as_skipped_with_install_command(
        small_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_cfnlint(name: str, *args, **kwargs):
        if name.startswith("cfnlint"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cfnlint)
    findings, skipped = validate.validate(small_project)
    assert findings == []
    assert len(skipped) == 2  # cfn-lint itself, and the tag check that reads its schemas
    assert all("-m pip install 'cfn-lint==" in message for message in skipped)
    assert any("skipped check 'cfn-lint'" in message for message in skipped)


def test_medium_project_passes_every_check(medium_project: Path) -> None:
    assert validate.validate(medium_project) == ([], [])


def test_role_anyone_can_assume_is_reported(project_copy: Path) -> None:
    def trust_anyone(template: dict) -> None:
        role = first_resource(template, "AWS::IAM::Role")["Properties"]
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] = {"AWS": "*"}

    rewrite_template(project_copy, "infra/toolchain.yml", trust_anyone)
    findings = validate.check_account_trust(project_copy)
    assert [(f.path, f.rule) for f in findings] == [("infra/toolchain.yml", "trust-policy")]
    assert "can be assumed by anyone" in findings[0].message


def test_account_the_answers_do_not_configure_is_reported(medium_copy: Path) -> None:
    def trust_another_account(template: dict) -> None:
        statement = next(s for s in first_resource(template, "AWS::KMS::Key")["Properties"]
                         ["KeyPolicy"]["Statement"] if s["Sid"] == "TargetAccountsDecryptModelArtifacts")
        statement["Principal"]["AWS"].append("arn:aws:iam::999999999999:root")

    rewrite_template(medium_copy, "infra/toolchain.yml", trust_another_account)
    findings = validate.check_account_trust(medium_copy)
    assert [(f.path, f.rule) for f in findings] == [("infra/toolchain.yml", "trust-policy")]
    assert "trusts account(s) 999999999999" in findings[0].message


def test_account_in_a_small_project_trust_policy_is_reported(project_copy: Path) -> None:
    """A single-account project configures no other account: any account id is foreign."""
    def trust_account_by_id(template: dict) -> None:
        role = first_resource(template, "AWS::IAM::Role")["Properties"]
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] = {
            "AWS": "arn:aws:iam::123456789012:root"}

    rewrite_template(project_copy, "infra/toolchain.yml", trust_account_by_id)
    assert rules(validate.check_account_trust(project_copy)) == {"trust-policy"}


def test_target_stack_trusting_another_tooling_account_is_reported(medium_copy: Path) -> None:
    rewrite_template(medium_copy, "infra/target-account.yml",
                     lambda t: t["Parameters"]["ToolingAccountId"].update(Default="999999999999"))
    findings = validate.check_account_trust(medium_copy)
    assert ("infra/target-account.yml", "cross-account-roles") in {(f.path, f.rule) for f in findings}
    assert any("no role trusts the tooling account 111111111111" in f.message for f in findings)


def test_missing_target_account_stack_is_reported(medium_copy: Path) -> None:
    (medium_copy / "infra" / "target-account.yml").unlink()
    findings = validate.check_account_trust(medium_copy)
    assert [(f.path, f.rule) for f in findings] == [("infra/target-account.yml", "cross-account-roles")]


def test_pipeline_without_a_prod_account_role_is_reported(medium_copy: Path) -> None:
    def deploy_prod_into_staging(template: dict) -> None:
        pipeline = template["Resources"]["DeployPipeline"]["Properties"]
        for stage in pipeline["Stages"]:
            for action in stage["Actions"]:
                variables = action.get("Configuration", {}).get("EnvironmentVariables")
                if isinstance(variables, dict):
                    variables["Fn::Sub"] = variables["Fn::Sub"].replace("${ProdAccountId}",
                                                                        "${StagingAccountId}")

    rewrite_template(medium_copy, "infra/toolchain.yml", deploy_prod_into_staging)
    findings = validate.check_account_trust(medium_copy)
    assert [(f.path, f.rule) for f in findings] == [("infra/toolchain.yml", "cross-account-roles")]
    assert "prod account 333333333333" in findings[0].message


def test_large_project_passes_every_check(large_project: Path) -> None:
    assert validate.validate(large_project) == ([], [])


def test_dev_and_governance_accounts_are_configured_in_large(large_copy: Path) -> None:
    """The two large-only accounts count as configured; a sixth account does not."""
    assert validate.check_account_trust(large_copy) == []

    def trust_a_sixth_account(template: dict) -> None:
        group = first_resource(template, "AWS::SageMaker::ModelPackageGroup")["Properties"]
        reader = next(s for s in group["ModelPackageGroupPolicy"]["Statement"]
                      if s["Sid"] == "DevAccountReadsTheRegistry")
        reader["Principal"]["AWS"] = "arn:aws:iam::666666666666:root"

    rewrite_template(large_copy, "infra/governance-account.yml", trust_a_sixth_account)
    findings = validate.check_account_trust(large_copy)
    assert [(f.path, f.rule) for f in findings] == [("infra/governance-account.yml", "trust-policy")]
    assert "666666666666" in findings[0].message


def _break_toolchain_build_network(template: dict) -> None:
    variables = template["Resources"]["BuildProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    variables[:] = [v for v in variables if v["Name"] != "SUBNET_IDS"]


def _break_deploy_network(template: dict) -> None:
    variables = template["Resources"]["DeployProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    variables[:] = [v for v in variables if v["Name"] != "NETWORK_STACK_NAME"]


def _break_required_tags(template: dict) -> None:
    variables = template["Resources"]["DeployProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    tags = next(v for v in variables if v["Name"] == "REQUIRED_STACK_TAGS")
    tags["Value"] = tags["Value"].replace("owner=ml-platform@example.com", "")


def _unbound_role(template: dict) -> None:
    first_resource(template, "AWS::IAM::Role")["Properties"].pop("PermissionsBoundary")


def _other_boundary(template: dict) -> None:
    template["Parameters"]["PermissionsBoundaryPolicy"]["Default"] = "org/OtherBoundary"


def _model_outside_vpc(template: dict) -> None:
    first_resource(template, "AWS::SageMaker::Model")["Properties"].pop("VpcConfig")


def _aws_managed_key(template: dict) -> None:
    topic = first_resource(template, "AWS::SNS::Topic")["Properties"]
    topic["KmsMasterKeyId"] = "alias/aws/sns"


def _capture_without_key(template: dict) -> None:
    config = first_resource(template, "AWS::SageMaker::EndpointConfig")["Properties"]
    config["DataCaptureConfig"].pop("KmsKeyId")


def _governance_account_boundary(template: dict) -> None:
    """A fixed account's policy: IAM refuses it for roles of every other account."""
    role = first_resource(template, "AWS::IAM::Role")["Properties"]
    role["PermissionsBoundary"] = "arn:aws:iam::555555555555:policy/org/WorkloadBoundary"


LARGE_BREAKS = [
    ("infra/toolchain.yml", _unbound_role, "permissions-boundary", "is not bounded by"),
    ("infra/network.yml", _governance_account_boundary, "permissions-boundary", "of its account"),
    ("infra/target-account.yml", _other_boundary, "permissions-boundary", "is not bounded by"),
    ("infra/endpoint.yml", _model_outside_vpc, "vpc-only", "runs outside the private subnets"),
    ("infra/toolchain.yml", _aws_managed_key, "kms-everywhere", "is an AWS managed key"),
    ("infra/endpoint.yml", _capture_without_key, "kms-everywhere", "captures data without the KMS key"),
    ("infra/toolchain.yml", _break_toolchain_build_network, "vpc-only", "does not pass SUBNET_IDS"),
    ("infra/toolchain.yml", _break_deploy_network, "vpc-only", "does not name the network stack"),
    ("infra/toolchain.yml", _break_required_tags, "required-tags", "owner=ml-platform@example.com"),
]


@pytest.mark.parametrize(("relative", "change", "rule", "message"), LARGE_BREAKS,
                         ids=[change.__name__.strip("_") for _, change, _, _ in LARGE_BREAKS])
def test_large_guardrail_violation_is_reported(large_copy: Path, relative: str, change, rule: str,
                                               message: str) -> None:
    assert validate.check_large_guardrails(large_copy) == []
    rewrite_template(large_copy, relative, change)
    findings = validate.check_large_guardrails(large_copy)
    # One finding per affected resource (a changed parameter default affects each of its roles).
    assert {(f.path, f.rule) for f in findings} == {(relative, rule)}
    assert all(message in f.message and f.fix for f in findings)


def test_readme_deploy_command_without_the_required_tags_is_reported(large_copy: Path) -> None:
    readme = large_copy / "README.md"
    text = readme.read_text()
    command = "--stack-name fraud-scoring-registry"
    start = text.index(command)
    end = text.index("```", start)
    readme.write_text(text[:start] + text[start:end].replace(" data-classification=confidential", "")
                      + text[end:])
    findings = validate.check_large_guardrails(large_copy)
    assert [(f.path, f.rule) for f in findings] == [("README.md", "required-tags")]
    assert "fraud-scoring-registry" in findings[0].message
    assert "data-classification=confidential" in findings[0].message


def test_guardrails_do_not_apply_below_large(medium_copy: Path) -> None:
    rewrite_template(medium_copy, "infra/endpoint.yml", _model_outside_vpc)
    assert validate.check_large_guardrails(medium_copy) == []


def test_missing_monitoring_stack_is_reported(project_copy: Path) -> None:
    (project_copy / "infra" / "monitoring.yml").unlink()
    findings = validate.check_monitoring(project_copy)
    assert [(f.path, f.rule) for f in findings] == [("infra/monitoring.yml", "monitoring")]
    assert "deployed without monitoring" in findings[0].message


def _drop(resource_type: str) -> Callable[[dict], None]:
    def change(template: dict) -> None:
        for logical_id in [k for k, r in template["Resources"].items() if r["Type"] == resource_type]:
            del template["Resources"][logical_id]
    return change


def _only_in_prod(resource_type: str) -> Callable[[dict], None]:
    def change(template: dict) -> None:
        template["Conditions"]["IsProd"] = {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
        for resource in template["Resources"].values():
            if resource["Type"] == resource_type:
                resource["Condition"] = "IsProd"
    return change


def _silence_alarms(template: dict) -> None:
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            resource["Properties"].pop("AlarmActions", None)


def _staging_only(template: dict) -> None:
    template["Parameters"]["Stage"]["AllowedValues"] = ["staging"]


@pytest.mark.parametrize(("change", "message"), [
    (_drop("AWS::Scheduler::Schedule"), "no scheduled monitoring run"),
    (_only_in_prod("AWS::Scheduler::Schedule"), "no scheduled monitoring run"),
    (_drop("AWS::SNS::Subscription"), "no notification target"),
    (_silence_alarms, "no alarm notifies a subscribed topic"),
    (_staging_only, "does not allow prod"),
], ids=["no-schedule", "schedule-only-in-prod", "no-subscription", "silent-alarms", "stage-missing"])
def test_stage_without_monitor_alarm_or_notification_is_reported(project_copy: Path, change,
                                                                  message: str) -> None:
    rewrite_template(project_copy, "infra/monitoring.yml", change)
    findings = validate.check_monitoring(project_copy)
    assert {(f.path, f.rule) for f in findings} == {("infra/monitoring.yml", "monitoring")}
    assert any(message in f.message for f in findings), findings


def test_deploy_job_that_skips_the_monitoring_stack_is_reported(project_copy: Path) -> None:
    buildspec = project_copy / "buildspecs" / "deploy.yml"
    buildspec.write_text(buildspec.read_text().replace("--template-file infra/monitoring.yml",
                                                       "--template-file infra/other.yml"))
    findings = validate.check_monitoring(project_copy)
    assert [(f.path, f.rule) for f in findings] == [("buildspecs/deploy.yml", "monitoring")]


def test_medium_project_monitors_every_stage(medium_project: Path) -> None:
    assert validate.check_monitoring(medium_project) == []

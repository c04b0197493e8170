"""CloudFormation in infra/: lint, and the invariants the toolchain and endpoint stacks promise.

Templates are read with cfn-lint's decoder, which turns short-form intrinsics (!Ref, !Sub, ...)
into their long form. `resolve` then evaluates the intrinsics these templates use with the
parameter defaults (the Copier answers), so assertions compare plain strings.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA = REPO_ROOT / "infra"
TEMPLATES = sorted(INFRA.glob("*.yml"))
ACCOUNT = "123456789012"
PARTITION = "aws"

# Endpoint stack parameters (infra/endpoint.yml), as the deploy buildspec passes them.
ENDPOINT_PARAMETERS = {
    "ProjectName",
    "Stage",
    "ModelPackageArn",
    "ModelExecutionRoleArn",
    "EndpointInstanceType",
    "InitialInstanceCount",
    "DataCaptureS3Uri",
    "DataCaptureSamplingPercentage",
    "KmsKeyArn",
}
# Actions IAM cannot scope to a resource; only these may be granted on "*".
RESOURCELESS_ACTIONS = {
    "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken",
    "sagemaker:ListModelPackages",
}


def region() -> str:
    answers = REPO_ROOT / ".copier-answers.yml"
    if answers.is_file():
        return (yaml.safe_load(answers.read_text(encoding="utf-8")) or {}).get(
            "aws_region", "us-east-1"
        )
    return "us-east-1"


def load(path: Path) -> dict:
    template, matches = decode(str(path))
    assert not matches, f"{path.name} does not parse: {matches}"
    return template


def resolve(value: Any, template: dict, variables: dict | None = None) -> Any:
    """Evaluate Ref/Sub/GetAtt/Join with parameter defaults; resources become <LogicalId>."""
    parameters = template.get("Parameters", {})
    pseudo = {
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": PARTITION,
        "AWS::Region": region(),
        "AWS::URLSuffix": "amazonaws.com",
    }

    def name(ref: str) -> str:
        if variables and ref in variables:
            return str(resolve(variables[ref], template))
        if ref in pseudo:
            return pseudo[ref]
        if ref in parameters:
            return str(parameters[ref].get("Default", f"<{ref}>"))
        return f"<{ref}>"

    if isinstance(value, list):
        return [resolve(item, template, variables) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return name(argument)
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if function == "Fn::Join":
            return argument[0].join(str(resolve(p, template, variables)) for p in argument[1])
        if function == "Fn::Sub":
            text, local = (argument, {}) if isinstance(argument, str) else argument
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda m: (
                    f"<{m.group(1)}>"
                    if "." in m.group(1) and m.group(1) not in local
                    else str(resolve({"Ref": m.group(1)}, template, {**(variables or {}), **local}))
                ),
                text,
            )
    return {key: resolve(item, template, variables) for key, item in value.items()}


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def toolchain() -> dict:
    return load(INFRA / "toolchain.yml")


@pytest.fixture(scope="module")
def endpoint() -> dict:
    return load(INFRA / "endpoint.yml")


# --- lint -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.name for p in TEMPLATES])
def test_template_is_cfn_lint_clean(path: Path) -> None:
    matches = lint_file(path, config=ManualArgs(regions=[region()]))
    assert not matches, "\n".join(
        f"{path.name}:{m.linenumber} {m.rule.id} {m.message}" for m in matches
    )


def test_both_stacks_are_linted() -> None:
    assert {p.name for p in TEMPLATES} >= {"toolchain.yml", "endpoint.yml"}


def test_cfn_lint_reports_a_broken_template(tmp_path: Path) -> None:
    broken = (INFRA / "endpoint.yml").read_text(encoding="utf-8")
    broken = broken.replace("EnableCapture: true", "EnableCaptur: true")
    (tmp_path / "endpoint.yml").write_text(broken, encoding="utf-8")
    matches = lint_file(tmp_path / "endpoint.yml", config=ManualArgs(regions=[region()]))
    assert any("EnableCaptur" in m.message for m in matches)


# --- endpoint stack ---------------------------------------------------------------------------


def test_endpoint_parameters_are_the_contract(endpoint: dict) -> None:
    assert set(endpoint["Parameters"]) == ENDPOINT_PARAMETERS
    assert endpoint["Parameters"]["Stage"]["AllowedValues"] == ["staging", "prod"]


def test_endpoint_serves_the_model_package_in_real_time(endpoint: dict) -> None:
    (model,) = resources(endpoint, "AWS::SageMaker::Model").values()
    assert [c["ModelPackageName"] for c in model["Properties"]["Containers"]] == [
        {"Ref": "ModelPackageArn"}
    ]
    (config,) = resources(endpoint, "AWS::SageMaker::EndpointConfig").values()
    for variant in config["Properties"]["ProductionVariants"]:
        # Serverless variants cannot capture data, so the endpoint must be instance-backed.
        assert "ServerlessConfig" not in variant
        assert variant["InstanceType"] == {"Ref": "EndpointInstanceType"}
    (ep,) = resources(endpoint, "AWS::SageMaker::Endpoint").values()
    assert ep["Properties"]["EndpointName"] == {"Fn::Sub": "${ProjectName}-${Stage}"}


def test_endpoint_captures_requests_and_responses_with_kms(endpoint: dict) -> None:
    (config,) = resources(endpoint, "AWS::SageMaker::EndpointConfig").values()
    props = config["Properties"]
    assert props["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    capture = props["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    assert capture["DestinationS3Uri"] == {"Ref": "DataCaptureS3Uri"}
    assert capture["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert capture["InitialSamplingPercentage"] == {"Ref": "DataCaptureSamplingPercentage"}


# --- every template ---------------------------------------------------------------------------


def _taggable(resource_type: str) -> bool:
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    return "Tags" in schema.get("properties", {}) and schema.get("tagging", {}).get(
        "taggable", True
    )


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.name for p in TEMPLATES])
def test_every_taggable_resource_has_the_project_tag(path: Path) -> None:
    template = load(path)
    untagged = [
        f"{logical_id} ({resource['Type']})"
        for logical_id, resource in template["Resources"].items()
        if _taggable(resource["Type"])
        and {"Key": "Project", "Value": {"Ref": "ProjectName"}}
        not in resource.get("Properties", {}).get("Tags", [])
    ]
    assert not untagged, f"{path.name}: missing Tags Project=!Ref ProjectName on {untagged}"


def test_project_tag_check_sees_taggable_types() -> None:
    assert _taggable("AWS::S3::Bucket")
    assert not _taggable("AWS::S3::BucketPolicy")


# --- toolchain: storage and encryption --------------------------------------------------------


def _denies_plain_http(statement: dict, bucket_arn: str) -> bool:
    principal = statement.get("Principal")
    condition = statement.get("Condition", {}).get("Bool", {})
    return (
        statement.get("Effect") == "Deny"
        and principal in ("*", {"AWS": "*"})
        and "s3:*" in as_list(statement.get("Action"))
        and {bucket_arn, f"{bucket_arn}/*"} <= set(as_list(statement.get("Resource")))
        and str(condition.get("aws:SecureTransport")).lower() == "false"
    )


def test_every_bucket_denies_requests_without_tls(toolchain: dict) -> None:
    buckets = resources(toolchain, "AWS::S3::Bucket")
    assert buckets
    policies = resolve(
        [p["Properties"] for p in resources(toolchain, "AWS::S3::BucketPolicy").values()], toolchain
    )
    for logical_id in buckets:
        arn = f"<{logical_id}.Arn>"
        assert any(
            policy["Bucket"] == f"<{logical_id}>"
            and any(_denies_plain_http(s, arn) for s in policy["PolicyDocument"]["Statement"])
            for policy in policies
        ), f"{logical_id} has no bucket policy statement denying aws:SecureTransport=false"


def test_every_bucket_is_private_versioned_and_encrypted_with_the_project_key(
    toolchain: dict,
) -> None:
    for logical_id, bucket in resources(toolchain, "AWS::S3::Bucket").items():
        props = bucket["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": ["ProjectKey", "Arn"]},
        }, logical_id
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}, logical_id
        assert props["VersioningConfiguration"]["Status"] == "Enabled", logical_id
        rules = props["LifecycleConfiguration"]["Rules"]
        assert any("NoncurrentVersionExpiration" in r for r in rules), logical_id


def test_project_key_rotates_and_only_project_roles_use_it(toolchain: dict) -> None:
    (key,) = resources(toolchain, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    crypto = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"}
    for statement in statements:
        actions = set(as_list(statement["Action"]))
        if statement["Sid"] == "AccountAdministersTheKey":
            assert not actions & crypto, "account administration must not include key use"
        elif "AWS" in statement["Principal"] and actions & crypto:
            principals = statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]
            assert all(p["Fn::GetAtt"][1] == "Arn" for p in principals)


# --- toolchain: IAM ---------------------------------------------------------------------------


def _identity_statements(template: dict) -> list[tuple[str, dict]]:
    found = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        documents = []
        if resource["Type"] == "AWS::IAM::Policy":
            documents.append(props["PolicyDocument"])
        if resource["Type"] == "AWS::IAM::Role":
            documents.extend(p["PolicyDocument"] for p in props.get("Policies", []))
        found.extend((logical_id, s) for d in documents for s in d["Statement"])
    return found


def test_no_wildcard_actions_and_star_resources_only_where_iam_has_no_resource(
    toolchain: dict,
) -> None:
    statements = _identity_statements(toolchain)
    assert statements
    for logical_id, statement in statements:
        actions = as_list(statement["Action"])
        assert statement["Effect"] == "Allow", logical_id
        assert not [a for a in actions if a == "*" or a.endswith(":*")], (logical_id, actions)
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= RESOURCELESS_ACTIONS, (logical_id, statement.get("Sid"))


def test_roles_are_passed_only_to_their_service(toolchain: dict) -> None:
    passes = [(i, s) for i, s in _identity_statements(toolchain) if "iam:PassRole" in s["Action"]]
    assert passes
    for logical_id, statement in passes:
        assert statement["Resource"] != "*", logical_id
        assert statement["Condition"]["StringEquals"]["iam:PassedToService"], logical_id


def test_sagemaker_pipeline_role_passes_only_itself(toolchain: dict) -> None:
    policy = toolchain["Resources"]["SageMakerPipelinePolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "SageMakerPipelineRole"}]
    passes = [s for s in policy["PolicyDocument"]["Statement"] if "iam:PassRole" in s["Action"]]
    assert [s["Resource"] for s in passes] == [{"Fn::GetAtt": ["SageMakerPipelineRole", "Arn"]}]


# --- toolchain: pipelines and triggers --------------------------------------------------------


def _pipeline(toolchain: dict, suffix: str) -> dict:
    project = resolve({"Ref": "ProjectName"}, toolchain)
    for pipeline in resources(toolchain, "AWS::CodePipeline::Pipeline").values():
        if resolve(pipeline["Properties"]["Name"], toolchain) == f"{project}-{suffix}":
            return pipeline["Properties"]
    raise AssertionError(f"no pipeline named {project}-{suffix}")


def _stage_variable(action: dict) -> str:
    variables = json.loads(action["Configuration"]["EnvironmentVariables"])
    return next(v["value"] for v in variables if v["name"] == "STAGE")


def test_deploy_pipeline_goes_staging_test_approval_prod(toolchain: dict) -> None:
    pipeline = _pipeline(toolchain, "deploy")
    assert pipeline["PipelineType"] == "V2"
    stages = [(stage["Name"], stage["Actions"]) for stage in pipeline["Stages"]]
    kinds = [
        (actions[0]["ActionTypeId"]["Category"], actions[0]["ActionTypeId"]["Provider"])
        for _, actions in stages
    ]
    assert kinds[1:] == [
        ("Build", "CodeBuild"),
        ("Build", "CodeBuild"),
        ("Approval", "Manual"),
        ("Build", "CodeBuild"),
    ]
    deploy_staging, test_staging, approve, deploy_prod = (actions[0] for _, actions in stages[1:])
    assert deploy_staging["Configuration"]["ProjectName"] == {"Ref": "DeployProject"}
    assert test_staging["Configuration"]["ProjectName"] == {"Ref": "TestProject"}
    assert deploy_prod["Configuration"]["ProjectName"] == {"Ref": "DeployProject"}
    assert [_stage_variable(a) for a in (deploy_staging, test_staging, deploy_prod)] == [
        "staging",
        "staging",
        "prod",
    ]
    assert approve["Configuration"]["NotificationArn"] == {"Ref": "NotificationTopic"}


def test_prod_deploys_the_package_staging_tested(toolchain: dict) -> None:
    stages = _pipeline(toolchain, "deploy")["Stages"]
    deploy_staging, deploy_prod = stages[1]["Actions"][0], stages[-1]["Actions"][0]
    variables = json.loads(deploy_prod["Configuration"]["EnvironmentVariables"])
    promoted = next(v["value"] for v in variables if v["name"] == "PROMOTED_MODEL_PACKAGE_ARN")
    assert promoted == f"#{{{deploy_staging['Namespace']}.MODEL_PACKAGE_ARN}}"


def test_build_pipeline_starts_on_push_to_the_branch(toolchain: dict) -> None:
    pipeline = _pipeline(toolchain, "build")
    assert pipeline["PipelineType"] == "V2"
    source = pipeline["Stages"][0]["Actions"][0]
    branch = resolve({"Ref": "BranchName"}, toolchain)
    if source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection":
        (trigger,) = pipeline["Triggers"]
        assert trigger["GitConfiguration"]["SourceActionName"] == source["Name"]
        pushes = trigger["GitConfiguration"]["Push"]
        assert [resolve(p["Branches"]["Includes"], toolchain) for p in pushes] == [[branch]]
    else:
        assert source["ActionTypeId"]["Provider"] == "CodeCommit"
        rule = toolchain["Resources"]["SourceChangedRule"]["Properties"]
        assert resolve(rule["EventPattern"]["detail"]["referenceName"], toolchain) == [branch]
        assert rule["Targets"][0]["Arn"]["Fn::Sub"].endswith(":${BuildPipeline}")


def _matches(pattern: Any, event: Any) -> bool:
    """EventBridge matching for the operators these rules use (exact, equals-ignore-case)."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(
            key in event and _matches(sub, event[key]) for key, sub in pattern.items()
        )
    values = as_list(event)
    for matcher in pattern:
        if isinstance(matcher, dict):
            ((operator, operand),) = matcher.items()
            if operator != "equals-ignore-case":
                raise NotImplementedError(f"teach _matches the {operator} operator")
            if any(isinstance(v, str) and v.lower() == operand.lower() for v in values):
                return True
        elif matcher in values:
            return True
    return False


def _package_event(group: str, status: str) -> dict:
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageVersion": 3,
            "ModelApprovalStatus": status,
        },
    }


def test_model_approval_starts_the_deploy_pipeline_for_this_group_only(toolchain: dict) -> None:
    rule = toolchain["Resources"]["ModelApprovedRule"]["Properties"]
    pattern = resolve(rule["EventPattern"], toolchain)
    group = f"{resolve({'Ref': 'ProjectName'}, toolchain)}-models"
    assert _matches(pattern, _package_event(group, "Approved"))
    assert _matches(pattern, _package_event(group.upper(), "Approved"))
    for status in ("PendingManualApproval", "Rejected"):
        assert not _matches(pattern, _package_event(group, status))
    for other in (f"{group}-old", f"x{group}", "another-project-models"):
        assert not _matches(pattern, _package_event(other, "Approved"))
    (target,) = rule["Targets"]
    assert target["Arn"]["Fn::Sub"].endswith(":${DeployPipeline}")
    role = toolchain["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "codepipeline:StartPipelineExecution"
    assert statement["Resource"] == target["Arn"]


def test_model_package_group_is_the_one_the_rule_watches(toolchain: dict) -> None:
    (group,) = resources(toolchain, "AWS::SageMaker::ModelPackageGroup").values()
    name = resolve(group["Properties"]["ModelPackageGroupName"], toolchain)
    assert name == f"{resolve({'Ref': 'ProjectName'}, toolchain)}-models"
    pattern = resolve(toolchain["Resources"]["ModelApprovedRule"]["Properties"], toolchain)
    assert _matches(pattern["EventPattern"], _package_event(name, "Approved"))


def test_lower_case_project_name_parameter_matches_project_name(toolchain: dict) -> None:
    parameters = toolchain["Parameters"]
    assert parameters["ProjectNameLower"]["Default"] == parameters["ProjectName"]["Default"].lower()

"""CloudFormation in infra/: lint, and the invariants the toolchain and endpoint stacks promise.

Templates are read with cfn-lint's decoder, which turns short-form intrinsics (!Ref, !Sub, ...)
into their long form. `resolve` then evaluates the intrinsics these templates use with the
parameter defaults (the Copier answers), so assertions compare plain strings.

The IAM tests evaluate each role's statements against the calls that role makes at run time:
the calls `ml-pipeline` sends (recorded against moto, denied where the role's policy does not
allow them) and the calls SageMaker makes for the steps of the pipeline definition.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.session
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER
from moto import mock_aws

from ml_pipeline import cli
from ml_pipeline.config import STAGES

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
    "MaxInstanceCount",
    "TargetInvocationsPerInstance",
    "SubnetIds",
    "SecurityGroupIds",
}
# Multi-account projects (org_size medium) run the endpoints, and their roles, in the staging and
# prod accounts: tests/test_target_account.py covers those roles there.
MULTI_ACCOUNT = (INFRA / "target-account.yml").is_file()
single_account_only = pytest.mark.skipif(
    MULTI_ACCOUNT, reason="the endpoint roles live in infra/target-account.yml"
)
# Actions IAM cannot scope to a resource; only these may be granted on "*".
RESOURCELESS_ACTIONS = {
    "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken",
    "sagemaker:ListModelPackages",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingActivities",
    "application-autoscaling:DescribeScalingPolicies",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
}
# Network-interface actions scoped by a condition on the VPC instead of by resource (large: jobs
# and endpoints attach interfaces in the project's private subnets).
VPC_SCOPED_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
}


def star_resource_is_justified(statement: dict) -> bool:
    """A statement on "*" grants only actions IAM cannot scope, or VPC-conditioned ones."""
    actions = set(as_list(statement["Action"]))
    if actions <= RESOURCELESS_ACTIONS:
        return True
    vpc_condition = statement.get("Condition", {}).get("ArnEquals", {}).get("ec2:Vpc")
    return actions <= VPC_SCOPED_ACTIONS and vpc_condition is not None


# infra/monitoring.yml and infra/model-monitor.yml name their roles <ProjectName>-monitor-*.
MONITORING_ROLE = re.compile(
    r"arn:\$\{AWS::Partition\}:iam::\$\{AWS::AccountId\}:role/\$\{ProjectName\}-monitor-[a-z-]+"
)


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
            others = {k: v for k, v in variables.items() if k != ref}
            return str(resolve(variables[ref], template, others))
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
        if function == "Fn::Split":
            return str(resolve(argument[1], template, variables)).split(argument[0])
        if function == "Fn::Select":
            return resolve(argument[1], template, variables)[int(argument[0])]
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


def _only_in_prod(endpoint: dict, logical_id: str) -> bool:
    condition = endpoint["Resources"][logical_id].get("Condition")
    return endpoint["Conditions"].get(condition) == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}


def test_prod_scales_on_invocations_per_instance_and_staging_does_not(endpoint: dict) -> None:
    (target_id,) = resources(endpoint, "AWS::ApplicationAutoScaling::ScalableTarget")
    (policy_id,) = resources(endpoint, "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert _only_in_prod(endpoint, target_id)
    assert _only_in_prod(endpoint, policy_id)
    target = endpoint["Resources"][target_id]["Properties"]
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    (variant,) = resources(endpoint, "AWS::SageMaker::EndpointConfig")["EndpointConfig"][
        "Properties"
    ]["ProductionVariants"]
    resource_id = "endpoint/${Endpoint.EndpointName}/variant/" + variant["VariantName"]
    assert target["ResourceId"] == {"Fn::Sub": resource_id}
    assert target["MinCapacity"] == {"Ref": "InitialInstanceCount"}
    policy = endpoint["Resources"][policy_id]["Properties"]
    assert policy["ScalingTargetId"] == {"Ref": target_id}
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    metric = tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
    assert metric == "SageMakerVariantInvocationsPerInstance"


def test_prod_updates_blue_green_and_rolls_back_on_its_alarms(endpoint: dict) -> None:
    (ep,) = resources(endpoint, "AWS::SageMaker::Endpoint").values()
    condition, prod, staging = ep["Properties"]["DeploymentConfig"]["Fn::If"]
    assert endpoint["Conditions"][condition] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert staging == {"Ref": "AWS::NoValue"}
    assert prod["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["WaitIntervalInSeconds"] > 0
    alarms = {a["AlarmName"]["Ref"] for a in prod["AutoRollbackConfiguration"]["Alarms"]}
    assert alarms == set(resources(endpoint, "AWS::CloudWatch::Alarm"))
    metrics = set()
    for logical_id in alarms:
        alarm = endpoint["Resources"][logical_id]
        assert _only_in_prod(endpoint, logical_id)
        dimensions = {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]}
        assert dimensions["EndpointName"] == ep["Properties"]["EndpointName"]
        metrics.add(alarm["Properties"]["MetricName"])
    assert metrics == {"Invocation5XXErrors", "ModelLatency"}


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
    own_account = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    for statement in statements:
        actions = set(as_list(statement["Action"]))
        if statement["Sid"] == "AccountAdministersTheKey":
            assert not actions & crypto, "account administration must not include key use"
        elif statement["Principal"].get("AWS") == own_account:
            principals = as_list(statement["Condition"]["ArnEquals"]["aws:PrincipalArn"])
            # Roles of this stack, or the monitoring stacks' roles, named so that this policy
            # can admit them before they exist.
            assert all(
                p.get("Fn::GetAtt", ["", ""])[1] == "Arn"
                or MONITORING_ROLE.fullmatch(p.get("Fn::Sub", ""))
                for p in principals
            ), statement["Sid"]
        elif "AWS" in statement["Principal"]:
            # Other accounts (multi-account projects) may only decrypt: named roles, or (the
            # large layout's dev account) only through S3 reading the model artifacts.
            assert actions <= {"kms:Decrypt", "kms:DescribeKey"}, statement["Sid"]
            condition = statement["Condition"]
            assert condition.get("ArnEquals", {}).get("aws:PrincipalArn") or condition.get(
                "StringEquals", {}
            ).get("kms:ViaService"), statement["Sid"]


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
            assert star_resource_is_justified(statement), (logical_id, statement.get("Sid"))


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


# --- toolchain: IAM at run time ---------------------------------------------------------------
#
# A role's statements are evaluated as IAM evaluates what these policies use: Allow statements,
# `*`/`?` wildcards in actions (any case) and resources (exact case), and the condition operators
# in CONDITION_OPERATORS; a condition key absent from the request fails its condition.

BUCKET = "artifact-bucket"
EXECUTION_ID = "a1b2c3d4e5f6"
PASSED_TO_SAGEMAKER = (("iam:PassedToService", "sagemaker.amazonaws.com"),)
GRANT_FOR_AWS_RESOURCE = (("kms:GrantIsForAWSResource", "true"),)
ECR_PULL = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


def kms_key_arn() -> str:
    return f"arn:{PARTITION}:kms:{region()}:{ACCOUNT}:key/0a1b2c3d-0000-4000-8000-000000000000"


def role_arn(logical_id: str) -> str:
    return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{logical_id}"


def sagemaker_arn(resource: str) -> str:
    # SageMaker authorises against the lower-case form of its resource names.
    return f"arn:{PARTITION}:sagemaker:{region()}:{ACCOUNT}:{resource.lower()}"


def s3_object(uri: str) -> str:
    return f"arn:{PARTITION}:s3:::{uri.removeprefix('s3://')}"


def s3_bucket(uri: str) -> str:
    return f"arn:{PARTITION}:s3:::{uri.removeprefix('s3://').split('/')[0]}"


def ecr_repository(image_uri: str) -> str:
    registry, _, repository = image_uri.partition("/")
    account, _, _, image_region = registry.split(".")[:4]
    return f"arn:{PARTITION}:ecr:{image_region}:{account}:repository/{repository.split(':')[0]}"


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


def _like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


CONDITION_OPERATORS = {
    "StringEquals": lambda expected, actual: expected == actual,
    "StringLike": _like,
    "ArnEquals": _like,
    "ArnLike": _like,
    "Bool": lambda expected, actual: str(expected).lower() == str(actual).lower(),
    # Single-valued request contexts here: "any value" is that value.
    "ForAnyValue:StringEquals": lambda expected, actual: expected == actual,
}


@dataclass
class Role:
    logical_id: str
    statements: list[dict]

    def _grants(self, statement: dict, need: Need) -> bool:
        context = dict(need.context)
        return (
            any(_like(a, need.action, ignore_case=True) for a in as_list(statement["Action"]))
            and any(_like(r, need.resource) for r in as_list(statement["Resource"]))
            and all(
                key in context
                and any(CONDITION_OPERATORS[op](e, context[key]) for e in as_list(expected))
                for op, keys in statement.get("Condition", {}).items()
                for key, expected in keys.items()
            )
        )

    def allows(self, need: Need) -> bool:
        return any(s["Effect"] == "Allow" and self._grants(s, need) for s in self.statements)

    def missing(self, needs: list[Need]) -> list[Need]:
        return [n for n in dict.fromkeys(needs) if not self.allows(n)]


def _stand_in(value: Any, stand_ins: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_stand_in(v, stand_ins) for v in value]
    if isinstance(value, dict):
        return {k: _stand_in(v, stand_ins) for k, v in value.items()}
    if isinstance(value, str):
        for placeholder, concrete in stand_ins.items():
            value = value.replace(placeholder, concrete)
    return value


def role_policy(template: dict, role: str, project: str, **parameters: str) -> Role:
    """The statements attached to `role`, for a stack deployed with ProjectName=project (and
    `parameters`, for those without a default)."""
    documents = [
        resource["Properties"]["PolicyDocument"]
        for resource in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in resource["Properties"]["Roles"]
    ]
    documents += [
        p["PolicyDocument"] for p in template["Resources"][role]["Properties"].get("Policies", [])
    ]
    variables = {"ProjectName": project, "ProjectNameLower": project.lower(), **parameters}
    statements = resolve([s for d in documents for s in d["Statement"]], template, variables)
    stand_ins = {
        "<ArtifactBucket.Arn>": f"arn:{PARTITION}:s3:::{BUCKET}",
        "<ProjectKey.Arn>": kms_key_arn(),
        **{f"<{r}.Arn>": role_arn(r) for r in resources(template, "AWS::IAM::Role")},
    }
    return Role(role, _stand_in(statements, stand_ins))


def needs_of_call(service: str, operation: str, params: dict) -> list[Need]:
    """What IAM checks when a client sends `operation` with `params`."""
    if service == "s3":
        bucket = f"arn:{PARTITION}:s3:::{params.get('Bucket', '')}"
        key = f"{bucket}/{params.get('Key', '')}"
        if operation in ("PutObject", "CreateMultipartUpload", "UploadPart"):
            encryption_key = params.get("SSEKMSKeyId", kms_key_arn())
            return [Need("s3:PutObject", key), Need("kms:GenerateDataKey", encryption_key)]
        if operation in ("GetObject", "HeadObject"):
            return [Need("s3:GetObject", key), Need("kms:Decrypt", kms_key_arn())]
        if operation == "ListBuckets":
            return [Need("s3:ListAllMyBuckets", "*")]
        if operation == "HeadBucket":
            return [Need("s3:ListBucket", bucket)]
        if operation in ("ListObjects", "ListObjectsV2"):
            return [Need("s3:ListBucket", bucket, (("s3:prefix", params.get("Prefix", "")),))]
    if service == "sagemaker":
        if operation in ("CreatePipeline", "UpdatePipeline", "StartPipelineExecution"):
            pipeline = sagemaker_arn(f"pipeline/{params['PipelineName']}")
            needs = [Need(f"sagemaker:{operation}", pipeline)]
            if params.get("Tags"):
                needs.append(Need("sagemaker:AddTags", pipeline))
            if "RoleArn" in params:
                needs.append(Need("iam:PassRole", params["RoleArn"], PASSED_TO_SAGEMAKER))
            return needs
        if operation in ("AddTags", "ListTags"):
            return [Need(f"sagemaker:{operation}", params["ResourceArn"].lower())]
        if operation == "DescribePipelineExecution":
            return [Need(f"sagemaker:{operation}", params["PipelineExecutionArn"].lower())]
        if operation == "ListModelPackages":
            return [Need("sagemaker:ListModelPackages", "*")]
        if operation == "DescribeModelPackage":
            return [Need(f"sagemaker:{operation}", params["ModelPackageName"].lower())]
    if service == "cloudwatch" and operation == "PutMetricData":
        namespace = (("cloudwatch:namespace", params["Namespace"]),)
        return [Need("cloudwatch:PutMetricData", "*", namespace)]
    if service == "sagemaker-runtime" and operation == "InvokeEndpoint":
        endpoint = sagemaker_arn(f"endpoint/{params['EndpointName']}")
        return [Need("sagemaker:InvokeEndpoint", endpoint)]
    raise AssertionError(f"teach needs_of_call what IAM checks for {service}:{operation}")


@dataclass
class IamEnforcer:
    """Denies, with AccessDenied, every call the role may not make; records what was checked."""

    role: Role
    active: bool = True
    checked: list[Need] = field(default_factory=list)
    denied: list[Need] = field(default_factory=list)

    def note_needs(self, params, model, context, **_) -> None:
        if self.active:
            service = model.service_model.service_name
            context["iam_needs"] = needs_of_call(service, model.name, params)

    def authorise(self, context, **_):
        needs = context.get("iam_needs", [])
        self.checked += needs
        refused = self.role.missing(needs)
        if not refused:
            return None
        self.denied += refused
        message = f"{self.role.logical_id} is not authorized to perform {refused}"
        body = {"Error": {"Code": "AccessDenied", "Message": message}}
        return AWSResponse("https://iam.invalid", 403, {}, None), body

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        create_client = botocore.session.Session.create_client

        def enforcing_client(session, *args, **kwargs):
            client = create_client(session, *args, **kwargs)
            client.meta.events.register("before-parameter-build", self.note_needs)
            client.meta.events.register("before-call", self.authorise)
            return client

        monkeypatch.setattr(botocore.session.Session, "create_client", enforcing_client)


def run_cli(enforcer: IamEnforcer, argv: list[str]) -> str:
    try:
        code = cli.main(argv)
    except Exception as error:  # an AccessDenied the command does not handle
        return f"{type(error).__name__}: {error}"
    return f"exit {code}"


def project_name() -> str:
    """The answer's project name, capitalised if need be: S3 keys keep its case, SageMaker ARNs
    do not, so a policy that confuses ProjectName and ProjectNameLower fails these tests."""
    name = load(INFRA / "toolchain.yml")["Parameters"]["ProjectName"]["Default"]
    return name if name != name.lower() else name[0].upper() + name[1:]


def model_package_group(toolchain: dict, project: str) -> str:
    """The group the build job registers into: a name, or the central registry's ARN (large)."""
    build = toolchain["Resources"]["BuildProject"]["Properties"]["Environment"]
    (value,) = [
        v["Value"] for v in build["EnvironmentVariables"] if v["Name"] == "MODEL_PACKAGE_GROUP_NAME"
    ]
    return resolve(value, toolchain, {"ProjectName": project, "ProjectNameLower": project.lower()})


def cli_environment(monkeypatch: pytest.MonkeyPatch, project: str, group: str = "") -> None:
    for name, value in {
        "PROJECT_NAME": project,
        "AWS_REGION": region(),
        "ARTIFACT_BUCKET": BUCKET,
        "SAGEMAKER_PIPELINE_ROLE_ARN": role_arn("SageMakerPipelineRole"),
        "MODEL_PACKAGE_GROUP_NAME": group or f"{project}-models",
        "KMS_KEY_ARN": kms_key_arn(),
        "PIPELINE_CONFIG": str(REPO_ROOT / "config" / "pipeline.yml"),
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def training_run(toolchain: dict) -> SimpleNamespace:
    """`ml-pipeline run-pipeline` as BuildRole, twice (create, then update), against moto."""
    project = project_name()
    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        cli_environment(monkeypatch, project, model_package_group(toolchain, project))
        boto3.client("s3", region_name=region()).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": region()}
        )
        sagemaker = boto3.client("sagemaker", region_name=region())
        enforcer = IamEnforcer(role_policy(toolchain, "BuildRole", project))
        enforcer.install(monkeypatch)
        outcomes = [
            run_cli(enforcer, ["run-pipeline", "--wait"]),
            run_cli(enforcer, ["run-pipeline"]),
        ]
        enforcer.active = False
        if outcomes != ["exit 0", "exit 0"]:
            pytest.fail(f"run-pipeline as BuildRole: {outcomes}; denied {enforcer.denied}")
        described = sagemaker.describe_pipeline(PipelineName=f"{project}-training")
    return SimpleNamespace(
        project=project,
        enforcer=enforcer,
        definition=PipelineDefinition(json.loads(described["PipelineDefinition"])),
    )


def test_build_role_can_upload_upsert_start_and_follow_the_training_pipeline(training_run):
    # The only refusal the commands meet, and survive: the SDK lists every bucket to find its
    # own, and on AccessDenied checks it with HeadBucket (s3:ListBucket) instead.
    assert set(training_run.enforcer.denied) <= {Need("s3:ListAllMyBuckets", "*")}
    checked = {n.action for n in training_run.enforcer.checked}
    assert checked >= {
        "s3:PutObject",
        "s3:ListBucket",
        "kms:GenerateDataKey",
        "sagemaker:CreatePipeline",
        "sagemaker:UpdatePipeline",
        "sagemaker:ListTags",
        "sagemaker:AddTags",
        "sagemaker:StartPipelineExecution",
        "sagemaker:DescribePipelineExecution",
        "iam:PassRole",
    }


def test_build_role_writes_only_pipeline_input_and_code(toolchain: dict) -> None:
    project = project_name()
    role = role_policy(toolchain, "BuildRole", project)
    for key in (f"{project}-training/models/job/output/model.tar.gz", "data-capture/prod/x"):
        assert not role.allows(Need("s3:PutObject", s3_object(f"{BUCKET}/{key}"))), key
    # Keys keep the project name's case: a lower-case prefix is another prefix.
    lower_case_code = s3_object(f"{BUCKET}/{project.lower()}-training/code/x")
    assert not role.allows(Need("s3:PutObject", lower_case_code))
    assert not role.allows(
        Need("sagemaker:StartPipelineExecution", sagemaker_arn("pipeline/other-project-training"))
    )
    assert not role.allows(
        Need("iam:PassRole", role_arn("ModelExecutionRole"), PASSED_TO_SAGEMAKER)
    )


class PipelineDefinition:
    """Evaluates the S3 locations of a pipeline definition for one execution."""

    def __init__(self, definition: dict) -> None:
        self.parameters = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
        self.steps: dict[str, dict] = {}
        pending = list(definition["Steps"])
        while pending:
            step = pending.pop(0)
            self.steps[step["Name"]] = step
            arguments = step.get("Arguments", {})
            pending += arguments.get("IfSteps", []) + arguments.get("ElseSteps", [])

    @staticmethod
    def job_name(step: str) -> str:
        return f"pipelines-{EXECUTION_ID}-{step}-x1y2z3"

    def value(self, expression: Any) -> Any:
        if not isinstance(expression, dict):
            return expression
        if "Std:Join" in expression:
            join = expression["Std:Join"]
            return join["On"].join(str(self.value(v)) for v in join["Values"])
        path = expression.get("Get", "")
        if path.startswith("Parameters."):
            return self.parameters[path.removeprefix("Parameters.")]
        if path == "Execution.PipelineExecutionId":
            return EXECUTION_ID
        output = re.fullmatch(
            r"Steps\.(\w+)\.ProcessingOutputConfig\.Outputs\['(\w+)'\]\.S3Output\.S3Uri", path
        )
        if output:
            return self.value(self.output(output[1], output[2])["S3Output"]["S3Uri"])
        model = re.fullmatch(r"Steps\.(\w+)\.ModelArtifacts\.S3ModelArtifacts", path)
        if model:
            output_path = self.steps[model[1]]["Arguments"]["OutputDataConfig"]["S3OutputPath"]
            return f"{self.value(output_path)}/{self.job_name(model[1])}/output/model.tar.gz"
        raise AssertionError(f"teach PipelineDefinition.value to evaluate {expression}")

    def output(self, step: str, name: str) -> dict:
        outputs = self.steps[step]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        return next(o for o in outputs if o["OutputName"] == name)


def _job_needs(definition: PipelineDefinition, name: str, step: dict) -> list[Need]:
    arguments = step["Arguments"]
    kind = step["Type"]
    job_name = definition.job_name(name)
    job = sagemaker_arn(f"{kind.lower()}-job/{job_name}")
    log_group = f"arn:{PARTITION}:logs:{region()}:{ACCOUNT}:log-group:/aws/sagemaker/{kind}Jobs"
    log_stream = f"{log_group}:log-stream:{job_name}/algo-1-1767225600"
    needs = [Need(f"sagemaker:{verb}{kind}Job", job) for verb in ("Create", "Describe", "Stop")]
    needs += [
        Need("iam:PassRole", arguments["RoleArn"], PASSED_TO_SAGEMAKER),
        Need("logs:CreateLogGroup", log_group),
        Need("logs:CreateLogStream", log_stream),
        Need("logs:PutLogEvents", log_stream),
        Need("ecr:GetAuthorizationToken", "*"),
    ]
    if arguments.get("Tags"):
        needs.append(Need("sagemaker:AddTags", job))
    if kind == "Processing":
        image = arguments["AppSpecification"]["ImageUri"]
        volume_key = arguments["ProcessingResources"]["ClusterConfig"].get("VolumeKmsKeyId")
        output_key = arguments["ProcessingOutputConfig"].get("KmsKeyId")
        reads = [i["S3Input"]["S3Uri"] for i in arguments.get("ProcessingInputs", [])]
        writes = [
            f"{definition.value(o['S3Output']['S3Uri'])}/part-0.csv"
            for o in arguments["ProcessingOutputConfig"]["Outputs"]
        ]
    else:
        image = arguments["AlgorithmSpecification"]["TrainingImage"]
        volume_key = arguments["ResourceConfig"].get("VolumeKmsKeyId")
        output_key = arguments["OutputDataConfig"].get("KmsKeyId")
        reads = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in arguments["InputDataConfig"]]
        writes = [definition.value({"Get": f"Steps.{name}.ModelArtifacts.S3ModelArtifacts"})]
        metrics = (("cloudwatch:namespace", "/aws/sagemaker/TrainingJobs"),)
        needs.append(Need("cloudwatch:PutMetricData", "*", metrics))
    needs += [Need(action, ecr_repository(image)) for action in ECR_PULL]
    if volume_key:
        needs.append(Need("kms:CreateGrant", volume_key, GRANT_FOR_AWS_RESOURCE))
    if output_key:
        needs += [Need("kms:Encrypt", output_key), Need("kms:GenerateDataKey", output_key)]
    for uri in map(definition.value, reads):
        needs += [
            Need("s3:ListBucket", s3_bucket(uri)),
            Need("s3:GetObject", s3_object(uri)),
            Need("kms:Decrypt", kms_key_arn()),
        ]
    needs += [Need("s3:PutObject", s3_object(uri)) for uri in writes]
    return needs


def pipeline_role_needs(definition: PipelineDefinition) -> list[Need]:
    """What SageMaker Pipelines and the jobs it starts do with the pipeline role."""
    needs = []
    for name, step in definition.steps.items():
        if step["Type"] in ("Processing", "Training"):
            needs += _job_needs(definition, name, step)
        elif step["Type"] == "RegisterModel":
            group = step["Arguments"]["ModelPackageGroupName"]
            if group.startswith("arn:"):  # a central registry in another account
                group_arn = group.lower()
                version = group_arn.replace(":model-package-group/", ":model-package/") + "/1"
            else:
                group_arn = sagemaker_arn(f"model-package-group/{group}")
                version = sagemaker_arn(f"model-package/{group}/1")
            needs += [
                Need("sagemaker:CreateModelPackage", group_arn),
                Need("sagemaker:CreateModelPackage", version),
                Need("sagemaker:DescribeModelPackage", version),
            ]
            if step["Arguments"].get("Tags"):
                needs.append(Need("sagemaker:AddTags", version))
        elif step["Type"] not in ("Condition", "Fail"):
            raise AssertionError(f"teach pipeline_role_needs the {step['Type']} step")
        # The service reads property files (the quality gate's metric) itself.
        for property_file in step.get("PropertyFiles", []):
            uri = definition.value(
                definition.output(name, property_file["OutputName"])["S3Output"]["S3Uri"]
            )
            needs += [
                Need("s3:GetObject", s3_object(f"{uri}/{property_file['FilePath']}")),
                Need("kms:Decrypt", kms_key_arn()),
            ]
    return needs


def test_pipeline_role_can_run_every_step_of_the_definition(training_run, toolchain: dict) -> None:
    definition = training_run.definition
    assert {s["Type"] for s in definition.steps.values()} >= {"Processing", "Training"}
    role = role_policy(toolchain, "SageMakerPipelineRole", training_run.project)
    assert role.missing(pipeline_role_needs(definition)) == []


def test_pipeline_role_stays_inside_the_project(toolchain: dict) -> None:
    project = project_name()
    role = role_policy(toolchain, "SageMakerPipelineRole", project)
    for action, key in (
        ("s3:PutObject", "input/sample.csv"),
        ("s3:GetObject", "data-capture/prod/x.jsonl"),
        ("s3:PutObject", "codebuild-cache/build/x"),
        ("s3:PutObject", f"{project.lower()}-training/x"),
    ):
        assert not role.allows(Need(action, s3_object(f"{BUCKET}/{key}"))), (action, key)
    assert not role.allows(
        Need("sagemaker:CreateModelPackage", sagemaker_arn("model-package-group/other-models"))
    )
    assert not role.allows(Need("sagemaker:CreateTrainingJob", sagemaker_arn("training-job/x")))
    assert not role.allows(
        Need("ecr:BatchGetImage", f"arn:{PARTITION}:ecr:{region()}:{ACCOUNT}:repository/other")
    )
    assert not role.allows(Need("kms:CreateGrant", kms_key_arn()))
    assert not role.allows(Need("iam:PassRole", role_arn("BuildRole"), PASSED_TO_SAGEMAKER))


def _buildspec_value(name: str, pattern: str) -> str:
    text = (REPO_ROOT / "buildspecs" / name).read_text(encoding="utf-8")
    match = re.search(pattern, text)
    assert match, f"buildspecs/{name} no longer matches {pattern}"
    return match[1]


def endpoint_name(project: str, stage: str) -> str:
    template = _buildspec_value("test.yml", r'--endpoint-name "([^"]+)"')
    return template.replace("$PROJECT_NAME", project).replace("$STAGE", stage)


@single_account_only
def test_model_role_serves_the_registered_model_and_captures_data(training_run, toolchain):
    definition = training_run.definition
    (register,) = [s for s in definition.steps.values() if s["Type"] == "RegisterModel"]
    needs = [Need("ecr:GetAuthorizationToken", "*")]
    for container in register["Arguments"]["InferenceSpecification"]["Containers"]:
        needs += [Need(action, ecr_repository(container["Image"])) for action in ECR_PULL]
        model_data = definition.value(container["ModelDataUrl"])
        needs += [Need("s3:GetObject", s3_object(model_data)), Need("kms:Decrypt", kms_key_arn())]
    capture = _buildspec_value("deploy.yml", r'DataCaptureS3Uri="([^"]+)"')
    for stage in STAGES:
        endpoint = endpoint_name(training_run.project, stage)
        uri = capture.replace("$DATA_CAPTURE_BUCKET", BUCKET).replace("$STAGE", stage)
        logs = f"arn:{PARTITION}:logs:{region()}:{ACCOUNT}"
        log_group = f"{logs}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
        needs += [
            Need("s3:PutObject", s3_object(f"{uri}/{endpoint}/AllTraffic/2026/01/31/12/x.jsonl")),
            Need("kms:GenerateDataKey", kms_key_arn()),
            Need("logs:CreateLogGroup", log_group),
            Need("logs:PutLogEvents", f"{log_group}:log-stream:AllTraffic/i-0123456789"),
        ]
    role = role_policy(toolchain, "ModelExecutionRole", training_run.project)
    assert role.missing(needs) == []
    # The endpoint reads the model, nothing of the training data.
    training_data = definition.value(definition.output("Preprocess", "train")["S3Output"]["S3Uri"])
    for uri in (definition.parameters["InputDataUrl"], f"{training_data}/part-0.csv"):
        assert not role.allows(Need("s3:GetObject", s3_object(uri))), uri


def register_approved_package(project: str, **extra: Any) -> str:
    """An Approved version in the project's group (under moto), as the deploy job finds it."""
    sagemaker = boto3.client("sagemaker", region_name=region())
    sagemaker.create_model_package_group(ModelPackageGroupName=f"{project}-models")
    return sagemaker.create_model_package(
        ModelPackageGroupName=f"{project}-models",
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": "image", "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        **extra,
    )["ModelPackageArn"]


def test_deploy_role_can_find_the_latest_approved_package(toolchain, monkeypatch, capsys):
    project = project_name()
    with mock_aws():
        cli_environment(monkeypatch, project)
        package = register_approved_package(project)
        enforcer = IamEnforcer(role_policy(toolchain, "DeployRole", project))
        enforcer.install(monkeypatch)
        assert run_cli(enforcer, ["deploy-params", "--stage", "staging"]) == "exit 0"
    assert f"ModelPackageArn={package} " in capsys.readouterr().out
    assert {n.action for n in enforcer.checked} == {"sagemaker:ListModelPackages"}


@single_account_only
def test_test_role_invokes_only_the_project_endpoints(toolchain: dict) -> None:
    project = project_name()
    role = role_policy(toolchain, "TestRole", project)
    for stage in STAGES:
        params = {"EndpointName": endpoint_name(project, stage)}
        assert role.missing(needs_of_call("sagemaker-runtime", "InvokeEndpoint", params)) == []
    other = needs_of_call("sagemaker-runtime", "InvokeEndpoint", {"EndpointName": "other-staging"})
    assert role.missing(other) == other


# --- toolchain: pipelines and triggers --------------------------------------------------------


def _pipeline(toolchain: dict, suffix: str) -> dict:
    project = resolve({"Ref": "ProjectName"}, toolchain)
    for pipeline in resources(toolchain, "AWS::CodePipeline::Pipeline").values():
        if resolve(pipeline["Properties"]["Name"], toolchain) == f"{project}-{suffix}":
            return pipeline["Properties"]
    raise AssertionError(f"no pipeline named {project}-{suffix}")


def action_variables(action: dict, template: dict) -> dict[str, str]:
    """The environment a pipeline action sets, with the stack's parameter defaults filled in."""
    text = resolve(action["Configuration"]["EnvironmentVariables"], template)
    return {v["name"]: v["value"] for v in json.loads(text)}


def _stage_variable(action: dict, template: dict) -> str:
    return action_variables(action, template)["STAGE"]


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
    assert [_stage_variable(a, toolchain) for a in (deploy_staging, test_staging, deploy_prod)] == [
        "staging",
        "staging",
        "prod",
    ]
    assert approve["Configuration"]["NotificationArn"] == {"Ref": "NotificationTopic"}


def test_prod_deploys_the_package_staging_tested(toolchain: dict) -> None:
    stages = _pipeline(toolchain, "deploy")["Stages"]
    deploy_staging, deploy_prod = stages[1]["Actions"][0], stages[-1]["Actions"][0]
    promoted = action_variables(deploy_prod, toolchain)["PROMOTED_MODEL_PACKAGE_ARN"]
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


def _package_event(group: str, status: str, account: str = ACCOUNT) -> dict:
    return {
        "account": account,
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
    registry = registry_account(toolchain)
    assert _matches(pattern, _package_event(group, "Approved", registry))
    assert _matches(pattern, _package_event(group.upper(), "Approved", registry))
    for status in ("PendingManualApproval", "Rejected"):
        assert not _matches(pattern, _package_event(group, status, registry))
    for other in (f"{group}-old", f"x{group}", "another-project-models"):
        assert not _matches(pattern, _package_event(other, "Approved", registry))
    if registry != ACCOUNT:
        # Forwarded events from any other account, say a compromised one, start nothing.
        assert not _matches(pattern, _package_event(group, "Approved", ACCOUNT))
    (target,) = rule["Targets"]
    assert target["Arn"]["Fn::Sub"].endswith(":${DeployPipeline}")
    role = toolchain["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "codepipeline:StartPipelineExecution"
    assert statement["Resource"] == target["Arn"]


def registry_account(toolchain: dict) -> str:
    """The account whose registry approvals start the deploy: the governance account (large)."""
    governance = toolchain["Parameters"].get("GovernanceAccountId")
    return governance["Default"] if governance else ACCOUNT


def test_model_package_group_is_the_one_the_rule_watches(toolchain: dict) -> None:
    # The large layout's group is the governance account's (infra/governance-account.yml).
    registry = INFRA / "governance-account.yml"
    owner = load(registry) if registry.is_file() else toolchain
    (group,) = resources(owner, "AWS::SageMaker::ModelPackageGroup").values()
    assert not (registry.is_file() and resources(toolchain, "AWS::SageMaker::ModelPackageGroup"))
    name = resolve(group["Properties"]["ModelPackageGroupName"], owner)
    assert name == f"{resolve({'Ref': 'ProjectName'}, toolchain)}-models"
    pattern = resolve(toolchain["Resources"]["ModelApprovedRule"]["Properties"], toolchain)
    event = _package_event(name, "Approved", registry_account(toolchain))
    assert _matches(pattern["EventPattern"], event)


def test_lower_case_project_name_parameter_matches_project_name(toolchain: dict) -> None:
    parameters = toolchain["Parameters"]
    assert parameters["ProjectNameLower"]["Default"] == parameters["ProjectName"]["Default"].lower()

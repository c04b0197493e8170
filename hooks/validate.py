"""Validate a generated MLOps repository.

Copier runs this after `copier copy` (from `_tasks`) and after `copier update` (from an "after"
migration) with the Python that runs Copier:

    python hooks/validate.py <generated-repo>

Every problem is reported as `<file>: [<rule>] <what is wrong>` followed by the fix, and the
exit status is 1 when there is any. Checks whose tool is not installed next to Copier are
reported as skipped with the command that installs the tool; they never pass silently.
No network access and no AWS calls.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Versions the template is tested with; printed in the install hint of a skipped check.
TOOL_PINS = {"cfn-lint": "cfn-lint==1.58.0", "jsonschema": "jsonschema==4.26.0"}

PROJECT_TAG_KEY = "Project"
BUILDSPEC_SCHEMA = Path("schemas/buildspec.schema.json")
BUILDSPEC_CHECKER = Path("scripts/check_buildspecs.py")
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".ruff_cache", ".pytest_cache"}
# Jinja as our templates write it: `{{ name ... }}`, `{% keyword ... %}`, `{# ... #}`. Narrower than
# "any braces" so that plain files may hold f-strings such as f"#{{{namespace}.{name}}}".
JINJA_MARKERS = re.compile(
    r"(?<!\{)\{\{-?\s*[A-Za-z_][^{}]*\}\}"
    r"|\{%-?\s*(?:if|elif|else|endif|for|endfor|set|endset|raw|endraw|macro|endmacro|call|endcall"
    r"|include|import|from|with|endwith|filter|endfilter|block|endblock)\b.*?%\}"
    r"|\{#.*?#\}",
    re.DOTALL,
)

# Worst-case lengths of CloudFormation pseudo parameters when they appear in a resource name.
PSEUDO_PARAMETER_LENGTHS = {
    "AWS::AccountId": 12,
    "AWS::Region": len("ap-southeast-7"),
    "AWS::Partition": len("aws-us-gov"),
    "AWS::URLSuffix": len("amazonaws.com.cn"),
    "AWS::StackName": 128,
}

# Name limits from each service's API reference (CloudFormation passes the names through).
NAME_LIMITS: dict[str, tuple[str, int]] = {
    "AWS::S3::Bucket": ("BucketName", 63),
    "AWS::IAM::Role": ("RoleName", 64),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName", 128),
    "AWS::IAM::Policy": ("PolicyName", 128),
    "AWS::Events::Rule": ("Name", 64),
    "AWS::Scheduler::Schedule": ("Name", 64),
    "AWS::Lambda::Function": ("FunctionName", 64),
    "AWS::SageMaker::Endpoint": ("EndpointName", 63),
    "AWS::SageMaker::EndpointConfig": ("EndpointConfigName", 63),
    "AWS::SageMaker::Model": ("ModelName", 63),
    "AWS::SageMaker::ModelPackageGroup": ("ModelPackageGroupName", 63),
    "AWS::SageMaker::MonitoringSchedule": ("MonitoringScheduleName", 63),
    "AWS::SageMaker::Pipeline": ("PipelineName", 256),
    "AWS::CodeBuild::Project": ("Name", 150),
    "AWS::CodePipeline::Pipeline": ("Name", 100),
    "AWS::CodeConnections::Connection": ("ConnectionName", 32),
    "AWS::CodeStarConnections::Connection": ("ConnectionName", 32),
    "AWS::CodeCommit::Repository": ("RepositoryName", 100),
    "AWS::SNS::Topic": ("TopicName", 256),
    "AWS::KMS::Alias": ("AliasName", 256),
    "AWS::Logs::LogGroup": ("LogGroupName", 512),
    "AWS::CloudWatch::Alarm": ("AlarmName", 255),
}


@dataclass(frozen=True)
class Finding:
    path: str
    rule: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: [{self.rule}] {self.message}\n    fix: {self.fix}"


class ToolMissing(Exception):
    """A check cannot run because its tool is not installed where Copier runs."""

    def __init__(self, tool: str) -> None:
        super().__init__(tool)
        self.tool = tool


# --- reading files -------------------------------------------------------------------------


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short-form intrinsics (!Ref, !Sub, ...)."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref": value} if suffix == "Ref" else {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as stream:
        return yaml.load(stream, Loader=_CloudFormationLoader)  # a SafeLoader subclass: no code runs


def iter_files(root: Path, suffixes: tuple[str, ...] | None = None) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if any(part in SKIPPED_DIRS for part in path.relative_to(root).parts):
            continue
        if path.is_file() and (suffixes is None or path.suffix in suffixes):
            yield path


def is_cloudformation(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and isinstance(document.get("Resources"), dict)
        and ("AWSTemplateFormatVersion" in document or "Transform" in document
             or any(isinstance(r, dict) and str(r.get("Type", "")).startswith("AWS::")
                    for r in document["Resources"].values()))
    )


def cloudformation_templates(root: Path) -> Iterator[tuple[Path, dict]]:
    for path in iter_files(root, (".yml", ".yaml", ".json", ".template")):
        try:
            document = load_yaml(path)
        except yaml.YAMLError:
            continue  # reported by check_parse
        if is_cloudformation(document):
            yield path, document


def read_answers(root: Path) -> dict:
    answers_file = root / ".copier-answers.yml"
    if not answers_file.is_file():
        return {}
    return yaml.safe_load(answers_file.read_text(encoding="utf-8")) or {}


# --- checks --------------------------------------------------------------------------------


def check_parse(root: Path) -> list[Finding]:
    findings = []
    for path in iter_files(root, (".yml", ".yaml", ".json")):
        rel = str(path.relative_to(root))
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            else:
                load_yaml(path)
        except (yaml.YAMLError, json.JSONDecodeError) as error:
            findings.append(Finding(rel, "parse", f"not valid {path.suffix[1:].upper()}: {error}",
                                    "correct the syntax at the reported line (indentation, "
                                    "quoting, unbalanced brackets)"))
    return findings


def check_leftover_jinja(root: Path) -> list[Finding]:
    findings = []
    for path in iter_files(root):
        rel = str(path.relative_to(root))
        if path.suffix == ".jinja" or "{{" in rel or "{%" in rel:
            findings.append(Finding(rel, "leftover-jinja", "file name was not rendered by Copier",
                                    "render the name in the template (check the .jinja suffix "
                                    "and the variable names in the path)"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary file
        for match in JINJA_MARKERS.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            findings.append(Finding(f"{rel}:{line}", "leftover-jinja",
                                    f"unrendered Jinja {match.group(0)[:60]!r}",
                                    "give the template file the .jinja suffix, or fix the "
                                    "expression so Copier renders it"))
    return findings


def check_python_compiles(root: Path) -> list[Finding]:
    findings = []
    for path in iter_files(root, (".py",)):
        rel = str(path.relative_to(root))
        try:
            compile(path.read_text(encoding="utf-8"), rel, "exec")
        except SyntaxError as error:
            findings.append(Finding(f"{rel}:{error.lineno}", "python-compile",
                                    f"does not compile: {error.msg}",
                                    "fix the syntax error at that line"))
    return findings


def check_cfn_lint(root: Path) -> list[Finding]:
    try:
        from cfnlint.api import ManualArgs, lint_file
    except ImportError as error:
        raise ToolMissing("cfn-lint") from error
    region = read_answers(root).get("aws_region", "us-east-1")
    findings = []
    for path, _ in cloudformation_templates(root):
        rel = str(path.relative_to(root))
        for match in lint_file(path, config=ManualArgs(regions=[region])):
            findings.append(Finding(f"{rel}:{match.linenumber}", f"cfn-lint {match.rule.id}",
                                    match.message,
                                    f"see {match.rule.source_url or 'the cfn-lint rule ' + match.rule.id}; "
                                    "a deliberate exception goes in the resource's "
                                    "Metadata.cfn-lint with a comment saying why"))
    return findings


def check_buildspecs(root: Path) -> list[Finding]:
    """Validate the buildspecs with the project's own checker, so the hook, the project's tests
    and its pre-commit hook apply the same schema and give the same advice."""
    try:
        import jsonschema  # noqa: F401 - the project's checker needs it
    except ImportError as error:
        raise ToolMissing("jsonschema") from error
    buildspecs = sorted((root / "buildspecs").glob("*.yml"))
    if not buildspecs:
        return []
    missing = [p for p in (BUILDSPEC_CHECKER, BUILDSPEC_SCHEMA) if not (root / p).is_file()]
    if missing:
        return [Finding(str(p), "buildspec-schema", "missing, so the buildspecs cannot be checked",
                        "restore it from the template (copier update, or copier recopy)")
                for p in missing]
    spec = importlib.util.spec_from_file_location("check_buildspecs", root / BUILDSPEC_CHECKER)
    checker = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = checker  # dataclasses look their module up while the class is built
    spec.loader.exec_module(checker)
    validator = checker.load_validator(root / BUILDSPEC_SCHEMA)
    return [Finding(violation.file, "buildspec-schema", f"at {violation.path}: {violation.message}",
                    violation.fix)
            for path in buildspecs
            for violation in checker.check_file(path, validator, str(path.relative_to(root)))]


def _first_kms_key(bucket: dict) -> Any:
    rules = (bucket.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration") or []
    for rule in rules:
        default = rule.get("ServerSideEncryptionByDefault") or {}
        if str(default.get("SSEAlgorithm", "")).startswith("aws:kms") and default.get("KMSMasterKeyID"):
            return default["KMSMasterKeyID"]
    return None


def _denies_insecure_transport(policy_document: Any) -> bool:
    statements = (policy_document or {}).get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        condition = json.dumps(statement.get("Condition", {}))
        if statement.get("Effect") == "Deny" and "aws:SecureTransport" in condition and "false" in condition.lower():
            return True
    return False


def _refers_to(value: Any, logical_id: str) -> bool:
    return logical_id in json.dumps(value)


# What "encrypted at rest" means per resource type: the property that must name a KMS key.
KMS_PROPERTIES = {
    "AWS::SNS::Topic": "KmsMasterKeyId",
    "AWS::SageMaker::EndpointConfig": "KmsKeyId",
    "AWS::CodeBuild::Project": "EncryptionKey",
    "AWS::Logs::LogGroup": "KmsKeyId",
    "AWS::SQS::Queue": "KmsMasterKeyId",
}


def check_encryption(root: Path) -> list[Finding]:
    findings = []
    for path, template in cloudformation_templates(root):
        rel = str(path.relative_to(root))
        resources = template["Resources"]
        policies = [r.get("Properties", {}) for r in resources.values()
                    if r.get("Type") == "AWS::S3::BucketPolicy"]
        for logical_id, resource in resources.items():
            kind, props = resource.get("Type"), resource.get("Properties") or {}
            where = f"{logical_id} ({kind})"
            if kind == "AWS::S3::Bucket":
                if not _first_kms_key(props):
                    findings.append(Finding(rel, "encryption-at-rest", f"{where} is not encrypted with KMS",
                                            "set BucketEncryption: SSEAlgorithm aws:kms with KMSMasterKeyID "
                                            "pointing at the project key"))
                if not any(_refers_to(p.get("Bucket"), logical_id)
                           and _denies_insecure_transport(p.get("PolicyDocument")) for p in policies):
                    findings.append(Finding(rel, "encryption-in-transit", f"{where} accepts plain HTTP requests",
                                            "add an AWS::S3::BucketPolicy statement that denies s3:* when "
                                            "aws:SecureTransport is false"))
            elif kind == "AWS::KMS::Key" and props.get("EnableKeyRotation") is not True:
                findings.append(Finding(rel, "key-rotation", f"{where} does not rotate",
                                        "set EnableKeyRotation: true"))
            elif kind in KMS_PROPERTIES and not props.get(KMS_PROPERTIES[kind]):
                findings.append(Finding(rel, "encryption-at-rest", f"{where} has no {KMS_PROPERTIES[kind]}",
                                        f"set {KMS_PROPERTIES[kind]} to the project KMS key"))
    return findings


def _taggable_types() -> Callable[[str], bool]:
    try:
        from cfnlint.schema import PROVIDER_SCHEMA_MANAGER, ResourceNotFoundError
    except ImportError as error:
        raise ToolMissing("cfn-lint") from error

    def taggable(resource_type: str) -> bool:
        try:
            schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
        except ResourceNotFoundError:  # an unknown type is cfn-lint's E3006 to report
            return False
        return "Tags" in schema.get("properties", {}) and schema.get("tagging", {}).get("taggable", True)

    return taggable


def _project_tag(tags: Any) -> Any:
    if isinstance(tags, dict):  # the map form some resource types use
        return tags.get(PROJECT_TAG_KEY)
    for tag in tags or []:
        if isinstance(tag, dict) and tag.get("Key") == PROJECT_TAG_KEY:
            return tag.get("Value")
    return None


def check_project_tags(root: Path) -> list[Finding]:
    taggable = _taggable_types()
    project_name = read_answers(root).get("project_name")
    accepted = [{"Ref": "ProjectName"}] + ([project_name] if project_name else [])
    findings = []
    for path, template in cloudformation_templates(root):
        rel = str(path.relative_to(root))
        for logical_id, resource in template["Resources"].items():
            kind = resource.get("Type", "")
            if not taggable(kind):
                continue
            value = _project_tag((resource.get("Properties") or {}).get("Tags"))
            if value not in accepted:
                findings.append(Finding(rel, "project-tag",
                                        f"{logical_id} ({kind}) is not tagged {PROJECT_TAG_KEY}=<project name>",
                                        f"add Tags: [{{Key: {PROJECT_TAG_KEY}, Value: !Ref ProjectName}}]"))
    return findings


class _Unbounded(Exception):
    """A name depends on a value whose length the template does not bound."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parameter_length(parameters: dict, name: str) -> int:
    if name in PSEUDO_PARAMETER_LENGTHS:
        return PSEUDO_PARAMETER_LENGTHS[name]
    spec = parameters.get(name)
    if spec is None:
        raise _Unbounded(f"refers to resource {name}, whose name CloudFormation generates")
    if spec.get("AllowedValues"):
        return max(len(str(v)) for v in spec["AllowedValues"])
    if "MaxLength" in spec:
        return int(spec["MaxLength"])
    raise _Unbounded(f"uses parameter {name}, which has no MaxLength or AllowedValues")


def _worst_case_length(value: Any, parameters: dict) -> int:
    """Longest string `value` can resolve to when every parameter takes its longest value."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (int, float)):
        return len(str(value))
    if isinstance(value, dict) and len(value) == 1:
        (function, argument), = value.items()
        if function == "Ref":
            return _parameter_length(parameters, argument)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            total = len(re.sub(r"\$\{[^}!]+\}", "", text))
            for variable in re.findall(r"\$\{([^}!]+)\}", text):
                total += (_worst_case_length(variables[variable], parameters) if variable in variables
                          else _parameter_length(parameters, variable))
            return total
        if function == "Fn::Join":
            delimiter, parts = argument
            return len(delimiter) * max(len(parts) - 1, 0) + sum(
                _worst_case_length(part, parameters) for part in parts)
        if function == "Fn::If":
            return max(_worst_case_length(branch, parameters) for branch in argument[1:])
    raise _Unbounded(f"is built with {json.dumps(value)[:80]}, whose length cannot be bounded")


def check_name_lengths(root: Path) -> list[Finding]:
    findings = []
    for path, template in cloudformation_templates(root):
        rel = str(path.relative_to(root))
        parameters = template.get("Parameters") or {}
        for logical_id, resource in template["Resources"].items():
            kind = resource.get("Type")
            if kind not in NAME_LIMITS:
                continue
            prop, limit = NAME_LIMITS[kind]
            name = (resource.get("Properties") or {}).get(prop)
            if name is None:
                continue  # CloudFormation generates a name that fits
            where = f"{logical_id} ({kind}) {prop}"
            try:
                length = _worst_case_length(name, parameters)
            except _Unbounded as unbounded:
                findings.append(Finding(rel, "name-length", f"{where} {unbounded.reason}",
                                        "bound every parameter used in the name with MaxLength "
                                        "or AllowedValues, or let CloudFormation generate the name"))
                continue
            if length > limit:
                findings.append(Finding(rel, "name-length",
                                        f"{where} can be {length} characters; AWS allows {limit}",
                                        "shorten the fixed part of the name or drop a component; the "
                                        "project name alone can be 32 characters"))
    return findings


ACCOUNT_ID = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")
ACCOUNT_ANSWERS = ("tooling_account_id", "staging_account_id", "prod_account_id", "dev_account_id",
                   "governance_account_id")
TARGET_ACCOUNT_TEMPLATE = Path("infra/target-account.yml")


def _policy_statements(value: Any) -> Iterator[dict]:
    """Every policy statement with a Principal, wherever it sits in a resource's properties."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Statement":
                yield from (s for s in (item if isinstance(item, list) else [item])
                            if isinstance(s, dict) and "Principal" in s)
            else:
                yield from _policy_statements(item)
    elif isinstance(value, list):
        for item in value:
            yield from _policy_statements(item)


def _accounts_named(value: Any, parameters: dict) -> set[str]:
    """Account ids `value` names: literal ones, and the defaults of parameters it refers to."""
    text = json.dumps(value)
    referenced = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text)) | set(re.findall(r'"Ref": "([A-Za-z0-9]+)"', text))
    defaults = " ".join(str((parameters.get(name) or {}).get("Default", "")) for name in referenced)
    return set(ACCOUNT_ID.findall(text)) | set(ACCOUNT_ID.findall(defaults))


def check_account_trust(root: Path) -> list[Finding]:
    """Trust and resource policies name only the accounts the answers configure, never anyone;
    a multi-account project has the cross-account roles its deploy pipeline assumes."""
    answers = read_answers(root)
    configured = {str(answers[key]) for key in ACCOUNT_ANSWERS if answers.get(key)}
    findings = []
    for path, template in cloudformation_templates(root):
        rel = str(path.relative_to(root))
        parameters = template.get("Parameters") or {}
        for logical_id, resource in template["Resources"].items():
            for statement in _policy_statements(resource.get("Properties") or {}):
                principal = statement.get("Principal")
                where = f"{logical_id} ({resource.get('Type')})"
                if resource.get("Type") == "AWS::IAM::Role" and principal in ("*", {"AWS": "*"}):
                    findings.append(Finding(rel, "trust-policy", f"{where} can be assumed by anyone",
                                            "name the service or the account's role in Principal"))
                foreign = _accounts_named({"Principal": principal,
                                           "Condition": statement.get("Condition")}, parameters) - configured
                if foreign:
                    findings.append(Finding(rel, "trust-policy",
                                            f"{where} trusts account(s) {', '.join(sorted(foreign))}, "
                                            "which the answers do not configure",
                                            "refer to the account through its parameter (ToolingAccountId, "
                                            "StagingAccountId, ProdAccountId, DevAccountId, "
                                            "GovernanceAccountId) or AWS::AccountId"))
    if answers.get("org_size") in ("medium", "large"):
        findings.extend(_check_cross_account_roles(root, answers))
    return findings


def _check_cross_account_roles(root: Path, answers: dict) -> list[Finding]:
    target_path, toolchain_path = root / TARGET_ACCOUNT_TEMPLATE, root / "infra" / "toolchain.yml"
    if not target_path.is_file():
        return [Finding(str(TARGET_ACCOUNT_TEMPLATE), "cross-account-roles",
                        "missing: staging and prod have no roles for the tooling account to assume",
                        "restore it from the template (copier update, or copier recopy)")]
    target, toolchain = load_yaml(target_path), load_yaml(toolchain_path)
    findings = []
    trusted = (target.get("Parameters") or {}).get("ToolingAccountId", {}).get("Default")
    assumable = [logical_id for logical_id, resource in target["Resources"].items()
                 if resource.get("Type") == "AWS::IAM::Role"
                 and "${ToolingAccountId}" in json.dumps(resource["Properties"].get("AssumeRolePolicyDocument"))]
    if str(trusted) != str(answers["tooling_account_id"]) or not assumable:
        findings.append(Finding(str(TARGET_ACCOUNT_TEMPLATE), "cross-account-roles",
                                f"no role trusts the tooling account {answers['tooling_account_id']}",
                                "trust the ToolingAccountId parameter (default: the tooling account "
                                "answer) in the deployer and smoke-tester roles"))
    parameters = toolchain.get("Parameters") or {}
    pipelines = json.dumps([r for r in toolchain["Resources"].values()
                            if r.get("Type") == "AWS::CodePipeline::Pipeline"])
    for stage in ("staging", "prod"):
        parameter = f"{stage.capitalize()}AccountId"
        if (str((parameters.get(parameter) or {}).get("Default")) != str(answers[f"{stage}_account_id"])
                or f"${{{parameter}}}" not in pipelines):
            findings.append(Finding("infra/toolchain.yml", "cross-account-roles",
                                    f"the deploy pipeline does not assume a role in the {stage} account "
                                    f"{answers[f'{stage}_account_id']}",
                                    f"default {parameter} to that account and point the {stage} "
                                    "actions' TARGET_ACCOUNT_ROLE_ARN at its deployer role"))
    return findings


# Large-layout guardrails. The job definitions are the Model Monitor engine's, whose jobs run
# with a NetworkConfig of their own.
MONITORING_JOB_DEFINITIONS = ("AWS::SageMaker::DataQualityJobDefinition",
                              "AWS::SageMaker::ModelQualityJobDefinition",
                              "AWS::SageMaker::ModelBiasJobDefinition",
                              "AWS::SageMaker::ModelExplainabilityJobDefinition")
KMS_KEY_PROPERTIES = ("KmsKeyId", "KmsMasterKeyId", "KMSMasterKeyID", "EncryptionKey", "VolumeKmsKeyId",
                      "KmsKeyArn")
README = Path("README.md")


def _kms_values(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (property, value) pair of `value` whose property names a KMS key."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _kms_values(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from _kms_values(item, key)
    elif key in KMS_KEY_PROPERTIES:
        yield key, value


BOUNDARY_IN_OWN_ACCOUNT = re.compile(r"^arn:\$\{AWS::Partition\}:iam::\$\{AWS::AccountId\}:policy/\$\{(\w+)\}$")


def _boundary_is_the_answer(boundary: Any, parameters: dict, policy: str) -> bool:
    """The boundary is the answered policy (path and name) of the role's own account: IAM only
    attaches a policy of that account. A parameter without a default, or with an empty one under
    a condition (the stacks the deploy job deploys with PERMISSIONS_BOUNDARY_POLICY), is passed
    at deploy time."""
    if isinstance(boundary, dict) and "Fn::If" in boundary:
        _, when_set, _ = boundary["Fn::If"]
        return _boundary_is_the_answer(when_set, {**parameters, "__conditional__": True}, policy)
    text = boundary.get("Fn::Sub") if isinstance(boundary, dict) else None
    match = BOUNDARY_IN_OWN_ACCOUNT.match(text) if isinstance(text, str) else None
    if not match:
        return False
    default = (parameters.get(match.group(1)) or {}).get("Default", policy)
    return default == policy or (default == "" and parameters.get("__conditional__", False))


def _codebuild_variables(template: dict, name_suffix: str) -> dict[str, Any]:
    for resource in template["Resources"].values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::CodeBuild::Project" and name_suffix in json.dumps(props.get("Name")):
            return {v.get("Name"): v.get("Value")
                    for v in (props.get("Environment") or {}).get("EnvironmentVariables") or []}
    return {}


def check_large_guardrails(root: Path) -> list[Finding]:
    """Large: a permissions boundary on every role, customer KMS keys everywhere, every SageMaker
    job and model in the private subnets, the required tags on every stack."""
    answers = read_answers(root)
    if answers.get("org_size") != "large":
        return []
    boundary_policy = str(answers.get("permissions_boundary_arn", "")).partition(":policy/")[2]
    findings = []
    for path, template in cloudformation_templates(root):
        rel = str(path.relative_to(root))
        parameters = template.get("Parameters") or {}
        for logical_id, resource in template["Resources"].items():
            kind, props = resource.get("Type"), resource.get("Properties") or {}
            where = f"{logical_id} ({kind})"
            if kind == "AWS::IAM::Role" and not _boundary_is_the_answer(
                    props.get("PermissionsBoundary"), parameters, boundary_policy):
                findings.append(Finding(rel, "permissions-boundary",
                                        f"{where} is not bounded by the policy {boundary_policy} of its account",
                                        "set PermissionsBoundary: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:"
                                        "policy/${PermissionsBoundaryPolicy}, a parameter whose default is the "
                                        "path and name of the permissions_boundary_arn answer"))
            if kind == "AWS::SageMaker::Model" and not props.get("VpcConfig"):
                findings.append(Finding(rel, "vpc-only", f"{where} runs outside the private subnets",
                                        "set VpcConfig with the network stack's subnets and security group"))
            if kind in MONITORING_JOB_DEFINITIONS and not (props.get("NetworkConfig") or {}).get("VpcConfig"):
                findings.append(Finding(rel, "vpc-only", f"{where} runs its jobs outside the private subnets",
                                        "set NetworkConfig.VpcConfig with the network stack's subnets"))
            if kind == "AWS::SageMaker::EndpointConfig" and not (props.get("DataCaptureConfig") or {}).get("KmsKeyId"):
                findings.append(Finding(rel, "kms-everywhere", f"{where} captures data without the KMS key",
                                        "set DataCaptureConfig.KmsKeyId to the account's key"))
            for prop, value in _kms_values(props):
                if "alias/aws/" in json.dumps(value):
                    findings.append(Finding(rel, "kms-everywhere", f"{where} {prop} is an AWS managed key",
                                            "use the project's customer managed key, which the key policy "
                                            "limits to the project's roles"))
    toolchain_path = root / "infra" / "toolchain.yml"
    if toolchain_path.is_file():
        toolchain = load_yaml(toolchain_path)
        build = _codebuild_variables(toolchain, "-build")
        if not (build.get("SUBNET_IDS") and build.get("SECURITY_GROUP_IDS")):
            findings.append(Finding("infra/toolchain.yml", "vpc-only",
                                    "the build job does not pass SUBNET_IDS and SECURITY_GROUP_IDS, so the "
                                    "training pipeline's jobs would run outside the private subnets",
                                    "set both from the network stack's exports on the build project"))
        deploy = _codebuild_variables(toolchain, "-deploy")
        if not deploy.get("PERMISSIONS_BOUNDARY_POLICY"):
            findings.append(Finding("infra/toolchain.yml", "permissions-boundary",
                                    "the deploy job does not pass PERMISSIONS_BOUNDARY_POLICY, so the roles of "
                                    "the stacks it deploys (monitoring) would be unbounded",
                                    "set PERMISSIONS_BOUNDARY_POLICY: !Ref PermissionsBoundaryPolicy on the "
                                    "deploy project"))
        if not deploy.get("NETWORK_STACK_NAME"):
            findings.append(Finding("infra/toolchain.yml", "vpc-only",
                                    "the deploy job does not name the network stack, so endpoints would run "
                                    "outside the private subnets",
                                    "set NETWORK_STACK_NAME on the deploy project"))
        stack_tags = str(deploy.get("REQUIRED_STACK_TAGS", "")).split()
        missing = [f"{k}={v}" for k, v in (answers.get("required_tags") or {}).items()
                   if f"{k}={v}" not in stack_tags]
        if missing:
            findings.append(Finding("infra/toolchain.yml", "required-tags",
                                    f"the deploy job does not tag its stacks with {', '.join(missing)}",
                                    "list every required tag as key=value in REQUIRED_STACK_TAGS"))
    if (root / README).is_file():
        commands = re.findall(r"aws cloudformation deploy[^`]*?(?=\n\s*\n|```)", (root / README).read_text())
        for command in commands:
            missing = [f"{k}={v}" for k, v in (answers.get("required_tags") or {}).items()
                       if f"{k}={v}" not in command]
            if missing:
                stack = re.search(r"--stack-name\s+(\S+)", command)
                findings.append(Finding(str(README), "required-tags",
                                        f"the deploy command of {stack.group(1) if stack else 'a stack'} "
                                        f"does not tag it with {', '.join(missing)}",
                                        "add the required tags to its --tags"))
    return findings


MONITORING_TEMPLATE = Path("infra/monitoring.yml")
ENDPOINT_TEMPLATE = Path("infra/endpoint.yml")
DEPLOY_BUILDSPEC = Path("buildspecs/deploy.yml")
SCHEDULE_TYPES = ("AWS::Scheduler::Schedule", "AWS::SageMaker::MonitoringSchedule")


def _stages(template: dict) -> set[str]:
    return {str(v) for v in ((template.get("Parameters") or {}).get("Stage") or {}).get("AllowedValues") or []}


def check_monitoring(root: Path) -> list[Finding]:
    """Every stage the deploy job deploys an endpoint to gets a scheduled monitoring run, alarms
    and a notification target: resources the monitoring stack creates for every stage (none
    behind a condition), and a deploy job that deploys that stack."""
    endpoint_path, path = root / ENDPOINT_TEMPLATE, root / MONITORING_TEMPLATE
    if not endpoint_path.is_file():
        return []  # nothing is deployed, so nothing needs monitoring
    stages = _stages(load_yaml(endpoint_path))
    rel = str(MONITORING_TEMPLATE)
    if not path.is_file():
        return [Finding(rel, "monitoring", f"missing: the endpoints ({', '.join(sorted(stages))}) are "
                        "deployed without monitoring", "restore it from the template (copier update, or "
                        "copier recopy)")]
    template = load_yaml(path)
    resources = template.get("Resources") or {}
    findings = []
    unmonitored = stages - _stages(template)
    if unmonitored:
        findings.append(Finding(rel, "monitoring",
                                f"its Stage parameter does not allow {', '.join(sorted(unmonitored))}, "
                                "where an endpoint is deployed", "list every stage of infra/endpoint.yml in "
                                "the Stage parameter's AllowedValues"))

    def always(kind: str) -> dict[str, dict]:
        return {logical_id: r for logical_id, r in resources.items()
                if r.get("Type") == kind and "Condition" not in r}

    if not any(always(kind) for kind in SCHEDULE_TYPES):
        findings.append(Finding(rel, "monitoring", "no scheduled monitoring run exists for every stage",
                                "add an AWS::Scheduler::Schedule without a Condition that starts the "
                                "monitoring job"))
    topics = always("AWS::SNS::Topic")
    subscribed = [t for t in topics if any(_refers_to((s.get("Properties") or {}).get("TopicArn"), t)
                                           for s in always("AWS::SNS::Subscription").values())]
    if not subscribed:
        findings.append(Finding(rel, "monitoring", "no notification target: no SNS topic with a subscription "
                                "for every stage", "add an AWS::SNS::Topic and an AWS::SNS::Subscription "
                                "(Protocol email, Endpoint !Ref NotificationEmail)"))
    notifying = [a for a in always("AWS::CloudWatch::Alarm").values()
                 if any(_refers_to((a.get("Properties") or {}).get("AlarmActions"), t) for t in subscribed)]
    if not notifying:
        findings.append(Finding(rel, "monitoring", "no alarm notifies a subscribed topic in every stage",
                                "give the drift alarm AlarmActions: [!Ref <the subscribed topic>] and no "
                                "Condition"))
    buildspec = root / DEPLOY_BUILDSPEC
    deploys = f"--template-file {MONITORING_TEMPLATE}"
    if buildspec.is_file() and deploys not in buildspec.read_text(encoding="utf-8"):
        findings.append(Finding(str(DEPLOY_BUILDSPEC), "monitoring",
                                f"deploys endpoints but never {MONITORING_TEMPLATE}",
                                "deploy it after the endpoint stack in the same job: aws cloudformation deploy "
                                f"{deploys} --stack-name \"$PROJECT_NAME-monitoring-$STAGE\" ..."))
    return findings


CHECKS: dict[str, Callable[[Path], list[Finding]]] = {
    "YAML/JSON parse": check_parse,
    "no leftover Jinja": check_leftover_jinja,
    "Python compiles": check_python_compiles,
    "cfn-lint": check_cfn_lint,
    "buildspec schema": check_buildspecs,
    "encryption": check_encryption,
    "project tags": check_project_tags,
    "name lengths": check_name_lengths,
    "account trust": check_account_trust,
    "large guardrails": check_large_guardrails,
    "monitoring": check_monitoring,
}


def validate(root: Path) -> tuple[list[Finding], list[str]]:
    """Run every check; return the findings and a message per skipped check."""
    findings, skipped = [], []
    for title, check in CHECKS.items():
        try:
            findings.extend(check(root))
        except ToolMissing as missing:
            skipped.append(f"skipped check '{title}': {missing.tool} is not installed for {sys.executable}. "
                           f"Install it with: {sys.executable} -m pip install '{TOOL_PINS[missing.tool]}' "
                           f"(pipx users: pipx inject copier '{TOOL_PINS[missing.tool]}')")
    return findings, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder of the generated repository")
    root = parser.parse_args(argv).root.resolve()
    findings, skipped = validate(root)
    for message in skipped:
        print(message, file=sys.stderr)
    if findings:
        print(f"The generated repository in {root} has {len(findings)} problem(s):", file=sys.stderr)
        for finding in findings:
            print(f"  {finding}", file=sys.stderr)
        return 1
    print(f"Generated repository checks passed ({len(CHECKS) - len(skipped)} of {len(CHECKS)} run).",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

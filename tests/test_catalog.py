"""catalog/: the SageMaker Projects portfolio, the product (provisioning artifact), the seed that
renders a project into its repository, and the publish command."""

from __future__ import annotations

import fnmatch
import io
import json
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import copier
import pytest
import yaml
from botocore.stub import ANY, Stubber
from cfnlint.decode import decode
from moto import mock_aws
from support import NEW_VERSION, OLD_VERSION, TEMPLATE_ROOT, git, preset

CATALOG = TEMPLATE_ROOT / "catalog"
sys.path.insert(0, str(CATALOG))

import publish  # noqa: E402
import seed  # noqa: E402
import seed_trigger  # noqa: E402

LONGEST_NAME = "a" + "b-" * 15 + "c"  # 32 characters, the SageMaker maximum
LONGEST_ID = "p-" + "a1b2c3d4e5f6g7h8i9"  # 20 characters, the SageMaker maximum
LONGEST_REGION = "ap-southeast-7"
REGION = "eu-west-1"
ACCOUNT = "123456789012"


def template(name: str) -> dict:
    parsed, errors = decode(str(CATALOG / name))
    assert not errors, errors
    return parsed


def product_answers(size: str, **overrides: str) -> dict[str, str]:
    """The answers product.yml's Seed resource hands the build, built the way its properties are."""
    answers = dict(preset(size))
    answers["aws_region"] = REGION
    if size == "medium":
        answers["tooling_account_id"] = ACCOUNT  # the provisioning account is the tooling account
    return {**answers, **overrides}


# ------------------------------------------------------------------ lint -----------------------

def test_catalog_templates_are_cfn_lint_clean() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), *map(str, sorted(CATALOG.glob("*.yml")))], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_catalog_templates_are_checkov_clean_and_every_skip_has_a_reason() -> None:
    checkov = Path(sys.executable).with_name("checkov")
    result = subprocess.run([str(checkov), "--directory", str(CATALOG), "--framework", "cloudformation",
                             "--skip-download", "--quiet", "--compact"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("portfolio.yml", "product.yml"):
        for logical_id, resource in template(name)["Resources"].items():
            for skip in (resource.get("Metadata", {}).get("checkov") or {}).get("skip", []):
                assert len(skip.get("comment", "").split()) >= 8, f"{name} {logical_id}: {skip['id']} has no reason"


def test_portfolio_defines_what_studio_needs() -> None:
    resources = template("portfolio.yml")["Resources"]
    types = {r["Type"] for r in resources.values()}
    assert {"AWS::ServiceCatalog::Portfolio", "AWS::ServiceCatalog::CloudFormationProduct",
            "AWS::ServiceCatalog::LaunchRoleConstraint",
            "AWS::ServiceCatalog::PortfolioPrincipalAssociation"} <= types
    assert {"Key": "sagemaker:studio-visibility", "Value": "true"} in resources["Product"]["Properties"]["Tags"]
    assert resources["LaunchWithTheLaunchRole"]["Properties"]["LocalRoleName"] == {"Ref": "LaunchRole"}
    assert resources["StudioCanUseThePortfolio"]["Properties"]["PrincipalARN"] == {"Ref": "StudioExecutionRoleArn"}


# ------------------------------------------------------------------ names and permissions ------

NAME_PROPERTIES = {
    # type: (name property, AWS limit, launch-role action that creates it, ARN tail the action is checked on)
    "AWS::IAM::Role": ("RoleName", 64, "iam:CreateRole", "role/{}"),
    "AWS::Lambda::Function": ("FunctionName", 64, "lambda:CreateFunction", "function:{}"),
    "AWS::Events::Rule": ("Name", 64, "events:PutRule", "rule/{}"),
    "AWS::CodeBuild::Project": ("Name", 255, "codebuild:CreateProject", "project/{}"),
    "AWS::Logs::LogGroup": ("LogGroupName", 512, "logs:CreateLogGroup", "log-group:{}"),
}


def longest(value: Any) -> str:
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    assert isinstance(text, str), f"name {value!r} is not a plain !Sub string"
    return (text.replace("${SageMakerProjectId}", LONGEST_ID).replace("${SageMakerProjectName}", LONGEST_NAME)
            .replace("${AWS::Region}", LONGEST_REGION).replace("${AWS::Partition}", "aws")
            .replace("${AWS::AccountId}", ACCOUNT))


def launch_role_allows(action: str, arn_tail: str) -> bool:
    policy = template("portfolio.yml")["Resources"]["LaunchRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action in actions and any(fnmatch.fnmatchcase(arn_tail, longest(r).split(":", 5)[-1]) for r in resources):
            return True
    return False


def test_product_names_fit_aws_limits_start_with_sagemaker_and_the_launch_role_may_create_them() -> None:
    checked = 0
    for logical_id, resource in template("product.yml")["Resources"].items():
        if resource["Type"] not in NAME_PROPERTIES:
            continue
        prop, limit, action, tail = NAME_PROPERTIES[resource["Type"]]
        name = longest(resource["Properties"][prop])
        assert len(name) <= limit, f"{logical_id}: {name} has {len(name)} characters, limit {limit}"
        assert name.rsplit("/", 1)[-1].startswith("sagemaker-"), f"{logical_id}: {name} must start with sagemaker-"
        assert launch_role_allows(action, tail.format(name)), f"launch role cannot {action} {name}"
        checked += 1
    assert checked == 7
    assert len(f"{LONGEST_NAME}-toolchain") <= 128  # the stack the seed deploys


def test_portfolio_names_fit_aws_limits_in_the_longest_region() -> None:
    limits = {"AWS::IAM::Role": ("RoleName", 64), "AWS::IAM::ManagedPolicy": ("ManagedPolicyName", 128)}
    named = [(r["Type"], longest(r["Properties"][limits[r["Type"]][0]]))
             for r in template("portfolio.yml")["Resources"].values() if r["Type"] in limits]
    assert len(named) == 3
    for resource_type, name in named:
        assert len(name) <= limits[resource_type][1] and name.startswith("sagemaker-"), name


def test_launch_role_refuses_names_outside_the_seed_prefix() -> None:
    assert not launch_role_allows("iam:CreateRole", "role/admin")
    assert not launch_role_allows("iam:CreateRole", f"role/{LONGEST_NAME}-deploy-job")
    assert not launch_role_allows("lambda:CreateFunction", "function:sagemaker-other")


def test_launch_role_can_update_and_terminate_what_it_creates() -> None:
    needed = ["iam:GetRole", "iam:DeleteRole", "iam:DeleteRolePolicy", "codebuild:UpdateProject",
              "codebuild:DeleteProject", "lambda:UpdateFunctionCode", "lambda:DeleteFunction",
              "lambda:InvokeFunction", "events:DeleteRule", "events:RemoveTargets", "logs:DeleteLogGroup",
              "cloudformation:UpdateStack", "cloudformation:DeleteStack", "sagemaker:AddTags"]
    policy = template("portfolio.yml")["Resources"]["LaunchRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    granted = {action for statement in policy["Statement"]
               for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])}
    assert not set(needed) - granted


def test_roles_the_product_creates_carry_the_boundary_the_launch_role_requires() -> None:
    resources = template("product.yml")["Resources"]
    roles = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    assert roles and all("PermissionsBoundary" in r["Properties"] for r in roles)
    statement = next(s for s in template("portfolio.yml")["Resources"]["LaunchRole"]["Properties"]["Policies"][0]
                     ["PolicyDocument"]["Statement"] if s["Sid"] == "SeedRolesOnlyWithTheBoundary")
    assert "iam:CreateRole" in statement["Action"]
    assert "iam:PermissionsBoundary" in statement["Condition"]["StringEquals"]


# ------------------------------------------------------------------ product parameters ---------

def test_product_parameters_follow_sagemaker_rules_and_optional_ones_have_defaults() -> None:
    product = template("product.yml")
    parameters = product["Parameters"]
    name, project_id = parameters["SageMakerProjectName"], parameters["SageMakerProjectId"]
    assert (name["MinLength"], name["MaxLength"], name["AllowedPattern"]) == (1, 32, "^[a-zA-Z](-*[a-zA-Z0-9])*")
    assert (project_id["MinLength"], project_id["MaxLength"]) == (1, 20)
    optional = product["Metadata"]["SagemakerTemplateParameterRules"]["Optional"]
    assert optional and all(parameters[p].get("Default") for p in optional)


def test_product_maps_every_small_and_medium_question() -> None:
    """A new question for small or medium must reach the seed; questions of a size the product
    does not offer yet (large) are the only ones it may leave out."""
    questions = {k: v for k, v in yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text()).items()
                 if not k.startswith("_")}
    product = template("product.yml")
    sizes = product["Parameters"]["OrgSize"]["AllowedValues"]
    mapped = set(product["Resources"]["Seed"]["Properties"]["Answers"])
    assert mapped <= set(questions)
    for question in set(questions) - mapped:
        when = str(questions[question].get("when", ""))
        assert "org_size" in when and not any(f"'{size}'" in when for size in sizes), (
            f"copier question {question} is not mapped in catalog/product.yml (Seed.Properties.Answers)")


def test_medium_answers_as_the_product_builds_them_pass_the_template_validators(
        template_snapshot: Path, tmp_path: Path) -> None:
    copier.run_copy(str(template_snapshot), str(tmp_path / "p"), data=product_answers("medium"), defaults=True,
                    vcs_ref="HEAD", quiet=True, skip_tasks=True)
    answers = yaml.safe_load((tmp_path / "p" / ".copier-answers.yml").read_text())
    assert answers["tooling_account_id"] == ACCOUNT and answers["org_size"] == "medium"


def test_retraining_answer_as_a_product_parameter_string_becomes_the_boolean(
        template_snapshot: Path, tmp_path: Path) -> None:
    """Custom resource properties arrive as strings; Copier must read "true" as the bool."""
    answers = {key: value for key, value in product_answers("small").items() if key != "retraining_trigger"}
    copier.run_copy(str(template_snapshot), str(tmp_path / "p"), data={**answers, "retraining_trigger": "true"},
                    defaults=True, vcs_ref="HEAD", quiet=True, skip_tasks=True)
    recorded = yaml.safe_load((tmp_path / "p" / ".copier-answers.yml").read_text())
    assert recorded["retraining_trigger"] is True
    assert "enabled: true" in (tmp_path / "p" / "config" / "monitoring.yml").read_text().split("retraining:")[1]


def test_seed_requirements_pin_what_the_template_is_tested_with() -> None:
    lock = dict(line.split("==") for line in (TEMPLATE_ROOT / "requirements-dev.lock").read_text().splitlines()
                if "==" in line and not line.startswith((" ", "#")))
    for line in (CATALOG / "requirements-seed.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            package, version = line.split("==")
            assert lock[package] == version, f"requirements-seed.txt: {package}=={version}, lock: {lock[package]}"


# ------------------------------------------------------------------ seeding ---------------------


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """The project's repository as the Git host holds it."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    return bare


def new_seed(template_dir: Path, remote: Path, workdir: Path, **answers: str) -> seed.Seed:
    return seed.Seed(answers=product_answers("small", **answers), template_url=str(template_dir),
                     template_version=OLD_VERSION, repository_url=str(remote), workdir=workdir)


def remote_log(remote: Path) -> list[str]:
    return git(remote, "log", "--format=%s", "main").splitlines()


def test_seed_renders_commits_the_answers_pushes_then_deploys_and_is_idempotent(
        versioned_template: Path, remote: Path, tmp_path: Path) -> None:
    events: list[str] = []
    first = new_seed(versioned_template, remote, tmp_path / "build-1")
    original_push = first.push
    first.push = lambda: (events.append("push"), original_push())  # type: ignore[method-assign]
    outcome = seed.run_seed(first, lambda s: events.append("deploy"))

    assert "seeded from" in outcome and events == ["push", "deploy"]
    assert remote_log(remote) == [f"Seed demand-forecast from the MLOps template {OLD_VERSION}"]
    answers = yaml.safe_load(git(remote, "show", "main:.copier-answers.yml"))
    assert answers["_commit"] == OLD_VERSION and answers["_src_path"] == str(versioned_template)
    assert answers["project_name"] == "demand-forecast" and answers["aws_region"] == REGION

    # A retry (CloudFormation resends, or the project is updated): nothing pushed, still deployed.
    events.clear()
    retry = new_seed(versioned_template, remote, tmp_path / "build-2")
    outcome = seed.run_seed(retry, lambda s: events.append("deploy"))
    assert "already seeded at" in outcome and events == ["deploy"]
    assert len(remote_log(remote)) == 1


def test_codecommit_repository_is_created_by_the_toolchain_before_the_push(versioned_template: Path,
                                                                           tmp_path: Path) -> None:
    remote = tmp_path / "codecommit.git"  # does not exist until the toolchain stack creates it

    def deploy(project: seed.Seed) -> None:
        if not remote.exists():
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)

    for attempt in ("build-1", "build-2"):
        project = new_seed(versioned_template, remote, tmp_path / attempt, git_provider="codecommit",
                           repository_id="demand-forecast")
        project.answers.pop("codeconnections_arn")
        seed.run_seed(project, deploy)
    assert remote_log(remote) == [f"Seed demand-forecast from the MLOps template {OLD_VERSION}"]


def test_seed_replaces_a_host_created_readme_and_keeps_its_history(versioned_template: Path, remote: Path,
                                                                    tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True, capture_output=True)
    (clone / "README.md").write_text("# demand-forecast\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "Initial commit")
    git(clone, "push", "-q", "origin", "HEAD:main")

    seed.run_seed(new_seed(versioned_template, remote, tmp_path / "build"), lambda s: None)
    assert remote_log(remote)[1] == "Initial commit"
    assert "Deploy from zero" in git(remote, "show", "main:README.md")


def test_seeded_project_updates_from_studio_on_a_branch_and_by_hand_from_a_clone(
        versioned_template: Path, remote: Path, tmp_path: Path) -> None:
    seed.run_seed(new_seed(versioned_template, remote, tmp_path / "build-1"), lambda s: None)
    readme = versioned_template / "template" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\nA note from the next template version.\n")
    git(versioned_template, "commit", "-q", "-am", "template change")
    git(versioned_template, "tag", NEW_VERSION)
    deployed_from: list[str] = []

    def deploy(project: seed.Seed) -> None:
        deployed_from.append(yaml.safe_load((project.workdir / ".copier-answers.yml").read_text())["_commit"])

    for attempt in ("build-2", "build-3"):  # the second run is a retry and must add nothing
        update = new_seed(versioned_template, remote, tmp_path / attempt)
        update.template_version = NEW_VERSION
        outcome = seed.run_seed(update, deploy)
        assert f"proposed the update on branch template-update/{NEW_VERSION}" in outcome
    assert deployed_from == [OLD_VERSION, OLD_VERSION]  # the toolchain follows main, not the proposal
    assert len(remote_log(remote)) == 1
    branch = f"template-update/{NEW_VERSION}"
    subject = git(remote, "log", "--format=%s", branch).splitlines()[0]
    assert subject.startswith(f"Update to the MLOps template {NEW_VERSION}")
    assert yaml.safe_load(git(remote, "show", f"{branch}:.copier-answers.yml"))["_commit"] == NEW_VERSION
    assert "A note from the next template version." in git(remote, "show", f"{branch}:README.md")

    # A team member's clone of main takes the same update by hand, as the generated README says.
    project = tmp_path / "team-clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(project)], check=True, capture_output=True)
    copier.run_update(str(project), vcs_ref=NEW_VERSION, defaults=True, overwrite=True, unsafe=True, quiet=True)
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == NEW_VERSION
    assert "A note from the next template version." in (project / "README.md").read_text()


def test_refused_answer_fails_the_seed_with_the_reason_and_pushes_nothing(versioned_template: Path, remote: Path,
                                                                         tmp_path: Path) -> None:
    with pytest.raises(seed.SeedError, match="not an e-mail address"):
        seed.run_seed(new_seed(versioned_template, remote, tmp_path / "build", notification_email="nobody"),
                      lambda s: pytest.fail("must not deploy"))
    assert not git(remote, "branch", "--list")


def test_push_failure_names_the_repository_and_the_fix(versioned_template: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repo.git"
    project = new_seed(versioned_template, missing, tmp_path / "build")
    with pytest.raises(seed.SeedError, match=r"no-such-repo\.git"):
        seed.run_seed(project, lambda s: None)


def test_deploy_targets_the_stack_the_generated_readme_names() -> None:
    calls: list[list[str]] = []
    project = seed.Seed(answers={"project_name": "demand-forecast"}, template_url="", template_version="",
                        repository_url="", workdir=Path("."))
    seed.deploy_toolchain(project, "arn:aws:iam::1:role/d", "bucket", "seed-uploads/p-1",
                          lambda command, **kw: calls.append(command) or subprocess.CompletedProcess(command, 0))
    command = calls[0]
    assert command[command.index("--stack-name") + 1] == "demand-forecast-toolchain"
    assert command[command.index("--role-arn") + 1] == "arn:aws:iam::1:role/d"
    assert "--no-fail-on-empty-changeset" in command  # a retry with nothing to change succeeds
    failing = lambda command, **kw: subprocess.CompletedProcess(command, 255)  # noqa: E731
    with pytest.raises(seed.SeedError, match="describe-stack-events --stack-name demand-forecast-toolchain"):
        seed.deploy_toolchain(project, "r", "b", "p", failing)


def test_seed_without_a_push_token_fails_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"SEED_ANSWERS": json.dumps(product_answers("small")), "GIT_TOKEN_SECRET_ARN": "none"}
    assert seed.main(env, run=lambda *a, **k: pytest.fail("nothing may run")) == 1
    assert "--git-token-secret-arn" in capsys.readouterr().err


def test_push_token_reaches_git_through_the_environment_only() -> None:
    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        assert command[:3] == ["aws", "secretsmanager", "get-secret-value"]
        return subprocess.CompletedProcess(command, 0, stdout="s3cr3t\n", stderr="")

    config, env = seed.push_credentials("gitlab", "arn:aws:secretsmanager:eu-west-1:1:secret:t", run)
    assert env == {"SEED_GIT_TOKEN": "s3cr3t"}
    assert "s3cr3t" not in " ".join(config) and "username=oauth2" in config[0]
    assert seed.repository_url("gitlab", "group/sub/x", REGION) == "https://gitlab.com/group/sub/x.git"


# ------------------------------------------------------------------ seed trigger (Lambda) -------

@pytest.fixture
def responses(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    sent: list[dict] = []

    def urlopen(request: urllib.request.Request, timeout: int) -> io.BytesIO:
        assert request.get_method() == "PUT" and request.full_url == "https://cfn-response.example/x"
        sent.append(json.loads(request.data))
        return io.BytesIO()

    monkeypatch.setattr(seed_trigger.urllib.request, "urlopen", urlopen)
    return sent


@pytest.fixture
def codebuild(monkeypatch: pytest.MonkeyPatch):
    client = boto3.client("codebuild", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(seed_trigger.boto3, "client", lambda name: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


CFN_EVENT = {"RequestType": "Create", "ResponseURL": "https://cfn-response.example/x", "StackId": "stack",
             "RequestId": "req-1", "LogicalResourceId": "Seed",
             "ResourceProperties": {"SeedProject": "sagemaker-p-1-seed", "TemplateVersion": "v1.0.0",
                                    "Answers": {"project_name": "demand-forecast"}}}


def build_event(status: str) -> dict:
    return {"source": "aws.codebuild", "detail": {"build-id": "sagemaker-p-1-seed:42", "build-status": status}}


def build(request: dict | None) -> dict:
    variables = [{"name": "SEED_ANSWERS", "value": "{}"}]
    if request is not None:
        variables.append({"name": seed_trigger.RESPONSE_VARIABLE, "value": json.dumps(request)})
    return {"builds": [{"id": "sagemaker-p-1-seed:42", "environment": {
        "type": "LINUX_CONTAINER", "image": "i", "computeType": "BUILD_GENERAL1_SMALL",
        "environmentVariables": variables},
        "phases": [{"phaseType": "INSTALL", "phaseStatus": "SUCCEEDED"},
                   {"phaseType": "BUILD", "phaseStatus": "FAILED"}],
        "logs": {"groupName": "/aws/codebuild/sagemaker-p-1-seed", "streamName": "abc-123",
                 "deepLink": "https://console.aws.amazon.com/cloudwatch/logs"}}]}


def test_trigger_starts_the_build_and_answers_only_when_it_ends(codebuild: Stubber, responses: list[dict]) -> None:
    codebuild.add_response("start_build", {"build": {"id": "sagemaker-p-1-seed:42"}},
                           {"projectName": "sagemaker-p-1-seed", "environmentVariablesOverride": ANY})
    seed_trigger.handler(CFN_EVENT)
    assert responses == []

    request = {"ResponseURL": CFN_EVENT["ResponseURL"], "StackId": "stack", "RequestId": "req-1",
               "LogicalResourceId": "Seed", "PhysicalResourceId": "copier-seed-Seed", "TemplateVersion": "v1.0.0"}
    codebuild.add_response("batch_get_builds", build(request), {"ids": ["sagemaker-p-1-seed:42"]})
    seed_trigger.handler(build_event("SUCCEEDED"))
    assert responses[0]["Status"] == "SUCCESS" and responses[0]["Data"] == {"SeededVersion": "v1.0.0"}
    assert responses[0]["PhysicalResourceId"] == "copier-seed-Seed" and responses[0]["RequestId"] == "req-1"


def test_failed_build_is_reported_with_its_log_location(codebuild: Stubber, responses: list[dict]) -> None:
    request = {**{k: CFN_EVENT[k] for k in ("ResponseURL", "StackId", "RequestId", "LogicalResourceId")},
               "PhysicalResourceId": "copier-seed-Seed", "TemplateVersion": "v1.0.0"}
    codebuild.add_response("batch_get_builds", build(request), {"ids": ["sagemaker-p-1-seed:42"]})
    seed_trigger.handler(build_event("FAILED"))
    reason = responses[0]["Reason"]
    assert responses[0]["Status"] == "FAILED"
    assert "/aws/codebuild/sagemaker-p-1-seed" in reason and "abc-123" in reason and "phase BUILD" in reason


def test_build_started_by_hand_answers_nothing(codebuild: Stubber, responses: list[dict]) -> None:
    codebuild.add_response("batch_get_builds", build(None), {"ids": ["sagemaker-p-1-seed:42"]})
    seed_trigger.handler(build_event("SUCCEEDED"))
    assert responses == []


def test_build_that_cannot_start_fails_the_stack_at_once(codebuild: Stubber, responses: list[dict]) -> None:
    codebuild.add_client_error("start_build", "AccessDeniedException", "not authorized to perform codebuild:StartBuild")
    seed_trigger.handler(CFN_EVENT)
    assert responses[0]["Status"] == "FAILED" and "codebuild:StartBuild" in responses[0]["Reason"]


def test_delete_keeps_the_repository_and_starts_no_build(codebuild: Stubber, responses: list[dict]) -> None:
    seed_trigger.handler({**CFN_EVENT, "RequestType": "Delete", "PhysicalResourceId": "copier-seed-Seed"})
    assert responses[0]["Status"] == "SUCCESS" and responses[0]["PhysicalResourceId"] == "copier-seed-Seed"


# ------------------------------------------------------------------ publish ----------------------
# moto serves S3 and IAM; it has no Service Catalog artifacts and skips ServiceCatalog resources in
# CloudFormation, so those two clients are botocore Stubbers that also fail on any unexpected call.

STACK, BUCKET = "mlops-catalog", "mlops-catalog-releasebucket-1a2b3c"
LAUNCH_ROLE, DEPLOYER_ROLE = f"sagemaker-mlops-launch-{REGION}", f"sagemaker-mlops-toolchain-deployer-{REGION}"
GIT_URL = "https://github.com/my-org/mlops-template.git"


class Session:
    region_name = REGION

    def __init__(self, cloudformation: Any, servicecatalog: Any) -> None:
        self.stubbed = {"cloudformation": cloudformation, "servicecatalog": servicecatalog}

    def client(self, name: str) -> Any:
        return self.stubbed.get(name) or boto3.client(name, region_name=REGION)


@pytest.fixture
def aws():
    """moto's S3 and IAM with the portfolio stack's bucket and roles, and stubbed CloudFormation and
    Service Catalog clients."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        iam = boto3.client("iam", region_name=REGION)
        for role in (LAUNCH_ROLE, DEPLOYER_ROLE):
            iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        servicecatalog = boto3.client("servicecatalog", region_name=REGION)
        with Stubber(cloudformation) as cfn, Stubber(servicecatalog) as sc:
            yield {"s3": s3, "iam": iam, "cfn": cfn, "sc": sc, "session": Session(cloudformation, servicecatalog)}
            cfn.assert_no_pending_responses()
            sc.assert_no_pending_responses()


def stack(product_id: str = "prod-abc123", status: str = "CREATE_COMPLETE") -> dict:
    outputs = {"ReleaseBucket": BUCKET, "PortfolioId": "port-1", "ProductId": product_id,
               "LaunchRoleName": LAUNCH_ROLE, "ToolchainDeployerRoleName": DEPLOYER_ROLE,
               "PermissionsBoundaryName": f"sagemaker-mlops-seed-boundary-{REGION}",
               "GitTokenSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:push-token-AbCdEf"}
    parameters = {"StudioExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/studio", "GitTokenSecretArn": "x",
                  "ProductTemplateUrl": "none", "ProductVersion": "none", "Owner": "ML platform team"}
    return {"Stacks": [{"StackName": STACK, "CreationTime": datetime(2026, 12, 1, tzinfo=UTC), "StackStatus": status,
                        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
                        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]}]}


def artifacts(*names: str) -> dict:
    return {"ProvisioningArtifactDetails": [{"Id": f"pa-{n}", "Name": n} for n in names]}


def object_versions(s3: Any) -> int:
    return len(s3.list_object_versions(Bucket=BUCKET).get("Versions", []))


def run_publish(aws: dict, version: str, capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str]:
    code = publish.main(["--stack", STACK, "--version", version, "--template-git-url", GIT_URL], aws["session"])
    return code, (capsys.readouterr().err if capsys else "")


def test_first_publish_gives_the_stack_its_product_and_serves_the_s3_route(aws: dict, tmp_path: Path) -> None:
    aws["cfn"].add_response("describe_stacks", stack(product_id="none"), {"StackName": STACK})
    aws["cfn"].add_response("describe_stacks", stack(product_id="none"), {"StackName": STACK})
    url = f"https://{BUCKET}.s3.{REGION}.amazonaws.com/releases/v1.0.0/product.yml"
    aws["cfn"].add_response("update_stack", {"StackId": "id"}, {
        "StackName": STACK, "UsePreviousTemplate": True, "Capabilities": ["CAPABILITY_NAMED_IAM"],
        "Parameters": [{"ParameterKey": "StudioExecutionRoleArn", "UsePreviousValue": True},
                       {"ParameterKey": "GitTokenSecretArn", "UsePreviousValue": True},
                       {"ParameterKey": "ProductTemplateUrl", "ParameterValue": url},
                       {"ParameterKey": "ProductVersion", "ParameterValue": "v1.0.0"},
                       {"ParameterKey": "Owner", "UsePreviousValue": True}]})
    aws["cfn"].add_response("describe_stacks", stack(status="UPDATE_COMPLETE"), {"StackName": STACK})
    assert run_publish(aws, "v1.0.0")[0] == 0

    s3 = aws["s3"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"releases/v1.0.0/{n}" for n in ("product.yml", "seed.py", "requirements-seed.txt",
                                            "seed_trigger.zip")} | {publish.STUDIO_TEMPLATE_KEY} == keys
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=publish.STUDIO_TEMPLATE_KEY)["TagSet"]
    assert {"Key": "sagemaker:studio-visibility", "Value": "true"} in tags
    rules = s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"]
    assert any(publish.STUDIO_ORIGIN in r["AllowedOrigins"] for r in rules)

    # The published product template carries this release's coordinates and is still lint clean.
    released = tmp_path / "product.yml"
    released.write_bytes(s3.get_object(Bucket=BUCKET, Key="releases/v1.0.0/product.yml")["Body"].read())
    mapping = decode(str(released))[0]["Mappings"]["Release"]["Template"]
    assert mapping["Version"] == "v1.0.0" and mapping["GitUrl"] == GIT_URL and mapping["AssetsBucket"] == BUCKET
    assert mapping["AssetsPrefix"] == "releases/v1.0.0" and mapping["GitTokenSecretArn"].endswith("push-token-AbCdEf")
    lint = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(released)], capture_output=True,
                          text=True)
    assert lint.returncode == 0, lint.stdout


def test_publishing_again_changes_nothing_and_a_new_version_becomes_a_new_artifact(aws: dict) -> None:
    cfn, sc, s3 = aws["cfn"], aws["sc"], aws["s3"]
    cfn.add_response("describe_stacks", stack(), {"StackName": STACK})
    sc.add_response("list_provisioning_artifacts", artifacts("v1.0.0"), {"ProductId": "prod-abc123"})
    assert run_publish(aws, "v1.0.0")[0] == 0
    versions, cors = object_versions(s3), s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"]

    cfn.add_response("describe_stacks", stack(), {"StackName": STACK})
    sc.add_response("list_provisioning_artifacts", artifacts("v1.0.0"), {"ProductId": "prod-abc123"})
    assert run_publish(aws, "v1.0.0")[0] == 0  # a create_provisioning_artifact call would fail the Stubber
    assert object_versions(s3) == versions and s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"] == cors

    cfn.add_response("describe_stacks", stack(), {"StackName": STACK})
    sc.add_response("list_provisioning_artifacts", artifacts("v1.0.0"), {"ProductId": "prod-abc123"})
    sc.add_response("create_provisioning_artifact", {}, {
        "ProductId": "prod-abc123", "IdempotencyToken": "prod-abc123-v1-1-0",
        "Parameters": {"Name": "v1.1.0", "Description": "MLOps template v1.1.0", "Type": "CLOUD_FORMATION_TEMPLATE",
                       "Info": {"LoadTemplateFromURL":
                                f"https://{BUCKET}.s3.{REGION}.amazonaws.com/releases/v1.1.0/product.yml"}}})
    assert run_publish(aws, "v1.1.0")[0] == 0
    head = s3.head_object(Bucket=BUCKET, Key=publish.STUDIO_TEMPLATE_KEY)
    assert head["Metadata"]["template-version"] == "v1.1.0"

    # A backport published later does not take the S3 route's single slot from the newer version.
    cfn.add_response("describe_stacks", stack(), {"StackName": STACK})
    sc.add_response("list_provisioning_artifacts", artifacts("v1.0.0", "v1.1.0", "v1.0.1"),
                    {"ProductId": "prod-abc123"})
    assert run_publish(aws, "v1.0.1")[0] == 0
    assert s3.head_object(Bucket=BUCKET, Key=publish.STUDIO_TEMPLATE_KEY)["Metadata"]["template-version"] == "v1.1.0"


def test_a_published_version_is_immutable(aws: dict, capsys: pytest.CaptureFixture[str]) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key="releases/v1.0.0/seed.py", Body=b"other", Metadata={"sha256": "x"})
    versions = object_versions(aws["s3"])
    aws["cfn"].add_response("describe_stacks", stack(), {"StackName": STACK})
    code, err = run_publish(aws, "v1.0.0", capsys)
    assert code == 1 and "releases/v1.0.0/seed.py" in err and "tag a new version" in err
    assert object_versions(aws["s3"]) == versions


def test_missing_bucket_is_named_with_its_fix(aws: dict, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = aws["s3"]
    s3.delete_bucket(Bucket=BUCKET)
    aws["cfn"].add_response("describe_stacks", stack(), {"StackName": STACK})
    code, err = run_publish(aws, "v1.0.0", capsys)
    assert code == 1
    assert f"Bucket {BUCKET} (output ReleaseBucket of stack {STACK})" in err and "redeploy the stack" in err


def test_missing_role_is_named_with_its_fix(aws: dict, capsys: pytest.CaptureFixture[str]) -> None:
    aws["iam"].delete_role(RoleName=DEPLOYER_ROLE)
    aws["cfn"].add_response("describe_stacks", stack(), {"StackName": STACK})
    code, err = run_publish(aws, "v1.0.0", capsys)
    assert code == 1
    assert f"Role {DEPLOYER_ROLE} (output ToolchainDeployerRoleName of stack {STACK}) does not exist" in err
    assert not aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents")


def test_missing_stack_says_how_to_deploy_it(aws: dict, capsys: pytest.CaptureFixture[str]) -> None:
    aws["cfn"].add_client_error("describe_stacks", "ValidationError", f"Stack with id {STACK} does not exist")
    code, err = run_publish(aws, "v1.0.0", capsys)
    assert code == 1 and "--template-file catalog/portfolio.yml" in err


def test_product_stack_that_fails_to_update_is_reported_with_its_events(
        aws: dict, capsys: pytest.CaptureFixture[str]) -> None:
    aws["cfn"].add_response("describe_stacks", stack(product_id="none"), {"StackName": STACK})
    aws["cfn"].add_response("describe_stacks", stack(product_id="none"), {"StackName": STACK})
    aws["cfn"].add_response("update_stack", {"StackId": "id"})
    aws["cfn"].add_response("describe_stacks", stack(status="UPDATE_ROLLBACK_COMPLETE"), {"StackName": STACK})
    code, err = run_publish(aws, "v1.0.0", capsys)
    assert code == 1 and "UPDATE_ROLLBACK_COMPLETE" in err and f"describe-stack-events --stack-name {STACK}" in err


def test_unexpected_aws_refusal_is_one_line_naming_the_call(aws: dict, capsys: pytest.CaptureFixture[str]) -> None:
    aws["cfn"].add_client_error("describe_stacks", "AccessDenied", "User x is not authorized to DescribeStacks")
    code, err = run_publish(aws, "v1.0.0", capsys)
    assert code == 1 and "AWS refused DescribeStacks: User x is not authorized" in err


def test_missing_credentials_say_how_to_sign_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    for variable in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(variable, str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code = publish.main(["--stack", STACK, "--version", "v1.0.0", "--template-git-url", GIT_URL,
                         "--region", REGION])
    assert code == 1 and "no AWS credentials found" in capsys.readouterr().err


def test_version_must_be_pep_440(aws: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_publish(aws, "latest", capsys)
    assert code == 1 and "PEP 440" in err


def test_release_mapping_keys_must_exist_once() -> None:
    with pytest.raises(publish.PublishError, match="NoSuchKey found 0 times"):
        publish.release_template((CATALOG / "product.yml").read_text(), {"NoSuchKey": "x"})


def test_lambda_package_is_byte_identical_across_runs() -> None:
    assert publish.trigger_zip() == publish.trigger_zip()

"""infra/monitoring.yml and its wiring: the deploy job's parameters, the scheduled job request,
the roles against the calls the job and SageMaker make, the alarms and the retraining trigger."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import numpy as np
import pandas as pd
import pytest
import yaml
from botocore.validate import validate_parameters
from moto import mock_aws
from test_cloudformation import (
    ACCOUNT,
    BUCKET,
    ECR_PULL,
    GRANT_FOR_AWS_RESOURCE,
    INFRA,
    MULTI_ACCOUNT,
    PARTITION,
    PASSED_TO_SAGEMAKER,
    REPO_ROOT,
    IamEnforcer,
    Need,
    Role,
    _matches,
    _stand_in,
    cli_environment,
    ecr_repository,
    kms_key_arn,
    load,
    project_name,
    region,
    register_approved_package,
    resolve,
    resources,
    role_arn,
    role_policy,
    run_cli,
    s3_object,
    sagemaker_arn,
)

from ml_pipeline import drift
from ml_pipeline.config import ConfigError, load_config
from ml_pipeline.monitoring import (
    Deployment,
    load_monitoring_config,
    parse_monitoring_config,
    stack_parameters,
)

MODEL_MONITOR = INFRA / "model-monitor.yml"
CAPTURE_BUCKET = "capture-bucket"
EXECUTION_ID = "d32c5kddcf5bb8c3"
SCHEDULED_TIME = "2026-12-04T19:00:00Z"
SKLEARN_IMAGE = (
    f"141502667606.dkr.ecr.{region()}.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
)
MONITOR_IMAGE = f"468650794304.dkr.ecr.{region()}.amazonaws.com/sagemaker-model-monitor-analyzer"
FEATURES = ["f_a", "f_b"]


@pytest.fixture(scope="module")
def monitoring() -> dict:
    return load(INFRA / "monitoring.yml")


def monitoring_config():
    problem_type = load_config(REPO_ROOT / "config" / "pipeline.yml").problem_type
    return load_monitoring_config(REPO_ROOT / "config" / "monitoring.yml", problem_type)


def project_problem_type() -> str:
    return load_config(REPO_ROOT / "config" / "pipeline.yml").problem_type


def baseline_document(problem_type: str | None = None) -> dict:
    rng = np.random.RandomState(0)
    # The model was trained on FEATURES and on every column config/monitoring.yml watches.
    configured = monitoring_config()
    columns = dict.fromkeys([*FEATURES, *configured.features, *configured.segment_attributes])
    features = pd.DataFrame({name: rng.normal(size=300) for name in columns})
    return drift.build_baseline(
        features,
        features["f_a"].to_numpy(),
        problem_type or project_problem_type(),
        SKLEARN_IMAGE,
        MONITOR_IMAGE,
    )


def baseline_folder(project: str) -> str:
    return f"s3://{BUCKET}/{project}-training/exec1/Baseline/baseline"


def deployment(stage: str, cross_account: bool = False) -> Deployment:
    return Deployment(
        project_name=project_name(),
        stage=stage,
        package_arn=sagemaker_arn(f"model-package/{project_name()}-models/3"),
        capture_bucket=CAPTURE_BUCKET,
        kms_key_arn=kms_key_arn(),
        baseline_kms_key_arn=kms_key_arn(),
        notification_email="team@example.com",
        cross_account=cross_account,
    )


def parameters_for(stage: str, **changes: str) -> dict[str, str]:
    config = monitoring_config()
    baseline = baseline_document(load_config(REPO_ROOT / "config" / "pipeline.yml").problem_type)
    found = stack_parameters(config, deployment(stage), baseline_folder(project_name()), baseline)
    return {**found, **changes}


def choose(value: Any, conditions: dict[str, bool]) -> Any:
    """Evaluate Fn::If for the given conditions and drop AWS::NoValue, as CloudFormation does."""
    if isinstance(value, list):
        chosen = [choose(v, conditions) for v in value]
        return [v for v in chosen if v != {"Ref": "AWS::NoValue"}]
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, yes, no = value["Fn::If"]
            return choose(yes if conditions[name] else no, conditions)
        return {
            k: choose(v, conditions)
            for k, v in value.items()
            if choose(v, conditions) != {"Ref": "AWS::NoValue"}
        }
    return value


def conditions_for(parameters: dict[str, str]) -> dict[str, bool]:
    subnets = parameters.get("SubnetIds", "")
    return {
        "HasPermissionsBoundary": bool(parameters.get("PermissionsBoundaryPolicy")),
        "HasVpc": bool(subnets),
        "HasGroundTruth": parameters["QualityMonitoring"] == "enabled",
        "HasSegments": bool(parameters["SegmentAttributes"]),
        "QualityIsMaximum": parameters["QualityThresholdIs"] == "maximum",
        "RetrainsHere": parameters["TrainingPipelineArn"] != "none",
        "RetrainsViaEventBus": parameters["RetrainingEventBusArn"] != "none",
        "Retrains": "none"
        not in (parameters["TrainingPipelineArn"], parameters["RetrainingEventBusArn"])
        or parameters["TrainingPipelineArn"] != parameters["RetrainingEventBusArn"],
    }


def deployed(template: dict, parameters: dict[str, str]) -> dict:
    """The template as CloudFormation sees it with `parameters`: conditions applied."""
    conditions = conditions_for(parameters)
    lists = {
        name: [v for v in parameters.get(name, "").split(",") if v]
        for name in ("SubnetIds", "SecurityGroupIds")
    }

    def with_lists(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Ref"} and value["Ref"] in lists:
                return lists[value["Ref"]]
            return {k: with_lists(v) for k, v in value.items()}
        return [with_lists(v) for v in value] if isinstance(value, list) else value

    template = with_lists(template)
    chosen = {
        logical_id: choose(resource, conditions)
        for logical_id, resource in template["Resources"].items()
        if conditions.get(resource.get("Condition", ""), True)
    }
    return {**template, "Resources": chosen}


def schedule_request(template: dict, parameters: dict[str, str]) -> dict:
    """The CreateProcessingJob request the schedule sends, context attributes filled in."""
    stack = deployed(template, parameters)
    (schedule,) = resources(stack, "AWS::Scheduler::Schedule").values()
    variables = {k: v for k, v in parameters.items() if k not in ("SubnetIds", "SecurityGroupIds")}
    text = resolve(schedule["Properties"]["Target"]["Input"], stack, variables)
    text = text.replace("<aws.scheduler.execution-id>", EXECUTION_ID)
    text = text.replace("<aws.scheduler.scheduled-time>", SCHEDULED_TIME)
    return json.loads(text.replace("<MonitoringRole.Arn>", role_arn("MonitoringRole")))


def monitoring_role(template: dict, parameters: dict[str, str], logical_id: str):
    stack = deployed(template, parameters)
    variables = {k: v for k, v in parameters.items() if k != "ProjectName"}
    return role_policy(stack, logical_id, parameters["ProjectName"], **variables)


# --- the deploy job's parameters ------------------------------------------------------------------


def test_shipped_monitoring_config_is_valid():
    config = monitoring_config()
    assert config.schedule_minutes >= 5
    assert config.features == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedule_minutes": 1}, "schedule_minutes must be an integer from 5"),
        ({"drift": {"psi_threshold": "high"}}, "drift.psi_threshold must be a number"),
        ({"drift": {"features": ["a,b"]}}, "drift.features must be a list of column names"),
        ({"drift": {"features": ["x" * 200, "y" * 100]}}, "must fit 256 characters"),
        ({"quality": {"metric": "mape"}}, "quality.metric must be one of"),
        ({"retraining": {"enabled": "yes"}}, "retraining.enabled must be true or false"),
        ({"alarms": None}, "missing section alarms"),
    ],
)
def test_bad_monitoring_settings_name_the_setting(change, message):
    raw = yaml.safe_load((REPO_ROOT / "config" / "monitoring.yml").read_text())
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    problem_type = load_config(REPO_ROOT / "config" / "pipeline.yml").problem_type
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_monitoring_config(raw, problem_type)


def test_parameters_are_the_stacks_contract(monitoring):
    declared = monitoring["Parameters"]
    written = parameters_for("prod")
    required = {name for name, spec in declared.items() if "Default" not in spec}
    assert required <= set(written) == set(declared)
    # The organisation-wide settings (boundary, VPC) stay empty unless the deploy job has them.
    for name in ("PermissionsBoundaryPolicy", "SubnetIds", "SecurityGroupIds"):
        assert written[name] == "", name
    for name, value in written.items():
        pattern = declared[name].get("AllowedPattern")
        assert pattern is None or re.fullmatch(pattern, value), (name, value)
        allowed = declared[name].get("AllowedValues")
        assert allowed is None or value in allowed, (name, value)


def test_only_prod_retrains_and_across_accounts_through_the_event_bus():
    config = monitoring_config()
    baseline, folder = baseline_document(), baseline_folder(project_name())
    enabled = config.__class__(**{**config.__dict__, "retraining_enabled": True})
    staging = stack_parameters(enabled, deployment("staging"), folder, baseline)
    assert (staging["TrainingPipelineArn"], staging["RetrainingEventBusArn"]) == ("none", "none")
    prod = stack_parameters(enabled, deployment("prod"), folder, baseline)
    pipeline = sagemaker_arn(f"pipeline/{project_name()}-training")
    assert (prod["TrainingPipelineArn"], prod["RetrainingEventBusArn"]) == (pipeline, "none")
    across = stack_parameters(enabled, deployment("prod", cross_account=True), folder, baseline)
    bus = f"arn:{PARTITION}:events:{region()}:{ACCOUNT}:event-bus/default"
    assert (across["TrainingPipelineArn"], across["RetrainingEventBusArn"]) == ("none", bus)
    disabled = config.__class__(**{**config.__dict__, "retraining_enabled": False})
    off = stack_parameters(disabled, deployment("prod"), folder, baseline)
    assert (off["TrainingPipelineArn"], off["RetrainingEventBusArn"]) == ("none", "none")


def test_a_central_registry_still_retrains_in_the_tooling_account_inside_the_vpc():
    """The large layout: the package is the governance account's, the training pipeline and
    the baseline key are the tooling account's; the job runs in the stage's private subnets."""
    config = monitoring_config()
    enabled = config.__class__(**{**config.__dict__, "retraining_enabled": True})
    central = Deployment(
        **{
            **deployment("prod", cross_account=True).__dict__,
            "package_arn": f"arn:{PARTITION}:sagemaker:{region()}:555555555555:"
            f"model-package/{project_name().lower()}-models/3",
            "subnet_ids": ("subnet-0a", "subnet-0b"),
            "security_group_ids": ("sg-0c",),
            "permissions_boundary_policy": "org/WorkloadBoundary",
        }
    )
    found = stack_parameters(enabled, central, baseline_folder(project_name()), baseline_document())
    bus = f"arn:{PARTITION}:events:{region()}:{ACCOUNT}:event-bus/default"
    assert found["RetrainingEventBusArn"] == bus
    assert found["SubnetIds"] == "subnet-0a,subnet-0b"
    assert found["SecurityGroupIds"] == "sg-0c"
    assert found["PermissionsBoundaryPolicy"] == "org/WorkloadBoundary"


def test_features_the_model_was_not_trained_on_are_refused():
    config = monitoring_config()
    wrong = config.__class__(**{**config.__dict__, "segment_attributes": ("f_z",)})
    with pytest.raises(ConfigError, match=r"not trained on: \['f_z'\]"):
        stack_parameters(wrong, deployment("prod"), "s3://b/k", baseline_document())


def register_package(project: str, folder: str) -> str:
    return register_approved_package(
        project,
        DriftCheckBaselines={
            "ModelDataQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"{folder}/baseline.json",
                },
                "Constraints": {
                    "ContentType": "application/json",
                    "S3Uri": f"{folder}/constraints.json",
                },
            }
        },
    )


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_deploy_role_writes_the_parameters_of_the_package_it_deploys(
    stage, monitoring, monkeypatch, tmp_path
):
    toolchain = load(INFRA / "toolchain.yml")
    project = project_name()
    folder = baseline_folder(project)
    with mock_aws():
        cli_environment(monkeypatch, project)
        s3 = boto3.client("s3", region_name=region())
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": region()})
        key = folder.removeprefix(f"s3://{BUCKET}/") + "/baseline.json"
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(baseline_document()))
        package = register_package(project, folder)
        for name, value in {
            "STAGE": stage,
            "MODEL_PACKAGE_ARN": package,
            "DATA_CAPTURE_BUCKET": CAPTURE_BUCKET,
            "ENDPOINT_KMS_KEY_ARN": kms_key_arn(),
            "NOTIFICATION_EMAIL": "team@example.com",
            "MONITORING_CONFIG": str(REPO_ROOT / "config" / "monitoring.yml"),
        }.items():
            monkeypatch.setenv(name, value)
        # The registry's account is moto's one account here, whichever account holds it (the
        # large layout's governance account).
        registry = (
            {"GovernanceAccountId": ACCOUNT}
            if "GovernanceAccountId" in toolchain["Parameters"]
            else {}
        )
        enforcer = IamEnforcer(role_policy(toolchain, "DeployRole", project, **registry))
        enforcer.install(monkeypatch)
        output = tmp_path / "monitoring-params.json"
        extra = (
            ["--model-monitor-output", str(tmp_path / "mm.json")] if MODEL_MONITOR.is_file() else []
        )
        outcome = run_cli(enforcer, ["monitoring-params", "--output", str(output), *extra])
    assert outcome == "exit 0", enforcer.denied
    written = {p["ParameterKey"]: p["ParameterValue"] for p in json.loads(output.read_text())}
    assert written["BaselineS3Uri"] == folder
    assert written["ModelPackageArn"] == package
    assert written["MonitoringImageUri"] == SKLEARN_IMAGE
    assert written["Stage"] == stage
    assert {n.action for n in enforcer.checked} == {
        "sagemaker:DescribeModelPackage",
        "s3:GetObject",
        "kms:Decrypt",
    }
    if MODEL_MONITOR.is_file():
        extra_written = json.loads((tmp_path / "mm.json").read_text())
        declared = load(MODEL_MONITOR)["Parameters"]
        required = {name for name, spec in declared.items() if "Default" not in spec}
        assert required <= {p["ParameterKey"] for p in extra_written} <= set(declared)


def test_deploy_job_deploys_monitoring_after_the_endpoint_with_the_written_parameters():
    buildspec = yaml.safe_load((REPO_ROOT / "buildspecs" / "deploy.yml").read_text())
    script = "\n".join(buildspec["phases"]["build"]["commands"])
    written = re.search(r"monitoring-params [^\n]*\n?[^\n]*--output (\S+)", script)[1]
    endpoint = script.index("--template-file infra/endpoint.yml")
    stack = script.index("--template-file infra/monitoring.yml")
    assert endpoint < stack
    deploy = script[stack:].split("--tags")[0]
    assert f"--parameter-overrides file://{written}" in deploy
    assert "CAPABILITY_NAMED_IAM" in deploy
    assert '--stack-name "$PROJECT_NAME-monitoring-$STAGE"' in deploy


# --- the scheduled job ----------------------------------------------------------------------------


@pytest.mark.parametrize("vpc", [False, True], ids=["no-vpc", "vpc"])
def test_schedule_sends_a_valid_processing_job_request(monitoring, vpc):
    network = {"SubnetIds": "subnet-1,subnet-2", "SecurityGroupIds": "sg-1"} if vpc else {}
    request = schedule_request(monitoring, parameters_for("prod", **network))
    shape = (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .operation_model("CreateProcessingJob")
        .input_shape
    )
    validate_parameters(request, shape)  # raises on unknown keys, missing fields, wrong types
    name = request["ProcessingJobName"]
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name)
    # Room for an execution id more than twice as long as the documented 16 characters.
    assert len(name) - len(EXECUTION_ID) <= 63 - 2 * len(EXECUTION_ID)
    assert all(len(a) <= 256 for a in request["AppSpecification"]["ContainerArguments"])
    vpc_config = request["NetworkConfig"].get("VpcConfig")
    if vpc:
        assert vpc_config == {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}
    else:
        assert vpc_config is None
    assert request["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
    assert request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == kms_key_arn()
    assert {"Key": "Project", "Value": project_name()} in request["Tags"]


def job_arguments(request: dict, baseline_path: Path) -> list[str]:
    """The job's command line as the container runs it, baseline downloaded to baseline_path."""
    entrypoint = request["AppSpecification"]["ContainerEntrypoint"]
    (baseline_input,) = request["ProcessingInputs"]
    local = baseline_input["S3Input"]["LocalPath"]
    assert entrypoint == ["python3", f"{local}/{drift.SCRIPT_FILE}"]
    arguments = request["AppSpecification"]["ContainerArguments"]
    return [a.replace(f"{local}/", f"{baseline_path}/") for a in arguments]


def test_job_reads_the_capture_of_its_endpoint_for_the_scheduled_window(monitoring, tmp_path):
    request = schedule_request(monitoring, parameters_for("prod"))
    args = drift.parse_args(job_arguments(request, tmp_path))
    deploy = (REPO_ROOT / "buildspecs" / "deploy.yml").read_text()
    capture = re.search(r'DataCaptureS3Uri="([^"]+)"', deploy)[1]
    capture = capture.replace("$DATA_CAPTURE_BUCKET", CAPTURE_BUCKET).replace("$STAGE", "prod")
    endpoint = f"{project_name()}-prod"
    assert args.capture_uri == f"{capture}/{endpoint}/AllTraffic"
    assert args.endpoint_name == endpoint
    assert args.window_end == SCHEDULED_TIME
    assert args.window_minutes == monitoring_config().schedule_minutes
    assert args.baseline == tmp_path / drift.BASELINE_FILE
    assert request["ProcessingInputs"][0]["S3Input"]["S3Uri"] == baseline_folder(project_name())


def test_scheduler_role_starts_only_project_jobs(monitoring):
    parameters = parameters_for("prod")
    request = schedule_request(monitoring, parameters)
    role = monitoring_role(monitoring, parameters, "SchedulerRole")
    job = sagemaker_arn(f"processing-job/{request['ProcessingJobName']}")
    tagged = (("aws:RequestTag/Project", project_name()),)
    needs = [
        Need("sagemaker:CreateProcessingJob", job, tagged),
        Need("sagemaker:AddTags", job, tagged),
        Need("iam:PassRole", request["RoleArn"], PASSED_TO_SAGEMAKER),
        Need("kms:CreateGrant", kms_key_arn(), GRANT_FOR_AWS_RESOURCE),
    ]
    assert role.missing(needs) == []
    assert not role.allows(Need("sagemaker:CreateProcessingJob", job, (("x", "y"),)))
    other_job = sagemaker_arn("processing-job/pipelines-abc-preprocess")
    assert not role.allows(Need("sagemaker:CreateProcessingJob", other_job, tagged))


def test_monitoring_role_runs_the_job_sagemaker_starts(monitoring):
    parameters = parameters_for("prod")
    request = schedule_request(monitoring, parameters)
    role = monitoring_role(monitoring, parameters, "MonitoringRole")
    folder = baseline_folder(project_name()).removeprefix("s3://")
    logs = f"arn:{PARTITION}:logs:{region()}:{ACCOUNT}:log-group:/aws/sagemaker/ProcessingJobs"
    needs = [
        Need("s3:ListBucket", f"arn:{PARTITION}:s3:::{BUCKET}"),
        Need("s3:GetObject", s3_object(f"{folder}/baseline.json")),
        Need("s3:GetObject", s3_object(f"{folder}/drift.py")),
        Need("kms:Decrypt", parameters["BaselineKmsKeyArn"]),
        Need("kms:CreateGrant", kms_key_arn(), GRANT_FOR_AWS_RESOURCE),
        Need("ecr:GetAuthorizationToken", "*"),
        Need("logs:CreateLogStream", f"{logs}:log-stream:{request['ProcessingJobName']}/algo-1"),
        *(Need(a, ecr_repository(request["AppSpecification"]["ImageUri"])) for a in ECR_PULL),
    ]
    assert role.missing(needs) == []
    # The baseline of another project (or the training data) stays closed.
    assert not role.allows(Need("s3:GetObject", s3_object(f"{BUCKET}/input/sample.csv")))


def test_monitoring_role_can_do_what_the_job_does(monitoring, monkeypatch, tmp_path):
    parameters = parameters_for("prod", QualityMonitoring="enabled")
    request = schedule_request(monitoring, parameters)
    (tmp_path / drift.BASELINE_FILE).write_text(json.dumps(baseline_document()))
    args = drift.parse_args(job_arguments(request, tmp_path))
    assert args.ground_truth_uri
    with mock_aws():
        s3 = boto3.client("s3", region_name=region())
        s3.create_bucket(
            Bucket=CAPTURE_BUCKET, CreateBucketConfiguration={"LocationConstraint": region()}
        )
        enforcer = IamEnforcer(monitoring_role(monitoring, parameters, "MonitoringRole"))
        enforcer.install(monkeypatch)
        monkeypatch.setenv("AWS_DEFAULT_REGION", region())
        report = drift.run_monitor(args)
    assert enforcer.denied == []
    assert report["status"] == "no data"
    assert {n.action for n in enforcer.checked} >= {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "cloudwatch:PutMetricData",
    }
    role = monitoring_role(monitoring, parameters, "MonitoringRole")
    staging_capture = s3_object(f"{CAPTURE_BUCKET}/data-capture/staging/x.jsonl")
    assert not role.allows(Need("s3:GetObject", staging_capture))
    other_namespace = (("cloudwatch:namespace", "AWS/SageMaker"),)
    assert not role.allows(Need("cloudwatch:PutMetricData", "*", other_namespace))


# --- alarms and retraining ------------------------------------------------------------------------


def published_metric_names() -> set[str]:
    """Every metric drift.py publishes, from a window with drift, labels and segments."""
    baseline = baseline_document()
    rows = [[str(v + 3), str(v)] for v in np.random.RandomState(1).normal(size=200)]
    captured = drift.Captured(rows=rows, predictions=[3.0] * 200, inference_ids=["a"] * 200)
    names = set()
    for problem_type in ("regression", "binary_classification"):
        thresholds = drift.Thresholds(min_rows=10)
        settings = drift.MonitorSettings(problem_type, [], ["f_b"], thresholds)
        report = drift.evaluate_window(
            {**baseline, "problem_type": problem_type}, captured, settings, {"a": 1.0}
        )
        names |= set(report["metrics"])
    labels = {"a": 0.0, "b": 1.0}
    both = drift.model_quality("binary_classification", ["a", "b"], np.array([0.2, 0.9]), labels)
    assert "auc" in both
    return names | {"AUC", "RetrainingRequested"}


def test_every_alarm_watches_a_metric_the_job_publishes_and_notifies_the_topic(monitoring):
    published = published_metric_names()
    alarms = resources(monitoring, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 5
    for logical_id, alarm in alarms.items():
        props = alarm["Properties"]
        metric = props["MetricName"]
        if metric == {"Ref": "QualityMetric"}:
            assert set(monitoring["Parameters"]["QualityMetric"]["AllowedValues"]) <= published
        else:
            assert metric in published, logical_id
        assert props["Namespace"] == {"Fn::Sub": "${ProjectName}/monitoring"}
        assert props["AlarmActions"] == [{"Ref": "NotificationTopic"}], logical_id


def test_the_job_publishes_into_the_alarms_namespace(monitoring, tmp_path):
    request = schedule_request(monitoring, parameters_for("staging"))
    args = drift.parse_args(job_arguments(request, tmp_path))
    (alarm, *_) = resources(monitoring, "AWS::CloudWatch::Alarm").values()
    namespace = resolve(
        alarm["Properties"]["Namespace"], monitoring, {"ProjectName": project_name()}
    )
    assert args.namespace == namespace


def test_monitoring_needs_no_sagemaker_monitoring_resources(monitoring):
    """The scheduler starts a plain processing job: nothing here needs Model Monitor."""
    types = {r["Type"] for r in monitoring["Resources"].values()}
    assert not {t for t in types if t.startswith("AWS::SageMaker::")}
    assert {"AWS::Scheduler::Schedule", "AWS::SNS::Topic", "AWS::SNS::Subscription"} <= types


def alarm_event(alarm_arn: str, state: str, account: str = ACCOUNT, name: str = "") -> dict:
    return {
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "account": account,
        "resources": [alarm_arn],
        "detail": {"alarmName": name, "state": {"value": state}},
    }


@pytest.mark.parametrize("rule", ["RetrainingRule", "ForwardRetrainingRule"])
def test_retraining_starts_when_the_retraining_alarm_fires_not_when_it_clears(monitoring, rule):
    pattern = monitoring["Resources"][rule]["Properties"]["EventPattern"]
    pattern = resolve(pattern, monitoring)
    assert _matches(pattern, alarm_event("<RetrainingAlarm.Arn>", "ALARM"))
    assert not _matches(pattern, alarm_event("<RetrainingAlarm.Arn>", "OK"))
    assert not _matches(pattern, alarm_event("<DriftAlarm.Arn>", "ALARM"))


@pytest.mark.skipif(not MULTI_ACCOUNT, reason="single-account projects retrain in place")
def test_tooling_starts_training_on_the_request_prod_forwards(monitoring):
    toolchain = load(INFRA / "toolchain.yml")
    prod = toolchain["Parameters"]["ProdAccountId"]["Default"]
    staging = toolchain["Parameters"]["StagingAccountId"]["Default"]
    alarm = monitoring["Resources"]["RetrainingAlarm"]["Properties"]["AlarmName"]
    name = resolve(alarm, monitoring, {"ProjectName": project_name(), "Stage": "prod"})
    rule = toolchain["Resources"]["RetrainingRequestRule"]["Properties"]
    pattern = resolve(rule["EventPattern"], toolchain, {"ProjectName": project_name()})
    assert _matches(pattern, alarm_event("arn", "ALARM", prod, name))
    assert not _matches(pattern, alarm_event("arn", "OK", prod, name))
    assert not _matches(pattern, alarm_event("arn", "ALARM", staging, name))
    bus_policy = toolchain["Resources"]["ProdAccountSendsRetrainingRequests"]
    principal = resolve(bus_policy["Properties"]["Statement"]["Principal"], toolchain)
    assert principal == {"AWS": f"arn:{PARTITION}:iam::{prod}:root"}


def test_a_quality_metric_of_another_problem_type_is_refused():
    config = monitoring_config()
    other = "binary_classification" if project_problem_type() == "regression" else "regression"
    with pytest.raises(ConfigError, match=f"a {other} model"):
        stack_parameters(config, deployment("prod"), "s3://b/k", baseline_document(other))


@pytest.mark.skipif(not MULTI_ACCOUNT, reason="single-account projects read their own bucket")
def test_target_monitoring_jobs_may_read_the_baseline_in_the_tooling_account():
    """SageMaker downloads the baseline folder with the target account's monitoring role: the
    artifact bucket's policy and the project key's policy must admit it, and only for that."""
    toolchain = load(INFRA / "toolchain.yml")
    project = project_name()
    variables = {"ProjectName": project, "ProjectNameLower": project.lower()}
    stand_ins = {"<ArtifactBucket.Arn>": f"arn:{PARTITION}:s3:::{BUCKET}"}
    bucket = toolchain["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]
    key = next(iter(resources(toolchain, "AWS::KMS::Key").values()))["Properties"]["KeyPolicy"]
    allowed = [
        _stand_in(resolve(s, toolchain, variables), stand_ins)
        for s in [*bucket["Statement"], *key["Statement"]]
        if s["Effect"] == "Allow"
    ]
    policies = Role("ArtifactBucketPolicy+ProjectKey", allowed)
    folder = f"{project}-training/exec1/Baseline/baseline"
    for stage in ("staging", "prod"):
        account = toolchain["Parameters"][f"{stage.capitalize()}AccountId"]["Default"]
        who = (
            ("aws:PrincipalArn", f"arn:{PARTITION}:iam::{account}:role/{project}-monitor-{stage}"),
        )
        listing = (*who, ("s3:prefix", folder))
        assert policies.allows(Need("s3:ListBucket", f"arn:{PARTITION}:s3:::{BUCKET}", listing))
        assert policies.allows(Need("s3:GetObject", s3_object(f"{BUCKET}/{folder}/drift.py"), who))
        assert policies.allows(Need("kms:Decrypt", "*", who))
        training_data = s3_object(f"{BUCKET}/{project}-training/exec1/Preprocess/train/train.csv")
        assert not policies.allows(Need("s3:GetObject", training_data, who))
        other = (("aws:PrincipalArn", f"arn:{PARTITION}:iam::{account}:role/someone"),)
        assert not policies.allows(Need("s3:GetObject", s3_object(f"{BUCKET}/{folder}/x"), other))

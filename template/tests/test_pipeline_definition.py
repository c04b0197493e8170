"""The SageMaker pipeline definition, built offline against moto for both problem types."""

from __future__ import annotations

import json

import boto3
import pytest
from conftest import BUCKET, GROUP, KMS_KEY_ARN, PROJECT, REGION, ROLE_ARN, TARGETS, make_config
from moto import mock_aws

from ml_pipeline.config import ConfigError

PARAMETERS = {
    "InputDataUrl": ("String", f"s3://{BUCKET}/input/sample.csv"),
    "ProcessingInstanceType": ("String", "ml.m5.large"),
    "ProcessingInstanceCount": ("Integer", 1),
    "TrainingInstanceType": ("String", "ml.m5.xlarge"),
    "TrainingInstanceCount": ("Integer", 1),
    "ModelApprovalStatus": ("String", "PendingManualApproval"),
}


def build_definition(
    problem_type: str, pipeline_kwargs: dict | None = None, **config_overrides
) -> tuple[dict, dict[str, str]]:
    """Return the parsed definition and the S3 objects written meanwhile, with their KMS key."""
    pipeline_kwargs = {"model_package_group_name": GROUP, **(pipeline_kwargs or {})}
    from ml_pipeline.pipeline import get_pipeline

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        pipeline = get_pipeline(
            region=REGION,
            role_arn=ROLE_ARN,
            bucket=BUCKET,
            kms_key_arn=KMS_KEY_ARN,
            project_name=PROJECT,
            config=make_config(problem_type, **config_overrides),
            **pipeline_kwargs,
        )
        definition = json.loads(pipeline.definition())
        objects = {
            o["Key"]: s3.head_object(Bucket=BUCKET, Key=o["Key"]).get("SSEKMSKeyId", "")
            for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        }
    assert pipeline.name == f"{PROJECT}-training"
    return definition, objects


@pytest.fixture(scope="module", params=["regression", "binary_classification"])
def built(request):
    definition, objects = build_definition(request.param)
    return request.param, definition, objects


def steps_by_name(definition: dict) -> dict:
    found = {}
    for step in definition["Steps"]:
        found[step["Name"]] = step
        for branch in ("IfSteps", "ElseSteps"):
            for inner in step.get("Arguments", {}).get(branch, []):
                found[inner["Name"]] = inner
    return found


def test_top_level_steps_run_in_order(built):
    _, definition, _ = built
    assert [(s["Name"], s["Type"]) for s in definition["Steps"]] == [
        ("Preprocess", "Processing"),
        ("Train", "Training"),
        ("Evaluate", "Processing"),
        ("Baseline", "Processing"),
        ("QualityGate", "Condition"),
    ]
    steps = steps_by_name(definition)
    train_inputs = json.dumps(steps["Train"]["Arguments"]["InputDataConfig"])
    assert "Steps.Preprocess.ProcessingOutputConfig.Outputs['train']" in train_inputs
    assert "Steps.Preprocess.ProcessingOutputConfig.Outputs['validation']" in train_inputs
    evaluate_inputs = json.dumps(steps["Evaluate"]["Arguments"]["ProcessingInputs"])
    assert "Steps.Train.ModelArtifacts.S3ModelArtifacts" in evaluate_inputs
    assert "Steps.Preprocess.ProcessingOutputConfig.Outputs['test']" in evaluate_inputs


def test_parameters_and_defaults(built):
    problem_type, definition, _ = built
    params = {p["Name"]: (p["Type"], p["DefaultValue"]) for p in definition["Parameters"]}
    expected = dict(PARAMETERS)
    expected["QualityGateThreshold"] = ("Float", 70.0 if problem_type == "regression" else 0.9)
    assert params == expected


def test_every_job_encrypts_outputs_and_volumes_with_the_kms_key(built):
    _, definition, _ = built
    steps = steps_by_name(definition)
    for name in ("Preprocess", "Evaluate"):
        args = steps[name]["Arguments"]
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == KMS_KEY_ARN
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == KMS_KEY_ARN
        assert args["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
        assert args["RoleArn"] == ROLE_ARN
        assert {"Key": "Project", "Value": PROJECT} in args["Tags"]
    train = steps["Train"]["Arguments"]
    assert train["OutputDataConfig"]["KmsKeyId"] == KMS_KEY_ARN
    assert train["OutputDataConfig"]["S3OutputPath"].startswith(f"s3://{BUCKET}/")
    assert train["ResourceConfig"]["VolumeKmsKeyId"] == KMS_KEY_ARN
    assert train["EnableInterContainerTrafficEncryption"] is True
    assert {"Key": "Project", "Value": PROJECT} in train["Tags"]


def test_processing_outputs_stay_in_the_artifact_bucket(built):
    _, definition, _ = built
    steps = steps_by_name(definition)
    for name in ("Preprocess", "Evaluate"):
        for output in steps[name]["Arguments"]["ProcessingOutputConfig"]["Outputs"]:
            join = output["S3Output"]["S3Uri"]["Std:Join"]
            assert join["Values"][0] == f"s3://{BUCKET}/{PROJECT}-training"
            assert {"Get": "Execution.PipelineExecutionId"} in join["Values"]


def test_caching_is_on_for_the_jobs(built):
    _, definition, _ = built
    steps = steps_by_name(definition)
    for name in ("Preprocess", "Train", "Evaluate"):
        assert steps[name]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}


def test_images_and_objective_follow_the_problem_type(built):
    problem_type, definition, _ = built
    steps = steps_by_name(definition)
    preprocess_app = steps["Preprocess"]["Arguments"]["AppSpecification"]
    assert preprocess_app["ImageUri"].endswith("/sagemaker-scikit-learn:1.4-2-cpu-py3")
    assert preprocess_app["ContainerEntrypoint"] == [
        "python3",
        "/opt/ml/processing/input/code/preprocess.py",
    ]
    args = preprocess_app["ContainerArguments"]
    assert args[args.index("--target-column") + 1] == TARGETS[problem_type]
    train = steps["Train"]["Arguments"]
    assert train["AlgorithmSpecification"]["TrainingImage"].endswith("/sagemaker-xgboost:1.7-1")
    assert train["AlgorithmSpecification"]["TrainingImage"].startswith("141502667606.dkr.ecr.")
    objective = "reg:squarederror" if problem_type == "regression" else "binary:logistic"
    assert train["HyperParameters"]["objective"] == objective
    assert train["HyperParameters"]["num_round"] == "20"
    evaluate_app = steps["Evaluate"]["Arguments"]["AppSpecification"]
    assert evaluate_app["ImageUri"] == train["AlgorithmSpecification"]["TrainingImage"]
    assert evaluate_app["ContainerArguments"][:2] == ["--problem-type", problem_type]


def test_evaluation_report_is_a_property_file(built):
    _, definition, _ = built
    evaluate_step = steps_by_name(definition)["Evaluate"]
    assert evaluate_step["PropertyFiles"] == [
        {
            "PropertyFileName": "EvaluationReport",
            "OutputName": "evaluation",
            "FilePath": "evaluation.json",
        }
    ]


def test_quality_gate_compares_the_metric_with_the_threshold_parameter(built):
    problem_type, definition, _ = built
    gate = steps_by_name(definition)["QualityGate"]["Arguments"]
    (condition,) = gate["Conditions"]
    if problem_type == "regression":
        assert condition["Type"] == "LessThanOrEqualTo"
        path = "regression_metrics.rmse.value"
    else:
        assert condition["Type"] == "GreaterThanOrEqualTo"
        path = "binary_classification_metrics.auc.value"
    assert condition["LeftValue"]["Std:JsonGet"] == {
        "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
        "Path": path,
    }
    assert condition["RightValue"] == {"Get": "Parameters.QualityGateThreshold"}
    assert [s["Name"] for s in gate["IfSteps"]] == ["RegisterModel"]
    assert [s["Name"] for s in gate["ElseSteps"]] == ["QualityGateFailed"]


def test_fail_step_message_names_metric_value_and_threshold(built):
    problem_type, definition, _ = built
    fail = steps_by_name(definition)["QualityGateFailed"]
    assert fail["Type"] == "Fail"
    values = fail["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    metric = "rmse" if problem_type == "regression" else "auc"
    assert values[0] == f"Quality gate failed: test {metric}"
    assert values[1]["Std:JsonGet"]["Path"].endswith(f".{metric}.value")
    assert values[2] == ("is above the maximum" if metric == "rmse" else "is below the minimum")
    assert values[3] == {"Get": "Parameters.QualityGateThreshold"}


def test_registration_uses_group_approval_parameter_and_metrics(built):
    _, definition, _ = built
    register = steps_by_name(definition)["RegisterModel"]
    assert register["Type"] == "RegisterModel"
    args = register["Arguments"]
    assert args["ModelPackageGroupName"] == GROUP
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    statistics = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    assert statistics["S3Uri"]["Std:Join"]["Values"] == [
        {"Get": "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
        "evaluation.json",
    ]
    spec = args["InferenceSpecification"]
    (container,) = spec["Containers"]
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    # No script-mode variables: the XGBoost container must serve the built-in algorithm.
    assert not container.get("Environment")
    assert spec["SupportedContentTypes"] == ["text/csv"]
    assert spec["SupportedRealtimeInferenceInstanceTypes"] == ["ml.m5.large", "ml.c5.large"]
    assert spec["SupportedTransformInstanceTypes"] == ["ml.m5.xlarge"]


def test_baseline_of_the_trained_model_is_the_packages_drift_check_baseline(built):
    """Monitoring compares each stage with the baseline of the package it serves."""
    problem_type, definition, _ = built
    steps = steps_by_name(definition)
    baseline = steps["Baseline"]["Arguments"]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in baseline["ProcessingInputs"]}
    assert inputs["model"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["train"] == {
        "Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"
    }
    assert inputs["code"].endswith("/drift.py")
    arguments = baseline["AppSpecification"]["ContainerArguments"]
    assert arguments[:3] == ["baseline", "--problem-type", problem_type]
    # The scheduled job runs in the scikit-learn image the pipeline also uses.
    monitoring_image = arguments[arguments.index("--monitoring-image") + 1]
    assert monitoring_image == steps["Preprocess"]["Arguments"]["AppSpecification"]["ImageUri"]
    assert "xgboost" in baseline["AppSpecification"]["ImageUri"]
    folder = {"Get": "Steps.Baseline.ProcessingOutputConfig.Outputs['baseline'].S3Output.S3Uri"}
    quality = steps["RegisterModel"]["Arguments"]["DriftCheckBaselines"]["ModelDataQuality"]
    assert quality["Statistics"]["S3Uri"]["Std:Join"]["Values"] == [folder, "baseline.json"]
    assert quality["Constraints"]["S3Uri"]["Std:Join"]["Values"] == [folder, "constraints.json"]


def test_scripts_are_uploaded_encrypted_to_the_artifact_bucket(built):
    _, definition, objects = built
    steps = steps_by_name(definition)
    for name, script in (
        ("Preprocess", "preprocess.py"),
        ("Evaluate", "evaluate.py"),
        ("Baseline", "drift.py"),
    ):
        (code,) = [
            i for i in steps[name]["Arguments"]["ProcessingInputs"] if i["InputName"] == "code"
        ]
        uri = code["S3Input"]["S3Uri"]
        assert uri.startswith(f"s3://{BUCKET}/{PROJECT}-training/code/")
        assert uri.endswith(f"/{script}")
        assert objects[uri.removeprefix(f"s3://{BUCKET}/")] == KMS_KEY_ARN
    assert len(objects) == 3


@pytest.mark.parametrize(
    ("problem_type", "metric", "direction"),
    [
        ("regression", "rmse", "maximum"),
        ("regression", "r2", "minimum"),
        ("binary_classification", "auc", "minimum"),
    ],
)
def test_gate_direction_follows_the_metric_not_the_problem_type(problem_type, metric, direction):
    # The gate's comparison is chosen from this direction (both branches are built above).
    config = make_config(problem_type, quality_gate={"metric": metric, "threshold": 0.5})
    assert config.gate_direction == direction


def test_gate_metric_must_exist_for_the_problem_type():
    with pytest.raises(ConfigError, match=r"quality_gate.metric must be one of \['accuracy'"):
        make_config("binary_classification", quality_gate={"metric": "rmse", "threshold": 1})


def test_definition_is_deterministic(built):
    # A stable definition keeps step caching effective and makes upserts no-ops.
    problem_type, definition, _ = built
    again, _ = build_definition(problem_type)
    assert again == definition


# Every step that starts a job (processing or training).
JOB_STEPS = ("Preprocess", "Train", "Baseline", "Evaluate")


def job_vpcs(definition: dict) -> dict[str, dict | None]:
    """The VPC of every job step (None: the job runs in SageMaker's own network)."""
    vpcs = {}
    for name, step in steps_by_name(definition).items():
        args = step.get("Arguments", {})
        if step["Type"] == "Processing":
            vpcs[name] = args["NetworkConfig"].get("VpcConfig")
        elif step["Type"] == "Training":
            vpcs[name] = args.get("VpcConfig")
    return vpcs


def test_jobs_run_in_sagemaker_network_without_subnets(built):
    _, definition, _ = built
    assert job_vpcs(definition) == dict.fromkeys(JOB_STEPS)


def test_every_job_runs_in_the_given_private_subnets():
    # The large layout: no job may reach the internet, so each one joins the project's VPC.
    vpc = {"subnet_ids": ["subnet-0a", "subnet-0b"], "security_group_ids": ["sg-0c"]}
    definition, _ = build_definition("regression", pipeline_kwargs=vpc)
    expected = {"Subnets": ["subnet-0a", "subnet-0b"], "SecurityGroupIds": ["sg-0c"]}
    assert job_vpcs(definition) == dict.fromkeys(JOB_STEPS, expected)


def test_subnets_without_security_groups_are_refused():
    with pytest.raises(ValueError, match="give both or neither"):
        build_definition("regression", pipeline_kwargs={"subnet_ids": ["subnet-0a"]})


def test_registers_into_a_central_registry_by_arn():
    # The large layout registers into the governance account's group, named by its ARN.
    central = f"arn:aws:sagemaker:{REGION}:444444444444:model-package-group/{GROUP}"
    definition, _ = build_definition(
        "regression", pipeline_kwargs={"model_package_group_name": central}
    )
    register = steps_by_name(definition)["RegisterModel"]["Arguments"]
    assert register["ModelPackageGroupName"] == central

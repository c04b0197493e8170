"""`ml-pipeline` commands against moto (S3, SageMaker) and a stubbed sagemaker-runtime."""

from __future__ import annotations

import io
import json
import sys

import boto3
import pytest
import yaml
from botocore.response import StreamingBody
from botocore.stub import Stubber
from conftest import BUCKET, GROUP, KMS_KEY_ARN, PROJECT, REGION, ROLE_ARN
from moto import mock_aws

from ml_pipeline import cli
from ml_pipeline.config import load_config

PIPELINE_ENV = {
    "PROJECT_NAME": PROJECT,
    "AWS_REGION": REGION,
    "ARTIFACT_BUCKET": BUCKET,
    "SAGEMAKER_PIPELINE_ROLE_ARN": ROLE_ARN,
    "MODEL_PACKAGE_GROUP_NAME": GROUP,
    "KMS_KEY_ARN": KMS_KEY_ARN,
}


@pytest.fixture
def aws(monkeypatch, sample_repo):
    for name, value in PIPELINE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIPELINE_CONFIG", str(sample_repo / "config" / "pipeline.yml"))
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield boto3.client("sagemaker", region_name=REGION)


def pipeline_executions(sagemaker) -> list:
    return sagemaker.list_pipeline_executions(PipelineName=f"{PROJECT}-training")[
        "PipelineExecutionSummaries"
    ]


# Upserting builds the pipeline, which takes seconds; the commands do not depend on the
# problem type (the definition tests cover both), so these tests run for one of them.
ONE_PROBLEM_TYPE = pytest.mark.parametrize("problem_type", ["regression"])


@ONE_PROBLEM_TYPE
def test_run_pipeline_uploads_data_upserts_with_tags_and_starts_then_updates(aws, capsys):
    assert cli.main(["run-pipeline"]) == 0

    pipeline = aws.describe_pipeline(PipelineName=f"{PROJECT}-training")
    assert pipeline["RoleArn"] == ROLE_ARN
    tags = aws.list_tags(ResourceArn=pipeline["PipelineArn"])["Tags"]
    assert {"Key": "Project", "Value": PROJECT} in tags
    definition = json.loads(pipeline["PipelineDefinition"])
    assert definition["Steps"][0]["Name"] == "Preprocess"
    assert len(pipeline_executions(aws)) == 1
    head = boto3.client("s3", region_name=REGION).head_object(Bucket=BUCKET, Key="input/sample.csv")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == KMS_KEY_ARN
    out = capsys.readouterr().out
    assert f"s3://{BUCKET}/input/sample.csv" in out
    assert "started execution arn:aws:sagemaker:" in out

    # The second run finds the pipeline and updates it instead of failing on the name.
    assert cli.main(["run-pipeline", "--wait"]) == 0
    arn = aws.describe_pipeline(PipelineName=f"{PROJECT}-training")["PipelineArn"]
    assert arn == pipeline["PipelineArn"]
    assert {"Key": "Project", "Value": PROJECT} in aws.list_tags(ResourceArn=arn)["Tags"]
    assert len(pipeline_executions(aws)) == 2
    assert "execution succeeded" in capsys.readouterr().out


@ONE_PROBLEM_TYPE
def test_run_pipeline_no_start_only_upserts_and_options_override_environment(aws, monkeypatch):
    monkeypatch.delenv("PROJECT_NAME")
    assert cli.main(["run-pipeline", "--no-start", "--project-name", "Other"]) == 0
    aws.describe_pipeline(PipelineName="Other-training")
    assert (
        aws.list_pipeline_executions(PipelineName="Other-training")["PipelineExecutionSummaries"]
        == []
    )


@ONE_PROBLEM_TYPE
@pytest.mark.parametrize(
    ("variable", "option"),
    [
        ("ARTIFACT_BUCKET", "--bucket"),
        ("SAGEMAKER_PIPELINE_ROLE_ARN", "--role-arn"),
        ("KMS_KEY_ARN", "--kms-key-arn"),
        ("PROJECT_NAME", "--project-name"),
    ],
)
def test_run_pipeline_names_the_missing_setting(aws, monkeypatch, capsys, variable, option):
    monkeypatch.delenv(variable)
    assert cli.main(["run-pipeline"]) == 1
    err = capsys.readouterr().err
    assert f"missing {option}" in err
    assert variable in err
    assert aws.list_pipelines()["PipelineSummaries"] == []


@ONE_PROBLEM_TYPE
def test_run_pipeline_puts_the_jobs_in_the_subnets_from_the_environment(aws, monkeypatch):
    monkeypatch.setenv("SUBNET_IDS", "subnet-0a, subnet-0b")
    monkeypatch.setenv("SECURITY_GROUP_IDS", "sg-0c")
    assert cli.main(["run-pipeline", "--no-start"]) == 0
    definition = json.loads(
        aws.describe_pipeline(PipelineName=f"{PROJECT}-training")["PipelineDefinition"]
    )
    preprocess = definition["Steps"][0]["Arguments"]["NetworkConfig"]["VpcConfig"]
    assert preprocess == {"Subnets": ["subnet-0a", "subnet-0b"], "SecurityGroupIds": ["sg-0c"]}


@ONE_PROBLEM_TYPE
def test_run_pipeline_refuses_subnets_without_security_groups(aws, monkeypatch, capsys):
    monkeypatch.setenv("SUBNET_IDS", "subnet-0a")
    assert cli.main(["run-pipeline"]) == 1
    assert "--subnet-ids and --security-group-ids go together" in capsys.readouterr().err
    assert aws.list_pipelines()["PipelineSummaries"] == []


@ONE_PROBLEM_TYPE
def test_run_pipeline_without_the_sdk_says_which_extra_to_install(aws, monkeypatch, capsys):
    # The deploy and smoke-test jobs install the base package only, without the SDK.
    monkeypatch.setitem(sys.modules, "ml_pipeline.pipeline", None)
    assert cli.main(["run-pipeline"]) == 1
    assert "pip install -e '.[pipeline]'" in capsys.readouterr().err


def test_wait_reports_a_failed_execution():
    client = boto3.client("sagemaker", region_name=REGION)
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/p/execution/abc"
    with Stubber(client) as stub:
        stub.add_response(
            "describe_pipeline_execution",
            {"PipelineExecutionStatus": "Executing"},
            {"PipelineExecutionArn": arn},
        )
        stub.add_response(
            "describe_pipeline_execution",
            {"PipelineExecutionStatus": "Failed", "FailureReason": "Quality gate failed"},
            {"PipelineExecutionArn": arn},
        )
        with pytest.raises(cli.CliError, match="ended Failed: Quality gate failed"):
            cli.wait_for_execution(client, arn, poll_seconds=0)
        stub.assert_no_pending_responses()


def create_package(sagemaker, status: str) -> str:
    return sagemaker.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [{"Image": "image", "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]


@ONE_PROBLEM_TYPE
@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_deploy_params_picks_the_latest_approved_package(aws, sample_repo, capsys, stage):
    aws.create_model_package_group(ModelPackageGroupName=GROUP)
    create_package(aws, "Approved")
    latest_approved = create_package(aws, "Approved")
    create_package(aws, "PendingManualApproval")
    create_package(aws, "Rejected")

    assert cli.main(["deploy-params", "--stage", stage]) == 0

    endpoint = load_config(sample_repo / "config" / "pipeline.yml").endpoints[stage]
    assert capsys.readouterr().out == (
        f"ModelPackageArn={latest_approved} Stage={stage} "
        f"EndpointInstanceType={endpoint.instance_type} "
        f"InitialInstanceCount={endpoint.initial_instance_count} "
        f"DataCaptureSamplingPercentage={endpoint.data_capture_sampling_percentage}\n"
    )


@ONE_PROBLEM_TYPE
def test_deploy_params_fails_without_an_approved_package(aws, capsys):
    aws.create_model_package_group(ModelPackageGroupName=GROUP)
    create_package(aws, "PendingManualApproval")
    assert cli.main(["deploy-params", "--stage", "staging"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"no Approved model package in group {GROUP}" in captured.err


@ONE_PROBLEM_TYPE
def test_deploy_params_rejects_an_unknown_stage(aws, capsys):
    assert cli.main(["deploy-params", "--stage", "dev"]) == 1
    assert "--stage must be one of staging, prod" in capsys.readouterr().err


@pytest.fixture
def runtime(monkeypatch, sample_repo):
    """A stubbed sagemaker-runtime client handed to the CLI instead of a real one."""
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("PIPELINE_CONFIG", str(sample_repo / "config" / "pipeline.yml"))
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    monkeypatch.setattr(cli, "_client", lambda service, region: client)
    with Stubber(client) as stub:
        yield stub


def expect_invocation(stub: Stubber, sample_repo, rows: int, answer: str) -> None:
    config = load_config(sample_repo / "config" / "pipeline.yml")
    body = cli.smoke_test_rows(config, rows).to_csv(header=False, index=False)
    stub.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(answer.encode()), len(answer))},
        {
            "EndpointName": "Demo-Project-staging",
            "ContentType": "text/csv",
            "Accept": "text/csv",
            "Body": body,
        },
    )


def test_smoke_test_rows_come_from_the_pipeline_test_split(sample_repo):
    config = load_config(sample_repo / "config" / "pipeline.yml")
    rows = cli.smoke_test_rows(config, 3)
    assert config.target_column not in rows.columns
    assert list(rows.columns) == ["f_a", "f_b", "f_noise"]
    # conftest splits 200 rows 0.2/0.2 with seed 7: the test split is the first 40 shuffled.
    assert len(cli.smoke_test_rows(config, 1000)) == 40


def test_smoke_test_passes_on_one_number_per_row(runtime, sample_repo, capsys):
    expect_invocation(runtime, sample_repo, 3, "0.25\n0.5\n0.75\n")
    args = ["smoke-test", "--endpoint-name", "Demo-Project-staging", "--rows", "3"]
    assert cli.main(args) == 0
    assert "answered 3 rows" in capsys.readouterr().out
    runtime.assert_no_pending_responses()


def test_smoke_test_accepts_comma_separated_predictions(runtime, sample_repo):
    expect_invocation(runtime, sample_repo, 2, "0.1,0.9")
    assert cli.main(["smoke-test", "--endpoint-name", "Demo-Project-staging", "--rows", "2"]) == 0


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("0.5\n", "expected 2 predictions, the endpoint returned 1"),
        ("0.5\nnot-a-number\n", "non-numeric prediction"),
        ("0.5\nnan\n", "non-finite prediction"),
    ],
)
def test_smoke_test_fails_on_bad_answers(runtime, sample_repo, capsys, answer, message):
    expect_invocation(runtime, sample_repo, 2, answer)
    assert cli.main(["smoke-test", "--endpoint-name", "Demo-Project-staging", "--rows", "2"]) == 1
    assert message in capsys.readouterr().err


def test_smoke_test_checks_probabilities_for_binary_classification(
    runtime, sample_repo, problem_type, capsys
):
    expect_invocation(runtime, sample_repo, 2, "0.5\n1.7\n")
    code = cli.main(["smoke-test", "--endpoint-name", "Demo-Project-staging", "--rows", "2"])
    if problem_type == "binary_classification":
        assert code == 1
        assert "probabilities must lie in [0, 1]" in capsys.readouterr().err
    else:
        assert code == 0


def test_smoke_test_requires_an_endpoint_name(runtime, capsys):
    assert cli.main(["smoke-test"]) == 1
    assert "missing --endpoint-name" in capsys.readouterr().err


@ONE_PROBLEM_TYPE
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda raw: raw["quality_gate"].update(metric="auc"),
            "quality_gate.metric must be one of",
        ),
        (
            lambda raw: raw["training"]["hyperparameters"].update(objective="reg:linear"),
            "training.hyperparameters.objective is set from problem_type",
        ),
        (lambda raw: raw["endpoints"].pop("prod"), "missing setting endpoints.prod"),
        (
            lambda raw: raw["endpoints"]["staging"].update(data_capture_sampling_percentage=150),
            "endpoints.staging.data_capture_sampling_percentage must be an integer from 0 to 100",
        ),
        (
            lambda raw: raw["data"]["split"].update(test_fraction=0.9),
            "validation_fraction + test_fraction must be below 1",
        ),
    ],
)
def test_bad_configuration_is_reported_with_the_setting_name(
    sample_repo, monkeypatch, capsys, change, message
):
    config_file = sample_repo / "config" / "pipeline.yml"
    raw = yaml.safe_load(config_file.read_text())
    change(raw)
    config_file.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MODEL_PACKAGE_GROUP_NAME", GROUP)
    monkeypatch.setenv("AWS_REGION", REGION)
    code = cli.main(["deploy-params", "--stage", "staging", "--config", str(config_file)])
    assert code == 1
    assert message in capsys.readouterr().err


def test_missing_configuration_file_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENDPOINT_NAME", "Demo-Project-staging")
    monkeypatch.setenv("AWS_REGION", REGION)
    assert cli.main(["smoke-test", "--config", str(tmp_path / "absent.yml")]) == 1
    assert f"configuration file {tmp_path / 'absent.yml'} not found" in capsys.readouterr().err

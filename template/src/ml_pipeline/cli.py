"""`ml-pipeline`: run the training pipeline, pick the model to deploy, set up its monitoring and
smoke-test an endpoint.

Every option falls back to an environment variable, the ones the CodeBuild projects set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import boto3
import pandas as pd

from ml_pipeline.config import DEFAULT_CONFIG_PATH, STAGES, ConfigError, PipelineConfig, load_config
from ml_pipeline.monitoring import (
    DEFAULT_MONITORING_CONFIG_PATH,
    Deployment,
    as_cloudformation_parameters,
    baseline_uri,
    load_monitoring_config,
    model_monitor_parameters,
    read_baseline,
    stack_parameters,
)
from ml_pipeline.preprocess import select_columns, split_dataset

TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")
WAIT_POLL_SECONDS = 30


class CliError(Exception):
    """A failure to report on stderr with exit code 1."""


def _setting(args: argparse.Namespace, attr: str, option: str, env_var: str) -> str:
    value = getattr(args, attr, None) or os.environ.get(env_var)
    if not value:
        raise CliError(f"missing {option}: pass it or set the environment variable {env_var}")
    return value


def _id_list(args: argparse.Namespace, attr: str, env_var: str) -> list[str]:
    """A comma-separated list of ids, from the option or the environment; empty when unset."""
    value = getattr(args, attr, None) or os.environ.get(env_var, "")
    return [item.strip() for item in value.split(",") if item.strip()]


def _region(args: argparse.Namespace) -> str:
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise CliError("missing --region: pass it or set the environment variable AWS_REGION")
    return region


def _client(service: str, region: str):
    return boto3.client(service, region_name=region)


def upload_sample_data(
    config: PipelineConfig, bucket: str, key: str, kms_key_arn: str, region: str
) -> str:
    if not config.sample_data_path.is_file():
        raise CliError(f"sample data {config.sample_data_path} not found (config data.sample_path)")
    _client("s3", region).upload_file(
        str(config.sample_data_path),
        bucket,
        key,
        ExtraArgs={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_arn},
    )
    return f"s3://{bucket}/{key}"


def wait_for_execution(sagemaker_client, execution_arn: str, poll_seconds: float) -> None:
    while True:
        described = sagemaker_client.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        status = described["PipelineExecutionStatus"]
        if status in TERMINAL_STATUSES:
            break
        time.sleep(poll_seconds)
    if status != "Succeeded":
        reason = described.get("FailureReason", "no reason given")
        raise CliError(f"pipeline execution {execution_arn} ended {status}: {reason}")


def run_pipeline(args: argparse.Namespace) -> None:
    project_name = _setting(args, "project_name", "--project-name", "PROJECT_NAME")
    bucket = _setting(args, "bucket", "--bucket", "ARTIFACT_BUCKET")
    role_arn = _setting(args, "role_arn", "--role-arn", "SAGEMAKER_PIPELINE_ROLE_ARN")
    group = _setting(
        args, "model_package_group", "--model-package-group", "MODEL_PACKAGE_GROUP_NAME"
    )
    kms_key_arn = _setting(args, "kms_key_arn", "--kms-key-arn", "KMS_KEY_ARN")
    subnet_ids = _id_list(args, "subnet_ids", "SUBNET_IDS")
    security_group_ids = _id_list(args, "security_group_ids", "SECURITY_GROUP_IDS")
    if bool(subnet_ids) != bool(security_group_ids):
        raise CliError(
            "--subnet-ids and --security-group-ids go together (env SUBNET_IDS and "
            "SECURITY_GROUP_IDS): give both to run the jobs in a VPC, or neither"
        )
    region = _region(args)
    config = load_config(args.config)

    # The toolchain stack owns the pipeline role; checking it from here would need
    # iam:SimulatePrincipalPolicy for the caller, and SageMaker checks it at run time anyway.
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
    # Imported here: the SageMaker SDK is the optional `pipeline` extra (about 700 MB), which the
    # deploy and smoke-test jobs do not install.
    try:
        from ml_pipeline.pipeline import get_pipeline, input_data_key
    except ModuleNotFoundError as error:
        raise CliError(
            f"run-pipeline needs the SageMaker SDK ({error.name} is missing): "
            "pip install -e '.[pipeline]'"
        ) from error

    input_uri = upload_sample_data(config, bucket, input_data_key(config), kms_key_arn, region)
    print(f"uploaded {config.sample_data_path} to {input_uri}")
    pipeline = get_pipeline(
        region=region,
        role_arn=role_arn,
        bucket=bucket,
        model_package_group_name=group,
        kms_key_arn=kms_key_arn,
        project_name=project_name,
        config=config,
        subnet_ids=subnet_ids,
        security_group_ids=security_group_ids,
    )
    response = pipeline.upsert(
        role_arn=role_arn,
        description=f"Training pipeline of {project_name}",
        tags=[{"Key": "Project", "Value": project_name}],
    )
    print(f"pipeline {response['PipelineArn']} is up to date")
    if args.no_start:
        return
    sagemaker_client = _client("sagemaker", region)
    execution_arn = sagemaker_client.start_pipeline_execution(PipelineName=pipeline.name)[
        "PipelineExecutionArn"
    ]
    print(f"started execution {execution_arn}")
    if args.wait:
        wait_for_execution(sagemaker_client, execution_arn, WAIT_POLL_SECONDS)
        print("execution succeeded")


def latest_approved_package(sagemaker_client, group: str) -> str:
    response = sagemaker_client.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )
    packages = response["ModelPackageSummaryList"]
    if not packages:
        raise CliError(
            f"no Approved model package in group {group}: approve one in the SageMaker "
            "model registry first (aws sagemaker update-model-package "
            "--model-package-arn <arn> --model-approval-status Approved)"
        )
    return packages[0]["ModelPackageArn"]


def deploy_params(args: argparse.Namespace) -> None:
    group = _setting(
        args, "model_package_group", "--model-package-group", "MODEL_PACKAGE_GROUP_NAME"
    )
    stage = _setting(args, "stage", "--stage", "STAGE")
    if stage not in STAGES:
        raise CliError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}")
    region = _region(args)
    endpoint = load_config(args.config).endpoints[stage]
    package_arn = latest_approved_package(_client("sagemaker", region), group)
    print(
        f"ModelPackageArn={package_arn} Stage={stage} "
        f"EndpointInstanceType={endpoint.instance_type} "
        f"InitialInstanceCount={endpoint.initial_instance_count} "
        f"DataCaptureSamplingPercentage={endpoint.data_capture_sampling_percentage}"
    )


def monitoring_params(args: argparse.Namespace) -> None:
    stage = _setting(args, "stage", "--stage", "STAGE")
    if stage not in STAGES:
        raise CliError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}")
    region = _region(args)
    config = load_config(args.config)
    monitoring = load_monitoring_config(args.monitoring_config, config.problem_type)
    deployment = Deployment(
        project_name=_setting(args, "project_name", "--project-name", "PROJECT_NAME"),
        stage=stage,
        package_arn=_setting(args, "model_package_arn", "--model-package-arn", "MODEL_PACKAGE_ARN"),
        capture_bucket=_setting(args, "capture_bucket", "--capture-bucket", "DATA_CAPTURE_BUCKET"),
        kms_key_arn=_setting(args, "kms_key_arn", "--kms-key-arn", "ENDPOINT_KMS_KEY_ARN"),
        baseline_kms_key_arn=_setting(
            args, "baseline_kms_key_arn", "--baseline-kms-key-arn", "KMS_KEY_ARN"
        ),
        notification_email=_setting(
            args, "notification_email", "--notification-email", "NOTIFICATION_EMAIL"
        ),
        # The deploy job of a multi-account project deploys into a target account; retraining
        # then reaches the training pipeline through the tooling account's event bus.
        cross_account=bool(os.environ.get("TARGET_ACCOUNT_ROLE_ARN")),
        subnet_ids=tuple(_id_list(args, "subnet_ids", "SUBNET_IDS")),
        security_group_ids=tuple(_id_list(args, "security_group_ids", "SECURITY_GROUP_IDS")),
        permissions_boundary_policy=os.environ.get("PERMISSIONS_BOUNDARY_POLICY", ""),
    )
    if bool(deployment.subnet_ids) != bool(deployment.security_group_ids):
        raise CliError(
            "--subnet-ids and --security-group-ids go together (env SUBNET_IDS and "
            "SECURITY_GROUP_IDS): give both to run the monitoring job in a VPC, or neither"
        )
    # Read here, with the deploy job's own role: in a multi-account project the registry and the
    # baseline are in this (tooling) account.
    folder = baseline_uri(_client("sagemaker", region), deployment.package_arn)
    baseline = read_baseline(_client("s3", region), folder)
    parameters = stack_parameters(monitoring, deployment, folder, baseline)
    args.output.write_text(json.dumps(as_cloudformation_parameters(parameters), indent=2) + "\n")
    print(f"wrote {len(parameters)} monitoring stack parameters for {stage} to {args.output}")
    if args.model_monitor_output:
        extra = model_monitor_parameters(monitoring, deployment, folder, baseline)
        args.model_monitor_output.write_text(
            json.dumps(as_cloudformation_parameters(extra), indent=2) + "\n"
        )
        print(f"wrote the Model Monitor stack parameters to {args.model_monitor_output}")


def smoke_test_rows(config: PipelineConfig, rows: int) -> pd.DataFrame:
    """Feature rows from the test split of the sample data, as the pipeline held it out."""
    if not config.sample_data_path.is_file():
        raise CliError(f"sample data {config.sample_data_path} not found (config data.sample_path)")
    data = select_columns(
        pd.read_csv(config.sample_data_path), config.target_column, list(config.feature_columns)
    )
    _, _, test = split_dataset(
        data, config.validation_fraction, config.test_fraction, config.split_seed
    )
    return test.drop(columns=[config.target_column]).head(rows)


def parse_predictions(body: str) -> list[float]:
    """The XGBoost container answers text/csv with one value per line (or comma-separated)."""
    tokens = [t.strip() for t in body.replace("\n", ",").split(",") if t.strip()]
    try:
        return [float(t) for t in tokens]
    except ValueError as error:
        raise CliError(f"endpoint returned a non-numeric prediction: {body[:200]!r}") from error


def check_predictions(predictions: list[float], expected: int, problem_type: str) -> None:
    if len(predictions) != expected:
        raise CliError(f"expected {expected} predictions, the endpoint returned {len(predictions)}")
    if not all(math.isfinite(p) for p in predictions):
        raise CliError(f"endpoint returned a non-finite prediction: {predictions}")
    if problem_type == "binary_classification" and not all(0 <= p <= 1 for p in predictions):
        raise CliError(f"probabilities must lie in [0, 1], got {predictions}")


def smoke_test(args: argparse.Namespace) -> None:
    endpoint_name = _setting(args, "endpoint_name", "--endpoint-name", "ENDPOINT_NAME")
    if args.rows < 1:
        raise CliError(f"--rows must be at least 1, got {args.rows}")
    region = _region(args)
    config = load_config(args.config)
    rows = smoke_test_rows(config, args.rows)
    response = _client("sagemaker-runtime", region).invoke_endpoint(
        EndpointName=endpoint_name,
        ContentType="text/csv",
        Accept="text/csv",
        Body=rows.to_csv(header=False, index=False),
    )
    predictions = parse_predictions(response["Body"].read().decode("utf-8"))
    check_predictions(predictions, len(rows), config.problem_type)
    print(f"{endpoint_name} answered {len(predictions)} rows: {predictions}")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("PIPELINE_CONFIG", DEFAULT_CONFIG_PATH)),
        help="pipeline settings (env PIPELINE_CONFIG, default %(default)s)",
    )
    common.add_argument("--region", help="AWS region (env AWS_REGION or AWS_DEFAULT_REGION)")
    parser = argparse.ArgumentParser(prog="ml-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run-pipeline", parents=[common], help="upsert the pipeline and start an execution"
    )
    run.add_argument("--project-name", help="env PROJECT_NAME")
    run.add_argument("--bucket", help="artifact bucket (env ARTIFACT_BUCKET)")
    run.add_argument("--role-arn", help="pipeline role (env SAGEMAKER_PIPELINE_ROLE_ARN)")
    run.add_argument("--model-package-group", help="env MODEL_PACKAGE_GROUP_NAME")
    run.add_argument("--kms-key-arn", help="env KMS_KEY_ARN")
    run.add_argument(
        "--subnet-ids",
        help="comma-separated private subnets every job runs in (env SUBNET_IDS; default: none)",
    )
    run.add_argument(
        "--security-group-ids",
        help="comma-separated security groups of the jobs (env SECURITY_GROUP_IDS)",
    )
    run.add_argument("--no-start", action="store_true", help="only create or update the pipeline")
    run.add_argument("--wait", action="store_true", help="wait for the execution to finish")
    run.set_defaults(handler=run_pipeline)

    deploy = commands.add_parser(
        "deploy-params",
        parents=[common],
        help="print CloudFormation overrides for the latest approved model",
    )
    deploy.add_argument("--stage", help=f"one of {', '.join(STAGES)} (env STAGE)")
    deploy.add_argument("--model-package-group", help="env MODEL_PACKAGE_GROUP_NAME")
    deploy.set_defaults(handler=deploy_params)

    monitor = commands.add_parser(
        "monitoring-params",
        parents=[common],
        help="write the monitoring stack parameters of a stage as a CloudFormation JSON file",
    )
    monitor.add_argument("--stage", help=f"one of {', '.join(STAGES)} (env STAGE)")
    monitor.add_argument(
        "--monitoring-config",
        type=Path,
        default=Path(os.environ.get("MONITORING_CONFIG", DEFAULT_MONITORING_CONFIG_PATH)),
        help="monitoring settings (env MONITORING_CONFIG, default %(default)s)",
    )
    monitor.add_argument("--project-name", help="env PROJECT_NAME")
    monitor.add_argument(
        "--model-package-arn", help="the package the stage serves (env MODEL_PACKAGE_ARN)"
    )
    monitor.add_argument("--capture-bucket", help="env DATA_CAPTURE_BUCKET")
    monitor.add_argument(
        "--kms-key-arn", help="key of the stage's account (env ENDPOINT_KMS_KEY_ARN)"
    )
    monitor.add_argument("--baseline-kms-key-arn", help="key of the baseline (env KMS_KEY_ARN)")
    monitor.add_argument("--notification-email", help="env NOTIFICATION_EMAIL")
    monitor.add_argument(
        "--subnet-ids", help="private subnets of the monitoring job (env SUBNET_IDS; default none)"
    )
    monitor.add_argument("--security-group-ids", help="env SECURITY_GROUP_IDS")
    monitor.add_argument("--output", type=Path, required=True, help="JSON file to write")
    monitor.add_argument(
        "--model-monitor-output", type=Path, help="also write infra/model-monitor.yml's parameters"
    )
    monitor.set_defaults(handler=monitoring_params)

    smoke = commands.add_parser(
        "smoke-test", parents=[common], help="send test rows to an endpoint"
    )
    smoke.add_argument("--endpoint-name", help="env ENDPOINT_NAME")
    smoke.add_argument("--rows", type=int, default=5, help="rows to send (default %(default)s)")
    smoke.set_defaults(handler=smoke_test)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (CliError, ConfigError) as error:
        print(f"ml-pipeline {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Settings of the monitoring stack (infra/monitoring.yml) for one stage.

The deploy job runs `ml-pipeline monitoring-params` after it picked the model package for a stage:
the stack's parameters come from config/monitoring.yml (thresholds, schedule, features) and from
that package (its baseline, written by the training pipeline's Baseline step), so each stage is
compared with the training data of the model it serves.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ml_pipeline.config import ConfigError, metric_and_threshold, setting

DEFAULT_MONITORING_CONFIG_PATH = Path("config/monitoring.yml")
# Model-quality metrics the monitoring job computes, with the direction that makes a model better.
QUALITY_METRICS = {
    "regression": {"rmse": "maximum"},
    "binary_classification": {"auc": "minimum", "f1": "minimum"},
}
# CloudWatch metric names the job publishes for each quality metric.
QUALITY_METRIC_NAMES = {"rmse": "RMSE", "auc": "AUC", "f1": "F1"}
# CloudFormation parameter values are at most 4096 bytes, but the monitoring job receives the
# lists as one container argument, which SageMaker caps at 256 characters.
MAX_LIST_ARGUMENT = 256
FEATURE_NAME = re.compile(r"^[^,\s]+$")


@dataclass(frozen=True)
class MonitoringConfig:
    schedule_minutes: int
    instance_type: str
    psi_threshold: float
    ks_alpha: float
    min_rows: int
    features: tuple[str, ...]
    segment_attributes: tuple[str, ...]
    drift_runs: int
    missing_rate_increase: float
    schema_violation_rate: float
    quality_enabled: bool
    quality_metric: str
    quality_threshold: float
    retraining_enabled: bool
    consecutive_runs: int
    cooldown_hours: int


def _section(raw: Any, key: str) -> dict:
    value = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(value, dict):
        raise ConfigError(f"missing section {key} in the monitoring configuration")
    return value


def _number(value: Any, name: str, low: float, high: float, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} from {low:g} to {high:g}, got {value!r}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _names(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and FEATURE_NAME.match(v) for v in value
    ):
        raise ConfigError(f"{name} must be a list of column names without commas, got {value!r}")
    if len(",".join(value)) > MAX_LIST_ARGUMENT:
        raise ConfigError(
            f"{name} joined by commas must fit {MAX_LIST_ARGUMENT} characters; "
            "list fewer columns (an empty list checks every feature)"
        )
    return tuple(value)


def parse_monitoring_config(raw: Any, problem_type: str) -> MonitoringConfig:
    if not isinstance(raw, dict):
        raise ConfigError("the monitoring configuration must be a YAML mapping")
    drift, alarms = _section(raw, "drift"), _section(raw, "alarms")
    quality, retraining = _section(raw, "quality"), _section(raw, "retraining")
    metric, threshold = metric_and_threshold(
        quality, "quality", QUALITY_METRICS[problem_type], problem_type
    )
    instance_type = setting(raw, "instance_type", "")
    if not isinstance(instance_type, str) or not re.match(
        r"^ml\.[a-z0-9-]+\.[a-z0-9]+$", instance_type
    ):
        raise ConfigError(f"instance_type must be ml.<family>.<size>, got {instance_type!r}")
    return MonitoringConfig(
        # EventBridge Scheduler's rate() wants a plural unit, so at least 2 minutes; a day at most
        # so that a window never spans more hourly capture folders than the job lists.
        schedule_minutes=_number(
            setting(raw, "schedule_minutes", ""), "schedule_minutes", 5, 1440, integer=True
        ),
        instance_type=instance_type,
        psi_threshold=float(
            _number(setting(drift, "psi_threshold", "drift"), "drift.psi_threshold", 0.01, 10)
        ),
        ks_alpha=float(_number(setting(drift, "ks_alpha", "drift"), "drift.ks_alpha", 1e-9, 0.5)),
        min_rows=_number(
            setting(drift, "min_rows", "drift"), "drift.min_rows", 10, 1_000_000, integer=True
        ),
        features=_names(setting(drift, "features", "drift"), "drift.features"),
        segment_attributes=_names(
            setting(drift, "segment_attributes", "drift"), "drift.segment_attributes"
        ),
        drift_runs=_number(
            setting(alarms, "drift_runs", "alarms"), "alarms.drift_runs", 1, 24, integer=True
        ),
        missing_rate_increase=float(
            _number(
                setting(alarms, "missing_rate_increase", "alarms"),
                "alarms.missing_rate_increase",
                0,
                1,
            )
        ),
        schema_violation_rate=float(
            _number(
                setting(alarms, "schema_violation_rate", "alarms"),
                "alarms.schema_violation_rate",
                0,
                1,
            )
        ),
        quality_enabled=_flag(setting(quality, "enabled", "quality"), "quality.enabled"),
        quality_metric=metric,
        quality_threshold=float(threshold),
        retraining_enabled=_flag(
            setting(retraining, "enabled", "retraining"), "retraining.enabled"
        ),
        consecutive_runs=_number(
            setting(retraining, "consecutive_runs", "retraining"),
            "retraining.consecutive_runs",
            1,
            1000,
            integer=True,
        ),
        cooldown_hours=_number(
            setting(retraining, "cooldown_hours", "retraining"),
            "retraining.cooldown_hours",
            1,
            8760,
            integer=True,
        ),
    )


def load_monitoring_config(path: Path, problem_type: str) -> MonitoringConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} not found")
    with path.open(encoding="utf-8") as handle:
        return parse_monitoring_config(yaml.safe_load(handle), problem_type)


def baseline_uri(sagemaker_client, package_arn: str) -> str:
    """S3 folder of the package's baseline (its drift-check baseline for data quality)."""
    package = sagemaker_client.describe_model_package(ModelPackageName=package_arn)
    try:
        statistics = package["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]["S3Uri"]
    except KeyError as error:
        raise ConfigError(
            f"model package {package_arn} has no drift-check baseline: it was registered before "
            "the pipeline had a Baseline step; run the training pipeline and approve the new model"
        ) from error
    return statistics.rsplit("/", 1)[0]


def read_baseline(s3_client, folder: str) -> dict:
    bucket, _, prefix = folder.removeprefix("s3://").partition("/")
    body = s3_client.get_object(Bucket=bucket, Key=f"{prefix}/baseline.json")["Body"].read()
    return json.loads(body)


def check_columns(config: MonitoringConfig, baseline: dict) -> None:
    known = [f["name"] for f in baseline["features"]]
    unknown = [c for c in (*config.features, *config.segment_attributes) if c not in known]
    if unknown:
        raise ConfigError(
            f"drift.features and drift.segment_attributes name columns the model was not trained "
            f"on: {unknown}; its features are {known}"
        )


@dataclass(frozen=True)
class Deployment:
    """Where the stage runs: filled from the deploy job's environment."""

    project_name: str
    stage: str
    package_arn: str
    capture_bucket: str
    kms_key_arn: str
    baseline_kms_key_arn: str
    notification_email: str
    cross_account: bool
    # The large layout: the job's private subnets and the boundary policy (path and name) of the
    # account's roles; empty elsewhere.
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    permissions_boundary_policy: str = ""


def network_and_boundary(deployment: Deployment) -> dict[str, str]:
    """Parameters both monitoring stacks share: where the jobs run and what bounds their roles."""
    return {
        "SubnetIds": ",".join(deployment.subnet_ids),
        "SecurityGroupIds": ",".join(deployment.security_group_ids),
        "PermissionsBoundaryPolicy": deployment.permissions_boundary_policy,
    }


def stack_parameters(
    config: MonitoringConfig, deployment: Deployment, folder: str, baseline: dict
) -> dict[str, str]:
    """Parameters of infra/monitoring.yml for one stage."""
    check_columns(config, baseline)
    # arn:<partition>:<service>:<region>:<account>:...: the package gives partition and region;
    # the training pipeline runs in the account of the artifact key that encrypts the baseline
    # (the registry may be another account's: the large layout's governance account).
    _, partition, _, region = deployment.package_arn.split(":")[:4]
    account = deployment.baseline_kms_key_arn.split(":")[4]
    metrics = QUALITY_METRICS[baseline["problem_type"]]
    if config.quality_metric not in metrics:
        raise ConfigError(
            f"quality.metric {config.quality_metric!r} does not apply to the served model, a "
            f"{baseline['problem_type']} model; use one of {sorted(metrics)}"
        )
    direction = metrics[config.quality_metric]
    training_pipeline = event_bus = "none"
    # Only prod retrains: staging sees smoke tests, not the traffic the model must fit.
    if config.retraining_enabled and deployment.stage == "prod":
        if deployment.cross_account:
            event_bus = f"arn:{partition}:events:{region}:{account}:event-bus/default"
        else:
            training_pipeline = (
                f"arn:{partition}:sagemaker:{region}:{account}:"
                f"pipeline/{deployment.project_name.lower()}-training"
            )
    return {
        "ProjectName": deployment.project_name,
        "Stage": deployment.stage,
        "ModelPackageArn": deployment.package_arn,
        "KmsKeyArn": deployment.kms_key_arn,
        "BaselineS3Uri": folder,
        "BaselineKmsKeyArn": deployment.baseline_kms_key_arn,
        "MonitoringImageUri": baseline["monitoring_image"],
        # The stack reads data-capture/<stage>/ and ground-truth/<stage>/ and writes
        # monitoring/<stage>/ in the bucket that holds the stage's captured data.
        "DataBucketName": deployment.capture_bucket,
        "QualityMonitoring": "enabled" if config.quality_enabled else "disabled",
        "NotificationEmail": deployment.notification_email,
        "ScheduleMinutes": str(config.schedule_minutes),
        # CloudWatch alarms count periods in seconds; one period per scheduled run.
        "AlarmPeriodSeconds": str(config.schedule_minutes * 60),
        "ProcessingInstanceType": config.instance_type,
        "Features": ",".join(config.features),
        "SegmentAttributes": ",".join(config.segment_attributes),
        "PsiThreshold": str(config.psi_threshold),
        "KsAlpha": str(config.ks_alpha),
        "MinRows": str(config.min_rows),
        "DriftAlarmRuns": str(config.drift_runs),
        "MissingRateIncreaseThreshold": str(config.missing_rate_increase),
        "SchemaViolationRateThreshold": str(config.schema_violation_rate),
        "QualityMetric": QUALITY_METRIC_NAMES[config.quality_metric],
        "QualityThreshold": str(config.quality_threshold),
        "QualityThresholdIs": direction,
        "ConsecutiveDriftRuns": str(config.consecutive_runs),
        "CooldownHours": str(config.cooldown_hours),
        "TrainingPipelineArn": training_pipeline,
        "RetrainingEventBusArn": event_bus,
        **network_and_boundary(deployment),
    }


def model_monitor_parameters(
    config: MonitoringConfig, deployment: Deployment, folder: str, baseline: dict
) -> dict[str, str]:
    """Parameters of infra/model-monitor.yml (projects that opt into SageMaker Model Monitor)."""
    if not baseline.get("model_monitor_image"):
        raise ConfigError(
            "the package's baseline names no Model Monitor image: retrain with this version of "
            "the pipeline, then approve the new model"
        )
    return {
        "ProjectName": deployment.project_name,
        "Stage": deployment.stage,
        "KmsKeyArn": deployment.kms_key_arn,
        "BaselineS3Uri": folder,
        "BaselineKmsKeyArn": deployment.baseline_kms_key_arn,
        "ModelMonitorImageUri": baseline["model_monitor_image"],
        "DataBucketName": deployment.capture_bucket,
        "ProblemType": {
            "regression": "Regression",
            "binary_classification": "BinaryClassification",
        }[baseline["problem_type"]],
        "QualityMonitoring": "enabled" if config.quality_enabled else "disabled",
        "ProcessingInstanceType": config.instance_type,
        **network_and_boundary(deployment),
    }


def as_cloudformation_parameters(parameters: dict[str, str]) -> list[dict[str, str]]:
    """The JSON form `aws cloudformation deploy --parameter-overrides file://...` reads: values
    such as empty lists survive it, which the Key=Value form cannot carry through the shell."""
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]

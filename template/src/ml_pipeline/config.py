"""Load and check config/pipeline.yml, the user-owned settings of the pipeline and endpoints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path("config/pipeline.yml")
PROBLEM_TYPES = ("regression", "binary_classification")
STAGES = ("staging", "prod")
OBJECTIVES = {"regression": "reg:squarederror", "binary_classification": "binary:logistic"}
# Top-level key of evaluation.json per problem type. evaluate.py runs alone in its container
# and keeps its own copy; a test checks the two agree.
REPORT_SECTIONS = {
    "regression": "regression_metrics",
    "binary_classification": "binary_classification_metrics",
}
# Metrics written by evaluate.py, each with the direction that makes a model better.
# A "maximum" threshold fails models above it, a "minimum" threshold models below it.
GATE_METRICS = {
    "regression": {"rmse": "maximum", "mae": "maximum", "mse": "maximum", "r2": "minimum"},
    "binary_classification": {
        "auc": "minimum",
        "f1": "minimum",
        "accuracy": "minimum",
        "precision": "minimum",
        "recall": "minimum",
    },
}


class ConfigError(ValueError):
    """The pipeline configuration file is missing a setting or holds a bad value."""


@dataclass(frozen=True)
class EndpointSettings:
    instance_type: str
    initial_instance_count: int
    data_capture_sampling_percentage: int


@dataclass(frozen=True)
class PipelineConfig:
    problem_type: str
    sample_data_path: Path
    target_column: str
    feature_columns: tuple[str, ...]
    validation_fraction: float
    test_fraction: float
    split_seed: int
    sklearn_image_version: str
    xgboost_image_version: str
    processing_instance_type: str
    processing_instance_count: int
    training_instance_type: str
    training_instance_count: int
    hyperparameters: dict[str, Any]
    gate_metric: str
    gate_threshold: float
    inference_instance_types: tuple[str, ...]
    transform_instance_types: tuple[str, ...]
    endpoints: dict[str, EndpointSettings]

    @property
    def gate_direction(self) -> str:
        """'maximum' or 'minimum': how the threshold bounds the gate metric."""
        return GATE_METRICS[self.problem_type][self.gate_metric]

    @property
    def objective(self) -> str:
        return OBJECTIVES[self.problem_type]


def setting(section: dict, key: str, where: str) -> Any:
    """`section[key]`, or a ConfigError naming the missing `where.key`."""
    if not isinstance(section, dict) or key not in section:
        raise ConfigError(f"missing setting {where}.{key}" if where else f"missing setting {key}")
    return section[key]


def metric_and_threshold(
    section: dict, where: str, metrics: Iterable[str], problem_type: str
) -> tuple[str, float]:
    """A section's `metric`, one of `metrics` for the problem type, and its numeric `threshold`
    (the quality gate's, and the monitoring job's model-quality alarm)."""
    metric = setting(section, "metric", where)
    if metric not in metrics:
        raise ConfigError(
            f"{where}.metric must be one of {sorted(metrics)} for {problem_type}, got {metric!r}"
        )
    threshold = setting(section, "threshold", where)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ConfigError(f"{where}.threshold must be a number, got {threshold!r}")
    return metric, threshold


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _text_list(value: Any, name: str, allow_empty: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name} must be a list of names, got {value!r}")
    if not value and not allow_empty:
        raise ConfigError(f"{name} must list at least one value")
    return tuple(value)


def _endpoint(raw: Any, stage: str) -> EndpointSettings:
    where = f"endpoints.{stage}"
    percentage = setting(raw, "data_capture_sampling_percentage", where)
    if (
        isinstance(percentage, bool)
        or not isinstance(percentage, int)
        or not 0 <= percentage <= 100
    ):
        raise ConfigError(
            f"{where}.data_capture_sampling_percentage must be an integer from 0 to 100, "
            f"got {percentage!r}"
        )
    return EndpointSettings(
        instance_type=str(setting(raw, "instance_type", where)),
        initial_instance_count=_positive_int(
            setting(raw, "initial_instance_count", where), f"{where}.initial_instance_count"
        ),
        data_capture_sampling_percentage=percentage,
    )


def parse_config(raw: Any, base_dir: Path) -> PipelineConfig:
    """Build a PipelineConfig from the parsed YAML; relative paths resolve against base_dir."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a YAML mapping")
    problem_type = setting(raw, "problem_type", "")
    if problem_type not in PROBLEM_TYPES:
        raise ConfigError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}")

    data = setting(raw, "data", "")
    split = setting(data, "split", "data")
    validation_fraction = _fraction(
        setting(split, "validation_fraction", "data.split"), "data.split.validation_fraction"
    )
    test_fraction = _fraction(
        setting(split, "test_fraction", "data.split"), "data.split.test_fraction"
    )
    if validation_fraction + test_fraction >= 1:
        raise ConfigError("data.split.validation_fraction + test_fraction must be below 1")
    seed = setting(split, "seed", "data.split")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"data.split.seed must be a non-negative integer, got {seed!r}")

    images = setting(raw, "images", "")
    processing = setting(raw, "processing", "")
    training = setting(raw, "training", "")
    hyperparameters = setting(training, "hyperparameters", "training")
    if not isinstance(hyperparameters, dict):
        raise ConfigError("training.hyperparameters must be a mapping")
    if "objective" in hyperparameters:
        raise ConfigError(
            "training.hyperparameters.objective is set from problem_type; remove it from the file"
        )

    metric, threshold = metric_and_threshold(
        setting(raw, "quality_gate", ""), "quality_gate", GATE_METRICS[problem_type], problem_type
    )

    registry = setting(raw, "registry", "")
    endpoints = setting(raw, "endpoints", "")
    return PipelineConfig(
        problem_type=problem_type,
        sample_data_path=base_dir / str(setting(data, "sample_path", "data")),
        target_column=str(setting(data, "target_column", "data")),
        feature_columns=_text_list(
            setting(data, "feature_columns", "data"), "data.feature_columns", allow_empty=True
        ),
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        split_seed=seed,
        sklearn_image_version=str(setting(images, "sklearn_version", "images")),
        xgboost_image_version=str(setting(images, "xgboost_version", "images")),
        processing_instance_type=str(setting(processing, "instance_type", "processing")),
        processing_instance_count=_positive_int(
            setting(processing, "instance_count", "processing"), "processing.instance_count"
        ),
        training_instance_type=str(setting(training, "instance_type", "training")),
        training_instance_count=_positive_int(
            setting(training, "instance_count", "training"), "training.instance_count"
        ),
        hyperparameters=dict(hyperparameters),
        gate_metric=metric,
        gate_threshold=float(threshold),
        inference_instance_types=_text_list(
            setting(registry, "inference_instance_types", "registry"),
            "registry.inference_instance_types",
            allow_empty=False,
        ),
        transform_instance_types=_text_list(
            setting(registry, "transform_instance_types", "registry"),
            "registry.transform_instance_types",
            allow_empty=False,
        ),
        endpoints={
            stage: _endpoint(setting(endpoints, stage, "endpoints"), stage) for stage in STAGES
        },
    )


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> PipelineConfig:
    """Read the YAML file; its paths are relative to the repository root, two levels up."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} not found")
    with path.open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    return parse_config(raw, path.resolve().parent.parent)

"""Shared fixtures: offline AWS settings, pipeline configs for both problem types, sample data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_pipeline.config import PipelineConfig, parse_config

REPO_ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-west-1"
ACCOUNT = "123456789012"
PROJECT = "Demo-Project"
BUCKET = "demo-project-artifacts"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/demo-project-pipeline"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
GROUP = "Demo-Project-models"
TARGETS = {"regression": "progression", "binary_classification": "label"}


def _offline_environment() -> None:
    """Point boto3 and the SageMaker SDK at fake credentials, before either is imported."""
    sdk_config = Path(tempfile.gettempdir()) / "ml-pipeline-tests" / "sagemaker-config.yaml"
    sdk_config.parent.mkdir(parents=True, exist_ok=True)
    # The SDK's only telemetry switch is this SDK-defaults setting.
    sdk_config.write_text(
        "SchemaVersion: '1.0'\n"
        "SageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
    )
    os.environ.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        SAGEMAKER_VALIDATE_ROLE="false",
        SAGEMAKER_USER_CONFIG_OVERRIDE=str(sdk_config),
    )
    os.environ.pop("AWS_PROFILE", None)


_offline_environment()


def config_dict(problem_type: str, sample_path: str = "data/sample.csv") -> dict:
    """The settings config/pipeline.yml holds, for either problem type."""
    regression = problem_type == "regression"
    return {
        "problem_type": problem_type,
        "data": {
            "sample_path": sample_path,
            "target_column": TARGETS[problem_type],
            "feature_columns": [],
            "split": {"validation_fraction": 0.2, "test_fraction": 0.2, "seed": 7},
        },
        "images": {"sklearn_version": "1.4-2", "xgboost_version": "1.7-1"},
        "processing": {"instance_type": "ml.m5.large", "instance_count": 1},
        "training": {
            "instance_type": "ml.m5.xlarge",
            "instance_count": 1,
            "hyperparameters": {"num_round": 20, "max_depth": 2, "eta": 0.3},
        },
        "quality_gate": {
            "metric": "rmse" if regression else "auc",
            "threshold": 70.0 if regression else 0.9,
        },
        "registry": {
            "inference_instance_types": ["ml.m5.large", "ml.c5.large"],
            "transform_instance_types": ["ml.m5.xlarge"],
        },
        "endpoints": {
            "staging": {
                "instance_type": "ml.t2.medium",
                "initial_instance_count": 1,
                "data_capture_sampling_percentage": 100,
            },
            "prod": {
                "instance_type": "ml.m5.large",
                "initial_instance_count": 2,
                "data_capture_sampling_percentage": 25,
            },
        },
    }


def make_config(problem_type: str, base_dir: Path = REPO_ROOT, **overrides) -> PipelineConfig:
    raw = config_dict(problem_type)
    raw.update(overrides)
    return parse_config(raw, base_dir)


def synthetic_frame(problem_type: str, rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """A small learnable dataset: the target depends on two of the three features."""
    rng = np.random.RandomState(seed)
    features = pd.DataFrame(
        {
            "f_a": rng.normal(size=rows),
            "f_b": rng.uniform(-2, 2, size=rows),
            "f_noise": rng.normal(size=rows),
        }
    )
    signal = 3 * features["f_a"] - 2 * features["f_b"]
    if problem_type == "regression":
        target = 50 + 10 * signal + rng.normal(scale=1.0, size=rows)
    else:
        target = (signal + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    return features.assign(**{TARGETS[problem_type]: target})


@pytest.fixture(params=["regression", "binary_classification"])
def problem_type(request) -> str:
    return request.param


@pytest.fixture
def sample_repo(tmp_path: Path, problem_type: str) -> Path:
    """A repository layout with config/pipeline.yml and a synthetic sample CSV."""
    import yaml

    (tmp_path / "data").mkdir()
    synthetic_frame(problem_type).to_csv(tmp_path / "data" / "sample.csv", index=False)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "pipeline.yml").write_text(yaml.safe_dump(config_dict(problem_type)))
    return tmp_path

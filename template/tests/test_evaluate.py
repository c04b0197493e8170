"""The evaluation script: metrics, report layout, and the model archive of the built-in XGBoost."""

from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost
from conftest import REPO_ROOT, TARGETS, synthetic_frame

from ml_pipeline import evaluate, preprocess
from ml_pipeline.config import REPORT_SECTIONS, load_config


def write_model_archive(booster: xgboost.Booster, archive: Path, member: str) -> None:
    model_file = archive.parent / "model.ubj"
    booster.save_model(str(model_file))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_file, arcname=member)
    model_file.unlink()


def train_booster(train: pd.DataFrame, target: str, params: dict, rounds: int):
    """Train like the built-in algorithm: on headerless data, so without feature names."""
    features = train.drop(columns=[target]).to_numpy(dtype=float)
    dtrain = xgboost.DMatrix(features, label=train[target].to_numpy())
    return xgboost.train(params, dtrain, num_boost_round=rounds)


def test_regression_report_matches_hand_computed_values():
    report = evaluate.build_report(
        "regression", np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 3.0, 6.0])
    )
    metrics = report["regression_metrics"]
    assert metrics["mse"]["value"] == pytest.approx(1.25)
    assert metrics["rmse"]["value"] == pytest.approx(math.sqrt(1.25))
    assert metrics["mae"]["value"] == pytest.approx(0.75)
    # 1 - SSE / SST = 1 - 5 / 5
    assert metrics["r2"]["value"] == pytest.approx(0.0)


def test_binary_report_matches_hand_computed_values():
    y_true = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    metrics = evaluate.build_report("binary_classification", y_true, scores)[
        "binary_classification_metrics"
    ]
    # Positive/negative pairs ranked correctly: 5 of 6.
    assert metrics["auc"]["value"] == pytest.approx(5 / 6)
    assert metrics["accuracy"]["value"] == pytest.approx(3 / 5)
    assert metrics["precision"]["value"] == pytest.approx(2 / 3)
    assert metrics["recall"]["value"] == pytest.approx(2 / 3)
    assert metrics["f1"]["value"] == pytest.approx(2 / 3)
    assert metrics["confusion_matrix"] == {"0": {"0": 1, "1": 1}, "1": {"0": 1, "1": 2}}


def test_report_sections_match_what_the_quality_gate_reads():
    assert evaluate.REPORT_SECTIONS == REPORT_SECTIONS


def test_build_report_rejects_unknown_problem_type():
    with pytest.raises(ValueError, match="unknown problem type 'multiclass'"):
        evaluate.build_report("multiclass", np.array([1.0]), np.array([1.0]))


@pytest.mark.parametrize("member", ["xgboost-model", "./xgboost-model"])
def test_load_booster_reads_the_archive_member(tmp_path, member):
    frame = synthetic_frame("regression", rows=50)
    booster = train_booster(frame, "progression", {"objective": "reg:squarederror"}, 5)
    write_model_archive(booster, tmp_path / "model.tar.gz", member)
    loaded = evaluate.load_booster(tmp_path / "model.tar.gz")
    features = frame.drop(columns=["progression"])
    np.testing.assert_allclose(
        evaluate.predict(loaded, features), evaluate.predict(booster, features)
    )


def test_load_booster_fails_clearly_without_the_model_file(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "other.txt", arcname="other.txt")
    with pytest.raises(FileNotFoundError, match="no xgboost-model file"):
        evaluate.load_booster(tmp_path / "model.tar.gz")


def test_main_writes_the_model_metrics_report(tmp_path, problem_type):
    target = TARGETS[problem_type]
    objective = "reg:squarederror" if problem_type == "regression" else "binary:logistic"
    frame = synthetic_frame(problem_type, rows=300)
    train, test = frame.iloc[:240], frame.iloc[240:]
    booster = train_booster(train, target, {"objective": objective, "max_depth": 3}, 30)
    (tmp_path / "model").mkdir()
    write_model_archive(booster, tmp_path / "model" / "model.tar.gz", "xgboost-model")
    (tmp_path / "test").mkdir()
    test[[target, "f_a", "f_b", "f_noise"]].to_csv(tmp_path / "test" / "test.csv", index=False)

    evaluate.main(
        [f"--problem-type={problem_type}", f"--target-column={target}", f"--base-dir={tmp_path}"]
    )

    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    scores = booster.predict(xgboost.DMatrix(test[["f_a", "f_b", "f_noise"]].to_numpy()))
    if problem_type == "regression":
        rmse = float(np.sqrt(np.mean((test[target].to_numpy() - scores) ** 2)))
        assert list(report) == ["regression_metrics"]
        assert report["regression_metrics"]["rmse"]["value"] == pytest.approx(rmse)
        # The target spans roughly +-60 around 50; a learnt model is far better than that.
        assert rmse < 15
    else:
        accuracy = float(np.mean((scores >= 0.5) == test[target].to_numpy()))
        metrics = report["binary_classification_metrics"]
        assert list(report) == ["binary_classification_metrics"]
        assert metrics["accuracy"]["value"] == pytest.approx(accuracy)
        assert 0.8 < metrics["auc"]["value"] <= 1


def test_shipped_sample_data_passes_the_configured_quality_gate(tmp_path):
    """Replays preprocess -> train -> evaluate locally on the repository's own data and config."""
    config = load_config(REPO_ROOT / "config" / "pipeline.yml")
    (tmp_path / "input" / "data").mkdir(parents=True)
    pd.read_csv(config.sample_data_path).to_csv(
        tmp_path / "input" / "data" / "raw.csv", index=False
    )
    preprocess.main(
        [
            f"--target-column={config.target_column}",
            f"--feature-columns={','.join(config.feature_columns)}",
            f"--validation-fraction={config.validation_fraction}",
            f"--test-fraction={config.test_fraction}",
            f"--seed={config.split_seed}",
            f"--base-dir={tmp_path}",
        ]
    )
    train = pd.read_csv(tmp_path / "train" / "train.csv", header=None)
    params = {"objective": config.objective, **config.hyperparameters}
    rounds = int(params.pop("num_round"))
    booster = xgboost.train(
        params, xgboost.DMatrix(train.iloc[:, 1:].to_numpy(), label=train[0]), rounds
    )
    (tmp_path / "model").mkdir()
    write_model_archive(booster, tmp_path / "model" / "model.tar.gz", "xgboost-model")

    report = evaluate.evaluate(config.problem_type, config.target_column, tmp_path)

    section = evaluate.REPORT_SECTIONS[config.problem_type]
    value = report[section][config.gate_metric]["value"]
    # Pass with a 10 % margin, so a different container build does not flip the gate.
    if config.gate_direction == "maximum":
        assert value <= 0.9 * config.gate_threshold
    else:
        assert value >= config.gate_threshold + 0.1 * (1 - config.gate_threshold)

"""Processing-job script: score the trained model on the test split and write evaluation.json.

Runs in the built-in XGBoost container (which ships xgboost, pandas and scikit-learn) and is
uploaded on its own, so it imports nothing from the rest of the package. The report uses the
SageMaker model-metrics layout so the model registry can show it next to the model package.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost
from sklearn import metrics

logger = logging.getLogger(__name__)

BASE_DIR = Path("/opt/ml/processing")
# Name the built-in XGBoost algorithm gives the booster inside model.tar.gz.
MODEL_FILE = "xgboost-model"
REPORT_SECTIONS = {
    "regression": "regression_metrics",
    "binary_classification": "binary_classification_metrics",
}
CLASSIFICATION_CUTOFF = 0.5


def load_booster(model_archive: Path) -> xgboost.Booster:
    """Load the booster from the training job's model.tar.gz without unpacking it to disk."""
    with tarfile.open(model_archive) as archive:
        # Archives packed from a directory name their members "./xgboost-model".
        members = [
            m for m in archive.getmembers() if m.isfile() and Path(m.name).name == MODEL_FILE
        ]
        if not members:
            raise FileNotFoundError(f"no {MODEL_FILE} file in {model_archive}")
        raw = bytearray(archive.extractfile(members[0]).read())
    booster = xgboost.Booster()
    booster.load_model(raw)
    return booster


def predict(booster: xgboost.Booster, features: pd.DataFrame) -> np.ndarray:
    # The built-in algorithm trained on headerless CSVs, so its booster knows no feature names.
    return booster.predict(xgboost.DMatrix(features.to_numpy(dtype=float)))


def _metric(value: float) -> dict:
    return {"value": float(value)}


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    mse = metrics.mean_squared_error(y_true, y_pred)
    return {
        "mse": _metric(mse),
        "rmse": _metric(math.sqrt(mse)),
        "mae": _metric(metrics.mean_absolute_error(y_true, y_pred)),
        "r2": _metric(metrics.r2_score(y_true, y_pred)),
    }


def binary_classification_report(y_true: np.ndarray, y_score: np.ndarray) -> dict:
    labels = (y_score >= CLASSIFICATION_CUTOFF).astype(int)
    (tn, fp), (fn, tp) = metrics.confusion_matrix(y_true, labels, labels=[0, 1])
    return {
        "auc": _metric(metrics.roc_auc_score(y_true, y_score)),
        "f1": _metric(metrics.f1_score(y_true, labels, zero_division=0)),
        "accuracy": _metric(metrics.accuracy_score(y_true, labels)),
        "precision": _metric(metrics.precision_score(y_true, labels, zero_division=0)),
        "recall": _metric(metrics.recall_score(y_true, labels, zero_division=0)),
        "confusion_matrix": {
            "0": {"0": int(tn), "1": int(fp)},
            "1": {"0": int(fn), "1": int(tp)},
        },
    }


def build_report(problem_type: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    if problem_type == "regression":
        body = regression_report(y_true, y_pred)
    elif problem_type == "binary_classification":
        body = binary_classification_report(y_true.astype(int), y_pred)
    else:
        raise ValueError(f"unknown problem type {problem_type!r}")
    return {REPORT_SECTIONS[problem_type]: body}


def evaluate(problem_type: str, target_column: str, base_dir: Path) -> dict:
    test = pd.read_csv(base_dir / "test" / "test.csv")
    y_true = test.pop(target_column).to_numpy()
    booster = load_booster(base_dir / "model" / "model.tar.gz")
    report = build_report(problem_type, y_true, predict(booster, test))
    out_dir = base_dir / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problem-type", choices=sorted(REPORT_SECTIONS), required=True)
    parser.add_argument("--target-column", required=True)
    parser.add_argument("--base-dir", type=Path, default=BASE_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = evaluate(args.problem_type, args.target_column, args.base_dir)
    logger.info("evaluation report: %s", json.dumps(report))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()

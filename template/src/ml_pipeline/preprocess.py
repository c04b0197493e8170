"""Processing-job script: split the raw CSV into XGBoost-ready train/validation/test files.

SageMaker uploads only this file to the scikit-learn container, so it imports nothing from the
rest of the package. The smoke test imports `split_dataset` from here so that it sends the
endpoint exactly the rows the pipeline held out for testing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

BASE_DIR = Path("/opt/ml/processing")


def read_input(input_dir: Path) -> pd.DataFrame:
    """Read every CSV file under `input_dir` (a single file or a folder of parts)."""
    files = sorted(input_dir.rglob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no .csv file under {input_dir}")
    return pd.concat((pd.read_csv(f) for f in files), ignore_index=True)


def select_columns(
    df: pd.DataFrame, target_column: str, feature_columns: list[str] | None
) -> pd.DataFrame:
    """Return the target followed by the features, dropping rows without a target.

    The built-in XGBoost algorithm reads the label from the first CSV column.
    """
    if target_column not in df.columns:
        raise ValueError(f"target column {target_column!r} not in the data: {list(df.columns)}")
    features = feature_columns or [c for c in df.columns if c != target_column]
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise ValueError(f"feature columns not in the data: {missing}")
    if target_column in features:
        raise ValueError(f"target column {target_column!r} is also listed as a feature")
    selected = df[[target_column, *features]]
    return selected.dropna(subset=[target_column]).reset_index(drop=True)


def split_dataset(
    df: pd.DataFrame, validation_fraction: float, test_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle with a fixed seed and cut into (train, validation, test).

    numpy's legacy RandomState keeps its stream stable across numpy versions, so the
    processing container and a developer laptop produce the same split.
    """
    if validation_fraction <= 0 or test_fraction <= 0 or validation_fraction + test_fraction >= 1:
        raise ValueError(
            "validation_fraction and test_fraction must be positive and sum to less than 1, "
            f"got {validation_fraction} and {test_fraction}"
        )
    n_rows = len(df)
    n_test = round(n_rows * test_fraction)
    n_validation = round(n_rows * validation_fraction)
    if n_test == 0 or n_validation == 0 or n_test + n_validation >= n_rows:
        raise ValueError(f"{n_rows} rows are too few for the requested split")
    order = np.random.RandomState(seed).permutation(n_rows)
    test = df.iloc[order[:n_test]]
    validation = df.iloc[order[n_test : n_test + n_validation]]
    train = df.iloc[order[n_test + n_validation :]]
    return (
        train.reset_index(drop=True),
        validation.reset_index(drop=True),
        test.reset_index(drop=True),
    )


def write_outputs(
    train: pd.DataFrame, validation: pd.DataFrame, test: pd.DataFrame, base_dir: Path
) -> None:
    """Write headerless train/validation CSVs for XGBoost and the test split with a header."""
    for name, frame, header in (
        ("train", train, False),
        ("validation", validation, False),
        ("test", test, True),
    ):
        out_dir = base_dir / name
        out_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out_dir / f"{name}.csv", header=header, index=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target-column", required=True)
    parser.add_argument(
        "--feature-columns",
        default="",
        help="comma-separated feature columns; empty means every column except the target",
    )
    parser.add_argument("--validation-fraction", type=float, required=True)
    parser.add_argument("--test-fraction", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--base-dir", type=Path, default=BASE_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    features = [c.strip() for c in args.feature_columns.split(",") if c.strip()]
    df = select_columns(read_input(args.base_dir / "input" / "data"), args.target_column, features)
    train, validation, test = split_dataset(
        df, args.validation_fraction, args.test_fraction, args.seed
    )
    logger.info("rows: train=%d validation=%d test=%d", len(train), len(validation), len(test))
    write_outputs(train, validation, test, args.base_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()

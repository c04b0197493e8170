"""The processing script that splits the raw CSV for XGBoost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_pipeline import preprocess


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": np.arange(20, dtype=float),
            "y": np.arange(20, dtype=float) * 10,
            "b": np.arange(20, dtype=float) + 0.5,
        }
    )


def test_select_columns_puts_target_first_and_keeps_every_other_column(frame):
    selected = preprocess.select_columns(frame, "y", None)
    assert list(selected.columns) == ["y", "a", "b"]
    assert selected["y"].tolist() == frame["y"].tolist()


def test_select_columns_keeps_only_listed_features_in_their_order(frame):
    selected = preprocess.select_columns(frame, "y", ["b", "a"])
    assert list(selected.columns) == ["y", "b", "a"]


def test_select_columns_drops_rows_without_target(frame):
    frame.loc[[3, 7], "y"] = np.nan
    selected = preprocess.select_columns(frame, "y", None)
    assert len(selected) == 18
    assert selected["y"].notna().all()
    assert list(selected.index) == list(range(18))


@pytest.mark.parametrize(
    ("target", "features", "message"),
    [
        ("missing", None, "target column 'missing' not in the data"),
        ("y", ["a", "nope"], r"feature columns not in the data: \['nope'\]"),
        ("y", ["a", "y"], "also listed as a feature"),
    ],
)
def test_select_columns_rejects_bad_column_settings(frame, target, features, message):
    with pytest.raises(ValueError, match=message):
        preprocess.select_columns(frame, target, features)


def test_split_sizes_are_disjoint_and_cover_every_row(frame):
    train, validation, test = preprocess.split_dataset(frame, 0.2, 0.25, seed=3)
    assert (len(train), len(validation), len(test)) == (11, 4, 5)
    rows = pd.concat([train, validation, test])["a"].tolist()
    assert sorted(rows) == frame["a"].tolist()


def test_split_follows_the_numpy_legacy_stream():
    # RandomState(42).permutation(10) is fixed by numpy's stream-compatibility policy; if this
    # breaks, the smoke test no longer sends the rows the pipeline held out.
    df = pd.DataFrame({"row": range(10)})
    train, validation, test = preprocess.split_dataset(df, 0.2, 0.3, seed=42)
    assert test["row"].tolist() == [8, 1, 5]
    assert validation["row"].tolist() == [0, 7]
    assert train["row"].tolist() == [2, 9, 4, 3, 6]


def test_split_is_deterministic_for_a_seed_and_changes_with_it(frame):
    first = preprocess.split_dataset(frame, 0.2, 0.2, seed=11)
    again = preprocess.split_dataset(frame, 0.2, 0.2, seed=11)
    other = preprocess.split_dataset(frame, 0.2, 0.2, seed=12)
    for left, right in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(left, right)
    assert first[2]["a"].tolist() != other[2]["a"].tolist()


@pytest.mark.parametrize(("validation", "test"), [(0.0, 0.2), (0.2, 0.0), (0.5, 0.5)])
def test_split_rejects_fractions_that_leave_a_split_empty(frame, validation, test):
    with pytest.raises(ValueError, match="must be positive and sum to less than 1"):
        preprocess.split_dataset(frame, validation, test, seed=1)


def test_split_rejects_too_few_rows():
    with pytest.raises(ValueError, match="3 rows are too few"):
        preprocess.split_dataset(pd.DataFrame({"a": [1, 2, 3]}), 0.1, 0.1, seed=1)


def test_read_input_concatenates_every_csv_part(tmp_path):
    (tmp_path / "part").mkdir()
    pd.DataFrame({"a": [1, 2]}).to_csv(tmp_path / "one.csv", index=False)
    pd.DataFrame({"a": [3]}).to_csv(tmp_path / "part" / "two.csv", index=False)
    assert preprocess.read_input(tmp_path)["a"].tolist() == [1, 2, 3]


def test_read_input_fails_without_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no \.csv file"):
        preprocess.read_input(tmp_path)


def test_main_writes_xgboost_ready_splits(tmp_path, frame):
    (tmp_path / "input" / "data").mkdir(parents=True)
    frame.to_csv(tmp_path / "input" / "data" / "raw.csv", index=False)
    preprocess.main(
        [
            "--target-column=y",
            "--feature-columns=b",
            "--validation-fraction=0.25",
            "--test-fraction=0.25",
            "--seed=5",
            f"--base-dir={tmp_path}",
        ]
    )
    train = pd.read_csv(tmp_path / "train" / "train.csv", header=None)
    validation = pd.read_csv(tmp_path / "validation" / "validation.csv", header=None)
    test = pd.read_csv(tmp_path / "test" / "test.csv")
    assert (len(train), len(validation), len(test)) == (10, 5, 5)
    # Headerless, target first, only the selected feature: y == 10 * (b - 0.5).
    assert train.shape[1] == 2
    assert np.allclose(train[0], 10 * (train[1] - 0.5))
    assert list(test.columns) == ["y", "b"]
    assert np.allclose(test["y"], 10 * (test["b"] - 0.5))

"""The monitoring job: drift statistics on synthetic data, capture parsing, quality, reports."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
import xgboost
from conftest import KMS_KEY_ARN, REGION, TARGETS, synthetic_frame
from moto import mock_aws
from sklearn import metrics as sk_metrics
from test_evaluate import train_booster, write_model_archive

from ml_pipeline import drift

THRESHOLDS = drift.Thresholds()
FEATURES = ["f_a", "f_b", "f_noise"]
# Seeds for the detection and false-alarm rates: enough that a 2 % false-alarm rate shows.
SEEDS = 200
WINDOW_ROWS = 500
NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def model_output(features: pd.DataFrame) -> np.ndarray:
    """A stand-in model: a fixed linear score of two features."""
    return (3 * features["f_a"] - 2 * features["f_b"]).to_numpy()


@pytest.fixture(scope="module")
def baseline() -> dict:
    features = synthetic_frame("regression", rows=2000, seed=1)[FEATURES]
    return drift.build_baseline(features, model_output(features), "regression", "image:1")


def window(seed: int, shift: float = 0.0, rows: int = WINDOW_ROWS) -> pd.DataFrame:
    features = synthetic_frame("regression", rows=rows, seed=10_000 + seed)[FEATURES]
    return features.assign(f_a=features["f_a"] + shift)


def capture_lines(features: pd.DataFrame, predictions, start: datetime = NOW) -> list[str]:
    """One data-capture record per row, as a real-time endpoint writes them."""
    lines = []
    for i, row in enumerate(features.itertuples(index=False)):
        when = start + timedelta(seconds=i)
        lines.append(
            json.dumps(
                {
                    "captureData": {
                        "endpointInput": {
                            "observedContentType": "text/csv",
                            "mode": "INPUT",
                            "data": ",".join("" if pd.isna(v) else repr(v) for v in row),
                            "encoding": "CSV",
                        },
                        "endpointOutput": {
                            "observedContentType": "text/csv; charset=utf-8",
                            "mode": "OUTPUT",
                            "data": f"{predictions[i]}\n",
                            "encoding": "CSV",
                        },
                    },
                    "eventMetadata": {
                        "eventId": f"event-{i}",
                        "inferenceId": f"req-{i}",
                        "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                    "eventVersion": "0",
                }
            )
        )
    return lines


def drifted_features(baseline: dict, features: pd.DataFrame) -> set[str]:
    found = drift.data_drift(baseline, features, [], THRESHOLDS)
    return {name for name, result in found.items() if result["drift"]}


# --- statistics ---------------------------------------------------------------------------------


def test_psi_is_zero_for_equal_histograms_and_grows_with_the_shift():
    assert drift.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    small = drift.psi([25, 25, 25, 25], [30, 25, 25, 20])
    large = drift.psi([25, 25, 25, 25], [55, 25, 15, 5])
    assert 0 < small < 0.1 < large
    # Hand-computed: (0.3-0.25)ln(0.3/0.25) + (0.2-0.25)ln(0.2/0.25)
    assert small == pytest.approx(0.05 * np.log(1.2) - 0.05 * np.log(0.8))


def test_psi_refuses_histograms_over_different_bins():
    with pytest.raises(ValueError, match="differ in bins"):
        drift.psi([1, 2], [1, 2, 3])


def test_histogram_bins_are_closed_on_the_right_and_skip_non_finite_values():
    assert drift.histogram(np.array([0.0, 1.0, 1.5, 2.0, 9.0, np.nan]), [1.0, 2.0]) == [2, 2, 1]


def test_bin_edges_of_discrete_data_are_unique_and_keep_values_apart():
    values = np.array([0.0] * 40 + [1.0] * 30 + [2.0] * 30)
    edges = drift.bin_edges(values)
    assert edges == sorted(set(edges))
    assert sorted(c for c in drift.histogram(values, edges) if c) == [30, 30, 40]


def test_shifted_feature_is_detected_and_unshifted_ones_are_not(baseline):
    assert drifted_features(baseline, window(0, shift=1.0)) == {"f_a"}
    assert drifted_features(baseline, window(0)) == set()


def _rates(baseline: dict, shift: float) -> tuple[float, float]:
    detected = false_alarms = 0
    for seed in range(SEEDS):
        detected += "f_a" in drifted_features(baseline, window(seed, shift=shift))
        false_alarms += bool(drifted_features(baseline, window(seed)))
    return detected / SEEDS, false_alarms / SEEDS


def test_detection_and_false_alarm_rates_over_many_windows(baseline):
    """500-row windows: a shift of one standard deviation is always caught, and windows from the
    training distribution almost never alarm (any of 3 features). Half a standard deviation is
    a PSI of about 0.25, next to the 0.2 threshold, so it is caught in most windows, not all."""
    detection, false_alarm = _rates(baseline, shift=1.0)
    half_detection, _ = _rates(baseline, shift=0.5)
    print(  # shown with pytest -s; the numbers the README quotes
        f"\nshift 1.0 sd: detection {detection:.3f}; shift 0.5 sd: detection "
        f"{half_detection:.3f}; no shift: false alarms {false_alarm:.3f} ({SEEDS} windows)"
    )
    assert detection == 1.0
    assert half_detection >= 0.5
    assert false_alarm <= 0.02


def test_prediction_drift_follows_a_shift_of_the_model_input(baseline):
    shifted = window(1, shift=1.0)
    report = drift.compare(baseline["prediction"], model_output(shifted), THRESHOLDS)
    assert report["drift"]
    assert report["psi"] > THRESHOLDS.psi
    steady = drift.compare(baseline["prediction"], model_output(window(1)), THRESHOLDS)
    assert not steady["drift"]


def test_segment_drift_finds_a_shift_that_only_one_segment_sees():
    rng = np.random.RandomState(3)
    group = rng.randint(0, 2, size=4000).astype(float)
    features = pd.DataFrame({"group": group, "x": rng.normal(size=4000)})
    baseline = drift.build_baseline(features, features["x"].to_numpy(), "regression", "image:1")
    current = pd.DataFrame({"group": group[:1000], "x": rng.normal(size=1000)})
    predictions = current["x"].to_numpy() + np.where(current["group"] == 1, 1.5, 0.0)
    found = drift.segment_drift(baseline, current, predictions, ["group"], THRESHOLDS)
    segments = found["group"]["segments"]
    assert segments["=1"]["psi"] > THRESHOLDS.psi > segments["=0"]["psi"]
    assert found["group"]["max_psi"] == segments["=1"]["psi"]


def test_segments_of_a_continuous_attribute_are_its_quartiles(baseline):
    spec = next(f for f in baseline["features"] if f["name"] == "f_a")["segments"]
    assert spec["kind"] == "quantiles"
    assert len(spec["edges"]) == 3
    assert sum(sum(c) for c in spec["prediction_counts"].values()) == baseline["row_count"]


# --- captured data ------------------------------------------------------------------------------


def test_capture_records_become_rows_predictions_and_inference_ids():
    features = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    captured = drift.parse_capture_lines(capture_lines(features, [0.5, 0.7]))
    assert captured.rows == [["1.0", "3.0"], ["2.0", "4.0"]]
    assert captured.predictions == [0.5, 0.7]
    assert captured.inference_ids == ["req-0", "req-1"]


def test_base64_and_multi_row_requests_are_read():
    record = {
        "captureData": {
            "endpointInput": {
                "data": base64.b64encode(b"1,2\n3,4").decode(),
                "encoding": "BASE64",
            },
            "endpointOutput": {"data": "0.1,0.9", "encoding": "CSV"},
        },
        "eventMetadata": {"inferenceId": "batch"},
    }
    captured = drift.parse_capture_lines([json.dumps(record)])
    assert captured.rows == [["1", "2"], ["3", "4"]]
    assert captured.predictions == [0.1, 0.9]
    assert captured.inference_ids == ["batch#0", "batch#1"]


def test_unreadable_records_are_counted_not_fatal():
    good = capture_lines(pd.DataFrame({"a": [1.0]}), [0.5])
    mismatched = json.loads(good[0])
    mismatched["captureData"]["endpointOutput"]["data"] = "0.1,0.2"
    captured = drift.parse_capture_lines([*good, "{not json", json.dumps(mismatched)])
    assert len(captured.rows) == 1
    assert captured.unreadable_records == 2


def test_records_outside_the_window_are_left_out():
    lines = capture_lines(pd.DataFrame({"a": [1.0, 2.0, 3.0]}), [0.1, 0.2, 0.3])
    captured = drift.parse_capture_lines(lines, (NOW + timedelta(seconds=1), NOW + timedelta(2)))
    assert captured.inference_ids == ["req-1", "req-2"]


def test_missing_values_and_schema_violations_are_measured(baseline):
    captured = drift.Captured(
        rows=[["1", "", "0.5"], ["x", "1", "2"], ["1", "2"], ["1", "2", "3"]],
        predictions=[0.0] * 4,
        inference_ids=["a", "b", "c", "d"],
    )
    frame, violations = drift.to_frame(captured, FEATURES)
    assert violations == 2  # a non-number, and a row with two columns
    assert frame.isna().sum().to_dict() == {"f_a": 1, "f_b": 1, "f_noise": 1}
    settings = drift.MonitorSettings("regression", [], [], drift.Thresholds(min_rows=1))
    report = drift.evaluate_window(baseline, captured, settings)
    assert report["metrics"]["SchemaViolationRate"] == pytest.approx(0.5)
    assert report["features"]["f_b"]["missing_rate"] == pytest.approx(0.25)
    assert report["metrics"]["MaxMissingRateIncrease"] == pytest.approx(0.25)


def test_no_traffic_reports_no_data_and_no_drift(baseline):
    settings = drift.MonitorSettings("regression", [], [], THRESHOLDS)
    report = drift.evaluate_window(baseline, drift.Captured(), settings)
    assert report["status"] == "no data"
    assert report["metrics"] == {"RecordCount": 0, "NoData": 1.0}


def test_too_few_rows_are_counted_but_not_judged(baseline):
    features = window(0, shift=3.0, rows=20)
    captured = drift.parse_capture_lines(capture_lines(features, model_output(features)))
    settings = drift.MonitorSettings("regression", [], [], THRESHOLDS)
    report = drift.evaluate_window(baseline, captured, settings)
    assert report["status"].startswith("too few rows")
    assert "DriftedFeatureCount" not in report["metrics"]


def test_watching_an_unknown_feature_is_refused(baseline):
    settings = drift.MonitorSettings("regression", ["f_z"], [], THRESHOLDS)
    with pytest.raises(ValueError, match="f_z"):
        drift.evaluate_window(baseline, drift.Captured(), settings)


# --- model quality ------------------------------------------------------------------------------


def test_labels_join_by_inference_id_for_regression():
    labels = drift.read_labels(
        ['{"inferenceId": "a", "label": 3}', "", '{"inferenceId": "b", "label": [1, 5]}']
    )
    assert labels == {"a": 3.0, "b#0": 1.0, "b#1": 5.0}
    quality = drift.model_quality(
        "regression", ["a", "b#1", "unlabelled"], np.array([1.0, 5.0, 9.0]), labels
    )
    assert quality == {"labelled_rows": 2, "rmse": pytest.approx(np.sqrt(2.0))}


def test_classification_quality_matches_scikit_learn():
    rng = np.random.RandomState(0)
    y_true = rng.randint(0, 2, size=300)
    scores = np.clip(y_true * 0.3 + rng.uniform(size=300) * 0.7, 0, 1).round(2)  # with ties
    ids = [f"r{i}" for i in range(300)]
    quality = drift.model_quality(
        "binary_classification", ids, scores, dict(zip(ids, y_true.astype(float), strict=True))
    )
    assert quality["auc"] == pytest.approx(sk_metrics.roc_auc_score(y_true, scores))
    assert quality["f1"] == pytest.approx(sk_metrics.f1_score(y_true, scores >= 0.5))


def test_no_labels_means_no_quality_metric():
    assert drift.model_quality("regression", ["a"], np.array([1.0]), {}) == {"labelled_rows": 0}


# --- retraining trigger -------------------------------------------------------------------------


def test_retraining_is_requested_after_consecutive_drift_and_then_cools_down():
    settings = drift.MonitorSettings("regression", [], [], THRESHOLDS, 3, cooldown_hours=24)
    state, requests = {}, []
    for hour in range(30):
        state = drift.retraining_decision(state, True, NOW + timedelta(hours=hour), settings)
        requests.append(state["retraining_requested"])
    # Third drifting run, then not again until 24 hours after the first request.
    assert [h for h, r in enumerate(requests) if r] == [2, 26]


def test_a_run_without_drift_resets_the_streak():
    settings = drift.MonitorSettings("regression", [], [], THRESHOLDS, 2)
    state = drift.retraining_decision({}, True, NOW, settings)
    state = drift.retraining_decision(state, False, NOW, settings)
    state = drift.retraining_decision(state, True, NOW, settings)
    assert state == {
        "consecutive_drift_runs": 1,
        "last_retraining_request": None,
        "retraining_requested": False,
    }


# --- the job against (mocked) AWS ---------------------------------------------------------------

CAPTURE_BUCKET = "demo-capture"
ENDPOINT = "Demo-Project-prod"


def monitor_args(tmp_path, baseline: dict, **overrides) -> list[str]:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    options = {
        "--baseline": str(path),
        "--capture-uri": f"s3://{CAPTURE_BUCKET}/data-capture/prod/{ENDPOINT}/AllTraffic",
        "--report-uri": f"s3://{CAPTURE_BUCKET}/monitoring/prod",
        "--kms-key": KMS_KEY_ARN,
        "--endpoint-name": ENDPOINT,
        "--namespace": "Demo-Project/monitoring",
        "--window-minutes": "60",
        "--window-end": "2026-12-04T19:00:00Z",
        **overrides,
    }
    return ["monitor", *[item for pair in options.items() for item in pair]]


@pytest.fixture
def aws():
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=CAPTURE_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield


def published(metric: str) -> list[float]:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    result = cloudwatch.get_metric_statistics(
        Namespace="Demo-Project/monitoring",
        MetricName=metric,
        Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}],
        StartTime=NOW - timedelta(days=1),
        EndTime=NOW + timedelta(days=1),
        Period=3600,
        Statistics=["Maximum"],
    )
    return [p["Maximum"] for p in result["Datapoints"]]


def reports() -> dict[str, dict]:
    s3 = boto3.client("s3", region_name=REGION)
    found = {}
    for item in s3.list_objects_v2(Bucket=CAPTURE_BUCKET, Prefix="monitoring/")["Contents"]:
        head = s3.head_object(Bucket=CAPTURE_BUCKET, Key=item["Key"])
        body = s3.get_object(Bucket=CAPTURE_BUCKET, Key=item["Key"])["Body"].read().decode()
        found[item["Key"]] = {"key_id": head.get("SSEKMSKeyId"), "body": body}
    return found


def test_before_traffic_the_job_publishes_no_data_and_succeeds(aws, tmp_path, baseline):
    args = drift.parse_args(monitor_args(tmp_path, baseline))
    report = drift.run_monitor(args, now=NOW + timedelta(hours=1))
    assert report["status"] == "no data"
    assert published("NoData") == [1.0]
    written = reports()
    assert set(written) == {
        "monitoring/prod/2026/12/04/190000/report.json",
        "monitoring/prod/2026/12/04/190000/report.md",
        "monitoring/prod/state.json",
    }
    assert {r["key_id"] for r in written.values()} == {KMS_KEY_ARN}
    assert "status **no data**" in written["monitoring/prod/2026/12/04/190000/report.md"]["body"]


def test_the_job_reads_the_window_publishes_drift_and_writes_the_report(aws, tmp_path, baseline):
    features = window(5, shift=1.0, rows=300)
    lines = capture_lines(features, model_output(features), start=NOW + timedelta(minutes=1))
    # Captured in the hour before the window too: the window must leave it out.
    earlier = capture_lines(window(6, rows=50), np.zeros(50), start=NOW - timedelta(minutes=30))
    s3 = boto3.client("s3", region_name=REGION)
    prefix = f"data-capture/prod/{ENDPOINT}/AllTraffic"
    s3.put_object(
        Bucket=CAPTURE_BUCKET, Key=f"{prefix}/2026/12/04/18/a.jsonl", Body="\n".join(lines)
    )
    s3.put_object(
        Bucket=CAPTURE_BUCKET, Key=f"{prefix}/2026/12/04/17/b.jsonl", Body="\n".join(earlier)
    )
    labels = [json.dumps({"inferenceId": f"req-{i}", "label": 0.0}) for i in range(10)]
    s3.put_object(
        Bucket=CAPTURE_BUCKET, Key="ground-truth/prod/2026/12/04/18/l.jsonl", Body="\n".join(labels)
    )
    args = drift.parse_args(
        monitor_args(
            tmp_path,
            baseline,
            **{"--ground-truth-uri": f"s3://{CAPTURE_BUCKET}/ground-truth/prod"},
        )
    )
    report = drift.run_monitor(args, now=NOW + timedelta(hours=1, minutes=5))
    assert report["rows"] == 300
    assert report["status"] == "drift"
    assert published("DriftedFeatureCount") == [1.0]
    assert published("NoData") == [0.0]
    assert report["quality"]["labelled_rows"] == 10
    assert published("RMSE") == [pytest.approx(report["quality"]["rmse"])]
    markdown = reports()["monitoring/prod/2026/12/04/190000/report.md"]["body"]
    assert "| f_a |" in markdown
    assert "status **drift**" in markdown


# --- baseline step ------------------------------------------------------------------------------


def test_baseline_step_writes_baseline_constraints_and_its_own_code(tmp_path):
    target = TARGETS["regression"]
    data = synthetic_frame("regression", rows=300, seed=2)[[target, *FEATURES]]
    train, test = data.iloc[:200], data.iloc[200:]
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "model").mkdir()
    train.to_csv(tmp_path / "train" / "train.csv", header=False, index=False)
    test.to_csv(tmp_path / "test" / "test.csv", index=False)
    booster = train_booster(train, target, {"objective": "reg:squarederror"}, rounds=5)
    write_model_archive(booster, tmp_path / "model" / "model.tar.gz", "xgboost-model")

    drift.main(
        [
            "baseline",
            "--problem-type=regression",
            f"--target-column={target}",
            "--monitoring-image=sklearn:1.4-2",
            f"--base-dir={tmp_path}",
        ]
    )
    out = tmp_path / "baseline"
    baseline = json.loads((out / drift.BASELINE_FILE).read_text())
    assert [f["name"] for f in baseline["features"]] == FEATURES
    assert baseline["row_count"] == 300
    assert baseline["monitoring_image"] == "sklearn:1.4-2"
    expected = booster.predict(xgboost.DMatrix(data[FEATURES].to_numpy(dtype=float)))
    assert sum(baseline["prediction"]["counts"]) == 300
    assert baseline["prediction"]["sample"] == pytest.approx(sorted(expected.tolist()), rel=1e-6)
    constraints = json.loads((out / drift.CONSTRAINTS_FILE).read_text())
    assert [f["name"] for f in constraints["features"]] == FEATURES
    assert (out / drift.SCRIPT_FILE).read_text() == Path(drift.__file__).read_text()

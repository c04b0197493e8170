"""Processing-job script: data and prediction drift of an endpoint against its model's baseline.

Model Monitor and Clarify are closed to new AWS customers, so this script is the default
monitoring engine. It has two commands:

- `baseline` runs as a step of the training pipeline, in the XGBoost image (which ships xgboost,
  pandas, numpy and scipy). It writes baseline.json (reference distribution of every feature and
  of the model's predictions, overall and per segment), constraints.json (the same schema in
  Model Monitor's format, for the opt-in engine) and a copy of this script next to them, so the
  registered model package carries the baseline and the monitoring code it was built with.
- `monitor` runs on a schedule for each deployed stage, in the scikit-learn image. It reads the
  endpoint's data capture for a window, compares it with the baseline, publishes CloudWatch
  metrics and writes report.json and report.md to S3. No traffic is not an error: it publishes
  NoData=1 and succeeds.

A feature drifts when its population stability index (PSI) reaches the threshold *and* the
two-sample Kolmogorov-Smirnov test rejects equality: PSI measures how large the shift is, KS
whether it is more than sampling noise. Either alone misfires: KS flags negligible shifts in
large windows, PSI is inflated by noise in small ones.

SageMaker uploads only this file to the container, so it imports nothing from the package; and
the built-in images run older Pythons than the project, so it stays within Python 3.8.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import logging
import math
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

logger = logging.getLogger(__name__)

BASE_DIR = Path("/opt/ml/processing")
BASELINE_FILE = "baseline.json"
CONSTRAINTS_FILE = "constraints.json"
SCRIPT_FILE = "drift.py"
BASELINE_VERSION = 1
# Decile bins of the reference data: fine enough to see a shift of a third of a standard
# deviation, coarse enough that a few hundred captured rows fill every bin.
BINS = 10
# Reference values kept per feature for the KS test; the test's power is limited by the
# (smaller) captured sample, so more would only grow baseline.json.
REFERENCE_SAMPLE = 1000
# Segments of an attribute: its distinct values when it has at most this many, else quartiles.
MAX_SEGMENT_VALUES = 10
SEGMENT_QUANTILES = (0.25, 0.5, 0.75)
# Floor for empty bins in PSI, whose log-ratio is otherwise infinite.
PSI_EPSILON = 1e-4
PREDICTION = "prediction"


# --- statistics ---------------------------------------------------------------------------------


def bin_edges(values: np.ndarray, bins: int = BINS) -> list[float]:
    """Inner edges of `bins` quantile bins of `values` (duplicates merged for discrete data)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    inner = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(e) for e in np.unique(inner)]


def histogram(values: np.ndarray, edges: list[float]) -> list[int]:
    """Counts per bin: (-inf, e0], (e0, e1], ..., (e_last, inf); non-finite values are skipped."""
    finite = values[np.isfinite(values)]
    indexes = np.searchsorted(np.asarray(edges, dtype=float), finite, side="left")
    return [int(c) for c in np.bincount(indexes, minlength=len(edges) + 1)]


def psi(reference_counts: Iterable[int], current_counts: Iterable[int]) -> float:
    """Population stability index of two histograms over the same bins."""
    reference = np.asarray(list(reference_counts), dtype=float)
    current = np.asarray(list(current_counts), dtype=float)
    if reference.shape != current.shape:
        raise ValueError(f"histograms differ in bins: {reference.size} and {current.size}")
    if reference.sum() == 0 or current.sum() == 0:
        return 0.0
    expected = np.maximum(reference / reference.sum(), PSI_EPSILON)
    actual = np.maximum(current / current.sum(), PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    reference, current = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if reference.size == 0 or current.size == 0:
        return 1.0
    return float(stats.ks_2samp(reference, current).pvalue)


def _sample(values: np.ndarray, size: int, seed: int) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size > size:
        finite = np.random.RandomState(seed).choice(finite, size=size, replace=False)
    return [float(v) for v in np.sort(finite)]


def distribution(values: np.ndarray, seed: int = 0) -> dict:
    edges = bin_edges(values)
    return {
        "bin_edges": edges,
        "counts": histogram(values, edges),
        "sample": _sample(values, REFERENCE_SAMPLE, seed),
    }


def segment_edges(values: np.ndarray) -> dict:
    """How an attribute splits rows into segments: by value if few, else by quartile."""
    finite = np.unique(values[np.isfinite(values)])
    if finite.size <= MAX_SEGMENT_VALUES:
        return {"kind": "values", "values": [float(v) for v in finite]}
    quartiles = np.unique(np.quantile(values[np.isfinite(values)], SEGMENT_QUANTILES))
    return {"kind": "quantiles", "edges": [float(e) for e in quartiles]}


def segment_labels(values: np.ndarray, spec: dict) -> np.ndarray:
    """Segment name per row ("" for rows outside every segment, such as missing values)."""
    labels = np.full(values.shape, "", dtype=object)
    finite = np.isfinite(values)
    if spec["kind"] == "values":
        for value in spec["values"]:
            labels[finite & np.isclose(values, value)] = f"={value:g}"
        return labels
    edges = spec["edges"]
    bucket = np.searchsorted(np.asarray(edges), values, side="left")
    names = [f"q{i + 1}" for i in range(len(edges) + 1)]
    labels[finite] = np.asarray(names, dtype=object)[bucket[finite]]
    return labels


# --- baseline -----------------------------------------------------------------------------------


def build_baseline(
    features: pd.DataFrame,
    predictions: np.ndarray,
    problem_type: str,
    monitoring_image: str,
    model_monitor_image: str = "",
) -> dict:
    """Reference distributions of every feature, of the predictions, and of the predictions per
    segment of every feature (so any attribute can be watched later without retraining)."""
    numeric = features.apply(pd.to_numeric, errors="coerce")
    predictions = np.asarray(predictions, dtype=float)
    prediction_edges = bin_edges(predictions)
    baseline_features = []
    for seed, name in enumerate(numeric.columns):
        values = numeric[name].to_numpy(dtype=float)
        spec = segment_edges(values)
        labels = segment_labels(values, spec)
        baseline_features.append(
            {
                "name": name,
                "dtype": "numeric",
                "missing_rate": float(np.mean(~np.isfinite(values))),
                **distribution(values, seed),
                "segments": {
                    **spec,
                    "prediction_counts": {
                        label: histogram(predictions[labels == label], prediction_edges)
                        for label in sorted(set(labels) - {""})
                    },
                },
            }
        )
    return {
        "version": BASELINE_VERSION,
        "problem_type": problem_type,
        "row_count": len(features),
        "monitoring_image": monitoring_image,
        "model_monitor_image": model_monitor_image,
        "features": baseline_features,
        PREDICTION: distribution(predictions, seed=len(baseline_features)),
    }


def model_monitor_constraints(baseline: dict) -> dict:
    """The baseline's schema in Model Monitor's constraints.json format (data quality)."""
    return {
        "version": 0.0,
        "features": [
            {
                "name": f["name"],
                "inferred_type": "Fractional",
                "completeness": round(1.0 - f["missing_rate"], 6),
            }
            for f in baseline["features"]
        ],
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 1.0,
            "domain_content_threshold": 1.0,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": 0.1,
                "comparison_method": "Robust",
            },
        },
    }


def _read_split(path: Path, header: bool, columns: list[str] | None = None) -> pd.DataFrame:
    files = sorted(path.rglob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no .csv file under {path}")
    frames = [pd.read_csv(f, header=0 if header else None) for f in files]
    frame = pd.concat(frames, ignore_index=True)
    if columns is not None:
        frame.columns = columns
    return frame


def _predict(model_archive: Path, features: pd.DataFrame) -> np.ndarray:
    # Imported here: the monitor command runs in the scikit-learn image, which has no xgboost.
    import tarfile

    import xgboost

    with tarfile.open(model_archive) as archive:
        member = next(
            m for m in archive.getmembers() if m.isfile() and Path(m.name).name == "xgboost-model"
        )
        raw = bytearray(archive.extractfile(member).read())
    booster = xgboost.Booster()
    booster.load_model(raw)
    return booster.predict(xgboost.DMatrix(features.to_numpy(dtype=float)))


def run_baseline(args: argparse.Namespace) -> dict:
    base = args.base_dir
    # The test split keeps its header; train is headerless with the target first (XGBoost's layout).
    test = _read_split(base / "test", header=True)
    train = _read_split(base / "train", header=False, columns=list(test.columns))
    data = pd.concat([train, test], ignore_index=True)
    features = data.drop(columns=[args.target_column])
    predictions = _predict(base / "model" / "model.tar.gz", features)
    baseline = build_baseline(
        features, predictions, args.problem_type, args.monitoring_image, args.model_monitor_image
    )
    out = base / "baseline"
    out.mkdir(parents=True, exist_ok=True)
    (out / BASELINE_FILE).write_text(json.dumps(baseline))
    (out / CONSTRAINTS_FILE).write_text(json.dumps(model_monitor_constraints(baseline), indent=2))
    shutil.copyfile(__file__, out / SCRIPT_FILE)
    logger.info("baseline of %d rows and %d features", len(data), len(features.columns))
    return baseline


# --- captured data ------------------------------------------------------------------------------


@dataclass
class Captured:
    """Rows of the window: feature values as sent, the prediction, the request's inference id."""

    rows: list[list[str]] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    inference_ids: list[str] = field(default_factory=list)
    unreadable_records: int = 0


def _decode(section: dict) -> str:
    data = section.get("data", "")
    if section.get("encoding", "").upper() == "BASE64":
        return base64.b64decode(data).decode("utf-8")
    return data


def _inference_time(metadata: dict) -> datetime | None:
    text = metadata.get("inferenceTime")
    if not text:
        return None
    # SageMaker writes e.g. 2026-12-04T18:00:01Z; Python 3.8's fromisoformat wants an offset.
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_capture_lines(
    lines: Iterable[str], window: tuple[datetime, datetime] | None = None
) -> Captured:
    """Read SageMaker data-capture JSON lines (CSV requests, one prediction per row), keeping
    the records whose inference time falls in `window` (start included, end excluded)."""
    captured = Captured()
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            data = record["captureData"]
            rows = list(csv.reader(io.StringIO(_decode(data["endpointInput"]).strip())))
            output = _decode(data["endpointOutput"]).replace("\n", ",")
            predictions = [float(p) for p in output.split(",") if p.strip()]
        except (KeyError, ValueError, TypeError) as error:
            logger.warning("skipping an unreadable capture record: %s", error)
            captured.unreadable_records += 1
            continue
        if len(predictions) != len(rows):
            captured.unreadable_records += 1
            continue
        metadata = record.get("eventMetadata", {})
        if window is not None:
            when = _inference_time(metadata)
            if when is not None and not window[0] <= when < window[1]:
                continue
        inference_id = metadata.get("inferenceId") or metadata.get("eventId", "")
        for index, row in enumerate(rows):
            captured.rows.append(row)
            captured.predictions.append(predictions[index])
            # Multi-row requests: the n-th row of a request is "<inference id>#<n>" in labels too.
            captured.inference_ids.append(
                inference_id if len(rows) == 1 else f"{inference_id}#{index}"
            )
    return captured


def to_frame(captured: Captured, feature_names: list[str]) -> tuple[pd.DataFrame, int]:
    """Feature frame of the captured rows (NaN where missing or not a number), and the number
    of rows that break the schema: a wrong column count or a value that is not a number."""
    width = len(feature_names)
    values = np.full((len(captured.rows), width), np.nan)
    violations = 0
    for i, row in enumerate(captured.rows):
        broken = len(row) != width
        for j, cell in enumerate(row[:width]):
            text = cell.strip()
            if not text or text.lower() in ("nan", "null", "none"):
                continue
            try:
                values[i, j] = float(text)
            except ValueError:
                broken = True
        violations += broken
    return pd.DataFrame(values, columns=feature_names), violations


# --- checks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    ks_alpha: float = 0.01
    min_rows: int = 100


def compare(reference: dict, current: np.ndarray, thresholds: Thresholds) -> dict:
    value_psi = psi(reference["counts"], histogram(current, reference["bin_edges"]))
    pvalue = ks_pvalue(np.asarray(reference["sample"], dtype=float), current)
    return {
        "psi": round(value_psi, 6),
        "ks_pvalue": pvalue,
        "drift": value_psi >= thresholds.psi and pvalue < thresholds.ks_alpha,
    }


def data_drift(
    baseline: dict, frame: pd.DataFrame, features: list[str], thresholds: Thresholds
) -> dict[str, dict]:
    found = {}
    for spec in baseline["features"]:
        if features and spec["name"] not in features:
            continue
        values = frame[spec["name"]].to_numpy(dtype=float)
        missing = float(np.mean(~np.isfinite(values))) if values.size else 0.0
        found[spec["name"]] = {
            **compare(spec, values, thresholds),
            "missing_rate": round(missing, 6),
            "missing_rate_increase": round(max(0.0, missing - spec["missing_rate"]), 6),
        }
    return found


def segment_drift(
    baseline: dict,
    frame: pd.DataFrame,
    predictions: np.ndarray,
    attributes: list[str],
    thresholds: Thresholds,
) -> dict[str, dict]:
    """PSI of the prediction distribution within each segment of each attribute: a shift that
    only one group sees (a bias signal) hides in the overall distribution."""
    by_name = {f["name"]: f for f in baseline["features"]}
    edges = baseline[PREDICTION]["bin_edges"]
    found = {}
    for attribute in attributes:
        spec = by_name[attribute]
        labels = segment_labels(frame[attribute].to_numpy(dtype=float), spec["segments"])
        segments = {}
        for label, reference in spec["segments"]["prediction_counts"].items():
            current = predictions[labels == label]
            if current.size < thresholds.min_rows:
                segments[label] = {"rows": int(current.size), "psi": None}
                continue
            segments[label] = {
                "rows": int(current.size),
                "psi": round(psi(reference, histogram(current, edges)), 6),
            }
        scored = [s["psi"] for s in segments.values() if s["psi"] is not None]
        found[attribute] = {"max_psi": max(scored) if scored else None, "segments": segments}
    return found


def read_labels(lines: Iterable[str]) -> dict[str, float]:
    """Ground truth: JSON lines {"inferenceId": "...", "label": <number or list per row>}."""
    labels = {}
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        label = record["label"]
        if isinstance(label, list):
            for index, value in enumerate(label):
                labels[f"{record['inferenceId']}#{index}"] = float(value)
        else:
            labels[str(record["inferenceId"])] = float(label)
    return labels


def model_quality(
    problem_type: str, inference_ids: list[str], predictions: np.ndarray, labels: dict[str, float]
) -> dict:
    """Join labels to predictions by inference id and score them like evaluate.py does."""
    joined = [i for i, inference_id in enumerate(inference_ids) if inference_id in labels]
    result: dict = {"labelled_rows": len(joined)}
    if not joined:
        return result
    y_true = np.asarray([labels[inference_ids[i]] for i in joined], dtype=float)
    y_pred = np.asarray(predictions, dtype=float)[joined]
    if problem_type == "regression":
        result["rmse"] = float(math.sqrt(np.mean((y_true - y_pred) ** 2)))
        return result
    predicted = (y_pred >= 0.5).astype(int)
    actual = y_true.astype(int)
    tp = int(np.sum((predicted == 1) & (actual == 1)))
    fp = int(np.sum((predicted == 1) & (actual == 0)))
    fn = int(np.sum((predicted == 0) & (actual == 1)))
    result["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    if len(set(actual)) == 2:
        # AUC as the Mann-Whitney U statistic, which handles ties like scikit-learn does.
        ranks = stats.rankdata(y_pred)
        positives = actual == 1
        n_pos, n_neg = int(positives.sum()), int((~positives).sum())
        result["auc"] = float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return result


@dataclass(frozen=True)
class MonitorSettings:
    problem_type: str
    features: list[str]
    segment_attributes: list[str]
    thresholds: Thresholds
    consecutive_runs: int = 3
    cooldown_hours: float = 168.0


def evaluate_window(
    baseline: dict,
    captured: Captured,
    settings: MonitorSettings,
    labels: dict[str, float] | None = None,
) -> dict:
    """The report of one window; `metrics` holds what goes to CloudWatch."""
    names = [f["name"] for f in baseline["features"]]
    unknown = [n for n in (*settings.features, *settings.segment_attributes) if n not in names]
    if unknown:
        raise ValueError(f"features not in the baseline: {unknown}; baseline has {names}")
    rows = len(captured.rows)
    report: dict = {"rows": rows, "unreadable_records": captured.unreadable_records}
    metrics: dict[str, float] = {"RecordCount": rows, "NoData": float(rows == 0)}
    report["metrics"] = metrics
    if rows == 0:
        report["status"] = "no data"
        return report
    frame, violations = to_frame(captured, names)
    metrics["SchemaViolationRate"] = violations / rows
    if rows < settings.thresholds.min_rows:
        report["status"] = f"too few rows for drift tests (minimum {settings.thresholds.min_rows})"
        return report
    predictions = np.asarray(captured.predictions, dtype=float)
    features = data_drift(baseline, frame, settings.features, settings.thresholds)
    prediction = compare(baseline[PREDICTION], predictions, settings.thresholds)
    report["features"] = features
    report[PREDICTION] = prediction
    metrics["DriftedFeatureCount"] = float(sum(f["drift"] for f in features.values()))
    metrics["MaxFeaturePSI"] = max((f["psi"] for f in features.values()), default=0.0)
    metrics["MaxMissingRateIncrease"] = max(
        (f["missing_rate_increase"] for f in features.values()), default=0.0
    )
    metrics["PredictionPSI"] = prediction["psi"]
    metrics["PredictionDrift"] = float(prediction["drift"])
    if settings.segment_attributes:
        segments = segment_drift(
            baseline, frame, predictions, settings.segment_attributes, settings.thresholds
        )
        report["segments"] = segments
        scored = [s["max_psi"] for s in segments.values() if s["max_psi"] is not None]
        if scored:
            metrics["MaxSegmentPredictionPSI"] = max(scored)
    if labels is not None:
        quality = model_quality(settings.problem_type, captured.inference_ids, predictions, labels)
        report["quality"] = quality
        metrics["LabelledRecordCount"] = quality["labelled_rows"]
        for name, metric in (("rmse", "RMSE"), ("auc", "AUC"), ("f1", "F1")):
            if name in quality:
                metrics[metric] = quality[name]
    metrics["Drift"] = float(metrics["DriftedFeatureCount"] > 0 or prediction["drift"])
    report["status"] = "drift" if metrics["Drift"] else "ok"
    return report


def retraining_decision(state: dict, drift: bool, now: datetime, settings: MonitorSettings) -> dict:
    """Count consecutive drifting runs; request retraining after `consecutive_runs` of them, at
    most once per cooldown, so a drift that retraining cannot fix does not retrain in a loop."""
    streak = state.get("consecutive_drift_runs", 0) + 1 if drift else 0
    last = state.get("last_retraining_request")
    cooled = last is None or now - datetime.fromisoformat(last) >= timedelta(
        hours=settings.cooldown_hours
    )
    request = drift and streak >= settings.consecutive_runs and cooled
    return {
        "consecutive_drift_runs": streak,
        "last_retraining_request": now.isoformat() if request else last,
        "retraining_requested": request,
    }


def markdown_report(report: dict, endpoint: str, window: tuple[datetime, datetime]) -> str:
    start, end = (t.strftime("%Y-%m-%d %H:%M UTC") for t in window)
    lines = [
        f"# Monitoring report: {endpoint}",
        "",
        f"Window {start} to {end}: {report['rows']} rows, status **{report['status']}**.",
        "",
    ]
    if "features" in report:
        lines += ["| feature | PSI | KS p-value | missing | drift |", "|---|---|---|---|---|"]
        for name, f in report["features"].items():
            lines.append(
                f"| {name} | {f['psi']:.3f} | {f['ks_pvalue']:.3g} | {f['missing_rate']:.1%} "
                f"| {'yes' if f['drift'] else 'no'} |"
            )
        p = report[PREDICTION]
        lines += [
            f"| *prediction* | {p['psi']:.3f} | {p['ks_pvalue']:.3g} | - "
            f"| {'yes' if p['drift'] else 'no'} |",
            "",
        ]
    for attribute, segment in report.get("segments", {}).items():
        lines.append(f"Segments of {attribute}: max prediction PSI {segment['max_psi']}.")
    if "quality" in report:
        lines.append(f"Model quality: {json.dumps(report['quality'])}.")
    lines.append("")
    lines.append("Metrics: " + ", ".join(f"{k}={v:g}" for k, v in report["metrics"].items()))
    return "\n".join(lines) + "\n"


# --- AWS I/O ------------------------------------------------------------------------------------


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.rstrip("/")


def hour_prefixes(prefix: str, start: datetime, end: datetime) -> Iterator[str]:
    """Data capture and ground truth are filed under <prefix>/YYYY/MM/DD/HH/."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield f"{prefix}/{hour:%Y/%m/%d/%H}/"
        hour += timedelta(hours=1)


def read_lines(s3, uri: str, start: datetime, end: datetime) -> Iterator[str]:
    bucket, prefix = split_uri(uri)
    paginator = s3.get_paginator("list_objects_v2")
    for hour in hour_prefixes(prefix, start, end):
        for page in paginator.paginate(Bucket=bucket, Prefix=hour):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                yield from body.decode("utf-8").splitlines()


def publish_metrics(cloudwatch, namespace: str, endpoint: str, metrics: dict, when: datetime):
    data = [
        {
            "MetricName": name,
            "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
            "Timestamp": when,
            "Value": float(value),
        }
        for name, value in metrics.items()
    ]
    for start in range(0, len(data), 1000):  # the API's limit per call
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])


def _put(s3, uri: str, body: str, content_type: str, kms_key: str) -> None:
    bucket, key = split_uri(uri)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body.encode("utf-8"),
        ContentType=content_type,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=kms_key,
    )


def _read_state(s3, uri: str) -> dict:
    bucket, key = split_uri(uri)
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return {}


def run_monitor(args: argparse.Namespace, now: datetime | None = None) -> dict:
    import boto3  # the processing images ship boto3; only this command needs it

    now = now or datetime.now(timezone.utc)  # noqa: UP017 - datetime.UTC is Python 3.11+
    # The schedule passes its scheduled time, so consecutive windows meet exactly even when a
    # job starts late; without it (a manual run) the window ends now.
    end = _inference_time({"inferenceTime": args.window_end}) if args.window_end else now
    window = (end - timedelta(minutes=args.window_minutes), end)
    baseline = json.loads(Path(args.baseline).read_text())
    settings = MonitorSettings(
        problem_type=baseline["problem_type"],
        features=[f for f in args.features.split(",") if f],
        segment_attributes=[s for s in args.segment_attributes.split(",") if s],
        thresholds=Thresholds(args.psi_threshold, args.ks_alpha, args.min_rows),
        consecutive_runs=args.consecutive_runs,
        cooldown_hours=args.cooldown_hours,
    )
    s3 = boto3.client("s3")
    captured = parse_capture_lines(read_lines(s3, args.capture_uri, *window), window)
    labels = None
    if args.ground_truth_uri:
        labels = read_labels(read_lines(s3, args.ground_truth_uri, *window))
    report = evaluate_window(baseline, captured, settings, labels)
    state_uri = f"{args.report_uri.rstrip('/')}/state.json"
    state = retraining_decision(
        _read_state(s3, state_uri), report["status"] == "drift", now, settings
    )
    report["metrics"]["RetrainingRequested"] = float(state["retraining_requested"])
    report["retraining"] = state
    report["window"] = [t.isoformat() for t in window]
    folder = f"{args.report_uri.rstrip('/')}/{end:%Y/%m/%d/%H%M%S}"
    _put(
        s3, f"{folder}/report.json", json.dumps(report, indent=2), "application/json", args.kms_key
    )
    markdown = markdown_report(report, args.endpoint_name, window)
    _put(s3, f"{folder}/report.md", markdown, "text/markdown", args.kms_key)
    _put(s3, state_uri, json.dumps(state), "application/json", args.kms_key)
    publish_metrics(
        boto3.client("cloudwatch"), args.namespace, args.endpoint_name, report["metrics"], now
    )
    logger.info("%s: %s, report at %s", args.endpoint_name, report["status"], folder)
    return report


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    baseline = commands.add_parser("baseline", help="write the baseline of a trained model")
    baseline.add_argument("--problem-type", required=True)
    baseline.add_argument("--target-column", required=True)
    baseline.add_argument("--monitoring-image", required=True)
    baseline.add_argument("--model-monitor-image", default="")
    baseline.add_argument("--base-dir", type=Path, default=BASE_DIR)
    monitor = commands.add_parser("monitor", help="check one window of captured data")
    monitor.add_argument("--baseline", type=Path, required=True)
    monitor.add_argument("--capture-uri", required=True, help="s3://.../<endpoint>/AllTraffic")
    monitor.add_argument("--ground-truth-uri", default="")
    monitor.add_argument("--report-uri", required=True)
    monitor.add_argument("--kms-key", required=True)
    monitor.add_argument("--endpoint-name", required=True)
    monitor.add_argument("--namespace", required=True)
    monitor.add_argument("--window-minutes", type=float, required=True)
    monitor.add_argument("--window-end", default="", help="ISO time; default now")
    monitor.add_argument("--features", default="", help="comma-separated; empty means all")
    monitor.add_argument("--segment-attributes", default="")
    monitor.add_argument("--psi-threshold", type=float, default=Thresholds.psi)
    monitor.add_argument("--ks-alpha", type=float, default=Thresholds.ks_alpha)
    monitor.add_argument("--min-rows", type=int, default=Thresholds.min_rows)
    monitor.add_argument("--consecutive-runs", type=int, default=3)
    monitor.add_argument("--cooldown-hours", type=float, default=168.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "baseline":
        run_baseline(args)
    else:
        run_monitor(args)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()

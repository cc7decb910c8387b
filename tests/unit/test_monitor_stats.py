"""Drift, latency and quality statistics of endpoint monitoring, checked against scipy, numpy and sklearn."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, root_mean_squared_error

from loopml.errors import InvalidInput
from loopml.monitor.stats import (
    MIN_LIVE_ROWS,
    FeatureDrift,
    feature_drift,
    latency_summary,
    prediction_drift,
    psi,
    quality,
    task_of,
)

NUMERIC = ["x0", "x1", "x2", "x3", "x4"]


def inputs(rng: np.random.Generator, rows: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """Five numeric columns of different scales and one categorical; ``shift`` moves means in std units."""
    scales = {"x0": 1.0, "x1": 5.0, "x2": 0.1, "x3": 100.0, "x4": 2.0}
    frame = pd.DataFrame({
        column: rng.normal(10.0, scale, rows) + (shift or {}).get(column, 0.0) * scale
        for column, scale in scales.items()
    })
    frame["segment"] = rng.choice(["retail", "business", "public"], rows, p=[0.5, 0.3, 0.2])
    return frame


def shares(counts: list[float]) -> np.ndarray:
    total = sum(counts)
    return np.maximum(np.array(counts) / total, 1e-4)


def psi_formula(reference_counts: list[float], live_counts: list[float]) -> float:
    r, l = shares(reference_counts), shares(live_counts)
    return float(np.sum((l - r) * np.log(l / r)))


# ---- feature drift -------------------------------------------------------------------------


def test_same_distribution_never_drifts():
    rng = np.random.default_rng(7)
    report = feature_drift(inputs(rng, 1000), inputs(rng, 200))
    assert [d.feature for d in report] == [*NUMERIC, "segment"]
    assert [(d.kind, d.test) for d in report] == [("numeric", "ks")] * 5 + [("categorical", "chi2")]
    assert not any(d.drifted for d in report)
    assert all(d.n_reference == 1000 and d.n_live == 200 for d in report)
    assert all(0.0 <= d.psi < 0.1 for d in report)


def test_mean_shift_drifts_exactly_the_shifted_columns():
    rng = np.random.default_rng(7)
    live = inputs(rng, 200, {"x1": 1.5, "x3": -1.5})
    report = {d.feature: d for d in feature_drift(inputs(rng, 1000), live)}
    assert sorted(name for name, d in report.items() if d.drifted) == ["x1", "x3"]
    for name in ("x1", "x3"):
        assert report[name].p_value < 1e-6
        assert report[name].psi > 0.25


def test_only_shared_columns_in_reference_order():
    reference = pd.DataFrame({"b": [1.0, 2.0], "only_ref": [1, 2], "a": ["x", "y"]})
    live = pd.DataFrame({"a": ["x", "x"], "only_live": [3, 4], "b": [1.0, 1.0]})
    assert [d.feature for d in feature_drift(reference, live)] == ["b", "a"]


def test_categorical_mix_shift_drifts_via_chi2():
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"plan": rng.choice(["basic", "pro"], 1000, p=[0.7, 0.3])})
    live = pd.DataFrame({"plan": rng.choice(["basic", "pro"], 200, p=[0.2, 0.8])})
    [drift] = feature_drift(reference, live)
    assert (drift.kind, drift.test, drift.drifted) == ("categorical", "chi2", True)
    assert drift.p_value < 1e-6
    ref_counts = reference["plan"].value_counts()[["basic", "pro"]].tolist()
    live_counts = live["plan"].value_counts()[["basic", "pro"]].tolist()
    assert drift.psi == pytest.approx(psi_formula(ref_counts, live_counts), abs=1e-9)
    assert drift.psi > 0.8


def test_bool_columns_are_categorical():
    reference = pd.DataFrame({"flag": [True, False] * 100})
    live = pd.DataFrame({"flag": [True] * 200})
    [drift] = feature_drift(reference, live)
    assert (drift.kind, drift.test, drift.drifted) == ("categorical", "chi2", True)


def test_single_category_is_no_difference():
    [drift] = feature_drift(pd.DataFrame({"c": ["a"] * 50}), pd.DataFrame({"c": ["a"] * 40}))
    assert (drift.statistic, drift.p_value, drift.psi, drift.drifted) == (0.0, 1.0, 0.0, False)


def test_missing_values_are_dropped_per_column():
    reference = pd.DataFrame({"x": [1.0, np.nan, 2.0, 3.0], "c": ["a", None, "b", "b"]})
    live = pd.DataFrame({"x": [np.nan, 2.0, 3.0], "c": ["a", "a", None]})
    x, c = feature_drift(reference, live)
    assert (x.n_reference, x.n_live, c.n_reference, c.n_live) == (3, 2, 3, 2)


@pytest.mark.parametrize(
    ("n_live", "drifted"),
    [
        pytest.param(MIN_LIVE_ROWS - 1, False, id="below-min-rows"),
        pytest.param(MIN_LIVE_ROWS, True, id="at-min-rows"),
    ],
)
def test_too_few_live_rows_never_drift(n_live, drifted):
    rng = np.random.default_rng(11)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 1000)})
    live = pd.DataFrame({"x": rng.normal(5, 1, n_live)})
    [drift] = feature_drift(reference, live)
    assert drift.drifted is drifted
    assert drift.p_value < 1e-10 and drift.psi > 1.0  # still computed below the minimum


def test_empty_live_column_gives_nan_and_no_drift():
    [drift] = feature_drift(pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"x": [np.nan]}))
    assert drift.n_live == 0 and not drift.drifted
    assert math.isnan(drift.statistic) and math.isnan(drift.p_value) and math.isnan(drift.psi)


def test_thresholds_are_keyword_arguments():
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 1000)})
    live = pd.DataFrame({"x": rng.normal(0.15, 1, 500)})
    [default] = feature_drift(reference, live)
    [strict] = feature_drift(reference, live, psi_threshold=0.01)
    assert (default.drifted, strict.drifted) == (False, True)
    assert default.p_value < 0.01 and default.psi < 0.1  # significant but small: the PSI gate held it back


# ---- psi -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "live", "categorical", "bins", "expected"),
    [
        pytest.param(np.arange(100.0), np.arange(100.0), False, 10, 0.0, id="identical-numeric"),
        pytest.param(list("aabbbc"), list("aabbbc"), True, 10, 0.0, id="identical-categorical"),
        # edges 0, 49.5, 99 -> bins (-inf, 49.5], (49.5, inf); 150 lies outside the reference range
        pytest.param(
            np.arange(100.0), np.r_[np.arange(30.0), np.full(69, 60.0), 150.0], False, 2,
            psi_formula([50, 50], [30, 70]), id="two-bins-numeric",
        ),
        pytest.param(
            ["a"] * 50 + ["b"] * 50, ["a"] * 80 + ["b"] * 20, True, 10,
            psi_formula([50, 50], [80, 20]), id="two-categories",
        ),
        pytest.param(
            ["a"] * 50 + ["b"] * 50, ["a"] * 45 + ["b"] * 45 + ["new"] * 10, True, 10,
            psi_formula([50, 50, 0], [45, 45, 10]), id="unseen-category",
        ),
        # a constant reference is cut at its value: (-inf, 1], (1, inf)
        pytest.param(
            [1.0] * 10, [1.0] * 5 + [2.0] * 5, False, 10, psi_formula([10, 0], [5, 5]), id="constant-ref"
        ),
    ],
)
def test_psi_matches_the_formula(reference, live, categorical, bins, expected):
    assert psi(reference, live, categorical=categorical, bins=bins) == pytest.approx(expected, abs=1e-9)


def test_psi_unseen_category_counts():
    assert psi(["a", "b"] * 50, ["a"] * 45 + ["b"] * 45 + ["new"] * 10, categorical=True) > 0.5


def test_psi_empty_bins_stay_finite():
    value = psi(np.linspace(0, 1, 500), np.linspace(5, 6, 500))  # every live value above the reference
    assert math.isfinite(value)
    assert value == pytest.approx(psi_formula([50] * 10, [0] * 9 + [500]), abs=1e-9)


def test_psi_of_an_empty_side_is_nan():
    assert math.isnan(psi([], [1.0, 2.0]))
    assert math.isnan(psi(["a"], [None], categorical=True))


# ---- prediction drift ----------------------------------------------------------------------

CLASSES = np.tile([0, 1, 2], 300)
CONTINUOUS = np.linspace(0, 1, 900)


@pytest.mark.parametrize(
    ("reference", "live", "test", "drifted"),
    [
        pytest.param(CLASSES, np.tile([0, 1, 2], 100), "chi2", False, id="class-labels"),
        pytest.param(CLASSES, np.r_[np.zeros(280), np.ones(20)], "chi2", True, id="class-labels-shifted"),
        pytest.param(np.tile([0, 1], 300), np.tile(["0", "1"], 100), "chi2", False, id="labels-as-strings"),
        pytest.param(np.tile(["cat", "dog"], 300), np.tile(["dog"], 100), "chi2", True, id="string-labels"),
        pytest.param(CONTINUOUS, np.linspace(0, 1, 300), "ks", False, id="continuous"),
        pytest.param(CONTINUOUS, np.linspace(0.5, 1.5, 300), "ks", True, id="continuous-shifted"),
    ],
)
def test_prediction_drift_picks_the_test(reference, live, test, drifted):
    kind = {"chi2": "categorical", "ks": "numeric"}[test]
    drift = prediction_drift(reference, live)
    assert (drift.feature, drift.kind, drift.test, drift.drifted) == ("prediction", kind, test, drifted)
    assert drift.n_live == len(live)


def test_prediction_drift_labels_as_strings_are_the_same_classes():
    drift = prediction_drift(np.tile([0, 1], 300), np.tile(["0", "1"], 100))
    assert (drift.statistic, drift.psi) == (0.0, 0.0)


# ---- latency -------------------------------------------------------------------------------


def test_latency_summary_matches_numpy():
    latencies = np.random.default_rng(1).lognormal(3, 0.5, 5000)
    summary = latency_summary(latencies.tolist())
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    expected = {"p50": p50, "p95": p95, "p99": p99, "mean": latencies.mean(), "max": latencies.max()}
    assert summary == pytest.approx(expected)
    assert all(type(value) is float for value in summary.values())


def test_latency_summary_ignores_nan():
    summary = latency_summary([10.0, np.nan, 30.0])
    assert summary == pytest.approx({"p50": 20.0, "p95": 29.0, "p99": 29.8, "mean": 20.0, "max": 30.0})


@pytest.mark.parametrize("empty", [[], np.array([]), [np.nan]], ids=["list", "array", "only-nan"])
def test_latency_summary_of_nothing(empty):
    assert latency_summary(empty) == {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}


# ---- task and quality ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "task"),
    [
        pytest.param([0, 1, 1, 0], "classification", id="ints"),
        pytest.param(["cat", "dog"], "classification", id="strings"),
        pytest.param([True, False], "classification", id="bools"),
        pytest.param([0.0, 1.0, 2.0, np.nan], "classification", id="integral-floats"),
        pytest.param(["0", "1", "2"], "classification", id="numeric-strings"),
        pytest.param([0.5, 1.25, 3.0], "regression", id="fractional-floats"),
        pytest.param(["0.5", "1.25"], "regression", id="fractional-strings"),
        pytest.param(np.arange(21.0), "regression", id="many-integral-floats"),
    ],
)
def test_task_of(labels, task):
    assert task_of(labels) == task


def test_classification_quality_matches_sklearn():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 4, 300))
    assert quality(y_true, y_pred) == {
        "task": "classification",
        "n": 300,
        "accuracy": pytest.approx(accuracy_score(y_true, y_pred)),
        "f1": pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def test_regression_quality_matches_sklearn():
    rng = np.random.default_rng(2)
    y_true = rng.normal(50, 10, 300)
    y_pred = y_true + rng.normal(0, 2, 300)
    assert quality(y_true, y_pred) == {
        "task": "regression",
        "n": 300,
        "mae": pytest.approx(mean_absolute_error(y_true, y_pred)),
        "rmse": pytest.approx(root_mean_squared_error(y_true, y_pred)),
    }


@pytest.mark.parametrize(
    ("y_true", "y_pred", "task", "expected"),
    [
        pytest.param(["1", "0", "1", "1"], [1, 0, 0, 1], None, {"accuracy": 0.75}, id="num-strings-vs-ints"),
        pytest.param([1, 0, 1], [1.0, 0.0, 1.0], None, {"accuracy": 1.0}, id="ints-vs-floats"),
        pytest.param(["1.0", "2.0"], [1, 2], None, {"accuracy": 1.0}, id="float-strings-vs-ints"),
        pytest.param(["yes", "no", "1"], [1.0, 0.0, 1.0], None, {"accuracy": 1 / 3}, id="text-vs-numbers"),
        pytest.param([True, False], [1, 0], None, {"accuracy": 1.0}, id="bools-vs-ints"),
        pytest.param(["1.5", "2.5"], [1.0, 3.0], None, {"task": "regression", "mae": 0.5}, id="regr-text"),
        pytest.param([1, 2, None, 4], [1, None, 3, 4], None, {"n": 2, "accuracy": 1.0}, id="missing-dropped"),
        pytest.param([1, 2], [1.5, 2.5], "regression", {"task": "regression", "mae": 0.5}, id="task-given"),
    ],
)
def test_quality_coerces_labels(y_true, y_pred, task, expected):
    result = quality(y_true, y_pred, task)
    assert {key: result[key] for key in expected} == pytest.approx(expected)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        pytest.param("classification", {"n": 0, "accuracy": None, "f1": None}, id="classification"),
        pytest.param("regression", {"n": 0, "mae": None, "rmse": None}, id="regression"),
    ],
)
def test_quality_of_nothing(task, expected):
    assert quality([], [], task) == {"task": task, **expected}
    assert quality([None], [1.0], task) == {"task": task, **expected}


@pytest.mark.parametrize(
    ("y_true", "y_pred", "task", "reason"),
    [
        pytest.param([1, 2], [1], None, "length_mismatch", id="lengths"),
        pytest.param([1, 2], [1, 2], "ranking", "invalid_task", id="task"),
        pytest.param(["a", "b"], ["a", "b"], "regression", "invalid_labels", id="text-regression"),
        pytest.param([0, 1], [0.3, 0.9], "classification", "invalid_labels", id="continuous-predictions"),
    ],
)
def test_quality_refusals(y_true, y_pred, task, reason):
    with pytest.raises(InvalidInput) as caught:
        quality(y_true, y_pred, task)
    assert caught.value.reason == reason


# ---- serialisation and speed ---------------------------------------------------------------


def test_to_dict_is_json_safe():
    drift = FeatureDrift(
        feature="x", kind="numeric", test="ks", statistic=math.nan, p_value=math.inf, psi=0.25,
        drifted=False, n_reference=10, n_live=0,
    )
    as_dict = drift.to_dict()
    assert as_dict == {
        "feature": "x", "kind": "numeric", "test": "ks", "statistic": None, "p_value": None,
        "psi": 0.25, "drifted": False, "n_reference": 10, "n_live": 0,
    }
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict


def test_feature_drift_report_is_json_safe():
    rng = np.random.default_rng(9)
    report = feature_drift(inputs(rng, 300), inputs(rng, 50, {"x0": 2.0}))
    decoded = json.loads(json.dumps([d.to_dict() for d in report], allow_nan=False))
    assert [d["feature"] for d in decoded] == [*NUMERIC, "segment"]
    assert all(type(d["drifted"]) is bool and type(d["n_live"]) is int for d in decoded)


def test_feature_drift_is_fast_on_large_frames(capsys):
    rng = np.random.default_rng(0)
    columns = [f"f{i}" for i in range(10)]
    reference = pd.DataFrame(rng.normal(size=(100_000, 10)), columns=columns)
    live = pd.DataFrame(rng.normal(size=(10_000, 10)), columns=columns)
    started = time.perf_counter()
    report = feature_drift(reference, live)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nfeature_drift 10 numeric columns x 100k reference x 10k live: {elapsed:.3f}s")
    assert len(report) == 10 and not any(d.drifted for d in report)

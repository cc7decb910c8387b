"""Statistics behind endpoint monitoring: input and prediction drift, latency, quality.

Pure functions over numpy arrays and pandas objects: no database, no HTTP, no Ray. Each
test and metric is scipy's or scikit-learn's; this module only decides which one applies
to a column, cleans the values it is given and turns the results into plain, JSON-safe
numbers.

Drift compares the live inputs of an endpoint with the reference sample of the model
version that served them. A column drifts only when the difference is both significant
(p-value of a two-sample KS test for numbers, chi-squared test of the counts otherwise)
and large (Population Stability Index), so that a few hundred in-distribution rows never
raise an alert however small the p-value of a huge sample gets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, ks_2samp
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    root_mean_squared_error,
)

from loopml.errors import InvalidInput

__all__ = [
    "DEFAULT_PSI_THRESHOLD",
    "DEFAULT_P_THRESHOLD",
    "MIN_LIVE_ROWS",
    "FeatureDrift",
    "feature_drift",
    "latency_summary",
    "prediction_drift",
    "psi",
    "quality",
    "task_of",
]

DEFAULT_P_THRESHOLD = 0.01
DEFAULT_PSI_THRESHOLD = 0.1
MIN_LIVE_ROWS = 30

# A bin empty on one side would make the PSI term infinite; flooring the share keeps it
# finite and large (ln(share / 1e-4)) without pretending the bin was populated.
_SHARE_FLOOR = 1e-4
# Numbers with at most this many distinct values are class labels, not measurements.
_MAX_CLASSES = 20
_PSI_BINS = 10
_TASKS = ("classification", "regression")


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one column (or of the predictions) between reference and live values.

    ``kind`` is ``"numeric"`` or ``"categorical"``, ``test`` the significance test used
    (``"ks"`` or ``"chi2"``). ``statistic``, ``p_value`` and ``psi`` are NaN when a side
    had no usable value. ``n_reference`` and ``n_live`` count the values used, after
    missing ones were dropped.
    """

    feature: str
    kind: str
    test: str
    statistic: float
    p_value: float
    psi: float
    drifted: bool
    n_reference: int
    n_live: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict: non-finite floats become ``None``."""
        return {key: _finite_or_none(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class _Limits:
    """When a difference counts as drift; see :func:`feature_drift`."""

    p_threshold: float
    psi_threshold: float
    min_rows: int

    def drifted(self, p_value: float, psi_value: float, n_live: int) -> bool:
        # NaN compares False, so a side without values never drifts.
        enough = n_live >= self.min_rows
        return bool(enough and p_value < self.p_threshold and psi_value >= self.psi_threshold)


def psi(reference, live, *, categorical: bool = False, bins: int = _PSI_BINS) -> float:
    """Population Stability Index of ``live`` against ``reference``: sum of (l - r) * ln(l / r).

    Numeric values are binned at the deduplicated quantile edges of the reference
    (``bins`` + 1 quantiles), with the outer edges opened to -inf/+inf so live values
    outside the reference range still count; bins are closed on the right. A reference
    with one or two distinct values would leave a single bin, so its distinct values
    themselves are used as the cut points instead. Categorical values are counted over
    the union of the categories seen on either side, so a category new in live adds to
    the index. Shares are floored at 1e-4 before the logarithm, so empty bins give a
    large finite term, never inf. Missing values (and, for numbers, non-finite or
    non-numeric ones) are dropped.

    Returns 0.0 for identical distributions and NaN when either side has no value.
    """
    if categorical:
        counts = _category_counts(_present(reference), _present(live))
    else:
        counts = _bin_counts(_numbers(reference), _numbers(live), bins)
    return _psi_of_counts(counts)


def feature_drift(
    reference: pd.DataFrame,
    live: pd.DataFrame,
    *,
    p_threshold: float = DEFAULT_P_THRESHOLD,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    min_rows: int = MIN_LIVE_ROWS,
) -> list[FeatureDrift]:
    """The drift of every column present in both frames, in the reference's column order.

    A column whose reference dtype is numeric (bool excluded) is tested with the
    two-sample Kolmogorov-Smirnov test; live values that are not numbers are dropped like
    missing ones. Any other column is categorical and tested with Pearson's chi-squared
    test (no Yates correction) on the 2 x k table of counts over the union of categories;
    a single category gives statistic 0 and p-value 1. Missing values are dropped per
    column. A column is ``drifted`` when it has at least ``min_rows`` live values, its
    p-value is below ``p_threshold`` and its PSI is at least ``psi_threshold``. With
    fewer live values the numbers are still computed where possible, but it never drifts.
    """
    limits = _Limits(p_threshold, psi_threshold, min_rows)
    shared = [column for column in reference.columns if column in live.columns]
    return [
        _drift(str(column), reference[column], live[column], _is_number_dtype(reference[column]), limits)
        for column in shared
    ]


def prediction_drift(
    reference,
    live,
    *,
    p_threshold: float = DEFAULT_P_THRESHOLD,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    min_rows: int = MIN_LIVE_ROWS,
) -> FeatureDrift:
    """The drift of live predictions against the reference predictions (feature ``"prediction"``).

    Same tests and thresholds as :func:`feature_drift`, except that numeric predictions
    with at most 20 distinct reference values are class labels and are tested as
    categories (live values are still read as numbers, so ``1`` and ``1.0`` and ``"1"``
    are one class).
    """
    limits = _Limits(p_threshold, psi_threshold, min_rows)
    ref = _series(reference)
    numeric = _is_number_dtype(ref)
    if numeric and ref.dropna().nunique() <= _MAX_CLASSES:
        return _categorical_drift("prediction", pd.Series(_numbers(ref)), pd.Series(_numbers(live)), limits)
    return _drift("prediction", ref, _series(live), numeric, limits)


def latency_summary(latencies_ms) -> dict[str, float | None]:
    """``p50``, ``p95``, ``p99`` (numpy's linear percentiles), ``mean`` and ``max`` of the latencies.

    NaNs are ignored; with no latency at all every value is ``None``.
    """
    values = np.asarray(latencies_ms, dtype=float).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return dict.fromkeys(("p50", "p95", "p99", "mean", "max"))
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(values.mean()),
        "max": float(values.max()),
    }


def task_of(labels) -> str:
    """``"classification"`` or ``"regression"``, judged from the labels alone.

    Strings that all parse as numbers (labels that came through JSON) are read as
    numbers first. Labels that are not floats (integers, booleans, strings) are
    classes; floats are classes when every one is integral and there are at most 20
    distinct values, otherwise the task is regression. Missing labels are ignored.
    """
    values = _numeric_looking(_series(labels)).dropna()
    if not pd.api.types.is_float_dtype(values):
        return "classification"
    numbers = values.to_numpy(dtype=float)
    integral = bool(np.all(numbers == np.round(numbers)))
    return "classification" if integral and values.nunique() <= _MAX_CLASSES else "regression"


def quality(y_true, y_pred, task: str | None = None) -> dict[str, float | int | None]:
    """Quality of predictions against ground truth, with scikit-learn's metrics.

    ``task`` defaults to :func:`task_of` of ``y_true``. Classification gives
    ``{"task", "n", "accuracy", "f1"}`` (macro F1, 0 for a class never predicted nor
    present); regression gives ``{"task", "n", "mae", "rmse"}``. Pairs with a missing
    value on either side are dropped and ``n`` counts the pairs used; with none, every
    metric is ``None``.

    Labels often arrive through JSON as strings, so before comparing: a side whose
    values all parse as numbers is read as numbers ("1" -> 1); if then both sides are
    numbers (booleans count as numbers) they are compared as numbers, so 1 == 1.0;
    otherwise both sides are compared as text, integral floats written without a
    decimal part (1.0 -> "1").

    Raises :class:`~loopml.errors.InvalidInput` when the lengths differ, the task is
    unknown, regression values are not numbers, or scikit-learn refuses the labels
    (continuous predictions for a classification task).
    """
    truth, predicted = _paired_labels(y_true, y_pred)
    task = task or task_of(truth)
    if task not in _TASKS:
        raise InvalidInput(
            f"Unknown task {task!r}; expected one of {', '.join(_TASKS)}.", reason="invalid_task", task=task
        )
    if task == "classification":
        return {"task": task, "n": len(truth), **_classification_metrics(truth, predicted)}
    return {"task": task, "n": len(truth), **_regression_metrics(truth, predicted)}


def _drift(name: str, reference: pd.Series, live: pd.Series, numeric: bool, limits: _Limits) -> FeatureDrift:
    """The KS or chi-squared drift of one column, depending on ``numeric``."""
    if numeric:
        return _numeric_drift(name, _numbers(reference), _numbers(live), limits)
    return _categorical_drift(name, _present(reference), _present(live), limits)


def _numeric_drift(name: str, reference: np.ndarray, live: np.ndarray, limits: _Limits) -> FeatureDrift:
    """KS test and quantile-binned PSI of two samples of finite numbers."""
    statistic = p_value = math.nan
    if reference.size and live.size:
        result = ks_2samp(reference, live)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    psi_value = _psi_of_counts(_bin_counts(reference, live, _PSI_BINS))
    return FeatureDrift(
        feature=name, kind="numeric", test="ks", statistic=statistic, p_value=p_value, psi=psi_value,
        drifted=limits.drifted(p_value, psi_value, live.size),
        n_reference=int(reference.size), n_live=int(live.size),
    )


def _categorical_drift(name: str, reference: pd.Series, live: pd.Series, limits: _Limits) -> FeatureDrift:
    """Chi-squared test and PSI of two samples of categories, from one table of counts."""
    counts = _category_counts(reference, live)
    statistic, p_value = _chi2(counts)
    psi_value = _psi_of_counts(counts)
    return FeatureDrift(
        feature=name, kind="categorical", test="chi2", statistic=statistic, p_value=p_value, psi=psi_value,
        drifted=limits.drifted(p_value, psi_value, len(live)),
        n_reference=len(reference), n_live=len(live),
    )


def _chi2(counts: np.ndarray) -> tuple[float, float]:
    """Chi-squared test of a 2 x k table of counts; NaN when a row is empty."""
    if counts.shape[1] == 0 or counts.sum(axis=1).min() == 0:
        return math.nan, math.nan
    if counts.shape[1] == 1:  # one category on both sides: nothing can differ
        return 0.0, 1.0
    result = chi2_contingency(counts, correction=False)
    return float(result.statistic), float(result.pvalue)


def _bin_counts(reference: np.ndarray, live: np.ndarray, bins: int) -> np.ndarray:
    """2 x k counts of both samples over the reference's quantile bins (see :func:`psi`)."""
    if reference.size == 0:
        return np.zeros((2, 0))
    edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)))
    cuts = edges[1:-1] if edges.size > 2 else edges
    # side="left" puts x in bin i when cuts[i-1] < x <= cuts[i]: right-closed bins.
    return np.vstack([
        np.bincount(np.searchsorted(cuts, sample, side="left"), minlength=cuts.size + 1)
        for sample in (reference, live)
    ])


def _category_counts(reference: pd.Series, live: pd.Series) -> np.ndarray:
    """2 x k counts of both samples over the union of their categories."""
    table = pd.concat({"reference": reference.value_counts(), "live": live.value_counts()}, axis=1)
    return table.fillna(0).to_numpy(dtype=float).T


def _psi_of_counts(counts: np.ndarray) -> float:
    """PSI of the live row (second) against the reference row (first) of a 2 x k table."""
    totals = counts.sum(axis=1, keepdims=True)
    if counts.shape[1] == 0 or totals.min() == 0:
        return math.nan
    reference, live = np.maximum(counts / totals, _SHARE_FLOOR)
    return float(np.sum((live - reference) * np.log(live / reference)))


def _classification_metrics(truth: pd.Series, predicted: pd.Series) -> dict[str, float | None]:
    if truth.empty:
        return {"accuracy": None, "f1": None}
    y_true, y_pred = truth.to_numpy(), predicted.to_numpy()
    try:
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }
    except ValueError as error:  # e.g. continuous predictions against class labels
        raise InvalidInput(
            f"Cannot score these labels as a classification: {error}", reason="invalid_labels"
        ) from None


def _regression_metrics(truth: pd.Series, predicted: pd.Series) -> dict[str, float | None]:
    if truth.empty:
        return {"mae": None, "rmse": None}
    if not (_is_number_dtype(truth) and _is_number_dtype(predicted)):
        raise InvalidInput(
            "Regression quality needs numeric labels and predictions.", reason="invalid_labels"
        )
    y_true, y_pred = truth.to_numpy(dtype=float), predicted.to_numpy(dtype=float)
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
    }


def _paired_labels(y_true, y_pred) -> tuple[pd.Series, pd.Series]:
    """Both sides aligned, complete pairs only, of one comparable type (see :func:`quality`)."""
    truth, predicted = _numeric_looking(_series(y_true)), _numeric_looking(_series(y_pred))
    if len(truth) != len(predicted):
        raise InvalidInput(
            f"y_true has {len(truth)} values but y_pred has {len(predicted)}.", reason="length_mismatch"
        )
    complete = truth.notna() & predicted.notna()
    truth, predicted = truth[complete], predicted[complete]
    if pd.api.types.is_numeric_dtype(truth) != pd.api.types.is_numeric_dtype(predicted):
        truth, predicted = _as_text(truth), _as_text(predicted)
    return truth, predicted


def _numeric_looking(values: pd.Series) -> pd.Series:
    """``values`` as numbers when every present value parses as one, else unchanged."""
    if pd.api.types.is_numeric_dtype(values):
        return values
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().sum() == values.notna().sum() else values


def _as_text(values: pd.Series) -> pd.Series:
    """Labels as text for a comparison with text; integral floats lose their ".0" first."""
    numbers = values.to_numpy()
    integral = pd.api.types.is_float_dtype(values) and np.isfinite(numbers).all()
    if integral and bool(np.all(numbers == np.round(numbers))):
        values = values.astype("int64")
    return values.astype(str)


def _series(values) -> pd.Series:
    """Any 1-d array-like as a Series with a fresh 0..n-1 index (so two of them align)."""
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    return pd.Series(values)


def _present(values) -> pd.Series:
    return _series(values).dropna()


def _numbers(values) -> np.ndarray:
    """The finite numbers among ``values``, as floats; anything else is dropped."""
    numbers = pd.to_numeric(_series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return numbers[np.isfinite(numbers)]


def _is_number_dtype(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

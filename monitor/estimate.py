"""Performance estimated without labels, from a version's estimator
(:class:`loopml.registry.estimator.Estimator`, fit when the version was logged), with numpy alone.

- **CBPE**: the calibrated probability of the predicted class is the chance the prediction is
  right, so its mean estimates accuracy; the calibrated probabilities of one class give the
  expected confusion counts, hence its F1.
- **DLE**: the loss model's trees, walked with numpy, predict each row's absolute error; their
  mean estimates MAE.

Both assume the relation between inputs and target is the one seen at training time
(covariate shift only). Under concept drift — the same inputs now mean another target —
nothing without labels can see the change; realized metrics from feedback labels do.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from loopml.registry.estimator import Estimator, Tree, loss_inputs

__all__ = ["calibrated", "estimate"]

_Z = 1.96  # two-sided 95% band


def estimate(estimator: Estimator, *, probabilities=None, features=None, predictions=None) -> dict[str, Any] | None:
    """The estimated metric over live rows, with a 95% band: ``{"metric", "value", "low",
    "high", "n"}`` (CBPE adds ``f1`` and ``f1_class``); ``None`` without rows.

    CBPE takes the captured ``probabilities`` (n x k, the model's class order); DLE the
    captured ``features`` (a DataFrame) and ``predictions``. The band is the sampling error
    of the estimate over n rows; it does not cover a calibration that no longer holds.
    """
    if estimator.kind == "cbpe":
        return _estimate_cbpe(estimator, np.asarray(probabilities, dtype=float))
    return _estimate_dle(estimator, features, np.asarray(predictions, dtype=float))


def calibrated(estimator: Estimator, probabilities: np.ndarray) -> np.ndarray:
    """Each class's calibrated probability, rows normalised to sum to 1 (NannyML does the same);
    a binary model's from its second class's map alone."""
    if len(estimator.classes) == 2 and len(estimator.calibration) == 1:
        x, y = estimator.calibration[0]
        second = np.interp(probabilities[:, 1], x, y)
        return np.column_stack([1 - second, second])
    columns = [np.interp(probabilities[:, i], x, y) for i, (x, y) in enumerate(estimator.calibration)]
    scores = np.column_stack(columns)
    total = scores.sum(axis=1, keepdims=True)
    return np.divide(scores, total, out=np.full_like(scores, 1 / scores.shape[1]), where=total > 0)


def _estimate_cbpe(estimator: Estimator, probabilities: np.ndarray) -> dict[str, Any] | None:
    if probabilities.ndim != 2 or probabilities.shape[0] == 0 or probabilities.shape[1] != len(estimator.classes):
        return None
    scores = calibrated(estimator, probabilities)
    predicted = probabilities.argmax(axis=1)
    right = scores[np.arange(len(scores)), predicted]  # P(prediction is correct)
    value = float(right.mean())
    half = _Z * math.sqrt(float((right * (1 - right)).sum())) / len(right)
    k = estimator.classes.index(estimator.positive) if estimator.positive in estimator.classes else -1
    p = scores[:, k]
    said = predicted == k
    tp, fp, fn = p[said].sum(), (1 - p[said]).sum(), p[~said].sum()
    f1 = float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) > 0 else None
    return {"metric": "accuracy", "value": value, "low": max(0.0, value - half), "high": min(1.0, value + half),
            "n": len(right), "f1": f1, "f1_class": estimator.positive}


def _estimate_dle(estimator: Estimator, features, predictions: np.ndarray) -> dict[str, Any] | None:
    if features is None or len(features) == 0 or len(predictions) != len(features):
        return None
    if any(column not in features.columns for column in estimator.features):
        return None
    inputs = loss_inputs(features, predictions, estimator.features, estimator.categories)
    loss = np.full(len(inputs), estimator.init)
    for tree in estimator.trees:
        loss += estimator.learning_rate * _tree_values(tree, inputs)
    value = float(np.clip(loss, 0, None).mean())
    half = _Z * estimator.error_std / math.sqrt(len(loss))
    return {"metric": "mae", "value": value, "low": max(0.0, value - half), "high": value + half, "n": len(loss)}


def _tree_values(tree: Tree, inputs: np.ndarray) -> np.ndarray:
    """The leaf value of every row: all rows walk the tree together, one level per step."""
    feature, threshold = np.asarray(tree.feature), np.asarray(tree.threshold)
    left, right, value = np.asarray(tree.left), np.asarray(tree.right), np.asarray(tree.value)
    node = np.zeros(len(inputs), dtype=np.int64)
    rows = np.arange(len(inputs))
    while True:
        inner = feature[node] >= 0
        if not inner.any():
            return value[node]
        at = node[inner]
        goes_left = inputs[rows[inner], feature[at]] <= threshold[at]
        node[inner] = np.where(goes_left, left[at], right[at])

"""A model version's performance estimator: CBPE for classifiers, DLE for regressors.

Fit at ``log_model`` time, in the kernel that logs the version, on rows the model was not
trained on (:func:`fit_estimator`), and stored with the version as a JSON document
(:class:`Estimator`): data, never code, so the platform reads it without unpickling anything
and estimates with numpy alone (:func:`loopml.monitor.estimate.estimate`).

- **CBPE** (confidence-based performance estimation, NannyML's method): per class, an
  isotonic map from the model's probability of that class to the observed frequency of the
  class on held-out rows (scikit-learn's ``IsotonicRegression``, stored as its thresholds).
  On live rows the calibrated probability of the predicted class is the chance the
  prediction is right, so its mean estimates accuracy; the calibrated probabilities of one
  class give the expected confusion counts, hence its F1.
- **DLE** (direct loss estimation): a small gradient-boosted tree model fit on the held-out
  rows' absolute errors from their features and the prediction (scikit-learn's
  ``GradientBoostingRegressor``, stored as its trees' arrays). Its mean on live rows
  estimates MAE.

Both assume the relation between inputs and target is the one seen at training time
(covariate shift only). Under concept drift — the same inputs now mean another target —
nothing without labels can see the change; realized metrics from feedback labels do.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

__all__ = ["ESTIMATOR_FORMAT", "Estimator", "Tree", "fit_estimator", "loss_inputs"]

ESTIMATOR_FORMAT = 1
_MIN_ROWS = 20  # held-out rows an estimator needs
_DLE_TREES, _DLE_DEPTH, _DLE_RATE = 60, 3, 0.1


class Tree(BaseModel):
    """One regression tree as scikit-learn's arrays (leaves have ``feature == -2``)."""

    feature: list[int]
    threshold: list[float]
    left: list[int]
    right: list[int]
    value: list[float]


class Estimator(BaseModel):
    """A version's performance estimator, as stored beside its reference sample."""

    format: int = ESTIMATOR_FORMAT
    kind: Literal["cbpe", "dle"]
    rows: int = Field(description="Held-out rows it was fit on.")
    source: str = Field(description="test: rows passed as X_test/y_test; cross_validation: out-of-fold "
                                    "predictions on the reference sample.")
    reference: dict[str, float] = Field(description="The metric(s) on the held-out rows: accuracy (and f1) or mae.")
    # CBPE
    classes: list[Any] = Field(default_factory=list, description="The model's classes, in predict_proba's order.")
    positive: Any = Field(None, description="The class whose F1 is estimated (binary: the second class; "
                                            "else the most frequent).")
    calibration: list[tuple[list[float], list[float]]] = Field(
        default_factory=list, description="Per class: isotonic thresholds (probability, calibrated frequency); "
                                          "a binary model has one map, of its second class (the first is 1 - it).")
    # DLE
    features: list[str] = Field(default_factory=list, description="Input columns of the loss model, in order.")
    categories: dict[str, list[str]] = Field(default_factory=dict,
                                             description="Codes of text columns: the index in the list; unseen: -1.")
    init: float = 0.0
    learning_rate: float = _DLE_RATE
    trees: list[Tree] = Field(default_factory=list)
    error_std: float = Field(0.0, description="Std of the held-out absolute errors (the band's width).")


# -- log time (in the kernel) ----------------------------------------------------------------


def fit_estimator(kind: str, *, y_true, predictions=None, probabilities=None, classes=None,
                  features=None, source: str = "test") -> Estimator | None:
    """Fit a ``"cbpe"`` (``probabilities`` n x k, ``classes``) or ``"dle"`` (``features`` a
    DataFrame, ``predictions``) estimator on held-out rows; ``None`` below 20 rows."""
    y = np.asarray(y_true)
    if len(y) < _MIN_ROWS:
        return None
    if kind == "cbpe":
        return _fit_cbpe(np.asarray(probabilities, dtype=float), list(classes), y, source)
    return _fit_dle(features, np.asarray(predictions, dtype=float), y.astype(float), source)


def _fit_cbpe(probabilities: np.ndarray, classes: list[Any], y: np.ndarray, source: str) -> Estimator:
    from sklearn.isotonic import IsotonicRegression

    calibration = []
    for index, label in enumerate(classes[1:] if len(classes) == 2 else classes, start=len(classes) == 2):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(probabilities[:, index], (y == label).astype(float))
        calibration.append((iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()))
    predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    values, counts = np.unique(y, return_counts=True)
    positive = classes[1] if len(classes) == 2 else values[counts.argmax()].item()
    correct = predicted == y
    reference = {"accuracy": float(correct.mean()), "f1": _f1(predicted == positive, y == positive)}
    return Estimator(kind="cbpe", rows=len(y), source=source, reference=reference, classes=_plain(classes),
                     positive=_plain([positive])[0], calibration=calibration)


def _fit_dle(features, predictions: np.ndarray, y: np.ndarray, source: str) -> Estimator:
    from sklearn.ensemble import GradientBoostingRegressor

    columns = [str(c) for c in features.columns]
    categories = {str(c): sorted(map(str, features[c].dropna().unique()))
                  for c in features.columns if not _numeric(features[c])}
    inputs = loss_inputs(features.set_axis(columns, axis=1), predictions, columns, categories)
    errors = np.abs(y - predictions)
    model = GradientBoostingRegressor(n_estimators=_DLE_TREES, max_depth=_DLE_DEPTH, learning_rate=_DLE_RATE,
                                      min_samples_leaf=10, random_state=0).fit(inputs, errors)
    trees = [Tree(feature=t.tree_.feature.tolist(), threshold=t.tree_.threshold.tolist(),
                  left=t.tree_.children_left.tolist(), right=t.tree_.children_right.tolist(),
                  value=t.tree_.value[:, 0, 0].tolist()) for t in model.estimators_[:, 0]]
    return Estimator(kind="dle", rows=len(y), source=source, reference={"mae": float(errors.mean())},
                     features=columns, categories=categories, init=float(model.init_.constant_[0][0]),
                     learning_rate=_DLE_RATE, trees=trees, error_std=float(errors.std()))


def loss_inputs(features, predictions: np.ndarray, columns: list[str], categories: dict[str, list[str]]):
    """The loss model's matrix: numeric columns as floats (NaN kept), text columns as codes, the prediction last."""
    import pandas as pd

    parts = []
    for column in columns:
        values = features[column]
        if column in categories:
            codes = {name: i for i, name in enumerate(categories[column])}
            parts.append(values.astype(str).map(codes).fillna(-1).to_numpy(dtype=float))
        else:
            parts.append(pd.to_numeric(values, errors="coerce").to_numpy(dtype=float))
    parts.append(predictions.astype(float))
    matrix = np.column_stack(parts)
    return np.nan_to_num(matrix, nan=-1e30)  # trees were fit the same way: missing goes left


def _numeric(values) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _f1(said: np.ndarray, truly: np.ndarray) -> float:
    tp = float((said & truly).sum())
    denominator = 2 * tp + float((said & ~truly).sum()) + float((~said & truly).sum())
    return 2 * tp / denominator if denominator else 0.0


def _plain(values: list[Any]) -> list[Any]:
    """Classes as JSON values (numpy scalars become Python ones)."""
    return [v.item() if hasattr(v, "item") else v for v in values]

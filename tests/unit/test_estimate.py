"""CBPE and DLE estimators (loopml.monitor.estimate): fit on held-out rows, stored as JSON, and
estimated with numpy alone — against the truth the test knows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

from loopml.monitor.estimate import estimate
from loopml.registry.estimator import Estimator, fit_estimator


def boundary_data(rng, count: int, low: float = 0.0, high: float = 3.0):
    X = rng.normal(0, 1, (count, 3))
    X[:, 0] = rng.uniform(low, high, count) * rng.choice([-1, 1], count)
    y = (rng.random(count) < 1 / (1 + np.exp(-3 * X[:, 0]))).astype(int)
    return X, y


@pytest.fixture(scope="module")
def classifier():
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (4000, 3))
    y = (rng.random(4000) < 1 / (1 + np.exp(-3 * X[:, 0]))).astype(int)
    model = LogisticRegression().fit(X[:2500], y[:2500])
    estimator = fit_estimator("cbpe", y_true=y[2500:], probabilities=model.predict_proba(X[2500:]),
                              classes=list(model.classes_))
    return model, estimator


@pytest.mark.parametrize(("low", "high"), [(0.5, 1.5), (0.0, 0.3), (0.0, 3.0)], ids=["easy", "boundary", "wide"])
def test_cbpe_follows_true_accuracy_under_covariate_shift(classifier, low, high):
    model, estimator = classifier
    X, y = boundary_data(np.random.default_rng(1), 3000, low, high)
    found = estimate(estimator, probabilities=model.predict_proba(X))
    truth = float((model.predict(X) == y).mean())
    assert found["metric"] == "accuracy" and found["n"] == 3000
    assert abs(found["value"] - truth) < 0.04, (found, truth)
    assert found["low"] < found["value"] < found["high"]
    assert 0 <= found["f1"] <= 1 and found["f1_class"] == 1


def test_cbpe_survives_a_json_round_trip_and_refuses_misfit_probabilities(classifier):
    model, estimator = classifier
    again = Estimator.model_validate_json(estimator.model_dump_json())
    X, _ = boundary_data(np.random.default_rng(2), 50)
    assert estimate(again, probabilities=model.predict_proba(X)) == estimate(estimator,
                                                                             probabilities=model.predict_proba(X))
    assert estimate(estimator, probabilities=np.ones((5, 3)) / 3) is None  # three classes for a binary model
    assert estimate(estimator, probabilities=np.empty((0, 2))) is None
    assert estimator.reference["accuracy"] > 0.7 and estimator.source == "test"


def test_dle_follows_the_true_mae_and_codes_text_columns():
    rng = np.random.default_rng(3)

    def rows(count, scale):
        X = pd.DataFrame({"a": rng.normal(0, 1, count), "b": rng.normal(0, scale, count),
                          "c": rng.choice(["x", "y"], count)})
        y = 2 * X.a + rng.normal(0, 0.2 + np.abs(X.b))
        return X, y.to_numpy()

    X, y = rows(4000, 1.0)
    numeric = X[["a", "b"]]
    model = GradientBoostingRegressor(n_estimators=30, random_state=0).fit(numeric[:2500], y[:2500])
    estimator = fit_estimator("dle", y_true=y[2500:], predictions=model.predict(numeric[2500:]),
                              features=X[2500:].reset_index(drop=True))
    assert estimator.categories == {"c": ["x", "y"]} and estimator.features == ["a", "b", "c"]
    for scale in (0.3, 2.0):
        live, truth = rows(3000, scale)
        predicted = model.predict(live[["a", "b"]])
        found = estimate(estimator, features=live, predictions=predicted)
        true_mae = float(np.abs(truth - predicted).mean())
        assert found["metric"] == "mae" and abs(found["value"] - true_mae) < 0.15 * true_mae, (found, true_mae)
    live["c"] = "unseen"  # an unseen category is coded -1, not an error
    assert estimate(estimator, features=live, predictions=predicted) is not None
    assert estimate(estimator, features=live[["a", "b"]], predictions=predicted) is None  # a column missing


def test_too_few_held_out_rows_give_no_estimator():
    assert fit_estimator("cbpe", y_true=[0, 1] * 5, probabilities=[[0.5, 0.5]] * 10, classes=[0, 1]) is None

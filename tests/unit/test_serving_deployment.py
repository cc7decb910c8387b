"""The replica's model loading: scikit-learn's own predict on the numeric fast path, MLflow's
pyfunc otherwise, with the same answers."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loopml.serving.deployment import _predict, load
from loopml.serving.protocols import ModelInput

X, Y = load_wine(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("model") / "wine"
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, Y)
    mlflow.sklearn.save_model(model, str(folder), signature=infer_signature(X, model.predict(X)))
    return str(folder)


def test_sklearn_model_gets_its_own_predict_and_answers_like_pyfunc(saved, tmp_path):
    loaded = load(saved, str(tmp_path))
    assert loaded.fast is not None and loaded.signature.inputs.input_names() == list(X.columns)
    rows = X.values[:5]
    fast = _predict(loaded, ModelInput(data=rows, columns=tuple(X.columns)))
    slow = _predict(loaded, ModelInput(data=pd.DataFrame(rows, columns=X.columns), columns=tuple(X.columns)))
    assert np.array_equal(fast, slow) and np.array_equal(fast, loaded.pyfunc.predict(X.iloc[:5]))


def test_a_model_without_a_fast_path_goes_through_pyfunc(saved, tmp_path):
    loaded = load(saved, str(tmp_path))._replace(fast=None)
    answer = _predict(loaded, ModelInput(data=X.values[:3], columns=tuple(X.columns)))
    assert list(answer) == list(loaded.pyfunc.predict(X.iloc[:3]))

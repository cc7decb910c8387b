"""The replica's model loading: scikit-learn's own predict on the numeric fast path, MLflow's
pyfunc otherwise, with the same answers; a model that can run code goes to the model host."""

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

from loopml.serving.loading import InProcess, SandboxOptions, load, load_local, raw_predict
from loopml.serving.model_host import ModelHost
from loopml.serving.protocols import ModelInput

X, Y = load_wine(return_X_y=True, as_frame=True)
MODEL = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, Y)


def save(folder, **kwargs) -> str:
    mlflow.sklearn.save_model(MODEL, str(folder), signature=infer_signature(X, MODEL.predict(X)), **kwargs)
    return str(folder)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    return save(tmp_path_factory.mktemp("model") / "wine")


def test_sklearn_model_gets_its_own_predict_and_answers_like_pyfunc(saved):
    loaded = load_local(saved)
    assert loaded.fast is not None and loaded.signature.inputs.input_names() == list(X.columns)
    rows = X.values[:5]
    fast = raw_predict(loaded, ModelInput(data=rows, columns=tuple(X.columns)))
    slow = raw_predict(loaded, ModelInput(data=pd.DataFrame(rows, columns=X.columns), columns=tuple(X.columns)))
    assert np.array_equal(fast, slow) and np.array_equal(fast, loaded.pyfunc.predict(X.iloc[:5]))


def test_a_model_without_a_fast_path_goes_through_pyfunc(saved):
    loaded = load_local(saved)._replace(fast=None)
    answer = raw_predict(loaded, ModelInput(data=X.values[:3], columns=tuple(X.columns)))
    assert list(answer) == list(loaded.pyfunc.predict(X.iloc[:3]))


def test_skops_loads_in_process_and_pickle_in_the_host_with_the_same_answers(saved, tmp_path):
    rows = ModelInput(data=X.values[:5], columns=tuple(X.columns))
    expected = MODEL.predict(X.iloc[:5]).tolist()
    data = load(saved, str(tmp_path / "skops"), SandboxOptions(isolation="off"))
    assert isinstance(data, InProcess) and data.predict(rows) == expected
    code = load(save(tmp_path / "pickled", serialization_format="pickle"), str(tmp_path / "pickle"),
                SandboxOptions(isolation="off"))
    try:
        assert isinstance(code, ModelHost) and not code.in_process
        assert code.predict(rows) == expected
        assert code.signature.inputs.input_names() == list(X.columns)
    finally:
        code.close()

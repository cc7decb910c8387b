"""Which logged models load in the replica (data) and which go to the sandboxed model host (code)."""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from loopml.serving.model_format import ALLOWED_SKOPS_TYPES, classify

X, Y = load_iris(return_X_y=True, as_frame=True)
warnings.filterwarnings("ignore", category=UserWarning)


def save(folder: Path, model, **kwargs) -> Path:
    mlflow.sklearn.save_model(model, str(folder), signature=infer_signature(X, model.predict(X)), **kwargs)
    return folder


class Probe(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input.sum(axis=1)


def edit(folder: Path, change) -> Path:
    """Rewrite ``folder``'s MLmodel file with ``change(meta)`` applied (a hand-crafted model)."""
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    change(meta)
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    return folder


@pytest.fixture(scope="module")
def skops_lr(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("m") / "lr", LogisticRegression(max_iter=500).fit(X, Y))


def test_skops_with_default_types_only_loads_in_process(skops_lr):
    found = classify(skops_lr)
    assert found.in_process and "skops" in found.reason


def test_skops_with_allowlisted_types_loads_in_process(tmp_path):
    forest = RandomForestClassifier(n_estimators=2).fit(X, Y)
    assert "sklearn.tree._tree.Tree" in ALLOWED_SKOPS_TYPES
    assert classify(save(tmp_path / "rf", forest, skops_trusted_types=["sklearn.tree._tree.Tree"])).in_process


def test_types_the_author_vouched_for_beyond_the_allowlist_go_to_the_sandbox(tmp_path):
    import skops.io

    search = GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.5, 1.0]}, cv=2).fit(X, Y)
    vouched = skops.io.get_untrusted_types(data=skops.io.dumps(search))
    assert set(vouched) - ALLOWED_SKOPS_TYPES  # e.g. the scorer and the CV splitter
    found = classify(save(tmp_path / "search", search, skops_trusted_types=vouched))
    assert not found.in_process and "beyond the allowlist" in found.reason


@pytest.mark.parametrize("serialization", ["pickle", "cloudpickle"])
def test_pickled_scikit_learn_goes_to_the_sandbox(tmp_path, serialization):
    found = classify(save(tmp_path / serialization, LogisticRegression(max_iter=500).fit(X, Y),
                          serialization_format=serialization))
    assert not found.in_process and serialization in found.reason


def test_a_python_model_goes_to_the_sandbox(tmp_path):
    mlflow.pyfunc.save_model(str(tmp_path / "probe"), python_model=Probe())
    assert not classify(tmp_path / "probe").in_process


def test_a_skops_model_claiming_a_pickle_file_goes_to_the_sandbox(tmp_path, skops_lr):
    """Only the file MLflow would load is audited: an MLmodel pointing elsewhere is refused."""
    import shutil

    folder = shutil.copytree(skops_lr, tmp_path / "crafted")
    (folder / "other.pkl").write_bytes(b"not a skops zip")
    edit(folder, lambda m: m["flavors"]["python_function"].update(model_path="other.pkl"))
    assert not classify(folder).in_process
    edit(folder, lambda m: m["flavors"]["python_function"].update(model_path="../../etc/passwd"))
    assert not classify(folder).in_process


@pytest.mark.parametrize("change", [
    lambda m: m["flavors"]["python_function"].update(code="code"),
    lambda m: m["flavors"]["python_function"].update(loader_module="evil"),
    lambda m: m["flavors"]["python_function"].update(predict_fn="__reduce__"),
    lambda m: m["flavors"]["sklearn"].update(serialization_format="joblib"),
    lambda m: m["flavors"].pop("python_function"),
], ids=["ships-code", "other-loader", "odd-predict-fn", "unknown-format", "no-pyfunc"])
def test_a_hand_edited_mlmodel_goes_to_the_sandbox(tmp_path, skops_lr, change):
    import shutil

    assert not classify(edit(shutil.copytree(skops_lr, tmp_path / "edited"), change)).in_process


def test_an_unreadable_mlmodel_goes_to_the_sandbox(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors: [unclosed")
    assert not classify(tmp_path).in_process
    assert not classify(tmp_path / "missing").in_process


def onnx_model(folder: Path, **conf) -> Path:
    folder.mkdir()
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {
        "python_function": {"loader_module": "mlflow.onnx", "data": "model.onnx"},
        "onnx": {"onnx_version": "1.17.0", "data": "model.onnx",
                 "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"], **conf}}}))
    return folder


def test_onnx_is_data_unless_its_options_can_load_a_library(tmp_path):
    assert classify(onnx_model(tmp_path / "plain", onnx_session_options={"intra_op_num_threads": 1})).in_process
    assert not classify(onnx_model(tmp_path / "config", onnx_session_options={
        "extra_session_config": {"session.custom_op_library": "/tmp/x.so"}})).in_process
    assert not classify(onnx_model(tmp_path / "provider", providers=[
        ["TensorrtExecutionProvider", {"trt_extra_plugin_lib_paths": "/tmp/x.so"}]])).in_process

"""The model host: the wire format (JSON and bytes, never pickle) and a model that can run code
answering from a process of its own, its errors the replica's, restarted when it dies."""

from __future__ import annotations

import json
import os
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from loopml import sandbox
from loopml.serving.loading import ModelRefused, ModelUnavailable
from loopml.serving.model_host import ModelHost
from loopml.serving.model_wire import WireError, decode_input, encode_input, read_frame, write_frame
from loopml.serving.protocols import ModelInput

COLUMNS = ("a", "b")

# A pyfunc model from code: loading it runs this file, so it is the kind that needs the host.
MODEL_CODE = textwrap.dedent('''
    import json, os
    import mlflow.pyfunc
    from mlflow.models import set_model

    class Probe(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            if (params or {}).get("mode") == "raise":
                raise ValueError("boom")
            if (params or {}).get("mode") == "exit":
                os._exit(3)
            if (params or {}).get("mode") == "sees":
                print("this print must not reach the wire")
                return [json.dumps({"pid": os.getpid(), "ray": sorted(k for k in os.environ if k.startswith("RAY")),
                                    "proc": sorted(p for p in os.listdir("/proc") if p.isdigit())})]
            return (model_input["a"] + model_input["b"]).tolist()

    set_model(Probe())
''')


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    import mlflow
    from mlflow.models import infer_signature

    work = tmp_path_factory.mktemp("probe")
    code = work / "probe.py"
    code.write_text(MODEL_CODE)
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [10.0, 20.0]})
    signature = infer_signature(frame, [11.0, 22.0], params={"mode": "sum"})
    mlflow.pyfunc.save_model(str(work / "model"), python_model=str(code), signature=signature)
    return str(work / "model")


@pytest.fixture(scope="module")
def host(model_dir):
    """The probe in a plain child process (``isolation="off"``): the protocol, without bubblewrap."""
    with ModelHost(model_dir, isolation="off", timeout_s=30) as started:
        yield started


def frame(*rows) -> ModelInput:
    return ModelInput(pd.DataFrame(list(rows), columns=list(COLUMNS)), COLUMNS)


@pytest.mark.parametrize("data", [
    np.arange(6, dtype=np.float64).reshape(2, 3),
    np.arange(4, dtype=np.int32),
    pd.DataFrame({"x": [1.5, None], "s": ["p", "q"], "t": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                  "raw": [b"\x00", b"z"]}),
    pd.DataFrame({"any": [{"k": 1}, [1, 2]]}),  # mixed values Arrow cannot type: JSON instead
    np.array([["a", "b"]], dtype=object),
], ids=["float-array", "int-array", "frame", "mixed-frame", "object-array"])
def test_inputs_cross_the_wire_unchanged(data):
    parsed = ModelInput(data, ("c",), {"p": 1})
    header, blob = encode_input(parsed)
    json.dumps(header)  # the header is plain JSON
    back = decode_input(json.loads(json.dumps(header)), blob)
    assert back.params == {"p": 1} and back.columns == ("c",)
    if isinstance(data, pd.DataFrame):
        assert back.data.astype(object).equals(data.astype(object)) or back.data.values.tolist() == data.values.tolist()
    else:
        assert back.data.dtype == data.dtype and back.data.tolist() == data.tolist()


def test_frames_are_bounded_and_a_silent_peer_times_out():
    """(After any of these the stream is out of step: the replica kills such a host.)"""
    def pipe_with(data: bytes) -> tuple[int, int]:
        read, write = os.pipe()
        os.write(write, data)
        return read, write

    read, write = os.pipe()
    write_frame(write, {"big": "x" * 100})
    with pytest.raises(WireError, match="over the limit"):
        read_frame(read, limit=50)
    read, write = pipe_with(b"")
    with pytest.raises(WireError, match="in time"):
        read_frame(read, timeout_s=0.2)
    read, write = pipe_with(b"\x00\x00\x00\x02\x00\x00\x00\x00[]")
    with pytest.raises(WireError, match="not a JSON object"):
        read_frame(read)
    read, write = pipe_with(b"\x00\x00")
    os.close(write)
    with pytest.raises(WireError, match="closed"):
        read_frame(read)


def test_the_host_answers_json_predictions_and_reads_the_signature_itself(host):
    assert host.signature.inputs.input_names() == list(COLUMNS)
    assert host.predict(frame([1.0, 2.0], [3.0, 4.0])) == [3.0, 7.0]


def test_the_models_errors_become_the_replicas(host):
    with pytest.raises(ModelRefused, match="refused the input"):  # MLflow's schema check, in the host
        host.predict(ModelInput(pd.DataFrame({"a": ["text"], "b": [1.0]}), COLUMNS))
    with pytest.raises(RuntimeError, match="ValueError: boom"):
        host.predict(ModelInput(frame([1.0, 2.0]).data, COLUMNS, {"mode": "raise"}))
    assert host.predict(frame([1.0, 1.0])) == [2.0]  # and it keeps answering


def test_a_host_that_dies_is_restarted_and_answers_again(model_dir):
    with ModelHost(model_dir, isolation="off", timeout_s=30) as host:
        first = host._proc.pid
        with pytest.raises(RuntimeError, match="failed on this request"):
            host.predict(ModelInput(frame([1.0, 2.0]).data, COLUMNS, {"mode": "exit"}))
        with pytest.raises(ModelUnavailable, match="restarting"):
            host.predict(frame([1.0, 2.0]))
        deadline = time.monotonic() + 120
        while host._proc is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert host._proc.pid != first and host.predict(frame([1.0, 2.0])) == [3.0]
    assert host._proc is None


@pytest.mark.skipif(sandbox.check() is not None, reason="this machine cannot sandbox")
def test_in_bubblewrap_the_model_sees_no_ray_variable_and_only_its_own_processes(model_dir, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    with ModelHost(model_dir, timeout_s=30) as host:
        seen = json.loads(host.predict(ModelInput(frame([1.0, 2.0]).data, COLUMNS, {"mode": "sees"}))[0])
    assert seen["ray"] == [] and len(seen["proc"]) <= 3 and str(os.getpid()) not in seen["proc"]


def test_a_challenger_is_scored_in_a_host_of_its_own_that_ends_with_the_evaluation(model_dir, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from loopml.monitor import policies

    started = []
    monkeypatch.setattr(ModelHost, "start", lambda self, _start=ModelHost.start: (started.append(self), _start(self)))
    settings = SimpleNamespace(tracking_uri=str(tmp_path / "mlruns"), home=tmp_path / "home", job_isolation="off")
    features = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert policies.predict_sandboxed(model_dir, features, settings) == [4.0, 6.0]
    assert len(started) == 1 and started[0]._proc is None  # its own host, gone with the evaluation


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> str:
    """A scikit-learn pipeline classifier saved with pickle (the host's kind) and with skops."""
    import mlflow.sklearn
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    work = tmp_path_factory.mktemp("wine")
    for name, serialization in (("pickle", "pickle"), ("skops", "skops")):
        mlflow.sklearn.save_model(model, str(work / name), serialization_format=serialization,
                                  pip_requirements=["scikit-learn"])  # no requirement inference: seconds
    return str(work)


def test_a_classifier_answers_its_probabilities_in_process_and_from_the_host(classifier_dir):
    from sklearn.datasets import load_wine

    from loopml.serving.loading import load_local

    X, _ = load_wine(return_X_y=True)
    rows = [ModelInput(X[i:i + 1].astype(float), None) for i in range(0, len(X), 7)]
    local = load_local(f"{classifier_dir}/skops")
    assert local.argmax_classes is not None  # one predict_proba call gives both
    for parsed in rows:
        predictions, probabilities = local.predict_with_probabilities(parsed)
        assert predictions == local.predict(parsed)
        assert len(probabilities) == 1 and abs(sum(probabilities[0]) - 1) < 1e-3
        assert int(np.argmax(probabilities[0])) == predictions[0]
    with ModelHost(f"{classifier_dir}/pickle", isolation="off", timeout_s=60) as hosted:
        predictions, probabilities = hosted.predict_with_probabilities(rows[0])
        assert predictions == local.predict(rows[0]) and probabilities == local.predict_with_probabilities(rows[0])[1]
        assert hosted.predict(rows[0]) == predictions


def test_a_model_without_probabilities_answers_none_for_them(host):
    assert host.predict_with_probabilities(frame([1.0, 2.0])) == ([3.0], None)

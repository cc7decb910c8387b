"""Which logged models are data and which can run code: where a model version is loaded.

A model whose files can only be read as data loads in the replica (the fast path); any
other model is user code and is loaded and called in a sandbox beside it
(:mod:`loopml.serving.model_host`). Data, here, is:

- a scikit-learn model saved with skops whose types beyond skops's own defaults are all in
  :data:`ALLOWED_SKOPS_TYPES`, a fixed list of scikit-learn/numpy data structures. The
  ``skops_trusted_types`` an author records in the MLmodel file count for nothing: the
  types are read from the model file itself (``skops.io.get_untrusted_types``), never
  constructed;
- an ONNX graph run by onnxruntime with MLflow's default providers (CPU, CUDA) and no
  session option that loads a library.

Pickle and cloudpickle scikit-learn models, pyfunc ``PythonModel`` s (cloudpickle), models
that ship code (``code`` paths) and anything not recognised are code. The MLmodel file is
read with ``yaml.safe_load``; nothing here imports or unpickles a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import yaml

__all__ = ["ALLOWED_SKOPS_TYPES", "Format", "classify"]

# Beyond skops's defaults (estimators, numpy arrays, builtins): data structures of fitted
# scikit-learn models that skops rebuilds from arrays and numbers, never from a callable.
ALLOWED_SKOPS_TYPES = frozenset({
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    *(f"sklearn.metrics._dist_metrics.{name}Distance{bits}"
      for name in ("Euclidean", "Manhattan", "Chebyshev", "Minkowski") for bits in (32, 64)),
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.utils._bunch.Bunch",
})
# the methods MLflow's scikit-learn wrapper may call (``pyfunc_predict_fn``)
_PREDICT_FNS = frozenset({"predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba", "score"})
_ONNX_PROVIDERS = frozenset({"CPUExecutionProvider", "CUDAExecutionProvider"})  # MLflow's defaults
_ONNX_OPTIONS = frozenset({"inter_op_num_threads", "intra_op_num_threads", "execution_mode",
                           "graph_optimization_level"})


class Format(NamedTuple):
    """How a model version is served: ``in_process`` only for data; ``reason`` says why."""

    in_process: bool
    reason: str


def _code(reason: str) -> Format:
    return Format(False, reason)


def classify(model_dir: str | Path) -> Format:
    """The :class:`Format` of the MLflow model in local folder ``model_dir``."""
    folder = Path(model_dir).resolve()
    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        return _code(f"unreadable MLmodel file ({type(exc).__name__})")
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    if not isinstance(pyfunc, dict):
        return _code("no python_function flavor")
    if any(isinstance(conf, dict) and conf.get("code") for conf in flavors.values()):
        return _code("the model ships code")
    loader = pyfunc.get("loader_module")
    if loader == "mlflow.sklearn":
        return _sklearn(folder, pyfunc, flavors.get("sklearn"))
    if loader == "mlflow.onnx":
        return _onnx(flavors.get("onnx"))
    return _code(f"loader {loader!r} runs the author's code")


def _sklearn(folder: Path, pyfunc: dict[str, Any], conf: Any) -> Format:
    if not isinstance(conf, dict):
        return _code("no sklearn flavor")
    serialization = conf.get("serialization_format", "pickle")
    if serialization != "skops":
        return _code(f"scikit-learn saved with {serialization}, which can run code")
    if pyfunc.get("predict_fn", "predict") not in _PREDICT_FNS:
        return _code(f"predict_fn {pyfunc.get('predict_fn')!r} is not a scikit-learn predict method")
    path = pyfunc.get("model_path")
    target = (folder / path).resolve() if isinstance(path, str) else None
    if target is None or not target.is_relative_to(folder) or not target.is_file():
        return _code("the python_function model_path is not a file of the model")
    import skops.io

    try:
        found = skops.io.get_untrusted_types(file=target)
    except Exception as exc:  # noqa: BLE001 - any file skops cannot audit is not data
        return _code(f"skops cannot audit the model file ({type(exc).__name__})")
    beyond = sorted(set(found) - ALLOWED_SKOPS_TYPES)
    if beyond:
        return _code(f"skops file with types beyond the allowlist: {', '.join(beyond[:3])}")
    return Format(True, "skops within the allowlist")


def _onnx(conf: Any) -> Format:
    if not isinstance(conf, dict):
        return _code("no onnx flavor")
    providers = conf.get("providers") or []
    if not isinstance(providers, list) or not all(isinstance(p, str) and p in _ONNX_PROVIDERS for p in providers):
        return _code("ONNX execution providers with options, or beyond CPU and CUDA, may load libraries")
    options = conf.get("onnx_session_options") or {}
    if not isinstance(options, dict) or set(options) - _ONNX_OPTIONS:
        return _code("ONNX session options beyond thread counts and optimization level")
    return Format(True, "ONNX graph")

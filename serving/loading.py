"""Loading a model version for an endpoint replica: in-process for data, sandboxed otherwise.

:func:`load` downloads the version's files (platform code, in the replica) into a folder,
classifies them (:func:`loopml.serving.model_format.classify`) and returns either an
:class:`InProcess` model (skops within the allowlist, ONNX) or a
:class:`~loopml.serving.model_host.ModelHost` that loads and calls the model in a sandboxed
process, the folder bound read-only. Both answer :meth:`predict` with JSON values and raise
:class:`ModelRefused` when the model's schema refuses the input (a 422 for the caller).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

from loopml.serving.model_format import classify
from loopml.serving.protocols import ModelInput
from loopml.serving.responses import jsonable

log = logging.getLogger(__name__)

__all__ = ["InProcess", "Loaded", "ModelRefused", "ModelUnavailable", "SandboxOptions", "load", "load_local"]


class ModelRefused(Exception):
    """The model's own schema check refused the input: the request is wrong, not the model."""


class ModelUnavailable(Exception):
    """The model's process is (re)starting: the caller may retry in a moment."""


class SandboxOptions(NamedTuple):
    """How a replica sandboxes code models: ``isolation`` ``"bwrap"`` or ``"off"`` (a plain
    child process with an empty environment), ``hide`` the paths it must never see."""

    isolation: str = "bwrap"
    hide: tuple[str, ...] = ()


class Loaded(Protocol):
    """A model an endpoint serves."""

    signature: Any
    in_process: bool

    def predict(self, parsed: ModelInput) -> Any:
        """The model's predictions for ``parsed``, as JSON values."""

    def predict_with_probabilities(self, parsed: ModelInput) -> tuple[Any, list[list[float]] | None]:
        """Predictions and, for a classifier with ``predict_proba``, its class probabilities per row."""

    def close(self) -> None:
        """Release what the model holds (its process, for a sandboxed one)."""


# Classifiers whose ``predict`` is the class of the largest ``predict_proba`` (scikit-learn
# computes one from the other, or both from one monotone score): for them one call gives both.
_ARGMAX_CLASSIFIERS = frozenset({
    "LogisticRegression", "RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier",
    "ExtraTreeClassifier", "GradientBoostingClassifier", "HistGradientBoostingClassifier", "GaussianNB",
})


class InProcess(NamedTuple):
    """A model loaded in this process: MLflow's pyfunc model, the flavor's own predict function
    for the numeric fast path (``None`` when the flavor has none), a classifier's
    ``predict_proba`` and, when its predictions are the argmax of its probabilities, its classes
    (so capturing probabilities costs no second call)."""

    pyfunc: Any
    fast: Callable[[np.ndarray], Any] | None
    proba: Callable[[Any], Any] | None = None
    argmax_classes: np.ndarray | None = None
    in_process: bool = True

    @property
    def signature(self):
        return self.pyfunc.metadata.signature

    def predict(self, parsed: ModelInput) -> Any:
        return jsonable(raw_predict(self, parsed))

    def predict_with_probabilities(self, parsed: ModelInput) -> tuple[Any, list[list[float]] | None]:
        fast = self.argmax_classes is not None and isinstance(parsed.data, np.ndarray) and not parsed.params
        if fast:
            probabilities = np.asarray(self.proba(parsed.data), dtype=float)
            predicted = self.argmax_classes.take(probabilities.argmax(axis=1))
            return jsonable(predicted), np.round(probabilities, 4).tolist()
        return jsonable(raw_predict(self, parsed)), raw_probabilities(self, parsed)

    def close(self) -> None:
        pass


def load_local(folder: str) -> InProcess:
    """Load the MLflow model in ``folder`` in this process. A scikit-learn model also gets its
    own ``predict`` (or the ``predict_fn`` it was logged with): requests are validated against
    the signature before they reach it, so MLflow's second schema check and DataFrame round
    trip (~2 ms of a one-row request) can be skipped for all-numeric inputs. Call it only on
    a data-format model, or inside the model host's sandbox."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(folder)
    fast = proba = classes = None
    flavors = model.metadata.flavors
    if "sklearn" in flavors:
        raw = model.get_raw_model()
        predict_fn = flavors.get("python_function", {}).get("predict_fn", "predict")
        fast = getattr(raw, predict_fn, None)
        proba = getattr(raw, "predict_proba", None) if hasattr(raw, "classes_") else None
        final = raw.steps[-1][1] if hasattr(raw, "steps") else raw  # a Pipeline predicts with its last step
        if proba is not None and predict_fn == "predict" and type(final).__name__ in _ARGMAX_CLASSIFIERS \
                and type(final).__module__.startswith("sklearn."):
            classes = np.asarray(raw.classes_)
    return InProcess(model, fast, proba, classes)


def raw_probabilities(model: InProcess, parsed: ModelInput) -> list[list[float]] | None:
    """A scikit-learn classifier's class probabilities for ``parsed`` (rounded to 4 places,
    which the estimates do not feel); ``None`` for any other model or when it cannot give them."""
    if model.proba is None or parsed.params:
        return None
    data = parsed.data if isinstance(parsed.data, np.ndarray) else parsed.to_frame()
    try:
        return np.round(np.asarray(model.proba(data), dtype=float), 4).tolist()
    except Exception as exc:  # noqa: BLE001 - the prediction stands; only the capture lacks them
        log.debug("no probabilities for this request: %s", exc)
        return None


def raw_predict(model: InProcess, parsed: ModelInput) -> Any:
    """``model``'s own answer for ``parsed``: the fast path for a bare numeric array, MLflow's
    pyfunc (and its schema enforcement) otherwise."""
    from mlflow.exceptions import MlflowException

    if model.fast is not None and isinstance(parsed.data, np.ndarray) and not parsed.params:
        return model.fast(parsed.data)
    try:
        return model.pyfunc.predict(parsed.to_frame(), params=parsed.params or None)
    except MlflowException as exc:  # schema enforcement: the request, not the model, is wrong
        raise ModelRefused(f"the model refused the input: {exc.message.splitlines()[0][:300]}") from None


def load(uri: str, folder: str, sandbox: SandboxOptions) -> Loaded:
    """Download ``uri`` into ``folder`` and load it where its format allows (module docstring)."""
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder)
    found = classify(local)
    if found.in_process:
        log.info("loading %s in-process: %s", uri, found.reason)
        return load_local(local)
    from loopml.serving.model_host import ModelHost

    log.info("loading %s in a sandboxed model host: %s", uri, found.reason)
    host = ModelHost(local, isolation=sandbox.isolation, hide=sandbox.hide)
    host.start()
    return host

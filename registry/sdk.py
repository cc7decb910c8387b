"""The notebook SDK of the registry: ``loopml.log_model`` and ``loopml.current_job``.

Runs in job kernels (and interactive workspace kernels), so it imports MLflow and
scikit-learn only when called. Inside a job it logs into the job's MLflow run, which
the runner announced through ``MLFLOW_RUN_ID``/``MLFLOW_TRACKING_URI``; interactively it
opens a run in the project's experiment and leaves it active for later calls.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.errors import InvalidInput, LoopMLError
from loopml.registry import tags as tag
from loopml.registry.names import check_alias, registered_name, short_name
from loopml.registry.tags import CHALLENGER, CHAMPION

REFERENCE_ROWS = 1000
EXAMPLE_ROWS = 5
PREDICTION_COLUMN, LABEL_COLUMN = "__prediction__", "__label__"


@dataclass(frozen=True)
class JobContext:
    """Who and what a job is, as its kernel sees it (``loopml.current_job()``)."""

    job_id: str
    project: str
    user: str
    attempt: int
    name: str
    run_id: str | None
    tracking_uri: str | None
    parameters: dict[str, Any] = field(default_factory=dict)
    notebook_sha256: str | None = None


@dataclass(frozen=True)
class RegisteredVersion:
    """What ``log_model`` registered."""

    name: str  # registered name, <project>.<model>
    version: int
    aliases: list[str]
    run_id: str
    model_uri: str  # models:/<name>/<version>
    reference_uri: str  # the reference sample for drift monitoring


def current_job() -> JobContext | None:
    """The job this kernel runs, or ``None`` outside a loopml job."""
    job_id = os.environ.get("LOOPML_JOB_ID")
    if not job_id:
        return None
    return JobContext(
        job_id=job_id,
        project=os.environ.get("LOOPML_PROJECT", ""),
        user=os.environ.get("LOOPML_USER", ""),
        attempt=int(os.environ.get("LOOPML_ATTEMPT", "1")),
        name=os.environ.get("LOOPML_JOB_NAME", ""),
        run_id=os.environ.get("MLFLOW_RUN_ID") or None,
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
        parameters=json.loads(os.environ.get("LOOPML_PARAMETERS") or "{}"),
        notebook_sha256=os.environ.get("LOOPML_NOTEBOOK_SHA256") or None,
    )


def _lineage(job: JobContext | None, project: str) -> dict[str, str]:
    if job is not None:
        return {tag.JOB_ID: job.job_id, tag.USER: job.user, tag.NOTEBOOK: job.name,
                tag.PARAMETERS: json.dumps(job.parameters)[:5000],
                tag.NOTEBOOK_SHA256: job.notebook_sha256 or "", tag.PROJECT: project}
    notebook = os.environ.get("JPY_SESSION_NAME", "")
    digest = ""
    if notebook and Path(notebook).is_file():
        digest = hashlib.sha256(Path(notebook).read_bytes()).hexdigest()
    user = os.environ.get("LOOPML_USER") or os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    return {tag.JOB_ID: "", tag.USER: user, tag.NOTEBOOK: Path(notebook).name,
            tag.PARAMETERS: "{}", tag.NOTEBOOK_SHA256: digest, tag.PROJECT: project}


def _run_id(job: JobContext | None, project: str) -> str:
    """The MLflow run to log into: the active one, the job's, or a new one in the project's experiment."""
    import mlflow

    active = mlflow.active_run()
    if active is not None:
        return active.info.run_id
    if job is not None and job.run_id:
        return mlflow.start_run(run_id=job.run_id).info.run_id
    mlflow.set_experiment(project)
    return mlflow.start_run(run_name="interactive").info.run_id


def _sample(X, rows: int):
    """At most ``rows`` rows of ``X`` (a DataFrame or array), spread over all of it."""
    import numpy as np

    count = len(X)
    if count <= rows:
        return X
    index = np.random.default_rng(0).choice(count, size=rows, replace=False)
    index.sort()
    return X.iloc[index] if hasattr(X, "iloc") else X[index]


def _reference_frame(X, predictions, y):
    """Features, predictions and (if given) labels as one DataFrame with string column names."""
    import numpy as np
    import pandas as pd

    frame = X.reset_index(drop=True).copy() if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    frame.columns = [str(c) for c in frame.columns]
    frame[PREDICTION_COLUMN] = np.asarray(predictions).tolist() if np.ndim(predictions) > 1 else np.asarray(predictions)
    if y is not None:
        frame[LABEL_COLUMN] = np.asarray(y)
    return frame


def _log_flavor(model, name: str, signature, example, flavor_kwargs: dict[str, Any]):
    import mlflow

    if "sklearn" in type(model).__module__ or _is_sklearn(model):
        import mlflow.sklearn

        serialization = flavor_kwargs.get("serialization_format", mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS)
        requirements = flavor_kwargs.pop("pip_requirements", None) or mlflow.sklearn.get_default_pip_requirements(
            include_cloudpickle=serialization == mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            include_skops=serialization == mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS)
        return mlflow.sklearn.log_model(model, name=name, signature=signature, input_example=example,
                                        pip_requirements=requirements, **flavor_kwargs), "sklearn"
    if isinstance(model, mlflow.pyfunc.PythonModel):
        requirements = flavor_kwargs.pop("pip_requirements", None) or mlflow.pyfunc.get_default_pip_requirements()
        return mlflow.pyfunc.log_model(name=name, python_model=model, signature=signature, input_example=example,
                                       pip_requirements=requirements, **flavor_kwargs), "pyfunc"
    raise InvalidInput(
        f"log_model cannot log a {type(model).__name__}: pass a scikit-learn estimator or wrap the model "
        "in an mlflow.pyfunc.PythonModel", field="model")


def _own_skops_types(model) -> list[str]:
    """The types skops does not trust by default that this very model is made of.

    The author who logs a model vouches for its own types (tree structures, for example),
    which MLflow then records in the MLmodel file for loading; nothing else is trusted.
    """
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def _is_sklearn(model) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return False
    return isinstance(model, BaseEstimator)


def _predict(model, X):
    if hasattr(model, "predict") and not _is_python_model(model):
        return model.predict(X)
    return model.predict(None, X)


def _is_python_model(model) -> bool:
    import mlflow.pyfunc

    return isinstance(model, mlflow.pyfunc.PythonModel)


def _log_estimator(model, short: str, run_id: str, model_id: str, reference, held_out) -> str | None:
    """Fit and log the version's performance estimator (see :func:`log_model`); its ``runs:/`` URI,
    or ``None`` for a model it does not apply to (not scikit-learn, no labels, too few rows)."""
    import mlflow

    estimator = _estimator(model, reference, held_out)
    if estimator is None:
        return None
    path = f"loopml/estimator/{short}"
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / f"{model_id}.json"
        target.write_text(estimator.model_dump_json())
        mlflow.log_artifact(str(target), artifact_path=path)
    return f"runs:/{run_id}/{path}/{target.name}"


def _estimator(model, reference, held_out):
    """CBPE for a classifier with ``predict_proba``, DLE for a regressor, on held-out rows."""
    from loopml.registry.estimator import fit_estimator

    if not _is_sklearn(model):
        return None
    from sklearn.base import clone, is_classifier, is_regressor

    classifier = is_classifier(model) and hasattr(model, "predict_proba")
    if not classifier and not is_regressor(model):
        return None
    X, y = held_out
    source = "test"
    if X is None or y is None or len(X) != len(y):
        X, y = reference
        source = "cross_validation"
        if y is None:
            return None
    import numpy as np

    X, y = _sample(X, 5 * REFERENCE_ROWS), _sample(np.asarray(y), 5 * REFERENCE_ROWS)
    if source == "test":
        outputs = model.predict_proba(X) if classifier else model.predict(X)
    else:
        from sklearn.model_selection import cross_val_predict

        outputs = cross_val_predict(clone(model), X, y, cv=5, method="predict_proba" if classifier else "predict")
    if classifier:
        return fit_estimator("cbpe", y_true=y, probabilities=outputs, classes=list(model.classes_), source=source)
    import pandas as pd

    features = X.reset_index(drop=True) if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    features.columns = [str(c) for c in features.columns]
    return fit_estimator("dle", y_true=y, predictions=outputs, features=features, source=source)


def _log_contract(signature, sample, contract: Mapping[str, Any] | None, short: str, run_id: str,
                  model_id: str) -> dict[str, str]:
    """Derive the version's data contract from ``signature`` and the reference ``sample``, apply the
    author's ``contract`` overrides (``{"feature.rule": value}``) and log it as JSON beside the
    sample; the version tag naming it, or ``{}`` for a signature without named columns.
    :class:`InvalidInput` naming the feature and rule for a bad override."""
    import mlflow

    from loopml.registry.contract import DEFAULT_TOLERANCE, apply_overrides, derive_contract

    # a job's kernel gets the platform's contract_tolerance setting in its environment
    tolerance = os.environ.get("LOOPML_CONTRACT_TOLERANCE") or DEFAULT_TOLERANCE
    try:
        tolerance = float(tolerance)
    except ValueError:
        raise InvalidInput(f"LOOPML_CONTRACT_TOLERANCE={tolerance!r} is not a number: use a share such as 0.1",
                           field="contract_tolerance") from None
    frame = sample if hasattr(sample, "columns") else None
    derived = derive_contract(signature, frame, tolerance) if frame is not None else None
    if derived is None:
        if contract:
            raise InvalidInput("contract: this model's signature has no named columns to set rules on; pass "
                               "X_train as a DataFrame", field="contract")
        return {}
    if contract:
        derived = apply_overrides(derived, contract)
    path = f"loopml/contract/{short}"
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / f"{model_id}.json"
        target.write_text(derived.model_dump_json(indent=1))
        mlflow.log_artifact(str(target), artifact_path=path)
    return {tag.CONTRACT: f"runs:/{run_id}/{path}/{target.name}"}


def log_model(model, name: str, X_train, y_train=None, metrics: dict[str, float] | None = None, *,
              alias: str | None = None, X_test=None, y_test=None, contract: Mapping[str, Any] | None = None,
              **flavor_kwargs: Any) -> RegisteredVersion:
    """Log ``model`` with its flavor, register it as ``<project>.<name>`` and alias it.

    The version gets a signature and input example inferred from ``X_train``, pinned pip
    requirements (no slow inference), a reference sample (≤1000 rows of ``X_train`` with
    predictions and ``y_train`` when given) for drift monitoring, and lineage tags (job,
    run, user, notebook, parameters, notebook hash). A scikit-learn classifier with
    ``predict_proba`` or regressor also gets a performance estimator (CBPE or DLE,
    :mod:`loopml.monitor.estimate`) fit on held-out rows: ``X_test``/``y_test`` when given
    (rows the model was not trained on: the better choice), else out-of-fold predictions of
    the reference sample (5-fold, the model cloned). The project's first version of a model
    becomes ``champion``, later ones ``challenger`` unless ``alias`` says otherwise.
    The version also gets a data contract (:mod:`loopml.registry.contract`), derived from the
    signature and the reference sample when ``X_train`` is a DataFrame; ``contract`` overrides
    its rules as ``{"feature.rule": value}`` (``{"alcohol.max": 15, "color.categories": ["red",
    "white"], "id.check": "off"}``; rules ``min``, ``max``, ``categories``, ``missing``, ``check``).
    ``metrics`` are logged to the run. Raises :class:`InvalidInput` for a bad name, alias or
    model type and :class:`LoopMLError` outside a job or project workspace.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    job = current_job()
    project = (job.project if job else "") or os.environ.get("LOOPML_PROJECT", "")
    if not project:
        raise LoopMLError("log_model needs a project: call it inside a loopml job or a project workspace, "
                          "or set LOOPML_PROJECT", reason="no_project")
    short, full = short_name(project, name), registered_name(project, name)
    if alias is not None:
        check_alias(alias)
    if len(X_train) == 0:
        raise InvalidInput("X_train is empty: log_model infers the signature and reference sample from it",
                           field="X_train")
    run_id = _run_id(job, project)
    sample = _sample(X_train, REFERENCE_ROWS)
    predictions = _predict(model, sample)
    signature = infer_signature(sample, predictions)
    example = sample[:EXAMPLE_ROWS] if not hasattr(sample, "iloc") else sample.iloc[:EXAMPLE_ROWS]
    flavor_kwargs = dict(flavor_kwargs)
    if _is_sklearn(model) and flavor_kwargs.get("serialization_format", "skops") == "skops":
        flavor_kwargs.setdefault("skops_trusted_types", _own_skops_types(model))
    info, flavor = _log_flavor(model, short, signature, example, dict(flavor_kwargs))
    if metrics:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, model_id=info.model_id)
    labels = None if y_train is None else (_sample(y_train, REFERENCE_ROWS) if len(y_train) == len(X_train) else None)
    reference_path = f"loopml/reference/{short}"
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / f"{info.model_id}.parquet"
        _reference_frame(sample, predictions, labels).to_parquet(target, index=False)
        mlflow.log_artifact(str(target), artifact_path=reference_path)
    reference_uri = f"runs:/{run_id}/{reference_path}/{target.name}"
    tags = {**_lineage(job, project), tag.RUN_ID: run_id, tag.FLAVOR: flavor, tag.REFERENCE: reference_uri}
    tags.update(_log_contract(signature, sample, contract, short, run_id, info.model_id))
    estimator_uri = _log_estimator(model, short, run_id, info.model_id, (sample, labels), (X_test, y_test))
    if estimator_uri:
        tags[tag.ESTIMATOR] = estimator_uri
    if flavor_kwargs.get("skops_trusted_types"):
        tags[tag.SKOPS_TRUSTED_TYPES] = ",".join(flavor_kwargs["skops_trusted_types"])
    client = MlflowClient()
    try:
        client.create_registered_model(full, tags={tag.PROJECT: project})
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(full, source=info.model_uri, run_id=run_id, tags=tags,
                                          model_id=info.model_id, await_creation_for=30)
    if alias is None:
        current = client.get_registered_model(full).aliases
        alias = CHALLENGER if CHAMPION in current else CHAMPION
    client.set_registered_model_alias(full, alias, version.version)
    mlflow.set_tag(tag.registered_tag(short, version.version), full)  # the job → version link
    return RegisteredVersion(name=full, version=int(version.version), aliases=[alias], run_id=run_id,
                             model_uri=f"models:/{full}/{version.version}", reference_uri=reference_uri)

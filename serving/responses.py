"""Responses and model metadata of model endpoints: predictions to protocol bytes.

The MLflow scoring protocol answers ``{"predictions": ...}`` (frames as records, as
MLflow's scoring server does); the Open Inference Protocol v2 answers named, typed,
shaped outputs. JSON has no NaN: non-finite floats become ``null``. Free of ray and
fastapi, like :mod:`loopml.serving.protocols`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pandas as pd

from loopml.serving.protocols import _V2_OF_DTYPE, _V2_OF_KIND

__all__ = ["dumps_json", "format_invocation_response", "format_v2_response", "jsonable", "v2_metadata"]


def v2_metadata(name: str, version: str, signature) -> dict[str, Any]:
    """The Open Inference Protocol model metadata of a model with ``signature``."""
    return {"name": name, "versions": [str(version)], "platform": "mlflow",
            "inputs": _tensor_metadata(signature.inputs if signature else None, "input"),
            "outputs": _tensor_metadata(signature.outputs if signature else None, "predict")}


def format_invocation_response(predictions: Any) -> bytes:
    """``{"predictions": ...}`` as MLflow's scoring server writes it (frames as records)."""
    return dumps_json({"predictions": jsonable(predictions)})


def format_v2_response(model_name: str, version: str, request_id: str | None,
                       predictions: Any) -> bytes:
    """A v2 infer response: one output ``predict`` (one per column for a DataFrame)."""
    if isinstance(predictions, pd.DataFrame):
        outputs = [_v2_output(str(c), predictions[c].to_numpy()) for c in predictions.columns]
    else:
        if isinstance(predictions, pd.Series):
            predictions = predictions.to_numpy()
        outputs = [_v2_output("predict", np.asarray(predictions))]
    response: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = outputs
    return dumps_json(response)


def _tensor_metadata(schema, default_name: str) -> list[dict[str, Any]]:
    if schema is None:
        return []
    entries = []
    for i, spec in enumerate(schema.inputs):
        name = spec.name or (default_name if len(schema.inputs) == 1 else f"{default_name}-{i}")
        if schema.is_tensor_spec():
            datatype = _V2_OF_DTYPE.get(spec.type.kind, "BYTES")
            if spec.type == np.float32:
                datatype = "FP32"
            elif spec.type == np.int32:
                datatype = "INT32"
            entries.append({"name": name, "datatype": datatype, "shape": list(spec.shape)})
        else:
            kind = getattr(spec.type, "name", "")
            entries.append({"name": name, "datatype": _V2_OF_KIND.get(kind, "BYTES"),
                            "shape": [-1]})
    return entries


def _v2_output(name: str, array: np.ndarray) -> dict[str, Any]:
    datatype = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32"}.get(
        array.dtype, _V2_OF_DTYPE.get(array.dtype.kind, "BYTES"))
    flat = array.reshape(-1)
    data = [str(v) for v in flat] if datatype == "BYTES" else jsonable(flat)
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def jsonable(value: Any) -> Any:
    """``value`` (predictions: arrays, frames, series, numpy scalars) as plain JSON values; NaN -> None."""
    if isinstance(value, pd.DataFrame):
        return [{k: jsonable(v) for k, v in row.items()}
                for row in value.to_dict(orient="records")]
    if isinstance(value, pd.Series):
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            finite = np.isfinite(value)
            value = value.astype(object)
            value[~finite] = None  # JSON has no NaN; send null as orjson does
        return value.tolist()
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    return value


def dumps_json(obj: Any) -> bytes:
    """Compact JSON (orjson); what it cannot encode natively is written with ``str``."""
    return orjson.dumps(obj, default=str)

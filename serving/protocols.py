"""Request and response protocols of model endpoints: pure functions over bytes.

Two protocols are spoken (see DESIGN.md, "Endpoints"):

* the MLflow scoring protocol, ``POST .../invocations``: a JSON object with exactly one of
  ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs`` (and optionally
  ``params``), with the semantics of ``mlflow.pyfunc.scoring_server``;
* the Open Inference Protocol v2, ``POST .../v2/models/<name>/infer``.

Both parsers validate the request against the model's MLflow signature and return a
:class:`ModelInput`, or raise :class:`~loopml.serving.errors.RequestError` with a 4xx
``status`` and a one-line message naming the problem and the fix. When every input column
of the signature is numeric the input is a C-ordered ``float64`` array of shape
``(rows, columns)`` in the signature's column order, built without pandas; otherwise it is
a ``pandas.DataFrame`` with those columns in that order.

This module must stay free of ray and fastapi: the Serve deployment wraps it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd

from loopml.serving.errors import RequestError

__all__ = [
    "DEFAULT_MAX_ROWS",
    "ModelInput",
    "parse_invocation",
    "parse_v2_infer",
]

DEFAULT_MAX_ROWS = 100_000
MAX_NESTING = 3  # of a v2 tensor's ``data``: flat, [rows][cols] or one level more

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_INVOCATION_KEYS = frozenset(MLFLOW_FORMATS) | {"params"}
_V2_KEYS = frozenset({"inputs", "id", "parameters", "outputs"})
_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "data", "parameters"})

_NUMERIC = frozenset({"double", "float", "long", "integer", "boolean"})
_V2_OF_KIND = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32",
               "boolean": "BOOL", "string": "BYTES", "binary": "BYTES", "datetime": "BYTES"}
_V2_OF_DTYPE = {"f": "FP64", "i": "INT64", "u": "INT64", "b": "BOOL"}
# v2 datatype -> (python types its data may hold, column kinds it may feed)
_V2_TYPES: dict[str, tuple[frozenset, frozenset]] = {
    "FP32": (frozenset({float, int}), frozenset({"double", "float"})),
    "FP64": (frozenset({float, int}), frozenset({"double", "float"})),
    "INT32": (frozenset({int}), frozenset({"double", "float", "long", "integer"})),
    "INT64": (frozenset({int}), frozenset({"double", "float", "long", "integer"})),
    "BOOL": (frozenset({bool}), frozenset({"boolean"})),
    "BYTES": (frozenset({str}), frozenset({"string", "binary", "datetime"})),
}
_V2_NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64,
             "BOOL": np.bool_, "BYTES": object}
# which JSON values a column of each kind accepts; other kinds (arrays, objects) take any
_ACCEPTS = {"double": {float, int}, "float": {float, int}, "long": {int, float},
            "integer": {int, float}, "boolean": {bool}, "string": {str}, "binary": {str},
            "datetime": {str}}
_COLUMNS_CACHE: dict[int, tuple[weakref.ref, list]] = {}
_JSON_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean",
               type(None): "null", list: "array", dict: "object"}


@dataclass(frozen=True)
class ModelInput:
    """A validated request, ready for the model.

    ``data`` is a 2-D ``float64`` array (all-numeric signature), a ``DataFrame`` (mixed or
    string columns, or no signature) or an array shaped as a tensor signature asks.
    ``columns`` names the array's columns in order (``None`` when unnamed). ``params`` are
    MLflow inference params (``params`` / v2 ``parameters``); ``request_id`` the v2 ``id``.
    """

    data: np.ndarray | pd.DataFrame
    columns: tuple[str, ...] | None
    params: dict[str, Any] | None = None
    request_id: str | None = None

    @property
    def n_rows(self) -> int:
        return len(self.data)

    def to_frame(self) -> pd.DataFrame:
        """The input as a DataFrame, as ``PyFuncModel.predict`` takes it."""
        if isinstance(self.data, pd.DataFrame):
            return self.data
        return pd.DataFrame(self.data, columns=list(self.columns) if self.columns else None)


class _Col(NamedTuple):
    name: str
    kind: str  # a DataType name, or "any" for arrays, objects, maps
    required: bool


class _Table(NamedTuple):
    """A request's data before validation: named or positional, by rows or by columns."""

    names: list[str] | None  # None: positional, in the signature's order
    rows: list[list] | None
    cols: list[list] | None
    n_rows: int


# ---------------------------------------------------------------------------- requests


def parse_invocation(body: bytes, content_type: str | None, signature, *, max_bytes: int,
                     max_rows: int = DEFAULT_MAX_ROWS) -> ModelInput:
    """Parse an MLflow scoring request (``POST /invocations``) against ``signature``.

    Raises :class:`RequestError` (400/413/415/422) when the body is not a valid request for
    this model; never anything else for any ``body``.
    """
    request = _load_object(body, content_type, max_bytes)
    unknown = [k for k in request if k not in _INVOCATION_KEYS]
    if unknown:
        raise _bad(f"unknown top-level key {unknown[0]!r}; send one of {', '.join(MLFLOW_FORMATS)} "
                   "(and optionally 'params')", "unknown_key", key=unknown[0])
    formats = [k for k in MLFLOW_FORMATS if k in request]
    if len(formats) != 1:
        got = "none" if not formats else " and ".join(formats)
        raise _bad(f"the request must have exactly one of {', '.join(MLFLOW_FORMATS)}; got {got}",
                   "format")
    params = request.get("params")
    if params is not None and not isinstance(params, dict):
        raise _bad("'params' must be an object of parameter names to values", "params")
    fmt = formats[0]
    value = request[fmt]
    spec = _tensor_spec(signature)
    if spec is not None:
        return ModelInput(_as_tensor(value, spec, fmt, max_rows), None, params)
    cols = _columns(signature)
    if fmt == "dataframe_split":
        table = _from_split(value)
    elif fmt == "dataframe_records":
        if not isinstance(value, list):
            raise _bad("'dataframe_records' must be a list of objects, one per row", "format")
        table = _from_records(value, fmt)
    else:
        table = _from_tf_serving(value, fmt, cols)
    return _build(table, cols, max_rows, params, None)


def parse_v2_infer(body: bytes, content_type: str | None, signature, *, max_bytes: int,
                   max_rows: int = DEFAULT_MAX_ROWS) -> ModelInput:
    """Parse an Open Inference Protocol v2 infer request against ``signature``.

    Accepts one 2-D tensor ``[rows, columns]`` covering all columns in signature order, or
    one ``[rows]`` / ``[rows, 1]`` tensor per named column. The request ``id`` is returned
    as ``request_id``. Raises :class:`RequestError` as :func:`parse_invocation` does.
    """
    request = _load_object(body, content_type, max_bytes)
    unknown = [k for k in request if k not in _V2_KEYS]
    if unknown:
        raise _bad(f"unknown top-level key {unknown[0]!r}; a v2 request has 'inputs' and "
                   "optionally 'id', 'parameters', 'outputs'", "unknown_key", key=unknown[0])
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise _bad("a v2 request needs 'inputs': a non-empty list of tensors", "format")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("'id' must be a string", "format")
    params = request.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise _bad("'parameters' must be an object", "params")
    parsed = [_v2_tensor(t, i) for i, t in enumerate(tensors)]
    spec = _tensor_spec(signature)
    cols = _columns(signature)
    if spec is not None or (cols is None and len(parsed) == 1):
        return ModelInput(_v2_array(parsed, spec, max_rows), None, params, request_id)
    if cols is not None and len(parsed) == 1 and len(parsed[0][1]) == 2 and parsed[0][1][1] != 1:
        table = _v2_table(parsed[0], cols)
    else:
        table = _v2_columns(parsed, cols)
    return _build(table, cols, max_rows, params, request_id)


# ---------------------------------------------------------------------------- internals


def _bad(message: str, reason: str, **details) -> RequestError:
    return RequestError(message, status=400, reason=reason, **details)


def _invalid(message: str, reason: str, **details) -> RequestError:
    return RequestError(message, status=422, reason=reason, **details)


def _too_many(n_rows: int, max_rows: int) -> RequestError:
    return RequestError(f"{n_rows} rows exceed this endpoint's limit of {max_rows}; split the "
                        "request", status=413, reason="too_many_rows")


def _load_object(body: bytes, content_type: str | None, max_bytes: int) -> dict:
    if len(body) > max_bytes:
        raise RequestError(f"the body has {len(body)} bytes, over this endpoint's limit of "
                           f"{max_bytes}; send fewer rows per request", status=413,
                           reason="too_large")
    _check_content_type(content_type)
    if not body.strip():
        raise _bad("the body is empty; send a JSON object", "empty_body")
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # a json.JSONDecodeError, invalid UTF-8 included
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise _bad(f"the body is not valid UTF-8 JSON{where}", "not_json") from None
    if not isinstance(request, dict):
        raise _bad(f"the body must be a JSON object, not {_json_name(request)}", "not_object")
    return request


def _check_content_type(content_type: str | None) -> None:
    if content_type is None or not content_type.strip():
        return  # clients such as bare curl send none; JSON is the only format we speak
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    if mime.lower() != "application/json":
        raise RequestError(f"content type {mime!r} is not supported; send application/json",
                           status=415, reason="content_type")
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset":
            raise RequestError(f"content type parameter {key.strip()!r} is not supported; "
                               "send application/json", status=415, reason="content_type")
        if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestError(f"charset {value.strip()!r} is not supported; send UTF-8",
                               status=415, reason="content_type")


def _tensor_spec(signature):
    inputs = signature.inputs if signature is not None else None
    if inputs is None or not inputs.is_tensor_spec():
        return None
    if len(inputs.inputs) != 1:
        raise _invalid("models with several input tensors are not served yet", "signature")
    return inputs.inputs[0]


def _columns(signature) -> list[_Col] | None:
    """The signature's input columns; cached per signature object (a quarter of a 1-row parse).

    Signatures are unhashable, so the cache is keyed by ``id`` and guarded by a weak
    reference that drops the entry when the signature is collected.
    """
    inputs = signature.inputs if signature is not None else None
    if inputs is None or inputs.is_tensor_spec():
        return None
    cached = _COLUMNS_CACHE.get(id(signature))
    if cached is not None and cached[0]() is signature:
        return cached[1]
    cols = [_Col(spec.name if spec.name is not None else f"#{i}",
                 getattr(spec.type, "name", "any"), spec.required)
            for i, spec in enumerate(inputs.inputs)]
    key = id(signature)
    _COLUMNS_CACHE[key] = (weakref.ref(signature, lambda _: _COLUMNS_CACHE.pop(key, None)), cols)
    return cols


def _from_split(value: Any) -> _Table:
    if not isinstance(value, dict):
        raise _bad("'dataframe_split' must be an object with 'columns' and 'data'", "format")
    extra = [k for k in value if k not in ("columns", "data", "index")]
    if extra:
        raise _bad(f"unknown key {extra[0]!r} in 'dataframe_split'; it takes 'columns', "
                   "'data' and optionally 'index'", "unknown_key", key=extra[0])
    names, rows = value.get("columns"), value.get("data")
    if not isinstance(rows, list):
        raise _bad("'dataframe_split' needs 'data': a list of rows", "format")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(n, str) for n in names)):
        raise _bad("'dataframe_split.columns' must be a list of column names", "format")
    _check_rows(rows, "dataframe_split.data")
    if rows and names is not None and len(rows[0]) != len(names):
        raise _bad(f"'dataframe_split' names {len(names)} columns but its rows have "
                   f"{len(rows[0])} values; send one value per column", "ragged")
    return _Table(names, rows, None, len(rows))


def _check_rows(rows: list, where: str) -> None:
    if set(map(type, rows)) - {list}:
        bad = next(i for i, r in enumerate(rows) if type(r) is not list)
        raise _bad(f"row {bad} of {where} is {_json_name(rows[bad])}, not a list of values",
                   "format")
    if len(set(map(len, rows))) > 1:
        width = len(rows[0])
        bad = next(i for i, r in enumerate(rows) if len(r) != width)
        raise _bad(f"row {bad} of {where} has {len(rows[bad])} values but row 0 has {width}; "
                   "send the same number of values in every row", "ragged")


def _from_records(records: list, where: str) -> _Table:
    if set(map(type, records)) - {dict}:
        bad = next(i for i, r in enumerate(records) if type(r) is not dict)
        raise _bad(f"record {bad} of '{where}' is {_json_name(records[bad])}, not an object",
                   "format")
    if not records:
        return _Table([], None, [], 0)
    names = list(records[0])
    keys = records[0].keys()
    for i, record in enumerate(records):
        if record.keys() != keys:
            missing = [k for k in names if k not in record] or [k for k in record if k not in keys]
            raise _bad(f"record {i} of '{where}' differs from record 0 in column {missing[0]!r}; "
                       "send the same columns in every record", "ragged", column=missing[0])
    return _Table(names, None, [[r[k] for r in records] for k in names], len(records))


def _from_tf_serving(value: Any, where: str, cols: list[_Col] | None) -> _Table:
    if isinstance(value, dict):  # columnar {column: [values]}, or one row {column: value}
        lists = [isinstance(v, list) for v in value.values()]
        if value and all(lists):
            lengths = {len(v) for v in value.values()}
            if len(lengths) > 1:
                raise _bad(f"the columns of '{where}' have different lengths {sorted(lengths)}; "
                           "send the same number of values per column", "ragged")
            return _Table(list(value), None, list(value.values()), lengths.pop())
        if any(lists):
            raise _bad(f"'{where}' mixes lists and single values; send a list per column",
                       "format")
        return _Table(list(value), None, [[v] for v in value.values()], 1 if value else 0)
    if not isinstance(value, list):
        raise _bad(f"'{where}' must be a list of rows or an object of columns", "format")
    if value and all(type(v) is dict for v in value):
        return _from_records(value, where)
    if value and not any(isinstance(v, (list, dict)) for v in value):
        if cols is not None and len(cols) != 1:  # MLflow maps a flat list to a single column
            raise _bad(f"'{where}' is a flat list but this model takes {len(cols)} columns; "
                       "send a list of rows", "format")
        return _Table(None, [[v] for v in value], None, len(value))
    _check_rows(value, where)
    return _Table(None, value, None, len(value))


def _build(table: _Table, cols: list[_Col] | None, max_rows: int, params, request_id) -> ModelInput:
    if table.n_rows == 0:
        raise _bad("the request holds no rows; send at least one", "no_rows")
    if table.n_rows > max_rows:
        raise _too_many(table.n_rows, max_rows)
    if cols is None:
        return _without_signature(table, params, request_id)
    names = table.names
    if names is None:
        width = len(table.rows[0]) if table.rows is not None else len(table.cols)
        if width != len(cols):
            raise _invalid(f"rows have {width} values but this model takes {len(cols)} columns: "
                           f"{_list_names(cols)}", "width")
        names = [c.name for c in cols]
    position = {n: i for i, n in enumerate(names)}
    if len(position) != len(names):
        dup = next(n for i, n in enumerate(names) if names.index(n) != i)
        raise _bad(f"column {dup!r} appears twice; name each column once", "duplicate_column",
                   column=dup)
    known = {c.name for c in cols}
    extra = [n for n in names if n not in known]
    if extra:
        raise _invalid(f"unknown column {extra[0]!r}; this model's columns are "
                       f"{_list_names(cols)}", "extra_column", column=extra[0])
    missing = [c.name for c in cols if c.required and c.name not in position]
    if missing:
        raise _invalid(f"missing column {missing[0]!r}; this model needs {_list_names(cols)}",
                       "missing_column", column=missing[0])
    by_column = table.cols if table.cols is not None else list(zip(*table.rows, strict=False))
    values = [by_column[position[c.name]] if c.name in position else None for c in cols]
    for col, column in zip(cols, values, strict=False):
        if column is not None:
            _check_values(col, column)
    columns = tuple(c.name for c in cols)
    if all(c.kind in _NUMERIC for c in cols):
        if table.rows is not None and names == list(columns):
            array = np.array(table.rows, dtype=np.float64)
        else:
            nan = [math.nan] * table.n_rows
            array = np.array([v if v is not None else nan for v in values], dtype=np.float64).T
            array = np.ascontiguousarray(array)
        return ModelInput(array, columns, params, request_id)
    frame = pd.DataFrame({c.name: _pandas_column(c, v, table.n_rows) for c, v in zip(cols, values, strict=False)},
                         columns=list(columns))
    return ModelInput(frame, columns, params, request_id)


def _check_values(col: _Col, column) -> None:
    accepts = _ACCEPTS.get(col.kind)
    if accepts is None:
        return
    types = set(map(type, column))
    wrong = types - accepts
    if wrong == {type(None)} and not col.required:
        wrong = set()
    if wrong:
        bad = next(v for v in column if type(v) in wrong)
        raise _invalid(f"column {col.name!r} expects {col.kind}, got {_json_name(bad)}"
                       f"{_preview(bad)}; send {_json_name_a(col.kind)} value for this column",
                       "wrong_type", column=col.name, got=_json_name(bad))
    if col.kind in ("long", "integer") and float in types:
        bad = next((v for v in column if type(v) is float and not v.is_integer()), None)
        if bad is not None:
            raise _invalid(f"column {col.name!r} expects {col.kind}, got number {bad!r}; send "
                           "whole numbers for this column", "wrong_type", column=col.name)


def _pandas_column(col: _Col, values, n_rows: int):
    if values is None:
        return [None] * n_rows
    try:
        if col.kind in ("double", "float", "long", "integer"):
            has_null = any(v is None for v in values)
            dtype = {"double": np.float64, "float": np.float32, "long": np.int64,
                     "integer": np.int32}[col.kind]
            return np.array(values, dtype=np.float64 if has_null and dtype in (np.int64, np.int32)
                            else dtype)
        if col.kind == "boolean":
            return np.array(values, dtype=object if None in values else bool)
        if col.kind == "binary":
            return [base64.b64decode(v, validate=True) for v in values]
        if col.kind == "datetime":
            return pd.to_datetime(list(values))
    except (ValueError, OverflowError, binascii.Error, pd.errors.ParserError):
        raise _invalid(f"column {col.name!r} holds a value that is not a valid {col.kind}; "
                       f"send {_json_name_a(col.kind)} value", "wrong_type",
                       column=col.name) from None
    return list(values)


def _without_signature(table: _Table, params, request_id) -> ModelInput:
    if table.names is None and table.rows is not None:
        types = {type(v) for row in table.rows for v in row}
        if types <= {int, float}:
            return ModelInput(np.array(table.rows, dtype=np.float64), None, params, request_id)
        return ModelInput(pd.DataFrame(table.rows), None, params, request_id)
    data = table.cols if table.cols is not None else list(map(list, zip(*table.rows, strict=False)))
    frame = pd.DataFrame(dict(zip(table.names, data, strict=False)), columns=table.names)
    return ModelInput(frame, tuple(table.names), params, request_id)


def _as_tensor(value: Any, spec, where: str, max_rows: int) -> np.ndarray:
    if isinstance(value, list) and len(value) > max_rows:
        raise _too_many(len(value), max_rows)
    try:
        array = np.asarray(value, dtype=spec.type)
    except (ValueError, TypeError):
        raise _invalid(f"'{where}' is not a rectangular array of {spec.type}; send nested lists "
                       f"of numbers shaped {list(spec.shape)}", "wrong_type") from None
    if array.size == 0:
        raise _bad("the request holds no rows; send at least one", "no_rows")
    _check_tensor_shape(array, spec)
    return array


def _check_tensor_shape(array: np.ndarray, spec) -> None:
    shape = spec.shape
    if array.ndim != len(shape) or any(d not in (-1, a) for d, a in zip(shape, array.shape, strict=True)):
        raise _invalid(f"the input has shape {list(array.shape)} but this model takes "
                       f"{list(shape)} (-1: any size)", "shape")


def _v2_tensor(tensor: Any, index: int) -> tuple[str, list[int], str, list]:
    if not isinstance(tensor, dict):
        raise _bad(f"inputs[{index}] must be an object with name, shape, datatype and data",
                   "format")
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise _bad(f"inputs[{index}] has no {key!r}; every tensor needs name, shape, "
                       "datatype and data", "tensor_field", field=key)
    extra = [k for k in tensor if k not in _TENSOR_KEYS]
    if extra:
        raise _bad(f"unknown key {extra[0]!r} in inputs[{index}]", "unknown_key", key=extra[0])
    name, shape, datatype, data = (tensor[k] for k in ("name", "shape", "datatype", "data"))
    if not isinstance(name, str):
        raise _bad(f"inputs[{index}].name must be a string", "tensor_field", field="name")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _bad(f"input {name!r} has shape {shape!r}; send a list of sizes such as [2, 13]",
                   "shape", input=name)
    if datatype not in _V2_TYPES:
        raise _bad(f"input {name!r} has datatype {datatype!r}; use one of "
                   f"{', '.join(_V2_TYPES)}", "datatype", input=name)
    flat = _flatten(data, name)
    if len(flat) != math.prod(shape):
        raise _bad(f"input {name!r} has {len(flat)} values but shape {shape} needs "
                   f"{math.prod(shape)}; make data and shape agree", "shape", input=name)
    allowed = _V2_TYPES[datatype][0]
    wrong = set(map(type, flat)) - allowed
    if wrong:
        bad = next(v for v in flat if type(v) in wrong)
        raise _invalid(f"input {name!r} is {datatype} but holds {_json_name(bad)}"
                       f"{_preview(bad)}; send data of its datatype", "wrong_type", input=name,
                       got=_json_name(bad))
    return name, shape, datatype, flat


def _v2_array(parsed: list, spec, max_rows: int) -> np.ndarray:
    """The one tensor of a tensor-signature model (or of a model without signature)."""
    if len(parsed) != 1:
        raise _invalid("this model takes one tensor; send a single entry in 'inputs'",
                       "tensor_count")
    name, shape, datatype, flat = parsed[0]
    if shape and shape[0] > max_rows:
        raise _too_many(shape[0], max_rows)
    dtype = spec.type if spec is not None else _V2_NUMPY[datatype]
    try:
        array = np.asarray(flat, dtype=dtype).reshape(shape)
    except (ValueError, TypeError):
        raise _invalid(f"input {name!r} is {datatype} but this model takes {dtype}; send "
                       "numbers", "wrong_type", input=name) from None
    if spec is not None:
        _check_tensor_shape(array, spec)
    return array


def _v2_table(tensor: tuple, cols: list[_Col]) -> _Table:
    """One ``[rows, columns]`` tensor holding every column, in signature order."""
    name, shape, datatype, flat = tensor
    width = len(cols)
    if shape[1] != width:
        raise _invalid(f"input {name!r} has shape {shape} but this model takes {width} "
                       f"columns; send [rows, {width}] or one tensor per column", "shape",
                       input=name)
    for col in cols:
        _check_datatype(datatype, col, name)
    return _Table(None, None, [flat[j::width] for j in range(width)], shape[0])


def _v2_columns(parsed: list, cols: list[_Col] | None) -> _Table:
    """One ``[rows]`` or ``[rows, 1]`` tensor per column, named after it."""
    names, columns, n_rows = [], [], None
    known = {c.name: c for c in cols} if cols is not None else None
    for name, shape, datatype, flat in parsed:
        if known is not None and name not in known:
            raise _invalid(f"unknown input {name!r}; this model's inputs are "
                           f"{_list_names(cols)}", "unknown_input", input=name)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise _bad(f"input {name!r} has shape {shape}; send one column as [rows] or "
                       f"[rows, 1]", "shape", input=name)
        if n_rows is not None and shape[0] != n_rows:
            raise _bad(f"input {name!r} has {shape[0]} rows but the first input has {n_rows}; "
                       "send the same number of rows for every input", "ragged", input=name)
        if known is not None:
            _check_datatype(datatype, known[name], name)
        n_rows = shape[0]
        names.append(name)
        columns.append(flat)
    return _Table(names, None, columns, n_rows)


def _flatten(data: Any, name: str) -> list:
    if not isinstance(data, list):
        raise _bad(f"input {name!r} data must be a list", "format", input=name)
    for _ in range(MAX_NESTING - 1):
        kinds = set(map(type, data))
        if list not in kinds:
            return data
        if kinds != {list}:
            raise _bad(f"input {name!r} mixes lists and values in its data; send it flat",
                       "format", input=name)
        data = [v for inner in data for v in inner]
    if any(isinstance(v, list) for v in data):
        raise _bad(f"input {name!r} data is nested deeper than {MAX_NESTING} levels; send it "
                   "flat, in row-major order", "nesting", input=name)
    return data


def _check_datatype(datatype: str, col: _Col, name: str) -> None:
    if col.kind != "any" and col.kind not in _V2_TYPES[datatype][1]:
        raise _invalid(f"input {name!r} is {datatype} but column {col.name!r} expects "
                       f"{col.kind}; send {_V2_OF_KIND[col.kind]}", "wrong_type",
                       column=col.name)


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _json_name_a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _preview(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, default=str)
    return f" ({text[:37]}...)" if len(text) > 40 else f" ({text})"


def _list_names(cols: list[_Col]) -> str:
    names = ", ".join(repr(c.name) for c in cols[:8])
    return names + (f" and {len(cols) - 8} more" if len(cols) > 8 else "")

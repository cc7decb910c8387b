"""Request/response protocols of model endpoints: MLflow scoring and Open Inference v2."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.pyfunc.scoring_server import infer_and_parse_data
from sklearn.datasets import load_wine

from loopml.errors import InvalidInput
from loopml.serving.errors import RequestError
from loopml.serving.protocols import ModelInput, parse_invocation, parse_v2_infer
from loopml.serving.responses import format_invocation_response, format_v2_response, v2_metadata

MAX_BYTES = 1 << 20
WINE = load_wine(as_frame=True).data
WINE_SIG = infer_signature(WINE, np.zeros(len(WINE), dtype=np.int64))
COLUMNS = list(WINE.columns)
ROWS = WINE.iloc[:3]
MIXED = pd.DataFrame({"age": [31, 45], "income": [1200.5, 800.0], "city": ["Oslo", "Lima"],
                      "member": [True, False]})
with warnings.catch_warnings():  # mlflow's hint that int columns cannot hold missing values
    warnings.simplefilter("ignore", UserWarning)
    MIXED_SIG = infer_signature(MIXED, np.array([0.5, 0.7]))


def body(obj) -> bytes:
    return json.dumps(obj).encode()


def split(frame: pd.DataFrame) -> dict:
    return {"columns": list(frame.columns), "data": frame.values.tolist()}


def v2(*tensors, **extra) -> bytes:
    return body({"inputs": list(tensors), **extra})


def tensor(name, shape, datatype, data) -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


ROW0 = ROWS.iloc[0].tolist()
NO_PROLINE = {k: v for k, v in ROWS.iloc[0].items() if k != "proline"}
MIXED_ROW = {"age": 31, "income": 1200.5, "city": "Oslo", "member": True}
per_column = [tensor(c, [1], "FP64", [v]) for c, v in zip(COLUMNS, ROW0, strict=True)]

# id, parser, signature, body, content type, expected status, a phrase of the message
BAD_REQUESTS = [
    ("empty-body", "inv", WINE_SIG, b"", None, 400, "body is empty"),
    ("blank-body", "inv", WINE_SIG, b"  \n", "application/json", 400, "body is empty"),
    ("too-large", "inv", WINE_SIG, b"{" + b" " * MAX_BYTES + b"}", None, 413, "limit of"),
    ("not-json", "inv", WINE_SIG, b"{'inputs': [1]}", None, 400, "not valid UTF-8 JSON"),
    ("not-utf8", "inv", WINE_SIG, b'{"inputs": ["\xff"]}', None, 400, "not valid UTF-8 JSON"),
    ("json-list", "inv", WINE_SIG, b"[[1, 2]]", None, 400, "JSON object, not array"),
    ("csv", "inv", WINE_SIG, b"a,b\n1,2", "text/csv", 415, "'text/csv' is not supported"),
    ("latin1", "inv", WINE_SIG, body({"inputs": [ROW0]}), "application/json; charset=latin-1",
     415, "charset"),
    ("content-param", "inv", WINE_SIG, body({"inputs": [ROW0]}), "application/json; v=2", 415,
     "parameter 'v'"),
    ("no-format", "inv", WINE_SIG, b"{}", None, 400, "exactly one of"),
    ("two-formats", "inv", WINE_SIG, body({"dataframe_split": split(ROWS), "inputs": [ROW0]}),
     None, 400, "got dataframe_split and inputs"),
    ("unknown-key", "inv", WINE_SIG, body({"inputs": [ROW0], "columns": COLUMNS}), None, 400,
     "unknown top-level key 'columns'"),
    ("missing-column", "inv", WINE_SIG, body({"dataframe_records": [NO_PROLINE]}), None, 422,
     "missing column 'proline'"),
    ("extra-column", "inv", WINE_SIG, body({"dataframe_records": [{**NO_PROLINE, "proline": 1,
                                                                    "color": 2}]}),
     None, 422, "unknown column 'color'"),
    ("string-in-double", "inv", WINE_SIG, body({"instances": [["x"] + ROW0[1:]]}), None, 422,
     "column 'alcohol' expects double, got string (\"x\")"),
    ("bool-in-double", "inv", WINE_SIG, body({"instances": [[True] + ROW0[1:]]}), None, 422,
     "expects double, got boolean"),
    ("null-in-required", "inv", WINE_SIG, body({"instances": [ROW0[:-1] + [None]]}), None, 422,
     "'proline' expects double, got null"),
    ("list-in-cell", "inv", WINE_SIG, body({"inputs": [[[1.0]] + ROW0[1:]]}), None, 422,
     "got array"),
    ("ragged-rows", "inv", WINE_SIG, body({"instances": [ROW0, ROW0[:-1]]}), None, 400,
     "row 1 of instances has 12 values"),
    ("no-rows", "inv", WINE_SIG, body({"dataframe_split": {"columns": COLUMNS, "data": []}}),
     None, 400, "no rows"),
    ("split-width", "inv", WINE_SIG, body({"dataframe_split": {"columns": COLUMNS,
                                                                "data": [ROW0[:-1]]}}),
     None, 400, "names 13 columns but its rows have 12"),
    ("split-unknown-key", "inv", WINE_SIG, body({"dataframe_split": {**split(ROWS), "dtype": 1}}),
     None, 400, "unknown key 'dtype'"),
    ("duplicate-column", "inv", WINE_SIG, body({"dataframe_split": {
        "columns": COLUMNS[:-1] + ["alcohol"], "data": [ROW0]}}), None, 400,
     "'alcohol' appears twice"),
    ("records-differ", "inv", WINE_SIG, body({"dataframe_records": [
        ROWS.iloc[0].to_dict(), NO_PROLINE]}), None, 400, "record 1"),
    ("positional-width", "inv", WINE_SIG, body({"inputs": [ROW0[:-1]]}), None, 422,
     "rows have 12 values but this model takes 13 columns"),
    ("columnar-lengths", "inv", WINE_SIG, body({"inputs": {**{c: [1.0] for c in COLUMNS},
                                                           "proline": [1.0, 2.0]}}),
     None, 400, "different lengths"),
    ("params-not-object", "inv", WINE_SIG, body({"inputs": [ROW0], "params": [1]}), None, 400,
     "'params' must be an object"),
    ("too-many-rows", "inv-3-rows", WINE_SIG, body({"inputs": [ROW0] * 4}), None, 413,
     "4 rows exceed this endpoint's limit of 3"),
    ("fraction-in-long", "inv", MIXED_SIG, body({"dataframe_records": [{**MIXED_ROW,
                                                                        "age": 31.5}]}),
     None, 422, "'age' expects long, got number 31.5"),
    ("number-in-string", "inv", MIXED_SIG, body({"dataframe_records": [{**MIXED_ROW,
                                                                        "city": 7}]}),
     None, 422, "'city' expects string, got integer"),
    ("v2-no-inputs", "v2", WINE_SIG, body({"id": "1"}), None, 400, "needs 'inputs'"),
    ("v2-unknown-key", "v2", WINE_SIG, v2(tensor("x", [1, 13], "FP64", ROW0), model="m"), None,
     400, "unknown top-level key 'model'"),
    ("v2-no-shape", "v2", WINE_SIG, v2({"name": "x", "datatype": "FP64", "data": ROW0}), None,
     400, "has no 'shape'"),
    ("v2-no-datatype", "v2", WINE_SIG, v2({"name": "x", "shape": [1, 13], "data": ROW0}), None,
     400, "has no 'datatype'"),
    ("v2-no-name", "v2", WINE_SIG, v2({"shape": [1, 13], "datatype": "FP64", "data": ROW0}),
     None, 400, "has no 'name'"),
    ("v2-unknown-datatype", "v2", WINE_SIG, v2(tensor("x", [1, 13], "FP16", ROW0)), None, 400,
     "datatype 'FP16'; use one of"),
    ("v2-size-mismatch", "v2", WINE_SIG, v2(tensor("x", [2, 13], "FP64", ROW0)), None, 400,
     "has 13 values but shape [2, 13] needs 26"),
    ("v2-unknown-input", "v2", WINE_SIG, v2(*per_column[:-1], tensor("prolin", [1], "FP64", [1])),
     None, 422, "unknown input 'prolin'"),
    ("v2-missing-input", "v2", WINE_SIG, v2(*per_column[:-1]), None, 422,
     "missing column 'proline'"),
    ("v2-too-deep", "v2", WINE_SIG, v2(tensor("x", [1, 13], "FP64", [[[[v] for v in ROW0]]])),
     None, 400, "nested deeper than 3 levels"),
    ("v2-bytes-for-double", "v2", WINE_SIG, v2(*per_column[:-1], tensor("proline", [1], "BYTES",
                                                                         ["a"])),
     None, 422, "is BYTES but column 'proline' expects double"),
    ("v2-data-vs-datatype", "v2", WINE_SIG, v2(tensor("x", [1, 13], "INT64", ROW0)), None, 422,
     "is INT64 but holds number"),
    ("v2-width", "v2", WINE_SIG, v2(tensor("x", [1, 12], "FP64", ROW0[:-1])), None, 422,
     "shape [1, 12] but this model takes 13 columns"),
    ("v2-id-not-string", "v2", WINE_SIG, v2(tensor("x", [1, 13], "FP64", ROW0), id=7), None,
     400, "'id' must be a string"),
    ("v2-ragged-columns", "v2", WINE_SIG, v2(*per_column[:-1], tensor("proline", [2], "FP64",
                                                                       [1, 2])),
     None, 400, "has 2 rows but the first input has 1"),
    ("v2-fp-for-long", "v2", MIXED_SIG, v2(tensor("age", [1], "FP64", [31.0]),
                                          tensor("income", [1], "FP64", [1.5]),
                                          tensor("city", [1], "BYTES", ["Oslo"]),
                                          tensor("member", [1], "BOOL", [True])),
     None, 422, "is FP64 but column 'age' expects long; send INT64"),
]


def _parse(parser: str, signature, data: bytes, content_type):
    if parser == "v2":
        return parse_v2_infer(data, content_type, signature, max_bytes=MAX_BYTES)
    max_rows = 3 if parser == "inv-3-rows" else 100_000
    return parse_invocation(data, content_type, signature, max_bytes=MAX_BYTES, max_rows=max_rows)


@pytest.mark.parametrize(("parser", "signature", "data", "content_type", "status", "phrase"),
                         [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_is_refused_with_status_and_message(parser, signature, data, content_type,
                                                        status, phrase):
    with pytest.raises(RequestError) as info:
        _parse(parser, signature, data, content_type)
    error = info.value
    assert (error.status, error.details["status"]) == (status, status)
    assert phrase in error.message
    assert "\n" not in error.message and "Traceback" not in error.message
    assert len(error.message) < 240
    assert error.__cause__ is None  # nothing chained: the message is the whole story


def test_request_error_is_invalid_input_and_survives_pickling():
    error = RequestError("too big", status=413, reason="too_large")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, InvalidInput)
    assert (copy.status, copy.reason, copy.message) == (413, "too_large", "too big")
    assert copy.to_json() == {"message": "too big", "reason": "too_large", "status": 413}


@pytest.mark.parametrize("garbage", [b"null", b"1", b'"x"', b"{\"inputs\": null}",
                                     b'{"inputs": {}}', b'{"instances": [[]]}',
                                     b'{"dataframe_split": {"data": [1, 2]}}',
                                     b'{"dataframe_records": [1]}', b'{"inputs": [{}]}',
                                     b'{"inputs": [[1e400]]}', b"\x00\x01"])
def test_any_body_gives_a_request_or_an_error_never_a_crash(garbage):
    for parse in (parse_invocation, parse_v2_infer):
        try:
            parse(garbage, None, WINE_SIG, max_bytes=MAX_BYTES)
        except RequestError:
            pass


def _all_formats(frame: pd.DataFrame) -> dict[str, bytes]:
    shuffled = frame[list(reversed(frame.columns))]  # names, not positions, decide the order
    return {
        "dataframe_split": body({"dataframe_split": split(shuffled)}),
        "dataframe_split-positional": body({"dataframe_split": {"data": frame.values.tolist()}}),
        "dataframe_records": body({"dataframe_records": shuffled.to_dict(orient="records")}),
        "instances-rows": body({"instances": frame.values.tolist()}),
        "instances-records": body({"instances": shuffled.to_dict(orient="records")}),
        "inputs-rows": body({"inputs": frame.values.tolist()}),
        "inputs-columnar": body({"inputs": shuffled.to_dict(orient="list")}),
    }


def _v2_requests(frame: pd.DataFrame) -> dict[str, bytes]:
    n, width = frame.shape
    return {
        "v2-table-flat": v2(tensor("input-0", [n, width], "FP64",
                                   frame.values.ravel().tolist())),
        "v2-table-nested": v2(tensor("input-0", [n, width], "FP64", frame.values.tolist())),
        "v2-per-column": v2(*[tensor(c, [n], "FP64", frame[c].tolist())
                              for c in reversed(frame.columns)]),
        "v2-per-column-n1": v2(*[tensor(c, [n, 1], "FP64", [[v] for v in frame[c]])
                                 for c in frame.columns]),
    }


@pytest.mark.parametrize("name", [*_all_formats(ROWS), *_v2_requests(ROWS)])
def test_every_format_gives_the_same_numeric_input(name):
    data = {**_all_formats(ROWS), **_v2_requests(ROWS)}[name]
    parse = parse_v2_infer if name.startswith("v2") else parse_invocation
    parsed = parse(data, "application/json; charset=utf-8", WINE_SIG, max_bytes=MAX_BYTES)
    assert isinstance(parsed.data, np.ndarray) and parsed.data.flags.c_contiguous
    assert parsed.data.dtype == np.float64
    assert parsed.columns == tuple(COLUMNS)
    np.testing.assert_array_equal(parsed.data, ROWS.to_numpy())
    pd.testing.assert_frame_equal(parsed.to_frame(), ROWS.reset_index(drop=True))


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances-records",
                                 "inputs-columnar"])
def test_numbers_match_mlflow_scoring_server(fmt):
    request = json.loads(_all_formats(ROWS)[fmt])
    ours = parse_invocation(json.dumps(request).encode(), None, WINE_SIG,
                            max_bytes=MAX_BYTES).to_frame()
    theirs = infer_and_parse_data(request, WINE_SIG.inputs)
    theirs = pd.DataFrame(theirs)[COLUMNS] if isinstance(theirs, dict) else theirs[COLUMNS]
    np.testing.assert_array_equal(ours.to_numpy(), theirs.to_numpy(dtype=np.float64))


def test_mixed_types_give_a_typed_frame_in_signature_order():
    requests = [
        parse_invocation(body({"dataframe_records": MIXED.iloc[:, ::-1].to_dict("records")}),
                         None, MIXED_SIG, max_bytes=MAX_BYTES),
        parse_invocation(body({"inputs": MIXED.to_dict("list")}), None, MIXED_SIG,
                         max_bytes=MAX_BYTES),
        parse_v2_infer(v2(tensor("member", [2], "BOOL", [True, False]),
                          tensor("age", [2, 1], "INT64", [[31], [45]]),
                          tensor("income", [2], "FP64", [1200.5, 800.0]),
                          tensor("city", [2], "BYTES", ["Oslo", "Lima"])),
                       None, MIXED_SIG, max_bytes=MAX_BYTES),
    ]
    for parsed in requests:
        assert isinstance(parsed.data, pd.DataFrame)
        assert parsed.columns == ("age", "income", "city", "member")
        pd.testing.assert_frame_equal(parsed.data, MIXED)


def test_optional_column_may_be_null_or_absent():
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": [2.0, 3.0]})
    signature = infer_signature(frame)
    assert not signature.inputs.inputs[0].required
    parsed = parse_invocation(body({"dataframe_records": [{"a": None, "b": 1}]}), None,
                              signature, max_bytes=MAX_BYTES)
    assert np.isnan(parsed.data[0, 0]) and parsed.data[0, 1] == 1.0
    parsed = parse_invocation(body({"dataframe_records": [{"b": 1}]}), None, signature,
                              max_bytes=MAX_BYTES)
    assert parsed.data.shape == (1, 2) and np.isnan(parsed.data[0, 0])


def test_params_and_request_id_are_passed_on():
    parsed = parse_invocation(body({"inputs": [ROW0], "params": {"k": 1}}), None, WINE_SIG,
                              max_bytes=MAX_BYTES)
    assert parsed.params == {"k": 1} and parsed.request_id is None
    parsed = parse_v2_infer(v2(tensor("x", [1, 13], "FP32", ROW0), id="req-7",
                               parameters={"k": 2}), None, WINE_SIG, max_bytes=MAX_BYTES)
    assert (parsed.request_id, parsed.params) == ("req-7", {"k": 2})


def test_without_signature_names_decide_columns():
    parsed = parse_invocation(body({"dataframe_split": split(MIXED)}), None, None,
                              max_bytes=MAX_BYTES)
    assert parsed.columns == tuple(MIXED.columns)
    pd.testing.assert_frame_equal(parsed.data, MIXED)
    parsed = parse_v2_infer(v2(tensor("x", [2, 2], "FP32", [1, 2, 3, 4])), None, None,
                            max_bytes=MAX_BYTES)
    assert parsed.data.dtype == np.float32 and parsed.data.shape == (2, 2)


def test_tensor_signature_gives_an_array_of_its_shape():
    signature = infer_signature(np.zeros((2, 4), dtype=np.float32), np.zeros(2))
    parsed = parse_invocation(body({"inputs": [[1, 2, 3, 4]]}), None, signature,
                              max_bytes=MAX_BYTES)
    assert parsed.data.dtype == np.float32 and parsed.data.shape == (1, 4)
    with pytest.raises(RequestError, match=r"shape \[1, 3\] but this model takes \[-1, 4\]"):
        parse_invocation(body({"inputs": [[1, 2, 3]]}), None, signature, max_bytes=MAX_BYTES)
    parsed = parse_v2_infer(v2(tensor("x", [1, 4], "FP32", [1, 2, 3, 4])), None, signature,
                            max_bytes=MAX_BYTES)
    assert parsed.data.shape == (1, 4)


def test_metadata_lists_the_signature_inputs():
    meta = v2_metadata("wine", "3", WINE_SIG)
    assert (meta["name"], meta["versions"], meta["platform"]) == ("wine", ["3"], "mlflow")
    assert meta["inputs"] == [{"name": c, "datatype": "FP64", "shape": [-1]} for c in COLUMNS]
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    mixed = v2_metadata("m", "1", MIXED_SIG)["inputs"]
    assert [i["datatype"] for i in mixed] == ["INT64", "FP64", "BYTES", "BOOL"]
    json.dumps(meta)


@pytest.mark.parametrize("predictions", [
    np.array([0, 2, 1]), np.array([[0.25, 0.75], [1.0, 0.0]]), [1, 2], pd.Series([0.5, 1.5]),
    np.float64(0.5),
])
def test_invocation_response_round_trips(predictions):
    decoded = json.loads(format_invocation_response(predictions))
    assert decoded == {"predictions": np.asarray(predictions).tolist()}


def test_invocation_response_of_frame_is_records_and_nan_is_null():
    frame = pd.DataFrame({"label": ["a", "b"], "score": [0.5, np.nan]})
    decoded = json.loads(format_invocation_response(frame))
    assert decoded == {"predictions": [{"label": "a", "score": 0.5},
                                       {"label": "b", "score": None}]}


def test_v2_response_round_trips():
    predictions = np.array([[0.25, 0.75], [1.0, 0.0]])
    decoded = json.loads(format_v2_response("wine", "3", "req-7", predictions))
    assert (decoded["model_name"], decoded["model_version"], decoded["id"]) == ("wine", "3",
                                                                                "req-7")
    (output,) = decoded["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("predict", "FP64", [2, 2])
    np.testing.assert_array_equal(np.reshape(output["data"], output["shape"]), predictions)
    labels = json.loads(format_v2_response("wine", "3", None, np.array([1, 0])))
    assert "id" not in labels and labels["outputs"][0]["datatype"] == "INT64"


def test_protocols_do_not_import_ray_or_fastapi():
    code = ("import sys, loopml.serving.protocols, loopml.serving.responses; "
            "print([m for m in ('ray', 'fastapi') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _best_of(fn, repeat: int = 2000) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_one_row_parse_time_is_printed(capsys):
    """Measures only to print: a timing assertion would flake on a loaded machine."""
    row = WINE.iloc[:1]
    numeric = body({"dataframe_split": split(row)})
    with_text = row.astype({"proline": str})
    text_sig = infer_signature(with_text, np.zeros(1))
    mixed = body({"dataframe_split": split(with_text)})
    request = json.loads(numeric)
    v2_body = v2(tensor("x", [1, 13], "FP64", ROW0))
    times = {
        "fast path (13 double columns -> ndarray)": _best_of(
            lambda: parse_invocation(numeric, "application/json", WINE_SIG, max_bytes=MAX_BYTES)),
        "pandas path (12 double + 1 string -> DataFrame)": _best_of(
            lambda: parse_invocation(mixed, "application/json", text_sig, max_bytes=MAX_BYTES)),
        "v2 fast path (one [1, 13] tensor)": _best_of(
            lambda: parse_v2_infer(v2_body, None, WINE_SIG, max_bytes=MAX_BYTES)),
        "mlflow infer_and_parse_data (reference)": _best_of(
            lambda: infer_and_parse_data(request, WINE_SIG.inputs), repeat=200),
    }
    with capsys.disabled():
        print()
        for label, seconds in times.items():
            print(f"  1-row parse, {label}: {seconds * 1e6:.1f} us")
    assert isinstance(parse_invocation(numeric, None, WINE_SIG, max_bytes=MAX_BYTES), ModelInput)

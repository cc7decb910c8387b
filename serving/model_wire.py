"""The wire between a replica and its model host: frames of JSON and bytes, never pickle.

A frame is two big-endian 32-bit lengths, a JSON object (the header) and a binary part.
Towards the host, a request's input travels as raw array bytes (dtype and shape in the
header) for arrays of numbers, Arrow IPC for DataFrames, JSON for anything else. Back from
the host comes JSON only (:func:`orjson.loads`): the replica never parses anything richer
from a process that runs user code. Frames longer than the reader's limit are refused.
"""

from __future__ import annotations

import os
import select
import struct
import time
from typing import Any

import numpy as np
import orjson
import pandas as pd

from loopml.serving.protocols import ModelInput
from loopml.serving.responses import dumps_json

__all__ = ["MAX_FRAME", "WireError", "decode_input", "encode_input", "read_frame", "write_frame"]

_LENGTHS = struct.Struct(">II")
MAX_FRAME = 1 << 30  # bytes of one frame's header or binary part


class WireError(Exception):
    """The other end is gone, too slow, or sent something that is not a frame."""


def write_frame(fd: int, header: dict[str, Any], blob: bytes = b"") -> None:
    """Write one frame to file descriptor ``fd``; :class:`WireError` when the reader is gone."""
    text = dumps_json(header)
    data = memoryview(_LENGTHS.pack(len(text), len(blob)) + text + blob)
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError as exc:  # BrokenPipeError: the host (or the replica) died
        raise WireError(f"the other end closed the pipe ({exc.strerror})") from None


def read_frame(fd: int, *, timeout_s: float | None = None, limit: int = MAX_FRAME) -> tuple[dict[str, Any], bytes]:
    """Read one frame from ``fd`` within ``timeout_s`` (``None``: wait for ever)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    size, blob_size = _LENGTHS.unpack(_read(fd, _LENGTHS.size, deadline))
    if size > limit or blob_size > limit:
        raise WireError(f"a frame of {size + blob_size} bytes is over the limit of {limit}")
    try:
        header = orjson.loads(_read(fd, size, deadline))
    except orjson.JSONDecodeError:
        raise WireError("a frame's header is not JSON") from None
    if not isinstance(header, dict):
        raise WireError("a frame's header is not a JSON object")
    return header, _read(fd, blob_size, deadline)


def _read(fd: int, count: int, deadline: float | None) -> bytes:
    chunks, left = [], count
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise WireError("no answer in time")
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise WireError("the other end closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def encode_input(parsed: ModelInput) -> tuple[dict[str, Any], bytes]:
    """A validated request as a frame's header and binary part."""
    header: dict[str, Any] = {"op": "predict", "columns": list(parsed.columns) if parsed.columns else None,
                              "params": parsed.params}
    data = parsed.data
    if isinstance(data, np.ndarray) and data.dtype.kind in "biuf":
        data = np.ascontiguousarray(data)
        return {**header, "kind": "array", "dtype": data.dtype.str, "shape": list(data.shape)}, data.tobytes()
    if isinstance(data, pd.DataFrame):
        import pyarrow as pa

        try:
            table = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError):  # mixed values in an "any" column
            return {**header, "kind": "split"}, dumps_json({"columns": [str(c) for c in data.columns],
                                                            "data": data.to_numpy().tolist()})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return {**header, "kind": "arrow"}, sink.getvalue().to_pybytes()
    return {**header, "kind": "list"}, dumps_json(np.asarray(data).tolist())


def decode_input(header: dict[str, Any], blob: bytes) -> ModelInput:
    """The :class:`ModelInput` of a frame written by :func:`encode_input` (in the host)."""
    kind, columns = header.get("kind"), header.get("columns")
    if kind == "array":
        dtype = np.dtype(header["dtype"])
        if dtype.kind not in "biuf":
            raise WireError(f"array of dtype {dtype} on the wire")
        data: Any = np.frombuffer(blob, dtype=dtype).reshape(header["shape"])
    elif kind == "arrow":
        import pyarrow as pa

        data = pa.ipc.open_stream(blob).read_all().to_pandas()
    elif kind == "split":
        split = orjson.loads(blob)
        data = pd.DataFrame(split["data"], columns=split["columns"])
    elif kind == "list":
        data = np.array(orjson.loads(blob), dtype=object)
    else:
        raise WireError(f"unknown input kind {kind!r}")
    return ModelInput(data, tuple(columns) if columns else None, header.get("params"))

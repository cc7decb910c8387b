"""What :class:`loopml.client.Client` puts on the wire and reads back: request bodies, errors.

Helpers without state, kept apart from the client so each reads on its own.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from loopml.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LoopMLError,
    NotFound,
    Unauthorized,
    Unavailable,
)
from loopml.executor import JobStatus, Resources
from loopml.monitor import FeedbackItem
from loopml.names import check_name
from loopml.registry import short_name
from loopml.serving import Autoscale, EndpointCreate, EndpointPatch, EndpointResources

Notebook = str | Path | Mapping[str, Any]
"""A notebook as ``submit`` takes it: a path to an .ipynb file, or its nbformat JSON."""

ERROR_CLASSES: dict[int, type[LoopMLError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
    503: Unavailable,
}


def api_path(*segments: str) -> str:
    """``/a/b/c`` with every segment percent-quoted, ``/`` included.

    ``.`` and ``..`` are quoted as well: httpx resolves them as dot segments, so
    ``job(project, "..")`` would otherwise ask for ``/projects/{project}`` instead.
    """
    return "/" + "/".join(_segment(str(s)) for s in segments)


def _segment(text: str) -> str:
    if text in (".", ".."):
        return text.replace(".", "%2E")
    return quote(text, safe="")


def model_path(project: str, name: str, *rest: str) -> str:
    """``/projects/{project}/models/{name}/...`` for ``name`` or ``<project>.name``.

    The name is checked here as the server does, so a bad one is an InvalidInput with
    the reason before any request (and ``a/b`` never reaches a router as two segments).
    """
    return api_path("projects", project, "models", short_name(project, name), *rest)


def endpoint_path(project: str, name: str) -> str:
    """``/projects/{project}/endpoints/{name}``, the name checked as the server checks it."""
    return api_path("projects", project, "endpoints", check_name("endpoint", name))


def _invalid(exc: ValidationError, *prefix: str, field: str | None = None) -> InvalidInput:
    """The first problem ``exc`` found, as ``where: message`` (``where`` under ``prefix``)."""
    error = exc.errors()[0]
    where = ".".join([*prefix, *(str(p) for p in error["loc"])]) or "body"
    return InvalidInput(f"{where}: {error['msg'].removeprefix('Value error, ')}", field=field or where)


def validated(schema: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """``schema(**fields)`` as a JSON body (unset fields left out), or InvalidInput naming the field."""
    try:
        spec = schema(**{name: value for name, value in fields.items() if value is not None})
    except ValidationError as exc:
        raise _invalid(exc) from None
    return spec.model_dump(mode="json", exclude_unset=True)


def endpoint_create(model: str, endpoint: str, public: bool, replicas: int | None = None,
                    canary: float | None = None, autoscale: str | Autoscale | None = None,
                    resources: EndpointResources | Mapping[str, Any] | None = None, *,
                    on_violation: str | None = None, capture_probabilities: bool | None = None) -> dict[str, Any]:
    """The ``EndpointCreate`` body, validated here so a bad name, reference, replica count,
    autoscale range, resource or on_violation is an InvalidInput naming the field before any
    request. ``replicas``, ``autoscale``, ``resources``, ``on_violation`` and
    ``capture_probabilities`` left out keep an existing endpoint's own."""
    return validated(EndpointCreate, name=endpoint, model=model, public=public, replicas=replicas,
                      canary=canary, autoscale=_autoscale(autoscale), resources=resources,
                      on_violation=on_violation, capture_probabilities=capture_probabilities)


def endpoint_patch(replicas: int | None = None, autoscale: str | Autoscale | None = None,
                   canary_percent: float | None = None, rotate_key: bool = False, *,
                   on_violation: str | None = None, capture_probabilities: bool | None = None) -> dict[str, Any]:
    """The ``EndpointPatch`` body, validated here (InvalidInput naming the field)."""
    return validated(EndpointPatch, replicas=replicas, autoscale=_autoscale(autoscale),
                      canary_percent=canary_percent, rotate_key=rotate_key or None, on_violation=on_violation,
                      capture_probabilities=capture_probabilities)


def _autoscale(value: str | Autoscale | None) -> Autoscale | None:
    """``"MIN:MAX"`` parsed, or InvalidInput naming the bound that is wrong."""
    if not isinstance(value, str):
        return value
    try:
        return Autoscale.parse(value)
    except ValidationError as exc:
        raise _invalid(exc, "autoscale", field="autoscale") from None
    except ValueError as exc:
        raise InvalidInput(f"autoscale: {exc}", field="autoscale") from None


def feedback_items(items: Iterable[Mapping[str, Any] | FeedbackItem]) -> list[dict[str, Any]]:
    """The feedback body: each item validated as a ``FeedbackItem`` (InvalidInput naming ``items[i]``)."""
    if isinstance(items, (str, bytes, Mapping)):
        raise InvalidInput("feedback takes a list of {request_id, label} items", field="items")
    body = []
    for index, item in enumerate(items):
        try:
            checked = item if isinstance(item, FeedbackItem) else FeedbackItem.model_validate(item)
        except ValidationError as exc:
            raise _invalid(exc, f"items[{index}]", field="items") from None
        body.append(checked.model_dump(mode="json"))
    return body


def job_status(status: JobStatus | str) -> JobStatus:
    try:
        return JobStatus(str(getattr(status, "value", status)).upper())
    except ValueError:
        choices = ", ".join(s.value for s in JobStatus)
        raise InvalidInput(f"unknown job status {status!r}: use one of {choices}", field="status") from None


def resources_json(resources: Resources | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(resources, Resources):
        return resources.model_dump(mode="json", exclude_none=True)
    return dict(resources)


def load_notebook(notebook: Notebook) -> tuple[dict[str, Any], str | None]:
    """The notebook JSON and, for a path, its file name."""
    if isinstance(notebook, Mapping):
        return dict(notebook), None
    path = Path(notebook).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"notebook {str(path)!r} does not exist", field="notebook") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read notebook {str(path)!r}: {exc}", field="notebook") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{str(path)!r} is not a notebook: invalid JSON ({exc})", field="notebook") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{str(path)!r} is not a notebook: expected a JSON object", field="notebook")
    return data, path.name


def job_submit(
    notebook: Notebook,
    parameters: Mapping[str, Any] | None,
    resources: Resources | Mapping[str, Any] | None,
    timeout_s: float | None,
    max_retries: int,
    name: str | None,
    kernel_name: str | None,
) -> dict[str, Any]:
    """The ``JobSubmit`` body; fields left out get the server's defaults."""
    content, file_name = load_notebook(notebook)
    body: dict[str, Any] = {
        "notebook": content,
        "parameters": dict(parameters or {}),
        "max_retries": max_retries,
    }
    if name or file_name:
        body["name"] = name or file_name
    if resources is not None:
        body["resources"] = resources_json(resources)
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    if kernel_name is not None:
        body["kernel_name"] = kernel_name
    return body


def files_json(files: Mapping[str, bytes]) -> dict[str, str]:
    """Files as a request carries them: relative path → content, base64."""
    return {path: base64.b64encode(content).decode() for path, content in files.items()}


def pipeline_submit(path: str | os.PathLike, files: Mapping[str, bytes] | None) -> dict[str, Any]:
    """The ``PipelineSubmit`` body of the pipeline file at ``path`` with ``files``, by default
    the files its steps name, read from its folder (:func:`loopml.executor.needed_files`)."""
    from loopml.executor import needed_files, read_pipeline

    source = Path(path)
    try:
        content = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the pipeline file {str(source)!r}: {exc}", field="path") from None
    if files is None:
        files = needed_files(read_pipeline(source.name, content), source.parent)
    return {"source_name": source.name, "content": content, "files": files_json(files)}


def error_from(response: httpx.Response, url: str) -> LoopMLError:
    """The LoopMLError for a non-2xx answer: class by status, text from the JSON body."""
    status = response.status_code
    cls = ERROR_CLASSES.get(status) or (Unavailable if status >= 500 else LoopMLError)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        hint = ": is LOOPML_URL the loopml platform?" if status == 404 else ""
        return cls(f"the platform at {url} answered {status} {response.reason_phrase} to "
                   f"{response.request.method} {response.request.url.path}{hint}")
    message = body.get("message")
    if not isinstance(message, str) or not message:
        message = fastapi_detail(body.get("detail")) or f"the platform answered {status} {response.reason_phrase}"
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    details = {k: v for k, v in body.items() if k not in ("message", "reason", "detail") and k.isidentifier()}
    return cls(message, reason=reason, **details)


def fastapi_detail(detail: Any) -> str | None:
    """Text of FastAPI's own error bodies: ``{"detail": "..."}`` or ``{"detail": [{"loc", "msg"}]}``."""
    if isinstance(detail, str):
        return detail
    if not isinstance(detail, list):
        return None
    parts = []
    for item in detail:
        if not isinstance(item, dict):
            continue
        loc = [str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path")]
        msg = str(item.get("msg", "invalid value"))
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts) or None


def unexpected(response: httpx.Response, url: str, what: str) -> LoopMLError:
    return LoopMLError(
        f"unexpected answer from {url} to {response.request.method} {response.request.url.path}: "
        f"{what}; is LOOPML_URL the loopml platform, and are client and server the same version?",
        reason="bad_response",
    )

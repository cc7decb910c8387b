"""Elyra's ``.pipeline`` files (pipeline-flow v3), as its visual editor writes them, read into a
:class:`~.spec.Pipeline`.

Only generic nodes run here: ``execute-notebook-node`` (a notebook) and ``execute-python-node``
(a script). What maps:

- links (``inputs[].links[].node_id_ref``) → ``after``
- ``filename`` → ``notebook`` / ``script`` (relative to the pipeline file, as Elyra stores it)
- ``dependencies`` → ``dependencies``; Elyra gives them relative to the node's file, here they
  become relative to the pipeline file (globs stay globs)
- ``outputs`` → ``outputs`` (relative to the node's working directory in both)
- ``env_vars`` → ``env``: ``[{env_var, value}]`` (Elyra 3.x) or ``["KEY=VALUE"]`` (older); the
  pipeline's ``pipeline_defaults.env_vars`` apply to every node, a node's own win
- ``cpu`` (cores), ``gpu`` (count), ``memory`` (GB) → ``resources``
- step ids: the node's label, else its file's stem, made a valid id (lowercase, '-' for others)

Every other property that is set on a node or the pipeline (``runtime_image``,
``kubernetes_*``, ``mounted_volumes``, ``properties.runtime``...) has no meaning here and is
listed in :attr:`Pipeline.ignored` by name with its node, e.g. ``node 'train': runtime_image,
mounted_volumes``; properties left empty by the editor change nothing and are not listed.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any

from .spec import Pipeline, Problem, pipeline_from_data, refuse, step_problem

GENERIC_NODES = {"execute-notebook-node": "notebook", "execute-python-node": "script"}
_USED = {"filename", "outputs", "dependencies", "env_vars", "cpu", "gpu", "memory"}
_NODE_APP_DATA = {"component_parameters", "label", "ui_data"}  # ui_data: positions and icons, for the editor
_PIPELINE_PROPERTIES_USED = {"name", "description", "pipeline_defaults"}
_PIPELINE_APP_DATA = {"properties", "ui_data", "version"}  # version: of Elyra's pipeline schema


def _set(value: Any) -> bool:
    """Whether a property changes anything: the editor writes empty lists, ``{}`` and ``false``."""
    return value not in (None, "", [], {}, False)


def _slug(text: str, fallback: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    if not slug or not slug[0].isalpha():
        slug = f"{fallback}-{slug}".strip("-") if slug else fallback
    return slug[:40].rstrip("-_")


def _label(node: dict, filename: str) -> str:
    app_data = node.get("app_data") or {}
    label = app_data.get("label") or (app_data.get("ui_data") or {}).get("label") or ""
    if not label.strip():
        label = posixpath.basename(filename)
    for suffix in (".ipynb", ".py"):
        label = label.removesuffix(suffix)
    return label


def _env(entries: Any, node: str, ignored: list[str]) -> tuple[dict[str, str], str | None]:
    """``(env, problem)`` from Elyra's ``env_vars`` in either of its forms."""
    env: dict[str, str] = {}
    if not isinstance(entries, list):
        return env, f"expected a list of variables, got {type(entries).__name__}"
    for entry in entries:
        if isinstance(entry, str):
            name, has_value, value = entry.partition("=")
        elif isinstance(entry, dict):
            name, value = entry.get("env_var") or "", entry.get("value")
            has_value = value not in (None, "")
        else:
            return env, f"expected 'KEY=VALUE' or {{env_var, value}}, got {entry!r}"
        name = name.strip()
        if not name:
            continue
        if not has_value:
            ignored.append(f"{node}: env_vars {name} (no value)")
            continue
        env[name] = str(value)
    return env, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _resources(params: dict, step: str, source: str, problems: list[Problem]) -> dict:
    resources: dict[str, Any] = {}
    for key, target in (("cpu", "cpus"), ("gpu", "gpus"), ("memory", "memory_mb")):
        if not _set(params.get(key)):
            continue
        amount = _number(params[key])
        if amount is None or amount < 0:
            problems.append(step_problem(source, step, f"resources.{target}",
                                         f"Elyra's {key} is {params[key]!r}: give a number"))
            continue
        if key == "memory":
            resources[target] = max(1, round(amount * 1024))  # Elyra's memory is in GB
        else:
            resources[target] = amount
    return resources


def _nodes(document: Any, source: str) -> tuple[list[dict], dict]:
    if not isinstance(document, dict) or document.get("doc_type") != "pipeline":
        refuse([Problem(source, "doc_type", "not an Elyra pipeline: expected a pipeline-flow document "
                                            "with doc_type 'pipeline'")])
    if str(document.get("version", "")).split(".")[0] != "3":
        refuse([Problem(source, "version", f"pipeline-flow version {document.get('version')!r} is not read here: "
                                           "open and save it in a recent Elyra (version 3.0)")])
    pipelines = document.get("pipelines") or []
    primary = next((p for p in pipelines if isinstance(p, dict) and p.get("id") == document.get("primary_pipeline")),
                   pipelines[0] if len(pipelines) == 1 and isinstance(pipelines[0], dict) else None)
    if primary is None:
        refuse([Problem(source, "primary_pipeline", "the document names no primary pipeline among its pipelines")])
    nodes = primary.get("nodes") or []
    if not isinstance(nodes, list) or not nodes:
        refuse([Problem(source, "nodes", "the pipeline has no nodes: add a notebook or a script in the editor")])
    return nodes, primary.get("app_data") or {}


def read_elyra(text: str, *, source: str) -> Pipeline:
    """The pipeline of an Elyra ``.pipeline`` file. :class:`~loopml.errors.InvalidInput` naming
    ``source`` and the line of a JSON syntax error, a node that is not a generic notebook or
    script node, a link to no node, or any structural problem of the result (by step and field).
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        refuse([Problem(source, "", f"line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}")])
    nodes, app_data = _nodes(document, source)
    properties = app_data.get("properties") or {}
    defaults = properties.get("pipeline_defaults") or {}
    problems: list[Problem] = []
    ignored = [f"pipeline: {key}" for key in sorted(app_data) if key not in _PIPELINE_APP_DATA and _set(app_data[key])]
    ignored += [f"pipeline: properties.{key}" for key in sorted(properties)
                if key not in _PIPELINE_PROPERTIES_USED and _set(properties[key])]
    ignored += [f"pipeline: pipeline_defaults.{key}" for key in sorted(defaults)
                if key != "env_vars" and _set(defaults[key])]
    default_env, problem = _env(defaults.get("env_vars") or [], "pipeline defaults", ignored)
    if problem:
        problems.append(Problem(source, "pipeline_defaults.env_vars", problem))

    ids: dict[str, str] = {}  # node id -> step id
    steps: dict[str, dict] = {}
    for index, node in enumerate(nodes):
        node = node if isinstance(node, dict) else {}
        node_id = str(node.get("id", index))
        params = (node.get("app_data") or {}).get("component_parameters") or {}
        filename = params.get("filename") if isinstance(params.get("filename"), str) else ""
        step = base = _slug(_label(node, filename), "step")
        suffix = 2
        while step in steps:
            step = f"{base[:37]}-{suffix}"
            suffix += 1
        ids[node_id] = step
        steps[step] = {}
        if node.get("type") != "execution_node" or node.get("op") not in GENERIC_NODES:
            what = "a supernode" if node.get("type") == "super_node" else f"node kind {node.get('op')!r}"
            problems.append(step_problem(source, step, "op", f"{what} does not run here: only generic notebook and "
                                         "Python script nodes do (execute-notebook-node, execute-python-node)"))
            continue
        if not filename:
            problems.append(step_problem(source, step, "notebook" if GENERIC_NODES[node["op"]] == "notebook"
                                         else "script", "the node names no file (component_parameters.filename)"))
            continue
        name = f"node '{step}'"
        unused = [key for key in params if key not in _USED and _set(params[key])]
        unused += [f"app_data.{key}" for key in (node.get("app_data") or {})
                   if key not in _NODE_APP_DATA and _set(node["app_data"][key])]
        if unused:
            ignored.append(f"{name}: {', '.join(unused)}")
        env, problem = _env(params.get("env_vars") or [], name, ignored)
        if problem:
            problems.append(step_problem(source, step, "env", problem))
        folder = posixpath.dirname(filename)
        dependencies = params.get("dependencies") or []
        if isinstance(dependencies, list):
            dependencies = [posixpath.join(folder, d) if isinstance(d, str) else d for d in dependencies]
        steps[step] = {
            GENERIC_NODES[node["op"]]: filename,
            "outputs": params.get("outputs") or [],
            "dependencies": dependencies,
            "env": {**default_env, **env},
            "resources": _resources(params, step, source, problems),
        }
        steps[step]["_links"] = [link.get("node_id_ref") for port in node.get("inputs") or []
                                 if isinstance(port, dict) for link in port.get("links") or []
                                 if isinstance(link, dict)]
    for step, data in steps.items():
        after = []
        for ref in data.pop("_links", []):
            if ref not in ids:
                problems.append(step_problem(source, step, "after", f"a link comes from node {ref!r}, "
                                             "which is not in the pipeline: redraw the link in the editor"))
            elif ids[ref] not in after:
                after.append(ids[ref])
        if after:
            data["after"] = after
    if problems:
        refuse(problems)
    stem = posixpath.basename(source.replace("\\", "/")).removesuffix(".pipeline")
    return pipeline_from_data({"name": _slug(str(properties.get("name") or stem), "pipeline"),
                               **({"description": properties["description"]} if properties.get("description") else {}),
                               "steps": steps}, source=source, ignored=ignored)

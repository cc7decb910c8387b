"""Every check a pipeline must pass before any step runs, reported all at once.

:func:`check_pipeline` lists the problems, :func:`validate` raises them as one
:class:`~loopml.errors.InvalidInput` (HTTP 422), one line each, naming the step and the field:

- ``after`` naming no step, a cycle (the steps along it, in order)
- a condition or template naming an unknown pipeline parameter, an unknown step, the step itself,
  an output a built-in action does not produce, or the outputs of a ``foreach`` step without
  ``select`` (whose children's outputs would they be?). A reference makes the referenced step
  upstream (:mod:`.dag`), so "not upstream" cannot happen.
- a notebook, script or dependency that is not among the pipeline's files (a dependency may
  also be an output file of an upstream step, a glob must match a file)
- a parameter (in ``parameters``, ``foreach`` or ``search``) that the notebook's papermill
  ``parameters`` cell does not define, or a literal value of the wrong type. A notebook with no
  ``parameters`` cell that is given parameters is refused, as a job submitted with parameters
  is (:mod:`loopml.executor.params`), where papermill would only warn and run it anyway.
- a search space Optuna cannot sample (``loguniform`` from 0, ``lo > hi``, an empty choice...)
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path

from loopml.errors import InvalidInput

from .dag import direct_upstream, find_cycle, upstream
from .expr import Reference, parse_condition, template_references
from .spec import BUILTIN_OUTPUTS, Pipeline, Problem, Step, refuse, step_problem

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
Files = Mapping[str, bytes] | str | os.PathLike


class _FileSet:
    """The pipeline's files: a mapping of relative path -> content (an upload) or a folder."""

    def __init__(self, files: Files) -> None:
        if isinstance(files, Mapping):
            self._files = {posixpath.normpath(name.replace("\\", "/")): data for name, data in files.items()}
            self._base = None
        else:
            self._files, self._base = None, Path(files).resolve()

    def _local(self, path: str) -> Path | None:
        candidate = (self._base / path).resolve()
        inside = candidate == self._base or self._base in candidate.parents  # no symlink out of the folder
        return candidate if inside and candidate.is_file() else None

    def exists(self, path: str) -> bool:
        return path in self._files if self._files is not None else self._local(path) is not None

    def read(self, path: str) -> bytes | None:
        if self._files is not None:
            return self._files.get(path)
        local = self._local(path)
        if local is None:
            return None
        with local.open("rb") as handle:
            return handle.read(MAX_NOTEBOOK_BYTES + 1)

    def matches(self, pattern: str) -> bool:
        if self._files is not None:
            return any(fnmatch.fnmatchcase(name, pattern) for name in self._files)
        return any(self._local(str(found.relative_to(self._base))) for found in self._base.glob(pattern))


def _similar(name: str, known: list[str]) -> str:
    # difflib scores 'c' against 'C' as unlike as any two letters: a name that differs only in
    # case is the likeliest typo, so it is named first
    same_but_case = [other for other in known if other.lower() == name.lower()]
    close = same_but_case[:1] or difflib.get_close_matches(name, known, n=1)
    listed = ", ".join(known) or "none"
    return f"{' (did you mean ' + repr(close[0]) + '?)' if close else ''}; known: {listed}"


def _reference_sites(step: Step) -> list[tuple[str, Reference]]:
    """``(field, reference)`` for every reference of ``step``, by the field it is written in."""
    sites = [("when", ref) for ref in sorted(parse_condition(step.when).references())] if step.when else []
    for name, value in step.parameters.items():
        sites += [(f"parameters.{name}", ref) for ref in sorted(template_references(value))]
    if step.action is not None:
        for name, value in step.action.model_dump().items():
            sites += [(f"{step.kind}.{name}", ref) for ref in sorted(template_references(value))]
    return sites


def _check_references(pipeline: Pipeline, step_id: str, step: Step) -> list[Problem]:
    problems, source, ids = [], pipeline.source, list(pipeline.steps)
    for field, ref in _reference_sites(step):
        if ref.kind == "params":
            if ref.name not in pipeline.parameters:
                problems.append(step_problem(source, step_id, field, f"{ref}: the pipeline has no parameter "
                                             f"{ref.name!r}{_similar(ref.name, list(pipeline.parameters))}"))
            continue
        other = pipeline.steps.get(ref.step)
        if ref.step == step_id:
            problems.append(step_problem(source, step_id, field, f"{ref}: a step cannot read its own result"))
        elif other is None:
            problems.append(step_problem(source, step_id, field, f"{ref}: there is no step {ref.step!r}"
                                         f"{_similar(ref.step, ids)}"))
        elif ref.kind == "outputs" and other.kind in BUILTIN_OUTPUTS and ref.name not in BUILTIN_OUTPUTS[other.kind]:
            known = sorted(BUILTIN_OUTPUTS[other.kind])
            problems.append(step_problem(source, step_id, field, f"{ref}: a {other.kind} step has no output "
                                         f"{ref.name!r}{_similar(ref.name, known)}"))
        elif ref.kind == "outputs" and other.foreach is not None and other.select is None:
            problems.append(step_problem(source, step_id, field, f"{ref}: step {ref.step!r} runs one child per "
                                         "foreach value and has no select: add select: {max: <output>} (or min) "
                                         "to say whose outputs become the step's"))
    return problems


def _check_graph(pipeline: Pipeline) -> list[Problem]:
    problems, source, ids = [], pipeline.source, list(pipeline.steps)
    for step_id, step in pipeline.steps.items():
        for name in step.after:
            if name == step_id:
                problems.append(step_problem(source, step_id, "after", "a step cannot wait for itself"))
            elif name not in pipeline.steps:
                problems.append(step_problem(source, step_id, "after",
                                             f"there is no step {name!r}{_similar(name, ids)}"))
        problems += _check_references(pipeline, step_id, step)
    graph = {step: [up for up in ups if up != step] for step, ups in direct_upstream(pipeline).items()}
    cycle = find_cycle(graph)
    if cycle:
        problems.append(step_problem(source, cycle[0], "after", f"the steps form a cycle: {' -> '.join(cycle)}: "
                                     "remove one of these edges (an after: entry or a reference to a step's "
                                     "outputs or status)"))
    return problems


def _produced_upstream(pipeline: Pipeline, step_id: str) -> set[str]:
    """The output files of every upstream step, as paths in ``step_id``'s working directory."""
    produced: set[str] = set()
    for other in upstream(pipeline, step_id):
        produced.update(pipeline.steps[other].outputs)
    return produced


def _check_files(pipeline: Pipeline, step_id: str, step: Step, files: _FileSet) -> list[Problem]:
    problems, source = [], pipeline.source
    if step.file is not None and not files.exists(step.file):
        problems.append(step_problem(source, step_id, step.kind, f"{step.file!r} is not among the pipeline's "
                                     "files: put it next to the pipeline file (paths are relative to it)"))
    folder = posixpath.dirname(step.file or "")
    produced = _produced_upstream(pipeline, step_id) if step.dependencies else set()
    for index, dependency in enumerate(step.dependencies):
        in_workdir = posixpath.relpath(dependency, folder or ".")
        if in_workdir in produced:
            continue
        glob = any(ch in dependency for ch in "*?[")
        if not (files.matches(dependency) if glob else files.exists(dependency)):
            what = "matches none of the pipeline's files" if glob else "is not among the pipeline's files"
            problems.append(step_problem(source, step_id, f"dependencies.{index}", f"{dependency!r} {what}, and "
                                         "no upstream step declares it in outputs"))
    return problems


def _check_parameters(pipeline: Pipeline, step_id: str, step: Step, files: _FileSet) -> list[Problem]:
    """The step's parameters against its notebook's ``parameters`` cell."""
    import nbformat

    from loopml.executor.params import parameter_schema, validate_parameters

    source = pipeline.source
    given = [(f"parameters.{name}", name, [value]) for name, value in step.parameters.items()]
    given += [(f"foreach.{name}", name, values) for name, values in (step.foreach or {}).items()]
    given += [(f"search.params.{name}", name, []) for name in (step.search.params if step.search else {})]
    content = files.read(step.notebook) if given else None
    if content is None:
        return []
    if len(content) > MAX_NOTEBOOK_BYTES:
        return [step_problem(source, step_id, "notebook", f"{step.notebook!r} is larger than "
                             f"{MAX_NOTEBOOK_BYTES // 2**20} MiB: clear its outputs")]
    try:
        nb = nbformat.reads(content.decode("utf-8"), as_version=4)
        schema = parameter_schema(nb)
    except InvalidInput as exc:
        return [step_problem(source, step_id, "notebook", f"{step.notebook!r}: {exc.message}")]
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds (JSON, schema, unicode) for a broken file
        return [step_problem(source, step_id, "notebook", f"{step.notebook!r} is not a readable notebook: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")]
    if schema is None:
        names = ", ".join(name for _, name, _ in given)
        return [step_problem(source, step_id, given[0][0], f"{step.notebook!r} has no cell tagged 'parameters', so "
                             f"it takes no parameters ({names} given): tag the cell that defines them "
                             "(JupyterLab: property inspector → cell tags)")]
    if not schema:
        return []  # not a Python notebook: papermill reads no parameter names from it
    problems = []
    for field, name, values in given:
        if name not in schema:
            declared = ", ".join(sorted(schema)) or "none"
            problems.append(step_problem(source, step_id, field, f"{step.notebook!r} defines no parameter {name!r}"
                                         f"{_similar(name, sorted(schema)).split(';')[0]}; its parameters cell "
                                         f"defines: {declared}"))
            continue
        for value in values:
            if template_references(value):
                continue  # known when the run renders it
            try:
                validate_parameters(nb, {name: value})
            except InvalidInput as exc:
                problems.append(step_problem(source, step_id, field, exc.message))
                break
    return problems


def _check_search(pipeline: Pipeline, step_id: str, step: Step) -> list[Problem]:
    problems = []
    for name, param in step.search.params.items():
        try:
            param.distribution()
        except ValueError as exc:
            problems.append(step_problem(pipeline.source, step_id, f"search.params.{name}",
                                         f"Optuna cannot sample it: {exc}"))
    if step.search.parallel > step.search.trials:
        problems.append(step_problem(pipeline.source, step_id, "search.parallel",
                                     f"{step.search.parallel} parallel trials but only {step.search.trials} trials: "
                                     "parallel is at most trials"))
    return problems


def _check_aliases(pipeline: Pipeline, step_id: str, step: Step) -> list[Problem]:
    from loopml.registry.names import check_alias

    alias = getattr(step.action, "alias", None)
    if alias is None:
        return []
    try:
        check_alias(alias)
    except InvalidInput as exc:
        return [step_problem(pipeline.source, step_id, f"{step.kind}.alias", exc.message)]
    return []


def check_pipeline(pipeline: Pipeline, files: Files) -> list[Problem]:
    """Every problem of ``pipeline`` with ``files`` (path relative to the pipeline file -> bytes,
    or the folder that holds the pipeline file), graph problems first, then each step's in file
    order. Reads only the notebooks that are given parameters; runs nothing."""
    file_set = _FileSet(files)
    problems = _check_graph(pipeline)
    for step_id, step in pipeline.steps.items():
        problems += _check_files(pipeline, step_id, step, file_set)
        if step.notebook is not None:
            problems += _check_parameters(pipeline, step_id, step, file_set)
        if step.search is not None:
            problems += _check_search(pipeline, step_id, step)
        if step.action is not None:
            problems += _check_aliases(pipeline, step_id, step)
    return problems


def validate(pipeline: Pipeline, files: Files) -> Pipeline:
    """``pipeline`` if :func:`check_pipeline` finds nothing, else one
    :class:`~loopml.errors.InvalidInput` listing every problem, one a line, with ``problems`` in
    its details."""
    problems = check_pipeline(pipeline, files)
    if problems:
        refuse(problems)
    return pipeline

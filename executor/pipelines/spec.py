"""The pipeline model: steps (notebooks, scripts or built-in actions) and the edges between them.

Both file formats (:mod:`.native`, :mod:`.elyra`) read into :class:`Pipeline`; the checks that
need the pipeline's files or the whole graph are in :mod:`.validate`. Every model refuses keys
it does not know, so a typo is an error and never a silently ignored setting.

Paths: a step's ``notebook``, ``script`` and ``dependencies`` are relative to the pipeline
file's folder. A step runs in the folder of its notebook or script (as papermill and Elyra run
them); its ``outputs`` are files it writes there, relative to that folder, and they appear at the
same relative path in every downstream step's working directory.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, NoReturn

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from loopml.errors import InvalidInput
from loopml.executor.models import Resources
from loopml.names import check_name

from .expr import ExpressionError, Reference, parse_condition, template_references

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GLOB = re.compile(r"[*?\[]")
BUILTIN_KINDS = ("register", "promote", "deploy")
STEP_KINDS = ("notebook", "script", *BUILTIN_KINDS)
_ATTRIBUTE = {"register": "register_"}  # a kind's attribute on Step, where it differs


class FieldError(ValueError):
    """A validator's refusal that names the field it is about (model validators cannot say it
    through pydantic's location); :func:`pipeline_from_data` puts it into the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _step_id(value: str) -> str:
    try:
        return check_name("step", value)
    except InvalidInput:
        raise ValueError(f"invalid step id {value!r}: use 1-40 characters, lowercase letters, digits, '-' or '_', "
                         "starting with a letter") from None


def _identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"invalid name {value!r}: use letters, digits and '_', starting with a letter or '_'")
    return value


def _path(value: str, *, glob: bool = False) -> str:
    if not value or not value.strip():
        raise ValueError("empty path")
    if "\\" in value:
        raise ValueError(f"path {value!r} contains '\\': separate folders with '/'")
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"path {value!r} is absolute: give it relative to the pipeline's folder")
    parts = PurePosixPath(value).parts
    if ".." in parts:
        raise ValueError(f"path {value!r} leaves the pipeline's folder ('..'): keep every file inside it")
    if not glob and _GLOB.search(value):
        raise ValueError(f"path {value!r} has a wildcard: name one file")
    normal = str(PurePosixPath(*parts))
    if normal == ".":
        raise ValueError(f"path {value!r} names the folder itself: name a file")
    return normal


def _check_templates(value: Any) -> Any:
    try:
        template_references(value)
    except ExpressionError as exc:
        raise ValueError(exc.message) from None
    return value


StepId = Annotated[str, AfterValidator(_step_id)]
Name = Annotated[str, AfterValidator(_identifier)]
FilePath = Annotated[str, AfterValidator(_path)]
FilePattern = Annotated[str, AfterValidator(lambda value: _path(value, glob=True))]
TemplatedJson = Annotated[JsonValue, AfterValidator(_check_templates)]
TemplatedVersion = Annotated[StrictInt | str | None, AfterValidator(_check_templates)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StepResources(Resources):
    """:class:`~loopml.executor.models.Resources` that refuses unknown keys (``gpu:`` for ``gpus:``)."""

    model_config = ConfigDict(extra="forbid")


def _exactly_one(model: BaseModel, names: tuple[str, ...], what: str) -> str:
    given = [name for name in names if getattr(model, _ATTRIBUTE.get(name, name)) is not None]
    if len(given) != 1:
        said = f"got {', '.join(given)}" if given else "got none"
        raise FieldError(names[0], f"{what}: give exactly one of {', '.join(names)} ({said})")
    return given[0]


class RegisterAction(_Strict):
    """``register: {model, run_id, artifact_path?, alias?}``: register the model an MLflow run
    logged as a new version of ``model``. Outputs: ``model``, ``version``."""

    model: str = Field(min_length=1, max_length=200, description="Registered model name (short, within the project).")
    run_id: Annotated[str, AfterValidator(_check_templates)] = Field(
        description="The run that logged the model, usually '{{ steps.<step>.outputs.run_id }}'.")
    artifact_path: FilePath = Field("model", description="Where in the run the model was logged.")
    alias: str | None = Field(None, description="An alias to give the new version.")


class PromoteAction(_Strict):
    """``promote: {model, version?, alias}``: point ``alias`` at a version. Outputs: ``model``,
    ``version``, ``alias``."""

    model: str = Field(min_length=1, max_length=200)
    version: TemplatedVersion = Field(None, description="A version number or a template such as "
                                      "'{{ steps.register.outputs.version }}'; none: the newest version of the model "
                                      "that this pipeline run registered.")
    alias: str = Field("champion", description="The alias to move.")


class DeployAction(_Strict):
    """``deploy: {model, endpoint, version?, canary?}``: serve a version on an endpoint, all at once
    or as a canary taking ``canary`` percent of the traffic. Outputs: ``model``, ``version``, ``endpoint``."""

    model: str = Field(min_length=1, max_length=200)
    endpoint: str
    version: TemplatedVersion = Field(None, description="As for promote: none means the newest version of the "
                                      "model that this pipeline run registered.")
    canary: StrictInt | None = Field(None, ge=1, le=99, description="Percent of traffic for the new version; "
                                     "none: replace the serving version. An endpoint that does not exist yet is "
                                     "created serving the version alone.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        try:
            return check_name("endpoint", value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None


BUILTIN_OUTPUTS: dict[str, frozenset[str]] = {
    "register": frozenset({"model", "version"}),
    "promote": frozenset({"model", "version", "alias"}),
    "deploy": frozenset({"model", "version", "endpoint"}),
}


class SearchParam(_Strict):
    """One parameter of a sweep: exactly one of ``loguniform: [lo, hi]``, ``uniform: [lo, hi]``,
    ``int: [lo, hi]`` (inclusive) or ``choice: [values...]``."""

    loguniform: tuple[StrictFloat, StrictFloat] | None = None
    uniform: tuple[StrictFloat, StrictFloat] | None = None
    integer: tuple[StrictInt, StrictInt] | None = Field(None, alias="int")
    choice: list[JsonValue] | None = None

    @model_validator(mode="after")
    def _one(self) -> SearchParam:
        given = [key for key in ("loguniform", "uniform", "integer", "choice") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of loguniform: [lo, hi], uniform: [lo, hi], int: [lo, hi] or "
                             f"choice: [...] (got {', '.join(given).replace('integer', 'int') or 'none'})")
        return self

    def distribution(self) -> Any:
        """The Optuna distribution that samples this parameter; ``ValueError`` saying why when
        Optuna cannot sample it (``loguniform`` with ``lo <= 0``, ``lo > hi``, an empty choice...)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        bounds = self.loguniform or self.uniform
        if bounds is not None:
            if not all(math.isfinite(bound) for bound in bounds):
                raise ValueError(f"bounds must be finite numbers, got {list(bounds)}")
            return FloatDistribution(bounds[0], bounds[1], log=self.loguniform is not None)
        if self.integer is not None:
            return IntDistribution(self.integer[0], self.integer[1])
        odd = [value for value in self.choice if not isinstance(value, (type(None), bool, int, float, str))]
        if odd:
            raise ValueError(f"choices must be numbers, strings, true/false or null, got {odd[0]!r}")
        return CategoricalDistribution(self.choice)


class Objective(_Strict):
    """``{maximize: <output>}`` or ``{minimize: <output>}``: the output of each trial to optimize."""

    maximize: Name | None = None
    minimize: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> Objective:
        _exactly_one(self, ("maximize", "minimize"), "objective")
        return self

    @property
    def metric(self) -> str:
        return self.maximize or self.minimize

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"


class Search(_Strict):
    """A sweep sampled by Optuna: one child job per trial, ``parallel`` at a time; the best
    trial's outputs become the step's."""

    params: dict[Name, SearchParam] = Field(min_length=1, description="The notebook parameters to sample.")
    trials: StrictInt = Field(ge=1, le=1000)
    parallel: StrictInt = Field(1, ge=1, le=100)
    objective: Objective


class Select(_Strict):
    """``{max: <output>}`` or ``{min: <output>}``: whose outputs a ``foreach`` step takes."""

    max: Name | None = None
    min: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> Select:
        _exactly_one(self, ("max", "min"), "select")
        return self

    @property
    def output(self) -> str:
        return self.max or self.min


class Step(_Strict):
    """One node of the pipeline: exactly one of ``notebook``, ``script``, ``register``,
    ``promote``, ``deploy``. Notebooks take ``parameters`` (checked against their papermill
    ``parameters`` cell), ``foreach`` and ``search``; a script takes only its environment; the
    built-in actions take none of the job settings.
    """

    model_config = ConfigDict(serialize_by_alias=True)  # dump ``register``, as files write it

    notebook: FilePath | None = Field(None, description="The notebook to run (.ipynb).")
    script: FilePath | None = Field(None, description="The Python script to run (.py).")
    # ``register`` would shadow pydantic's (ABC's) ``BaseModel.register``: the attribute is
    # ``register_``, the key in files stays ``register``.
    register_: RegisterAction | None = Field(None, alias="register")
    promote: PromoteAction | None = None
    deploy: DeployAction | None = None
    parameters: dict[Name, TemplatedJson] = Field(
        default_factory=dict, description="Values for the notebook's parameters; strings may hold templates.")
    resources: StepResources = Field(default_factory=StepResources)
    timeout_s: StrictFloat | None = Field(None, gt=0, description="Wall-clock limit of one attempt.")
    max_retries: StrictInt = Field(0, ge=0, le=10, description="Retries after a system failure.")
    after: list[StepId] = Field(default_factory=list, description="Steps that must succeed first.")
    when: str | None = Field(None, description="A condition; false: this step and its dependents are SKIPPED.")
    outputs: list[FilePath] = Field(default_factory=list, description="Files the step writes for downstream steps.")
    dependencies: list[FilePattern] = Field(default_factory=list, description="Extra files (or globs) shipped with it.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables of its kernel.")
    cache: StrictBool = Field(True, description="Reuse an earlier result with the same inputs.")
    foreach: dict[Name, list[JsonValue]] | None = Field(None, description="A grid: one child per combination.")
    search: Search | None = None
    select: Select | None = None

    @field_validator("when")
    @classmethod
    def _when(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_condition(value)
            except ExpressionError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.fullmatch(name):
                raise FieldError(name, f"invalid environment variable name {name!r}: use letters, digits and '_'")
            if name.upper().startswith("LOOPML_"):
                raise FieldError(name, f"{name!r}: LOOPML_* variables are set by the platform")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Step:
        kind = _exactly_one(self, STEP_KINDS, "a step runs one thing")
        if kind == "notebook" and not self.notebook.endswith(".ipynb"):
            raise FieldError("notebook", f"{self.notebook!r} is not a notebook (.ipynb): use script: for a .py file")
        if kind == "script" and not self.script.endswith(".py"):
            raise FieldError("script", f"{self.script!r} is not a Python script (.py)")
        if kind != "notebook":
            only_notebooks = ["parameters", "foreach", "search"]
            if kind in BUILTIN_KINDS:
                only_notebooks += ["outputs", "dependencies", "env", "select", "resources"]
            for name in only_notebooks:
                if name in self.model_fields_set and getattr(self, name):
                    what = "a script takes its settings from env" if kind == "script" else \
                        f"a {kind} step is a built-in action"
                    raise FieldError(name, f"{name} has no meaning here: {what}")
        if self.foreach is not None and self.search is not None:
            raise FieldError("foreach", "give foreach (a grid) or search (a sweep), not both")
        if self.search is not None and self.select is not None:
            raise FieldError("select", "a search picks its best trial by its objective: drop select")
        if self.select is not None and self.foreach is None:
            raise FieldError("select", "select picks one child of a foreach step: add foreach, or drop select")
        for name in (self.foreach or {}):
            if not self.foreach[name]:
                raise FieldError(f"foreach.{name}", "an empty list runs no child: give at least one value")
            if name in self.parameters:
                raise FieldError(f"foreach.{name}", f"{name!r} is also in parameters: give it in one place")
        for name in (self.search.params if self.search else {}):
            if name in self.parameters:
                raise FieldError(f"search.params.{name}", f"{name!r} is also in parameters: give it in one place")
        return self

    @property
    def kind(self) -> str:
        """``notebook``, ``script``, ``register``, ``promote`` or ``deploy``."""
        return next(kind for kind in STEP_KINDS if getattr(self, _ATTRIBUTE.get(kind, kind)) is not None)

    @property
    def file(self) -> str | None:
        """The notebook or script it runs; none for a built-in action."""
        return self.notebook or self.script

    @property
    def action(self) -> RegisterAction | PromoteAction | DeployAction | None:
        kind = self.kind
        return getattr(self, _ATTRIBUTE.get(kind, kind)) if kind in BUILTIN_KINDS else None

    def references(self) -> set[Reference]:
        """What its ``when``, its parameters and its action's fields refer to."""
        found = set(parse_condition(self.when).references()) if self.when else set()
        found |= template_references(self.parameters)
        if self.action is not None:
            found |= template_references(self.action.model_dump())
        return found


class Pipeline(_Strict):
    """A named DAG of steps (in file order) with parameters that runs may override."""

    name: str = Field(description="The pipeline's name.")
    description: str | None = None
    parameters: dict[Name, JsonValue] = Field(default_factory=dict,
                                              description="Values that conditions and templates read as params.<name>.")
    steps: dict[StepId, Step] = Field(min_length=1)
    source: str = Field("<pipeline>", description="Where it was read from, for messages (set by the readers).")
    ignored: list[str] = Field(default_factory=list, description="Properties a reader found and does not use, "
                               "by name, e.g. \"node 'train': runtime_image\" (set by the readers).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_name("pipeline", value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a pipeline: ``field`` is its path, e.g. ``steps.train.after``."""

    source: str
    field: str
    message: str
    step: str | None = None

    def __str__(self) -> str:
        if self.step is None:
            return f"{self.source}: {self.field}: {self.message}" if self.field else f"{self.source}: {self.message}"
        within = self.field.removeprefix(f"steps.{self.step}").lstrip(".")
        return f"{self.source}: step '{self.step}': {within + ': ' if within else ''}{self.message}"


def step_problem(source: str, step: str, field: str, message: str) -> Problem:
    return Problem(source, f"steps.{step}.{field}" if field else f"steps.{step}", message, step)


def refuse(problems: list[Problem]) -> NoReturn:
    """Raise one :class:`InvalidInput` listing every problem on its own line; its ``field`` is the
    first problem's and ``problems`` holds them all (``{source, field, message, step}``)."""
    raise InvalidInput("\n".join(str(problem) for problem in problems), field=problems[0].field,
                       problems=[asdict(problem) for problem in problems])


_STEP_KEYS = [field.alias or name for name, field in Step.model_fields.items()]
_KNOWN_KEYS = sorted(set(Pipeline.model_fields) | set(_STEP_KEYS) | set(StepResources.model_fields)
                     | set(Search.model_fields) | {"loguniform", "uniform", "int", "choice", "maximize", "minimize",
                                                   "max", "min"}
                     | set(RegisterAction.model_fields) | set(DeployAction.model_fields))


def _unknown_key(key: str, location: tuple) -> str:
    close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if len(location) == 2 and location[0] == "steps":
        return f"unknown key {key!r}{hint}: a step takes {', '.join(_STEP_KEYS)}"
    if len(location) == 0:
        known = ", ".join(name for name in Pipeline.model_fields if name not in ("source", "ignored"))
        return f"unknown key {key!r}{hint}: a pipeline takes {known}"
    return f"unknown key {key!r}{hint}"


def _problem(source: str, error: dict) -> Problem:
    location = tuple(str(part) for part in error["loc"] if part != "[key]")
    cause = error.get("ctx", {}).get("error")
    if error["type"] == "extra_forbidden":
        message = _unknown_key(location[-1], location[:-1])
    elif error["type"] == "missing":
        message = "is required"
    elif isinstance(cause, Exception):
        message = str(cause)
        if isinstance(cause, FieldError):
            location += tuple(cause.field.split("."))
    else:
        message = error["msg"]
    if location[:1] == ("steps",) and len(location) >= 2:
        return step_problem(source, location[1], ".".join(location[2:]), message)
    return Problem(source, ".".join(location), message)


def pipeline_from_data(data: Any, *, source: str, ignored: list[str] | None = None) -> Pipeline:
    """A :class:`Pipeline` from plain data (a reader's parsed file); :class:`InvalidInput`
    listing every structural problem, each naming the step and the field."""
    if not isinstance(data, dict):
        refuse([Problem(source, "", f"a pipeline is a mapping with name and steps, got {type(data).__name__}")])
    reserved = [key for key in ("source", "ignored") if key in data]
    if reserved:
        refuse([Problem(source, key, _unknown_key(key, ())) for key in reserved])
    try:
        return Pipeline.model_validate({**data, "source": source, "ignored": list(ignored or [])})
    except ValidationError as exc:
        refuse([_problem(source, error) for error in exc.errors()])

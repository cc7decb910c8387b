"""Pipelines before they run: the two readers, the condition and template language, and the
table of bad pipelines that are refused with the step and the field named (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from loopml.errors import InvalidInput
from loopml.executor.pipelines import (
    ExpressionError,
    Reference,
    check_pipeline,
    parse_condition,
    read_elyra,
    read_native,
    ready,
    render,
    template_references,
    topological_order,
    upstream,
    validate,
)

FIXTURES = Path(__file__).parent / "pipelines"
NATIVE = (FIXTURES / "wine.pipeline.yaml").read_text()
ELYRA = (FIXTURES / "wine.pipeline").read_text()


def notebook(parameters: str | None) -> bytes:
    """A tiny notebook whose cell tagged ``parameters`` holds ``parameters`` (none: no such cell)."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.append(nbformat.v4.new_code_cell("import loopml\nloopml.set_output('accuracy', 0.9)"))
    return nbformat.writes(nb).encode()


NATIVE_FILES = {
    "prepare.ipynb": notebook("seed = 0"),
    "train.ipynb": notebook('C = 1.0\ndata = "data/train.parquet"'),
    "evaluate.ipynb": notebook('run_id = ""'),
}
ELYRA_FILES = {
    "load_data.ipynb": notebook(None),
    "wine.csv": b"alcohol,quality\n13.2,6\n",
    "train.ipynb": notebook("n_estimators = 100"),
    "scripts/report.py": b"print('report')\n",
    "scripts/report_template.md": b"# Report\n",
}


def problems_of(exc: pytest.ExceptionInfo[InvalidInput]) -> list[tuple[str | None, str]]:
    return [(p["step"], p["field"]) for p in exc.value.details["problems"]]


# --- the readers ---------------------------------------------------------------------------------------------


def test_reference_yaml_reads_as_the_issue_means_it():
    pipeline = read_native(NATIVE, source="wine.pipeline.yaml")

    assert pipeline.name == "wine-retrain"
    assert pipeline.parameters == {"C": 1.0, "min_accuracy": 0.9}
    assert {step_id: step.kind for step_id, step in pipeline.steps.items()} == {
        "prepare": "notebook", "train": "notebook", "evaluate": "notebook", "deploy": "deploy"}
    assert topological_order(pipeline) == ["prepare", "train", "evaluate", "deploy"]
    train, evaluate, deploy = pipeline.steps["train"], pipeline.steps["evaluate"], pipeline.steps["deploy"]
    assert pipeline.steps["prepare"].outputs == ["data/train.parquet"]
    assert train.foreach == {"C": [0.01, 0.1, 1.0]} and train.select.max == "accuracy" and train.cache
    assert evaluate.references() == {Reference("outputs", "train", "run_id")}
    assert deploy.references() == {Reference("outputs", "evaluate", "accuracy"), Reference("params", None, "min_accuracy")}
    assert (deploy.deploy.model, deploy.deploy.endpoint, deploy.deploy.canary) == ("wine", "wine", 20)
    assert upstream(pipeline, "deploy") == {"prepare", "train", "evaluate"}
    assert validate(pipeline, NATIVE_FILES) is pipeline


def test_reference_yaml_validates_against_a_folder(tmp_path):
    for name, content in NATIVE_FILES.items():
        (tmp_path / name).write_bytes(content)
    pipeline = read_native(NATIVE, source="wine.pipeline.yaml")
    assert check_pipeline(pipeline, tmp_path) == []
    (tmp_path / "evaluate.ipynb").unlink()
    assert [(p.step, p.field) for p in check_pipeline(pipeline, tmp_path)] == [("evaluate", "steps.evaluate.notebook")]


def test_elyra_file_reads_with_its_order_files_env_resources_and_ignored_properties():
    pipeline = read_elyra(ELYRA, source="wine.pipeline")

    assert pipeline.name == "wine-elyra"
    assert topological_order(pipeline) == ["load-data", "train", "write-report"]
    load, train, report = (pipeline.steps[s] for s in ("load-data", "train", "write-report"))
    assert (load.kind, load.notebook, load.after) == ("notebook", "load_data.ipynb", [])
    assert (train.notebook, train.after) == ("train.ipynb", ["load-data"])
    assert (report.kind, report.script, report.after) == ("script", "scripts/report.py", ["train"])
    assert load.outputs == ["data/train.csv"] and train.outputs == ["model.pkl"]
    assert load.dependencies == ["wine.csv"]
    assert report.dependencies == ["scripts/report_template.md"]  # Elyra's are relative to the node's file
    # the pipeline's defaults apply to every node, a node's own win; both env_vars forms read
    assert load.env == {"LOG_LEVEL": "INFO", "SPLIT_SEED": "7"}
    assert train.env == {"LOG_LEVEL": "INFO", "SPLIT_SEED": "0", "N_ESTIMATORS": "200"}
    assert (load.resources.cpus, load.resources.memory_mb, load.resources.gpus) == (2.0, 4096, 0.0)
    assert train.resources.gpus == 1.0
    assert pipeline.ignored == [
        "pipeline: properties.runtime",
        "pipeline: pipeline_defaults.runtime_image",
        "node 'load-data': kubernetes_secrets, mounted_volumes, runtime_image",
        "node 'load-data': env_vars UNSET_VAR (no value)",
        "node 'train': kubernetes_tolerations, runtime_image",
        "node 'write-report': kubernetes_pod_annotations, runtime_image",
    ]
    assert validate(pipeline, ELYRA_FILES) is pipeline


def test_yaml_syntax_error_names_the_file_and_line():
    with pytest.raises(InvalidInput) as exc:
        read_native("name: x\nsteps:\n  a: {notebook: a.ipynb\n", source="bad.pipeline.yaml")
    assert exc.value.message.startswith("bad.pipeline.yaml: line 4")


def test_elyra_json_syntax_error_names_the_file_and_line():
    with pytest.raises(InvalidInput) as exc:
        read_elyra('{\n  "doc_type": "pipeline",\n  oops\n}', source="bad.pipeline")
    assert exc.value.message.startswith("bad.pipeline: line 3")


def test_a_step_written_twice_in_yaml_is_refused():
    text = "name: x\nsteps:\n  a: {notebook: a.ipynb}\n  a: {notebook: b.ipynb}\n"
    with pytest.raises(InvalidInput, match="line 4.*key 'a' is given twice"):
        read_native(text, source="p.yaml")


def test_yaml_tags_that_build_python_objects_are_refused():
    with pytest.raises(InvalidInput, match="not valid YAML"):
        read_native("name: !!python/object/apply:os.system ['true']\nsteps: {}\n", source="p.yaml")


# --- conditions ----------------------------------------------------------------------------------------------

CONTEXT = {
    "params": {"min_accuracy": 0.9, "mode": "full", "strict": True},
    "steps": {
        "evaluate": {"status": "SUCCEEDED", "outputs": {"accuracy": 0.93, "label": "good", "n": 3}},
        "train": {"status": "CACHED", "outputs": {"accuracy": 0.85}},
    },
}


@pytest.mark.parametrize(("condition", "result", "explanation"), [
    pytest.param("steps.evaluate.outputs.accuracy >= params.min_accuracy", True,
                 "steps.evaluate.outputs.accuracy (0.93) >= params.min_accuracy (0.9) is true", id="ge-true"),
    pytest.param("steps.train.outputs.accuracy >= params.min_accuracy", False,
                 "steps.train.outputs.accuracy (0.85) >= params.min_accuracy (0.9) is false", id="ge-false"),
    pytest.param("steps.evaluate.status == 'SUCCEEDED' and steps.train.outputs.accuracy > 0.9", False,
                 "steps.train.outputs.accuracy (0.85) > 0.9 is false", id="and-decided-by-the-false-one"),
    pytest.param("steps.train.outputs.accuracy > 0.9 or steps.evaluate.outputs.label != \"bad\"", True,
                 'steps.evaluate.outputs.label ("good") != "bad" is true', id="or-decided-by-the-true-one"),
    pytest.param("not (params.mode == 'quick')", True, 'not (params.mode ("full") == "quick" is false)', id="not"),
    pytest.param("params.strict", True, "params.strict (true)", id="bare-boolean"),
    pytest.param("steps.evaluate.outputs.n == 3 and steps.train.status == 'CACHED'", True,
                 'steps.evaluate.outputs.n (3) == 3 is true and steps.train.status ("CACHED") == "CACHED" is true',
                 id="and-all-true"),
    pytest.param("steps.evaluate.outputs.n == true", False, "steps.evaluate.outputs.n (3) == true is false",
                 id="numbers-are-not-booleans"),
    pytest.param("params.min_accuracy < 1e0 and -1 < params.min_accuracy", True,
                 "params.min_accuracy (0.9) < 1.0 is true and -1 < params.min_accuracy (0.9) is true", id="numbers"),
    pytest.param("params.mode == null", False, 'params.mode ("full") == null is false', id="null"),
])
def test_condition_evaluates_with_the_values_that_decided_it(condition, result, explanation):
    assert parse_condition(condition).evaluate(CONTEXT) == (result, explanation)


def test_condition_lists_its_references():
    condition = parse_condition("steps.evaluate.outputs.accuracy >= params.min_accuracy or steps.train.status == 'X'")
    assert condition.references() == {Reference("outputs", "evaluate", "accuracy"),
                                      Reference("params", None, "min_accuracy"), Reference("status", "train", None)}


@pytest.mark.parametrize(("condition", "message"), [
    pytest.param("params.mode > 1", "cannot order string", id="order-string-with-number"),
    pytest.param("steps.evaluate.outputs.missing > 1", "did not set output 'missing'", id="missing-output"),
    pytest.param("steps.evaluate.outputs.n", "not true/false", id="number-as-condition"),
    pytest.param("steps.evaluate.outputs.n and params.strict", "not true/false", id="number-in-and"),
])
def test_condition_that_cannot_be_evaluated_says_why(condition, message):
    with pytest.raises(ExpressionError, match=message):
        parse_condition(condition).evaluate(CONTEXT)


@pytest.mark.parametrize("condition", [
    pytest.param("__import__('os').system('true')", id="import-call"),
    pytest.param("params.x.__class__", id="dunder-attribute"),
    pytest.param("params.x.__class__.__mro__", id="attribute-chain"),
    pytest.param("open('/etc/passwd')", id="call"),
    pytest.param("params['x']", id="subscript"),
    pytest.param("(lambda: 1)()", id="lambda"),
    pytest.param("[c for c in ()]", id="comprehension"),
    pytest.param("os.system", id="unknown-name"),
    pytest.param("params.x + 1 > 2", id="arithmetic"),
    pytest.param("1 < params.x < 3", id="chained-comparison"),
    pytest.param("params.x >", id="missing-operand"),
    pytest.param("(params.x > 1", id="unclosed-parenthesis"),
    pytest.param("params.x == 'open", id="unterminated-string"),
    pytest.param("", id="empty"),
])
def test_anything_but_the_language_is_a_parse_error(condition):
    with pytest.raises(ExpressionError, match="at position"):
        parse_condition(condition)


def test_parse_error_names_the_position_and_what_was_expected():
    with pytest.raises(ExpressionError) as exc:
        parse_condition("params.x >= and")
    assert exc.value.message == "expected a value before 'and' at position 13 of 'params.x >= and'"
    assert exc.value.details["position"] == 12


# --- templates -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "rendered"), [
    pytest.param("{{ steps.evaluate.outputs.accuracy }}", 0.93, id="whole-string-keeps-float"),
    pytest.param("{{steps.evaluate.outputs.n}}", 3, id="whole-string-keeps-int"),
    pytest.param("{{ params.strict }}", True, id="whole-string-keeps-bool"),
    pytest.param("acc={{ steps.evaluate.outputs.accuracy }} mode={{ params.mode }}", "acc=0.93 mode=full",
                 id="interpolated"),
    pytest.param(["{{ params.min_accuracy }}", {"k": "{{ steps.train.status }}"}], [0.9, {"k": "CACHED"}],
                 id="nested"),
    pytest.param(5, 5, id="not-a-string"),
    pytest.param("plain text", "plain text", id="no-template"),
])
def test_templates_render_with_their_types(value, rendered):
    assert render(value, CONTEXT) == rendered


def test_template_references_and_malformed_templates():
    assert template_references({"a": ["{{ steps.t.outputs.run_id }}", "x {{ params.C }}"]}) == {
        Reference("outputs", "t", "run_id"), Reference("params", None, "C")}
    for bad in ("{{ steps.t.run_id }}", "{{ __import__('os') }}", "{{ params.C ", "{{ }}"):
        with pytest.raises(ExpressionError):
            template_references(bad)


def test_ready_steps_follow_the_graph():
    pipeline = read_native(NATIVE, source="wine.pipeline.yaml")
    assert ready(pipeline, {}) == ["prepare"]
    assert ready(pipeline, {"prepare": "RUNNING"}) == []
    assert ready(pipeline, {"prepare": "CACHED"}) == ["train"]
    assert ready(pipeline, {"prepare": "SUCCEEDED", "train": "FAILED"}) == []


def test_a_reference_makes_its_step_upstream():
    text = NATIVE.replace("    after: [evaluate]\n", "")
    pipeline = read_native(text, source="p.yaml")
    assert "evaluate" in upstream(pipeline, "deploy")
    assert topological_order(pipeline)[-1] == "deploy"


# --- bad pipelines: one clear error each, naming the step and the field --------------------------------------

def native(change) -> str:
    data = yaml.safe_load(NATIVE)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def elyra(change) -> str:
    data = json.loads(ELYRA)
    change(data)
    return json.dumps(data)


def _nodes(data):
    return data["pipelines"][0]["nodes"]


def _params(data, index):
    return _nodes(data)[index]["app_data"]["component_parameters"]


def _set(path, value):
    def change(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        data[last] = value
    return change


def _del(*path):
    def change(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        del data[last]
    return change


def _files_without(files, name):
    return {k: v for k, v in files.items() if k != name}


def _elyra_link(data, node, from_node):
    _nodes(data)[node]["inputs"][0]["links"] = [{"id": "l", "node_id_ref": _nodes(data)[from_node]["id"],
                                                  "port_id_ref": "outPort"}]


BAD = [
    # (id, format, text, files, step, field, fragment of the message)
    ("native-cycle", "native", native(_set(("steps", "prepare", "after"), ["evaluate"])), NATIVE_FILES,
     "prepare", "steps.prepare.after", "cycle: prepare -> evaluate -> train -> prepare"),
    ("native-cycle-through-a-reference", "native",
     native(_set(("steps", "prepare", "parameters"), {"seed": "{{ steps.deploy.outputs.version }}"})), NATIVE_FILES,
     "prepare", "steps.prepare.after", "cycle: prepare -> deploy -> evaluate -> train -> prepare"),
    ("native-after-unknown-step", "native", native(_set(("steps", "evaluate", "after"), ["trian"])), NATIVE_FILES,
     "evaluate", "steps.evaluate.after", "no step 'trian' (did you mean 'train'?)"),
    ("native-template-unknown-step", "native",
     native(_set(("steps", "evaluate", "parameters"), {"run_id": "{{ steps.training.outputs.run_id }}"})),
     NATIVE_FILES, "evaluate", "steps.evaluate.parameters.run_id", "there is no step 'training'"),
    ("native-condition-unknown-step", "native",
     native(_set(("steps", "deploy", "when"), "steps.evaluat.outputs.accuracy > 0.9")), NATIVE_FILES,
     "deploy", "steps.deploy.when", "there is no step 'evaluat' (did you mean 'evaluate'?)"),
    ("native-condition-unknown-param", "native",
     native(_set(("steps", "deploy", "when"), "steps.evaluate.outputs.accuracy > params.threshold")), NATIVE_FILES,
     "deploy", "steps.deploy.when", "the pipeline has no parameter 'threshold'"),
    ("native-unknown-output-of-a-builtin", "native",
     native(_set(("steps", "post"), {"notebook": "evaluate.ipynb", "parameters": {
         "run_id": "{{ steps.deploy.outputs.url }}"}})), NATIVE_FILES,
     "post", "steps.post.parameters.run_id", "a deploy step has no output 'url'"),
    ("native-output-of-foreach-without-select", "native", native(_del("steps", "train", "select")), NATIVE_FILES,
     "evaluate", "steps.evaluate.parameters.run_id", "has no select"),
    ("native-missing-notebook", "native", NATIVE, _files_without(NATIVE_FILES, "train.ipynb"),
     "train", "steps.train.notebook", "'train.ipynb' is not among the pipeline's files"),
    ("native-missing-dependency", "native", native(_set(("steps", "evaluate", "dependencies"), ["labels.json"])),
     NATIVE_FILES, "evaluate", "steps.evaluate.dependencies.0", "'labels.json' is not among the pipeline's files"),
    ("native-unknown-notebook-parameter", "native",
     native(_set(("steps", "evaluate", "parameters"), {"runid": "{{ steps.train.outputs.run_id }}"})),
     NATIVE_FILES, "evaluate", "steps.evaluate.parameters.runid",
     "'evaluate.ipynb' defines no parameter 'runid' (did you mean 'run_id'?); its parameters cell defines: run_id"),
    ("native-unknown-foreach-parameter", "native", native(_set(("steps", "train", "foreach"), {"c": [1.0]})),
     NATIVE_FILES, "train", "steps.train.foreach.c", "defines no parameter 'c' (did you mean 'C'?)"),
    ("native-wrong-parameter-type", "native", native(_set(("steps", "train", "foreach"), {"C": [0.1, "big"]})),
     NATIVE_FILES, "train", "steps.train.foreach.C", "parameter 'C' expects float"),
    ("native-notebook-without-parameters-cell", "native",
     native(_set(("steps", "prepare", "parameters"), {"seed": 1})),
     {**NATIVE_FILES, "prepare.ipynb": notebook(None)}, "prepare", "steps.prepare.parameters.seed",
     "has no cell tagged 'parameters'"),
    ("native-malformed-condition", "native",
     native(_set(("steps", "deploy", "when"), "steps.evaluate.outputs.accuracy >= ")), NATIVE_FILES,
     "deploy", "steps.deploy.when", "expected a value"),
    ("native-eval-in-condition", "native", native(_set(("steps", "deploy", "when"), "__import__('os')")),
     NATIVE_FILES, "deploy", "steps.deploy.when", "calls are not part of conditions"),
    ("native-malformed-template", "native",
     native(_set(("steps", "evaluate", "parameters"), {"run_id": "{{ steps.train.outputs.run_id }"})),
     NATIVE_FILES, "evaluate", "steps.evaluate.parameters.run_id", "unbalanced"),
    ("native-loguniform-from-zero", "native",
     native(_set(("steps", "train"), {"notebook": "train.ipynb", "after": ["prepare"], "search": {
         "params": {"C": {"loguniform": [0, 10]}}, "trials": 12, "parallel": 3, "objective": {"maximize": "accuracy"}}})),
     NATIVE_FILES, "train", "steps.train.search.params.C", "Optuna cannot sample it: `low > 0` must hold"),
    ("native-int-range-reversed", "native",
     native(_set(("steps", "train"), {"notebook": "train.ipynb", "search": {
         "params": {"C": {"int": [10, 1]}}, "trials": 2, "objective": {"minimize": "loss"}}})),
     NATIVE_FILES, "train", "steps.train.search.params.C", "`low <= high` must hold"),
    ("native-empty-choice", "native",
     native(_set(("steps", "train"), {"notebook": "train.ipynb", "search": {
         "params": {"C": {"choice": []}}, "trials": 2, "objective": {"minimize": "loss"}}})),
     NATIVE_FILES, "train", "steps.train.search.params.C", "one or more elements"),
    ("native-two-distributions", "native",
     native(_set(("steps", "train"), {"notebook": "train.ipynb", "search": {
         "params": {"C": {"uniform": [0, 1], "int": [0, 1]}}, "trials": 2, "objective": {"minimize": "loss"}}})),
     NATIVE_FILES, "train", "steps.train.search.params.C", "give exactly one of loguniform"),
    ("native-empty-foreach", "native", native(_set(("steps", "train", "foreach"), {"C": []})), NATIVE_FILES,
     "train", "steps.train.foreach.C", "an empty list runs no child"),
    ("native-select-naming-nothing", "native", native(_set(("steps", "train", "select"), {})), NATIVE_FILES,
     "train", "steps.train.select.max", "select: give exactly one of max, min (got none)"),
    ("native-typo-step-key", "native", native(lambda d: d["steps"]["train"].update(afterr=["prepare"])),
     NATIVE_FILES, "train", "steps.train.afterr", "unknown key 'afterr' (did you mean 'after'?)"),
    ("native-typo-pipeline-key", "native", native(lambda d: d.update(parameter={"C": 1})), NATIVE_FILES,
     None, "parameter", "unknown key 'parameter' (did you mean 'parameters'?)"),
    ("native-typo-resources-key", "native", native(_set(("steps", "train", "resources"), {"gpu": 1})),
     NATIVE_FILES, "train", "steps.train.resources.gpu", "unknown key 'gpu' (did you mean 'gpus'?)"),
    ("native-typo-deploy-key", "native", native(_set(("steps", "deploy", "deploy", "canery"), 20)), NATIVE_FILES,
     "deploy", "steps.deploy.deploy.canery", "did you mean 'canary'?"),
    ("native-two-kinds", "native", native(_set(("steps", "prepare", "script"), "prepare.py")), NATIVE_FILES,
     "prepare", "steps.prepare.notebook", "give exactly one of notebook, script, register, promote, deploy"),
    ("native-bad-step-id", "native", native(lambda d: d["steps"].update({"Train Model": {"notebook": "t.ipynb"}})),
     NATIVE_FILES, "Train Model", "steps.Train Model", "invalid step id 'Train Model'"),
    ("native-path-escapes", "native", native(_set(("steps", "prepare", "outputs"), ["../secrets.txt"])),
     NATIVE_FILES, "prepare", "steps.prepare.outputs.0", "leaves the pipeline's folder"),
    ("native-absolute-path", "native", native(_set(("steps", "prepare", "notebook"), "/etc/prepare.ipynb")),
     NATIVE_FILES, "prepare", "steps.prepare.notebook", "is absolute"),
    ("native-platform-env", "native", native(_set(("steps", "prepare", "env"), {"LOOPML_TOKEN": "x"})),
     NATIVE_FILES, "prepare", "steps.prepare.env.LOOPML_TOKEN", "set by the platform"),
    ("native-parameters-on-a-builtin", "native", native(_set(("steps", "deploy", "parameters"), {"x": 1})),
     NATIVE_FILES, "deploy", "steps.deploy.parameters", "a deploy step is a built-in action"),
    ("elyra-cycle", "elyra", elyra(lambda d: _elyra_link(d, 0, 2)), ELYRA_FILES,
     "load-data", "steps.load-data.after", "cycle: load-data -> write-report -> train -> load-data"),
    ("elyra-link-to-unknown-node", "elyra",
     elyra(_set(("pipelines", 0, "nodes", 1, "inputs", 0, "links", 0, "node_id_ref"), "no-such-node")),
     ELYRA_FILES, "train", "steps.train.after", "a link comes from node 'no-such-node'"),
    ("elyra-missing-notebook", "elyra", ELYRA, _files_without(ELYRA_FILES, "train.ipynb"),
     "train", "steps.train.notebook", "'train.ipynb' is not among the pipeline's files"),
    ("elyra-missing-script", "elyra", ELYRA, _files_without(ELYRA_FILES, "scripts/report.py"),
     "write-report", "steps.write-report.script", "'scripts/report.py' is not among the pipeline's files"),
    ("elyra-missing-dependency", "elyra", ELYRA, _files_without(ELYRA_FILES, "scripts/report_template.md"),
     "write-report", "steps.write-report.dependencies.0", "'scripts/report_template.md' is not among"),
    ("elyra-glob-dependency-matching-nothing", "elyra",
     elyra(lambda d: _params(d, 2).update(dependencies=["*.j2"])), ELYRA_FILES,
     "write-report", "steps.write-report.dependencies.0", "'scripts/*.j2' matches none of the pipeline's files"),
    ("elyra-custom-component", "elyra", elyra(_set(("pipelines", 0, "nodes", 1, "op"), "url-catalog:5e3a")),
     ELYRA_FILES, "train", "steps.train.op", "node kind 'url-catalog:5e3a' does not run here"),
    ("elyra-no-filename", "elyra", elyra(lambda d: _params(d, 0).update(filename="")), ELYRA_FILES,
     "load-data", "steps.load-data.notebook", "names no file"),
    ("elyra-bad-cpu", "elyra", elyra(lambda d: _params(d, 0).update(cpu="two")), ELYRA_FILES,
     "load-data", "steps.load-data.resources.cpus", "Elyra's cpu is 'two'"),
    ("elyra-path-escapes", "elyra", elyra(lambda d: _params(d, 1).update(outputs=["../../etc/model.pkl"])),
     ELYRA_FILES, "train", "steps.train.outputs.0", "leaves the pipeline's folder"),
    ("elyra-not-a-pipeline", "elyra", elyra(_set(("doc_type",), "notebook")), ELYRA_FILES,
     None, "doc_type", "not an Elyra pipeline"),
]


@pytest.mark.parametrize(("fmt", "text", "files", "step", "field", "fragment"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_bad_pipeline_is_refused_naming_the_step_and_the_field(fmt, text, files, step, field, fragment):
    reader = read_native if fmt == "native" else read_elyra
    source = "wine.pipeline.yaml" if fmt == "native" else "wine.pipeline"
    with pytest.raises(InvalidInput) as exc:
        validate(reader(text, source=source), files)
    assert (step, field) in problems_of(exc), exc.value.message
    line = next(line for line in exc.value.message.splitlines() if fragment in line)
    where = f"{source}: step '{step}': " if step else f"{source}: "
    assert line.startswith(where), line
    assert exc.value.details["field"] == exc.value.details["problems"][0]["field"]


def test_every_problem_is_reported_at_once_one_a_line():
    text = native(lambda d: (d["steps"]["evaluate"].update(after=["nope"]),
                             d["steps"]["deploy"].update(when="params.nope > 1")))
    with pytest.raises(InvalidInput) as exc:
        validate(read_native(text, source="p.yaml"), _files_without(NATIVE_FILES, "prepare.ipynb"))
    assert problems_of(exc) == [("evaluate", "steps.evaluate.after"), ("deploy", "steps.deploy.when"),
                                ("prepare", "steps.prepare.notebook")]
    assert len(exc.value.message.splitlines()) == 3
    assert exc.value.message.splitlines()[0].startswith("p.yaml: step 'evaluate': after: there is no step 'nope'")


def test_elyra_globs_and_upstream_outputs_satisfy_dependencies_in_a_folder(tmp_path):
    for name, content in ELYRA_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    # a glob, and a file no one uploads that the upstream node writes
    text = elyra(lambda d: (_params(d, 2).update(dependencies=["*.md"]),
                            _params(d, 1).update(dependencies=["data/train.csv"])))
    pipeline = read_elyra(text, source="wine.pipeline")
    assert pipeline.steps["write-report"].dependencies == ["scripts/*.md"]
    assert check_pipeline(pipeline, tmp_path) == []
    (tmp_path / "scripts/report_template.md").unlink()
    assert [p.field for p in check_pipeline(pipeline, tmp_path)] == ["steps.write-report.dependencies.0"]

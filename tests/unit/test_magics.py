"""The ``%loopml`` magics without a platform: parsing, the one error line, the ``%%loopml submit``
notebook, finding the kernel's notebook, and the server extension's kernel autoload."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

import loopml
from loopml.errors import NotFound
from loopml.executor.params import parameter_schema
from loopml.jupyter_ext import _magic_args, extension, magics
from loopml.jupyter_ext._magic_args import (
    ROOT_ENV,
    SUBCOMMANDS,
    USAGE,
    HelpShown,
    MagicUsageError,
    cell_notebook,
    current_notebook,
    endpoint_ref,
    parse_line,
)
from loopml.jupyter_ext.magics import LoopmlMagicError, LoopmlMagics

REPO = Path(__file__).resolve().parents[2]

PARSED = [
    pytest.param("submit", {"command": "submit", "notebook": None, "parameters": [], "wait": False}, id="submit-this"),
    pytest.param("submit nb.ipynb -p C=0.1 -p s=a=b --cpus 0.5 --gpus 1 --memory 512 --resource node=1 "
                 "--timeout 30 --retries 2 --name n --wait -P p",
                 {"notebook": "nb.ipynb", "parameters": [("C", "0.1"), ("s", "a=b")], "cpus": 0.5, "gpus": 1.0,
                  "memory_mb": 512, "custom": [("node", 1.0)], "timeout_s": 30.0, "max_retries": 2, "name": "n",
                  "wait": True, "project": "p"}, id="submit-all-options"),
    pytest.param("jobs", {"command": "jobs", "action": "list", "status": None}, id="jobs-lists"),
    pytest.param("jobs -P p --status running", {"action": "list", "project": "p", "status": "RUNNING"},
                 id="jobs-options-list"),
    pytest.param("jobs abc", {"action": "show", "job_id": "abc"}, id="jobs-id-shows"),
    pytest.param("jobs requeue abc -p C=1 --wait", {"action": "requeue", "job_id": "abc", "parameters": [("C", "1")],
                                                    "wait": True}, id="jobs-requeue"),
    pytest.param("jobs logs abc", {"action": "logs", "job_id": "abc"}, id="jobs-logs"),
    pytest.param("jobs cancel abc", {"action": "cancel", "job_id": "abc"}, id="jobs-cancel"),
    pytest.param("models", {"command": "models", "action": "list"}, id="models-lists"),
    pytest.param("models iris", {"action": "show", "name": "iris"}, id="models-name-shows"),
    pytest.param("models promote iris 2", {"action": "promote", "name": "iris", "version": 2}, id="models-promote"),
    pytest.param("promote iris 2", {"command": "promote", "name": "iris", "version": 2}, id="promote"),
    pytest.param("deploy iris@champion --endpoint iris --public --replicas 2 --canary 10",
                 {"model": "iris@champion", "endpoint_name": "iris", "public": True, "replicas": 2, "canary": 10.0},
                 id="deploy"),
    pytest.param("deploy iris --endpoint iris --resource node2=0.1 --resource fast=1",
                 {"custom": [("node2", 0.1), ("fast", 1.0)]}, id="deploy-resources"),
    pytest.param("endpoints", {"command": "endpoints", "action": "list"}, id="endpoints-lists"),
    pytest.param("endpoints iris", {"action": "show", "name": "iris"}, id="endpoints-name-shows"),
    pytest.param("endpoints update iris --autoscale 1:3 --rotate-key",
                 {"action": "update", "autoscale": "1:3", "rotate_key": True}, id="endpoints-update"),
    pytest.param("endpoints delete iris", {"action": "delete", "name": "iris"}, id="endpoints-delete"),
    pytest.param("rollback iris", {"command": "rollback", "name": "iris"}, id="rollback"),
    pytest.param("monitor p/iris --window 15m", {"endpoint": "p/iris", "window": "15m"}, id="monitor"),
    pytest.param("monitor iris", {"window": "1h"}, id="monitor-default-window"),
    pytest.param("feedback iris 'my labels.csv'", {"endpoint": "iris", "file": "my labels.csv"}, id="feedback-quoted"),
    pytest.param("requeue iris -p C=2 --alert a1 --wait", {"endpoint": "iris", "parameters": [("C", "2")],
                                                            "alert_id": "a1", "wait": True}, id="requeue"),
    pytest.param("dashboard -P p", {"command": "dashboard", "project": "p"}, id="dashboard"),
    pytest.param("help monitor", {"command": "help", "topic": "monitor"}, id="help-topic"),
]


@pytest.mark.parametrize(("line", "expected"), PARSED)
def test_parse(line, expected):
    parsed = vars(parse_line(line))
    assert {key: parsed[key] for key in expected} == expected


BAD = [
    pytest.param("sumbit", "unknown subcommand 'sumbit' (did you mean 'submit'? try: submit, jobs,", id="misspelt"),
    pytest.param("frobnicate", "unknown subcommand 'frobnicate' (try: submit,", id="unknown"),
    pytest.param("submit --cpus many", "submit: argument --cpus: invalid float value: 'many'", id="not-a-number"),
    pytest.param("submit -p C", "submit: argument -p/--param: 'C' is not KEY=VALUE", id="param-without-value"),
    pytest.param("submit --resource gpu=lots", "amount of 'gpu' is not a number: 'lots'", id="resource-amount"),
    pytest.param("submit --retries 11", "submit: argument --retries: 11 is more than 10", id="retries-range"),
    pytest.param("submit a.ipynb b.ipynb", "submit: unrecognized arguments: b.ipynb", id="extra-argument"),
    pytest.param("submit --bogus", "submit: unrecognized arguments: --bogus", id="unknown-option"),
    pytest.param("submit 'a.ipynb", "cannot split the line: No closing quotation", id="unbalanced-quote"),
    pytest.param("jobs show", "jobs show: the following arguments are required: ID", id="missing-id"),
    pytest.param("jobs list --status done", "'done' is not one of QUEUED, RUNNING, SUCCEEDED", id="bad-status"),
    pytest.param("promote iris 0", "promote: argument VERSION: 0 is less than 1", id="version-zero"),
    pytest.param("promote iris latest", "promote: argument VERSION: 'latest' is not a whole number", id="version-word"),
    pytest.param("deploy iris", "deploy: the following arguments are required: --endpoint", id="deploy-no-endpoint"),
    pytest.param("deploy iris --endpoint e --canary 100", "between 0 and 100 (exclusive)", id="canary-range"),
    pytest.param("deploy iris --endpoint e --replicas 0", "deploy: argument --replicas: 0 is less than 1",
                 id="replicas-range"),
    pytest.param("feedback iris", "feedback: the following arguments are required: FILE", id="feedback-no-file"),
    pytest.param("deploy iris --endpoint e --resource node2", "deploy: argument --resource: 'node2' is not "
                 "KEY=VALUE", id="deploy-resource-without-amount"),
]


@pytest.mark.parametrize(("line", "message"), BAD)
def test_bad_arguments_are_one_line(line, message):
    with pytest.raises(MagicUsageError) as caught:
        parse_line(line)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_empty_line_and_help():
    assert parse_line("   ") is None
    with pytest.raises(HelpShown):
        parse_line("submit -h")
    assert _magic_args.usage() == USAGE
    for name in SUBCOMMANDS:  # the usage documents every subcommand
        assert f"%loopml {name}" in USAGE or f"%%loopml {name}" in USAGE


def test_help_of_a_subcommand_prints_its_options(capsys):
    assert _magic_args.usage("deploy") == ""
    out = capsys.readouterr().out
    assert "usage: %loopml deploy" in out and "--endpoint NAME" in out and "--canary PCT" in out


@pytest.mark.parametrize(("endpoint", "project", "expected"), [
    pytest.param("iris", None, (None, "iris"), id="name"),
    pytest.param("iris", "p", ("p", "iris"), id="name-with-P"),
    pytest.param("q/iris", None, ("q", "iris"), id="project-slash-name"),
    pytest.param("q/iris", "q", ("q", "iris"), id="same-project-twice"),
])
def test_endpoint_ref(endpoint, project, expected):
    assert endpoint_ref(endpoint, project) == expected


@pytest.mark.parametrize(("endpoint", "project", "message"), [
    pytest.param("q/iris", "p", "is in project 'q' but -P says 'p'", id="clash"),
    pytest.param("/iris", None, "use NAME or PROJECT/NAME", id="no-project"),
    pytest.param("q/a/b", None, "use NAME or PROJECT/NAME", id="two-slashes"),
])
def test_endpoint_ref_errors(endpoint, project, message):
    with pytest.raises(MagicUsageError, match=message):
        endpoint_ref(endpoint, project)


# -- %%loopml submit: the cell as a notebook ------------------------------------------------


def test_cell_notebook_declares_parameters_with_their_types():
    nb = cell_notebook("print(C, n, label, flags)\n\n", {"C": "0.01", "n": "3", "label": "run a", "flags": "[1, 2]"})
    nbformat.validate(nb)
    params, code = nb.cells
    assert params.metadata.tags == ["parameters"]
    assert params.source == "C = 0.01\nn = 3\nlabel = 'run a'\nflags = [1, 2]"
    assert code.source == "print(C, n, label, flags)"
    assert nb.metadata.kernelspec["name"] == "python3"
    schema = parameter_schema(nbformat.from_dict(nb))  # what the platform converts the sent strings by
    assert {name: p.type_name for name, p in schema.items()} == {"C": "float", "n": "int", "label": "str",
                                                                  "flags": "list"}


def test_cell_notebook_without_parameters_is_one_cell():
    nb = cell_notebook("x = 1", {})
    assert [c.source for c in nb.cells] == ["x = 1"] and not nb.cells[0].metadata.get("tags")


def test_cell_notebook_refuses_a_parameter_that_is_no_identifier():
    with pytest.raises(MagicUsageError, match="'learning-rate' is not a Python identifier"):
        cell_notebook("x = 1", {"learning-rate": "0.1"})


# -- which notebook this kernel runs ------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "sub").mkdir()
    nb = tmp_path / "sub" / "train.ipynb"
    nb.write_text("{}")
    return tmp_path, nb


@pytest.mark.parametrize(("environ", "user_ns", "cwd"), [
    pytest.param({"JPY_SESSION_NAME": "{root}/sub/train.ipynb"}, {}, "sub", id="absolute-session-name"),
    pytest.param({"JPY_SESSION_NAME": "sub/train.ipynb", ROOT_ENV: "{root}"}, {}, "sub",
                 id="relative-to-server-root"),
    pytest.param({"JPY_SESSION_NAME": "sub/train.ipynb"}, {}, "sub", id="relative-found-from-cwd-parents"),
    pytest.param({}, {"__session__": "{root}/sub/train.ipynb"}, "sub", id="ipykernel-session"),
    pytest.param({"JPY_SESSION_NAME": "{root}/sub/Console 1"}, {"__vsc_ipynb_file__": "{root}/sub/train.ipynb"}, "",
                 id="vscode-first"),
])
def test_current_notebook(tree, environ, user_ns, cwd):
    root, nb = tree
    fill = lambda mapping: {k: v.format(root=root) for k, v in mapping.items()}  # noqa: E731
    assert current_notebook(fill(environ), fill(user_ns), root / cwd) == nb


@pytest.mark.parametrize(("environ", "message"), [
    pytest.param({}, "this kernel runs no saved notebook (a console?): pass one: %loopml submit NOTEBOOK",
                 id="no-session"),
    pytest.param({"JPY_SESSION_NAME": "sub/Console 1"}, "this kernel's session 'sub/Console 1' is not a saved "
                 "notebook here: save it, or pass the notebook", id="console-session"),
    pytest.param({"JPY_SESSION_NAME": "sub/gone.ipynb"}, "'sub/gone.ipynb' is not a saved notebook", id="renamed"),
])
def test_current_notebook_errors(tree, environ, message):
    root, _ = tree
    with pytest.raises(MagicUsageError) as caught:
        current_notebook(environ, {}, root / "sub")
    assert message in str(caught.value)


# -- the magic in a shell: one line on stderr, a raised line inside a job ---------------------


class FakeClient:
    """The platform answering every lookup with NotFound; records submits."""

    def __init__(self):
        self.submitted = []

    def job(self, project, job_id):
        raise NotFound(f"job {job_id!r} does not exist in project {project!r}")

    def submit(self, project, notebook, **options):
        self.submitted.append((project, notebook, options))
        return SimpleNamespace(id="j1")


@pytest.fixture
def shell(monkeypatch):
    monkeypatch.delenv("LOOPML_JOB_ID", raising=False)
    ip = InteractiveShell.instance()
    fake = FakeClient()
    found = LoopmlMagics(ip, client_factory=lambda: fake)
    ip.register_magics(found)
    monkeypatch.setattr(found, "_job_panel", lambda job_id, project, wait=False: ("JobPanel", job_id, project, wait))
    yield SimpleNamespace(ip=ip, client=fake)
    magics.unload_ipython_extension(ip)


@pytest.mark.parametrize(("line", "expected"), [
    pytest.param("sumbit x", "loopml: unknown subcommand 'sumbit' (did you mean 'submit'?", id="usage"),
    pytest.param("jobs show nope -P p", "loopml: job 'nope' does not exist in project 'p'", id="platform"),
    pytest.param("submit missing.ipynb -P p --cpus x", "loopml: submit: argument --cpus: invalid float", id="option"),
])
def test_errors_print_one_line_and_return_none(shell, capsys, line, expected):
    assert shell.ip.run_line_magic("loopml", line) is None
    captured = capsys.readouterr()
    assert captured.err.startswith(expected) and captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_inside_a_job_an_error_raises_its_one_line(shell, monkeypatch):
    monkeypatch.setenv("LOOPML_JOB_ID", "j0")
    with pytest.raises(LoopmlMagicError) as caught:
        shell.ip.run_line_magic("loopml", "jobs show nope -P p")
    assert caught.value._render_traceback_() == ["loopml: job 'nope' does not exist in project 'p'"]


def test_inside_a_job_submitting_the_current_notebook_is_skipped_not_recursive(shell, monkeypatch, capsys):
    monkeypatch.setenv("LOOPML_JOB_ID", "j0")
    assert shell.ip.run_line_magic("loopml", "submit -P p") is None
    assert "already runs as job j0" in capsys.readouterr().out and shell.client.submitted == []


def test_cell_magic_submits_the_cell(shell):
    result = shell.ip.run_cell_magic("loopml", "submit -P p -p C=0.5 --cpus 2 --wait", "print(C)\n")
    assert result == ("JobPanel", "j1", "p", True)
    [(project, notebook, options)] = shell.client.submitted
    assert project == "p" and [c.source for c in notebook.cells] == ["C = 0.5", "print(C)"]
    assert options == {"parameters": {"C": "0.5"}, "resources": {"cpus": 2.0}, "timeout_s": None, "max_retries": 0,
                       "name": "notebook cell"}


def test_cell_magic_runs_only_submit(shell, capsys):
    assert shell.ip.run_cell_magic("loopml", "jobs", "x = 1") is None
    assert capsys.readouterr().err == "loopml: %%loopml runs a cell as a job: use %%loopml submit [options]\n"
    assert shell.ip.run_cell_magic("loopml", "submit nb.ipynb -P p", "x = 1") is None
    assert "give no NOTEBOOK" in capsys.readouterr().err


def test_submit_without_a_path_sends_the_saved_notebook(shell, tree, monkeypatch, capsys):
    root, nb = tree
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    assert shell.ip.run_line_magic("loopml", "submit -P p")[:2] == ("JobPanel", "j1")
    assert shell.client.submitted[0][1] == nb
    assert capsys.readouterr().out == "submitting train.ipynb as last saved\n"


def test_help_prints_usage(shell, capsys):
    assert shell.ip.run_line_magic("loopml", "") is None
    assert capsys.readouterr().out == USAGE


def test_load_registers_line_and_cell_magic_and_unload_removes_them():
    ip = InteractiveShell.instance()
    loopml.load_ipython_extension(ip)
    assert ip.find_line_magic("loopml") and ip.find_cell_magic("loopml")
    magics.unload_ipython_extension(ip)
    assert ip.find_line_magic("loopml") is None and ip.find_cell_magic("loopml") is None


# -- the server extension -----------------------------------------------------------------


def test_extension_point_is_reachable_from_the_package():
    [point] = loopml._jupyter_server_extension_points()
    assert point["app"] is extension.LoopmlExtension and point["app"].name == "loopml"
    __import__(point["module"])


def test_installed_config_enables_the_extension():
    config = REPO / "jupyter-config" / "jupyter_server_config.d" / "loopml.json"
    assert json.loads(config.read_text()) == {"ServerApp": {"jpserver_extensions": {"loopml": True}}}
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["etc/jupyter/jupyter_server_config.d"] == [str(config.relative_to(REPO))]


def test_enable_autoload_chains_a_previous_startup_file_once(tmp_path):
    environ = {"PYTHONSTARTUP": "/home/me/.pythonrc"}
    extension.enable_autoload(environ, str(tmp_path))
    extension.enable_autoload(environ, str(tmp_path))  # a second server start changes nothing
    assert environ == {"PYTHONSTARTUP": str(extension.STARTUP_FILE), extension.CHAINED_ENV: "/home/me/.pythonrc",
                       ROOT_ENV: str(tmp_path.resolve())}


def _run_startup(namespace: dict) -> dict:
    source = extension.STARTUP_FILE.read_text()
    exec(compile(source, str(extension.STARTUP_FILE), "exec"), namespace)
    return namespace


def test_startup_file_in_plain_python_leaves_the_namespace_clean(monkeypatch):
    monkeypatch.delenv(extension.CHAINED_ENV, raising=False)
    monkeypatch.setattr("IPython.get_ipython", lambda: None)
    namespace = _run_startup({"__file__": str(extension.STARTUP_FILE)})
    assert sorted(namespace) == ["__builtins__", "__file__"]


def test_startup_file_runs_the_chained_one_and_loads_the_magics(monkeypatch, tmp_path):
    chained = tmp_path / "pythonrc.py"
    chained.write_text("MINE = 42\n")
    monkeypatch.setenv(extension.CHAINED_ENV, str(chained))
    ip = InteractiveShell.instance()
    magics.unload_ipython_extension(ip)
    monkeypatch.setattr("IPython.get_ipython", lambda: ip)
    namespace = _run_startup({"__file__": str(extension.STARTUP_FILE)})
    assert sorted(namespace) == ["MINE", "__builtins__", "__file__"] and namespace["MINE"] == 42
    assert ip.find_line_magic("loopml") is not None
    magics.unload_ipython_extension(ip)

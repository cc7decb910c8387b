"""The ``%loopml`` magics without a platform: the click tree as their grammar, the one error
line, what each command answers with, the ``%%loopml submit`` notebook, finding the kernel's
notebook, and the server extension's kernel autoload.

The platform is the CLI tests' in-process fake REST API behind a real :class:`Client`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import click
import httpx
import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

import loopml
from loopml.cli import command_paths, main
from loopml.client import Client
from loopml.errors import InvalidInput
from loopml.executor.params import parameter_schema
from loopml.jupyter_ext import extension, magics
from loopml.jupyter_ext.magics import PANELS, SHOWN_BY_PANEL, LoopmlMagicError, LoopmlMagics, command_path
from loopml.jupyter_ext.notebook_files import ROOT_ENV, cell_notebook, current_notebook
from tests.unit.payloads import job_json
from tests.unit.test_cli import FakePlatform

REPO = Path(__file__).resolve().parents[2]



@pytest.mark.parametrize(("args", "path"), [
    pytest.param([], "", id="nothing"),
    pytest.param(["--help"], "", id="root-help"),
    pytest.param(["jobs", "list", "--status", "failed"], "jobs list", id="leaf"),
    pytest.param(["jobs"], "jobs", id="group"),
    pytest.param(["models", "show", "list"], "models show", id="an-argument-named-like-a-command"),
    pytest.param(["sumbit", "x"], "", id="unknown"),
])
def test_command_path(args, path):
    assert command_path(args) == path


def test_every_panel_belongs_to_a_command_of_the_cli():
    paths = {path for path, _ in command_paths()}
    assert set(PANELS) <= paths and SHOWN_BY_PANEL <= set(PANELS)


# -- the magic in a shell ---------------------------------------------------------------------


@pytest.fixture
def shell(monkeypatch):
    """A shell with ``%loopml`` on a real client of the fake platform; panels are stand-ins
    (``(path, result)``), so what each command hands the magic can be checked."""
    for name in ("LOOPML_JOB_ID", "LOOPML_PROJECT", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    platform = FakePlatform(projects=["p"])
    client = Client("http://fake", "tok", transport=httpx.MockTransport(platform))
    ip = InteractiveShell.instance()
    ip.register_magics(LoopmlMagics(ip, client_factory=lambda: client))
    for path in PANELS:
        monkeypatch.setitem(PANELS, path, lambda client, result, path=path: (path, result))
    yield SimpleNamespace(ip=ip, platform=platform, line=lambda line: ip.run_line_magic("loopml", line))
    magics.unload_ipython_extension(ip)
    client.close()


@pytest.fixture
def notebook(tmp_path) -> Path:
    path = tmp_path / "train.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), path)
    return path


ERRORS = [
    pytest.param("sumbit x", "loopml: No such command 'sumbit'. Did you mean 'submit'?", id="misspelt-command"),
    pytest.param("frobnicate", "loopml: No such command 'frobnicate'.", id="unknown-command"),
    pytest.param("jobs lis", "loopml: No such command 'lis'. Did you mean 'list'?", id="misspelt-subcommand"),
    pytest.param("submit --bogus", "loopml: No such option '--bogus'.", id="unknown-option"),
    pytest.param("jobs list --statu x", "loopml: No such option '--statu'. Did you mean '--status'?",
                 id="misspelt-option"),
    pytest.param("submit --cpus many", "loopml: Invalid value for '--cpus': 'many' is not a valid float.",
                 id="bad-option-value"),
    pytest.param("submit -p C", "loopml: Invalid value for '-p' / '--param': 'C' is not KEY=VALUE",
                 id="param-without-value"),
    pytest.param("submit missing.ipynb", "loopml: Invalid value for 'NOTEBOOK': File 'missing.ipynb' does not exist.",
                 id="missing-notebook"),
    pytest.param("jobs show", "loopml: Missing argument 'ID'.", id="missing-argument"),
    pytest.param("deploy iris", "loopml: Missing option '--endpoint'.", id="missing-option"),
    pytest.param("models promote iris 0", "loopml: Invalid value for 'VERSION': 0 is not in the range x>=1.",
                 id="out-of-range"),
    pytest.param("jobs list --status done", "loopml: Invalid value for '--status': 'done' is not one of",
                 id="bad-choice"),
    pytest.param("submit 'a.ipynb", "loopml: cannot split the line: No closing quotation", id="unbalanced-quote"),
    pytest.param("models show nope -P p", "loopml: no route GET /projects/p/models/nope", id="platform-error"),
    pytest.param("up", "loopml: `loopml up` starts the platform's processes on this machine: run it in a "
                 "terminal, not in a kernel", id="up"),
    pytest.param("down --data-dir /tmp/x", "loopml: `loopml down` stops the platform's processes on this machine",
                 id="down"),
]


@pytest.mark.parametrize(("line", "expected"), ERRORS)
def test_errors_print_one_line_and_return_none(shell, capsys, line, expected):
    assert shell.line(line) is None
    captured = capsys.readouterr()
    assert captured.err.startswith(expected), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and captured.out == ""


def test_a_platform_error_names_what_the_platform_said(shell, capsys):
    shell.platform.fail = (403, {"message": "user 'alice' is not a member of project 'q'", "reason": "forbidden"})
    assert shell.line("jobs list -P q") is None
    assert capsys.readouterr().err == "loopml: user 'alice' is not a member of project 'q'\n"


def test_inside_a_job_an_error_raises_its_one_line(shell, monkeypatch):
    monkeypatch.setenv("LOOPML_JOB_ID", "j0")
    with pytest.raises(LoopmlMagicError) as caught:
        shell.line("jobs show")
    assert caught.value._render_traceback_() == ["loopml: Missing argument 'ID'."]


@pytest.mark.parametrize(("line", "first"), [
    pytest.param("", "Usage: %loopml [OPTIONS] COMMAND [ARGS]...", id="nothing-is-the-root-help"),
    pytest.param("--help", "Usage: %loopml [OPTIONS] COMMAND [ARGS]...", id="root-help"),
    pytest.param("jobs", "Usage: %loopml jobs [OPTIONS] COMMAND [ARGS]...", id="group-alone"),
    pytest.param("jobs list -h", "Usage: %loopml jobs list [OPTIONS]", id="leaf-help"),
    pytest.param("up --help", "Usage: %loopml up [OPTIONS]", id="up-help-is-still-help"),
])
def test_help_prints_clicks_help_and_returns_none(shell, capsys, line, first):
    assert shell.line(line) is None
    captured = capsys.readouterr()
    assert captured.out.startswith(first + "\n") and captured.err == ""


def test_a_view_returns_its_panel_without_the_text(shell, capsys):
    shell.platform.polls = [job_json("j1", project="p", status="RUNNING")]
    path, job = shell.line("jobs show j1 -P p")
    assert (path, job.id, job.project) == ("jobs show", "j1", "p")
    assert capsys.readouterr().out == ""


def test_an_action_returns_its_panel_and_prints_what_it_did(shell, capsys):
    path, job = shell.line("jobs cancel j1 -P p")
    assert (path, job.status.value) == ("jobs cancel", "CANCELLED")
    assert capsys.readouterr().out == "job j1 CANCELLED (0/0 cells)\n"


def test_a_list_hands_its_project_and_filter_to_the_panel(shell):
    path, listing = shell.line("jobs list --status succeeded")  # the only project: p
    assert (path, listing.project, listing.status, listing.items) == ("jobs list", "p", "SUCCEEDED", [])


@pytest.mark.parametrize("line", ["jobs logs j1 -P p", "jobs show j1 -P p --json", "projects list"])
def test_a_command_without_a_panel_prints_its_text(shell, capsys, line):
    shell.platform.polls = [job_json("j1", project="p")]
    assert shell.line(line) is None
    out = capsys.readouterr().out
    assert out == {"jobs logs j1 -P p": "line 1\nline 2\n"}.get(line, out) and out


def test_submit_wait_prints_how_the_job_ended_and_returns_its_panel_even_when_it_failed(shell, notebook, capsys):
    shell.platform.polls = [job_json(status="RUNNING", done=1, total=2),
                            job_json(status="FAILED", done=1, total=2, message="cell 2 raised")]
    path, job = shell.line(f"submit {notebook} -P p --wait")
    assert (path, job.status.value) == ("submit", "FAILED")
    captured = capsys.readouterr()
    assert captured.out == ("submitted job j1 (train.ipynb) to project p: QUEUED\n"
                            "job j1 FAILED (1/2 cells): cell 2 raised\n")
    assert captured.err == ""  # no progress bar: the panel shows progress


def test_cell_magic_submits_the_cell(shell):
    shell.platform.polls = [job_json(status="SUCCEEDED")]
    path, job = shell.ip.run_cell_magic("loopml", "submit -P p -p C=0.5 --cpus 2 --wait", "print(C)\n")
    assert (path, job.id) == ("submit", "j1")
    body = shell.platform.body(0)
    assert ["".join(c["source"]) for c in body["notebook"]["cells"]] == ["C = 0.5", "print(C)"]
    assert (body["parameters"], body["resources"], body["name"]) == ({"C": "0.5"}, {"cpus": 2.0}, "notebook cell")


def test_cell_magic_runs_only_submit_and_only_the_cell(shell, notebook, capsys):
    assert shell.ip.run_cell_magic("loopml", "jobs list", "x = 1") is None
    assert capsys.readouterr().err == "loopml: %%loopml runs a cell as a job: use %%loopml submit [options]\n"
    assert shell.ip.run_cell_magic("loopml", f"submit {notebook} -P p", "x = 1") is None
    assert "give no NOTEBOOK" in capsys.readouterr().err


def test_submit_without_a_path_sends_the_saved_notebook(shell, notebook, monkeypatch, capsys):
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    path, job = shell.line("submit -P p")
    assert path == "submit" and "".join(shell.platform.body(0)["notebook"]["cells"][0]["source"]) == "x = 1"
    assert capsys.readouterr().out.startswith("submitting train.ipynb as last saved\nsubmitted job j1")


def test_submit_without_a_path_in_a_console_says_so(shell, capsys):
    assert shell.line("submit -P p") is None
    assert capsys.readouterr().err.startswith("loopml: this kernel runs no saved notebook (a console?)")


def test_inside_a_job_submitting_the_current_notebook_is_skipped_not_recursive(shell, monkeypatch, capsys):
    monkeypatch.setenv("LOOPML_JOB_ID", "j0")
    assert shell.line("submit -P p") is None
    assert "already runs as job j0" in capsys.readouterr().out and shell.platform.requests == []


def test_the_cli_still_needs_a_notebook():
    with pytest.raises(click.MissingParameter) as caught:
        main(["submit", "-P", "p"], standalone_mode=False)
    assert caught.value.format_message() == "Missing argument 'NOTEBOOK'."


def test_feedback_warnings_go_to_stderr(shell, tmp_path, capsys, monkeypatch):
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr1,1\n")
    monkeypatch.setattr(Client, "feedback", lambda self, project, name, items: SimpleNamespace(
        accepted=0, updated=0, unchanged=0, unknown=["r1"]))
    path, sent = shell.line(f"feedback q/ep {labels}")
    assert (path, sent.project, sent.endpoint) == ("feedback", "q", "ep")
    captured = capsys.readouterr()
    assert captured.out == "ep: 0 accepted, 0 updated, 0 unchanged, 1 unknown\n"
    assert captured.err == "loopml: warning: 1 request ids have no captured request of q/ep: r1\n"


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
    with pytest.raises(InvalidInput, match="'learning-rate' is not a Python identifier"):
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
    with pytest.raises(InvalidInput) as caught:
        current_notebook(environ, {}, root / "sub")
    assert message in str(caught.value)


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

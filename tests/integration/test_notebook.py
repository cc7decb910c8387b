"""The ``%loopml`` magics in real IPython kernels against the real platform: the magic's grammar
is the CLI's click tree (every command path prints click's help); each magic runs and returns
its panel, whose state (status, progress, values) is what the platform says, or the CLI's
text where no panel fits; a bad argument or a platform error is one line on stderr; and a
kernel of a Jupyter server started the way a workspace starts it has the magics without
``%load_ext`` and submits its notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_core.paths import jupyter_config_path
from sklearn.datasets import load_iris

from loopml.cli import command_paths, main
from loopml.executor.models import JobStatus
from loopml.launcher import free_port_block
from tests.integration.notebooks import TRAIN, TRAIN_AND_LOG, write
from tests.integration.processes import wait_for

pytestmark = pytest.mark.integration

WIDGET = "application/vnd.jupyter.widget-view+json"


@dataclass
class Ran:
    """What one execution sent back: streams, errors (ename, evalue), display data and results."""

    stdout: str = ""
    stderr: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)
    shown: list[dict] = field(default_factory=list)

    @property
    def widget(self) -> bool:
        return any(WIDGET in data for data in self.shown)


class Kernel:
    """A started kernel: run code, read values back as JSON."""

    def __init__(self, client: BlockingKernelClient) -> None:
        self.client = client

    def run(self, code: str, timeout: float = 120) -> Ran:
        ran = Ran()

        def collect(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                setattr(ran, content["name"], getattr(ran, content["name"]) + content["text"])
            elif kind == "error":
                ran.errors.append((content["ename"], content["evalue"]))
            elif kind in ("execute_result", "display_data"):
                ran.shown.append(content["data"])

        reply = self.client.execute_interactive(code, output_hook=collect, timeout=timeout)
        if reply["content"]["status"] == "error" and not ran.errors:
            ran.errors.append((reply["content"]["ename"], reply["content"]["evalue"]))
        return ran

    def ok(self, code: str, timeout: float = 120) -> Ran:
        """``run``, asserting nothing failed and nothing went to stderr."""
        ran = self.run(code, timeout)
        assert not ran.errors and not ran.stderr, (ran.errors, ran.stderr, ran.stdout)
        return ran

    def value(self, expression: str):
        marker = f"@@{uuid.uuid4().hex}@@"
        ran = self.ok(f"import json as _json\nprint({marker!r} + _json.dumps({expression}, default=str))")
        return json.loads(ran.stdout.split(marker, 1)[1])


def answer(kernel: Kernel, line: str) -> tuple[Ran, str]:
    """Run ``%loopml <line>`` as ``_r = …``: what it printed, and the type of what it returned."""
    ran = kernel.ok(f"_r = %loopml {line}")
    return ran, kernel.value("type(_r).__name__")


def job_state(panel: str) -> str:
    """Kernel-side expression: a JobPanel's state as plain data."""
    return (f"dict(type=type({panel}).__name__, id={panel}.job_id, status={panel}.status.value, "
            f"done={panel}.progress.value, max={panel}.progress.max, job_status={panel}.job.status.value)")


@pytest.fixture
def workdir(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def kernel(platform, project, workdir):
    """A plain IPython kernel in ``workdir`` with alice's workspace environment (no autoload)."""
    env = {k: v for k, v in platform.env.items() if k not in ("PYTHONSTARTUP", "JPY_SESSION_NAME")}
    env.update(LOOPML_URL=platform.url, LOOPML_TOKEN=platform.alice_token, LOOPML_PROJECT=project,
               MLFLOW_TRACKING_URI=platform.state()["urls"]["mlflow"])
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env, cwd=str(workdir))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        kernel = Kernel(client)
        kernel.ok("%load_ext loopml")
        yield kernel
        kernel.run("for _w in list(__import__('ipywidgets').Widget.widgets.values()): _w.close()")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_cell_magic_runs_the_cell_as_a_job_and_its_panel_follows_it(kernel, alice, project):
    ran = kernel.ok("%%loopml submit -p n=4 --cpus 0.5\nprint(f'sum={sum(range(n))}')")
    assert ran.widget
    kernel.ok("p = _")

    def finished():
        """the panel at SUCCEEDED"""
        kernel.ok("p.refresh()")
        state = kernel.value(job_state("p"))
        return state if "SUCCEEDED" in state["status"] else None

    state = wait_for(finished, timeout=180, every=1)
    job = alice.job(project, state["id"])
    assert job.status is JobStatus.SUCCEEDED and job.parameters == {"n": 4} and job.name == "notebook cell"
    assert state["type"] == "JobPanel" and state["job_status"] == "SUCCEEDED"
    assert state["done"] == state["max"] == job.progress.cells_total > 0
    assert "sum=6" in alice.logs(project, job.id)


def test_submit_jobs_and_logs(kernel, alice, project, workdir):
    write(workdir / "train.ipynb", TRAIN)
    ran = kernel.ok("p = %loopml submit train.ipynb -p C=0.5 -p label=magic --cpus 0.5 --wait\np")
    assert ran.widget and "SUCCEEDED (" in ran.stdout
    state = kernel.value(job_state("p"))
    job = alice.job(project, state["id"])
    assert (job.name, job.status, job.parameters) == ("train.ipynb", JobStatus.SUCCEEDED, {"C": 0.5, "label": "magic"})
    assert state["job_status"] == "SUCCEEDED" and state["done"] == state["max"] == job.progress.cells_total

    assert kernel.ok(f"%loopml jobs show {job.id}").widget
    assert kernel.value(job_state("_"))["id"] == job.id
    assert kernel.ok("%loopml jobs list --status succeeded").widget
    assert kernel.value("[j.id for j in _.jobs]") == [j.id for j in alice.jobs(project, status="SUCCEEDED")]
    assert "label 'magic'" in kernel.ok(f"%loopml jobs logs {job.id}").stdout

    ran = kernel.ok(f"q = %loopml jobs requeue {job.id} -p C=2 --wait")
    requeued = alice.job(project, kernel.value("q.job_id"))
    assert requeued.parent_id == job.id and requeued.parameters["C"] == 2.0
    assert requeued.status is JobStatus.SUCCEEDED and f"requeued job {job.id} as job {requeued.id}" in ran.stdout

    ran, kind = answer(kernel, f"jobs output {job.id} -o executed.ipynb")
    assert (ran.stdout, kind) == ("executed.ipynb\n", "NoneType") and (workdir / "executed.ipynb").is_file()
    ran, kind = answer(kernel, "schedules list")
    assert ran.stdout.split() == ["ID", "NAME", "CRON", "NEXT", "RUN", "LAST", "RUN", "LAST", "JOB", "USER", "STATE"]
    assert kind == "NoneType"
    ran, kind = answer(kernel, f"jobs show {job.id} --json")
    assert json.loads(ran.stdout)["id"] == job.id and kind == "NoneType"


def _send(url: str, key: str, count: int) -> list[tuple[str, int]]:
    iris = load_iris(as_frame=True)
    labels = []
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        for i in range(count):
            row = (i * 7) % len(iris.data)
            answer = http.post(f"{url}/invocations", headers={"x-request-id": f"nb-{i}"},
                               json={"dataframe_split": {"columns": list(iris.data.columns),
                                                         "data": [iris.data.iloc[row].tolist()]}})
            assert answer.status_code == 200, answer.text
            labels.append((answer.headers["x-request-id"], int(iris.target[row])))
    return labels


@pytest.mark.timeout(600)
def test_models_deploy_monitor_feedback_requeue_rollback(kernel, alice, project, workdir):
    write(workdir / "train.ipynb", TRAIN_AND_LOG)
    kernel.ok("%loopml submit train.ipynb -p C=0.05 --cpus 0.5 --wait")
    first = kernel.value("_.job_id")

    assert kernel.ok("%loopml models list").widget
    assert kernel.value("[m.name for m in _.models]") == [m.name for m in alice.models(project)] != []
    assert kernel.ok("%loopml models show iris").widget
    assert kernel.value("_.model.aliases") == alice.model(project, "iris").aliases == {"champion": 1}
    ran = kernel.ok("%loopml models promote iris 1")
    assert ran.widget and f"version 1 of {project}.iris is still champion" in ran.stdout
    ran, kind = answer(kernel, "models alias iris staging 1")
    assert kind == "ModelsPanel" and ran.stdout == f"version 1 of {project}.iris is now staging (was none)\n"
    assert kernel.value("_r.model.aliases") == alice.model(project, "iris").aliases == {"champion": 1, "staging": 1}
    ran, kind = answer(kernel, "models unalias iris staging")
    assert kind == "ModelsPanel" and ran.stdout == f"removed alias staging from {project}.iris (was on version 1)\n"

    ran = kernel.ok("ep = %loopml deploy iris@champion --endpoint ep\nep")
    assert ran.widget and ran.stdout == "endpoint ep has a new key: read it now from this panel's .key; it is not shown again\n"
    served = kernel.value("dict(version=ep.endpoint.version, url=ep.endpoint.url, key=ep.key)")
    assert served["version"] == alice.endpoint(project, "ep").version == 1
    labels = _send(served["url"], served["key"], 20)
    assert kernel.ok("%loopml endpoints list").widget and kernel.value("_.names") == ["ep"]
    assert kernel.ok("%loopml endpoints show ep").widget and kernel.value("_.endpoint.name") == "ep"
    ran, kind = answer(kernel, "policy ep --no-drift --min-samples 1000")  # a policy that never fires here
    shown = dict(line.split(":", 1) for line in ran.stdout.splitlines())
    assert kind == "NoneType" and shown["endpoint"].strip() == f"{project}/ep"
    assert (shown["min_samples"].strip(), shown["drift"].strip()) == ("1000", "False")
    assert alice.policy(project, "ep").spec.min_samples == 1000

    wait_for(lambda: alice.monitor(project, "ep", "15m").requests >= 20, timeout=60, every=0.5)
    (workdir / "labels.csv").write_text("request_id,label\n" + "".join(f"{i},{y}\n" for i, y in labels))
    ran = kernel.ok("%loopml feedback ep labels.csv")
    assert ran.widget and "ep: 20 accepted, 0 updated, 0 unchanged, 0 unknown" in ran.stdout
    assert kernel.ok(f"m = %loopml monitor {project}/ep --window 15m\nm").widget
    report = alice.monitor(project, "ep", "15m")
    assert kernel.value("dict(requests=m.report.requests, labelled=m.report.labelled, version=m.report.version)") == {
        "requests": report.requests, "labelled": report.labelled, "version": 1}
    assert report.labelled == 20

    ran = kernel.ok("r = %loopml requeue ep -p C=1.0 --wait\nr")
    assert ran.widget and "requeued the training job of ep as job" in ran.stdout
    retrained = alice.job(project, kernel.value("r.job_id"))
    assert retrained.status is JobStatus.SUCCEEDED and retrained.parent_id == first
    assert kernel.value(job_state("r"))["job_status"] == "SUCCEEDED"
    assert alice.model(project, "iris").aliases == {"champion": 1, "challenger": 2}
    ran, kind = answer(kernel, "alerts --endpoint ep")
    alerts = alice.alerts(project, endpoint="ep")
    assert kind == "NoneType" and ran.stdout.startswith("ID ") and alerts
    assert all(alert.id[:8] in ran.stdout for alert in alerts) and retrained.id in ran.stdout

    assert kernel.ok("%loopml deploy iris/2 --endpoint ep --canary 25").widget
    assert kernel.value("dict(v=_.endpoint.version, c=_.endpoint.canary_version, key=_.key)") == {
        "v": 1, "c": 2, "key": None}
    ran = kernel.ok("%loopml endpoints rollback ep")
    assert ran.widget and "endpoint ep now serves" in ran.stdout
    assert kernel.value("dict(v=_.endpoint.version, c=_.endpoint.canary_version)") == {"v": 1, "c": None}
    assert alice.endpoint(project, "ep").canary_version is None

    assert kernel.ok("%loopml projects show").widget
    assert kernel.value("[len(_.tabs.children), type(_.loop).__name__, _.loop.project]") == [4, "LoopPanel", project]
    assert "deleted endpoint ep" in kernel.ok("%loopml endpoints delete ep").stdout
    assert alice.endpoints(project) == []


BAD = [
    pytest.param("%loopml sumbit x.ipynb", "loopml: No such command 'sumbit'. Did you mean 'submit'?", id="typo"),
    pytest.param("%loopml submit --cpus lots", "loopml: Invalid value for '--cpus': 'lots' is not a valid float.",
                 id="option"),
    pytest.param("%loopml submit missing.ipynb",
                 "loopml: Invalid value for 'NOTEBOOK': File 'missing.ipynb' does not exist.", id="no-file"),
    pytest.param("%loopml submit", "loopml: this kernel runs no saved notebook", id="no-session"),
    pytest.param("%loopml jobs show", "loopml: Missing argument 'ID'.", id="missing-argument"),
    pytest.param("%loopml jobs show nope", "loopml: ", id="unknown-job"),
    pytest.param("%loopml models show nope", "loopml: ", id="unknown-model"),
    pytest.param("%loopml monitor nope --window 2x", "loopml: ", id="bad-window"),
    pytest.param("%loopml feedback ep missing.csv", "loopml: missing.csv: no such file", id="no-labels-file"),
    pytest.param("%loopml jobs list -P someone-elses", "loopml: ", id="foreign-project"),
    pytest.param("%loopml up --no-hub", "loopml: `loopml up` starts the platform's processes on this machine",
                 id="up"),
    pytest.param("%%loopml deploy iris --endpoint x\nprint(1)", "loopml: %%loopml runs a cell as a job", id="cell"),
]



def test_every_command_path_prints_clicks_help(kernel):
    """One cell asks ``%loopml <path> --help`` for every command path of the CLI (and the root)."""
    paths = {"": main, **dict(command_paths())}
    assert "jobs output" in paths and "models alias" in paths and "endpoints update" in paths
    kernel.ok("import contextlib as _cl, io as _io\n_helps = {}\n"
              f"for _path in {sorted(paths)!r}:\n"
              "    with _cl.redirect_stdout(_io.StringIO()) as _out:\n"
              "        _returned = get_ipython().run_line_magic('loopml', f'{_path} --help')\n"
              "    _helps[_path] = (_out.getvalue(), _returned is None)", timeout=60)
    helps = kernel.value("_helps")
    for path, command in paths.items():
        text, returned_none = helps[path]
        usage = f"Usage: %loopml {path} [OPTIONS]".replace("  ", " ")
        first = " ".join(command.help.split("\n\n")[0].split())  # click rewraps the first paragraph
        assert text.startswith(usage) and first in " ".join(text.split()) and returned_none, (path, text)


@pytest.mark.parametrize(("code", "line"), BAD)
def test_a_bad_argument_is_one_line_on_stderr(kernel, code, line):
    ran = kernel.run(code)
    assert not ran.errors and not ran.shown and not ran.stdout, ran
    assert ran.stderr.startswith(line) and ran.stderr.count("\n") == 1, ran.stderr
    assert "Traceback" not in ran.stderr


# -- the workspace: a Jupyter server with the extension installed --------------------------


def _installed_config() -> Path | None:
    for folder in jupyter_config_path():
        found = Path(folder) / "jupyter_server_config.d" / "loopml.json"
        if found.is_file():
            return found
    return None


@pytest.fixture
def workspace_server(platform, project, tmp_path):
    """``jupyter-server`` started as the hub's spawner starts a workspace: its environment has
    LOOPML_PROJECT/URL/TOKEN, and nothing enables the extension but the installed config."""
    assert _installed_config(), "loopml.json is not in any jupyter config dir: run `make install` (pip install -e .)"
    root, port, token = tmp_path / "project", free_port_block(1), uuid.uuid4().hex
    root.mkdir()
    env = {k: v for k, v in platform.env.items() if k not in ("PYTHONSTARTUP", "JPY_SESSION_NAME")}
    env.update(LOOPML_PROJECT=project, LOOPML_URL=platform.url, LOOPML_TOKEN=platform.alice_token,
               JUPYTER_CONFIG_DIR=str(tmp_path / "user-config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    argv = [str(Path(sys.executable).with_name("jupyter-server")), "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}", *(["--allow-root"] if os.geteuid() == 0 else [])]
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"token {token}"}, timeout=30)

    def up():
        """the Jupyter server"""
        assert server.poll() is None, (tmp_path / "server.log").read_text()
        try:
            return http.get("/api/status").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=60, every=0.2)
        yield root, http, tmp_path / "runtime"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        http.close()
        log.close()


def test_workspace_kernel_has_the_magics_and_submits_its_saved_notebook(workspace_server, platform, alice, project):
    root, http, runtime = workspace_server
    (root / "sub").mkdir()
    write(root / "sub" / "nb.ipynb", TRAIN)
    answer = http.post("/api/sessions", json={"path": "sub/nb.ipynb", "type": "notebook", "name": "nb.ipynb",
                                              "kernel": {"name": "python3"}})  # what JupyterLab sends
    assert answer.status_code == 201, answer.text
    connection = runtime / f"kernel-{answer.json()['kernel']['id']}.json"
    wait_for(connection.is_file, timeout=30)
    client = BlockingKernelClient()
    client.load_connection_file(str(connection))
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        kernel = Kernel(client)
        assert kernel.value("get_ipython().find_line_magic('loopml') is not None") is True
        assert kernel.value("get_ipython().find_cell_magic('loopml') is not None") is True
        environ = kernel.value("{k: __import__('os').environ.get(k) for k in ('LOOPML_PROJECT', 'MLFLOW_TRACKING_URI')}")
        assert environ == {"LOOPML_PROJECT": project, "MLFLOW_TRACKING_URI": platform.state()["urls"]["mlflow"]}
        ran = kernel.ok("p = %loopml submit --cpus 0.5 --wait\np")
        assert ran.widget and "submitting nb.ipynb as last saved" in ran.stdout
        job = alice.job(project, kernel.value("p.job_id"))
        assert (job.name, job.status, job.user) == ("nb.ipynb", JobStatus.SUCCEEDED, "alice")
        kernel.run("for _w in list(__import__('ipywidgets').Widget.widgets.values()): _w.close()")
    finally:
        client.stop_channels()
        http.delete(f"/api/sessions/{answer.json()['id']}")
    time.sleep(0.5)  # the session's kernel is shut down by the server before it stops

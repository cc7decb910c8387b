"""Issue 14, Show 1: user code of project A reaches nothing of project B nor the platform.

On the session's real platform (Ray, MLflow, the service), project B gets a finished job
with an MLflow run and a registered model ``B.iris`` deployed with captured predictions,
and a job that is still running. Then the attacks of :mod:`tests.security.attacks` run
from inside project A's user code:

- a job of A runs them all in one notebook (one job keeps the suite fast) and does A's
  own legitimate work: log and register models, read its run, use its own files;
- an endpoint replica of A runs them from the ``predict`` of a pyfunc model that job
  logged (started on the first call, polled by later ones: Serve's request limit is 30 s).

Each row must be ``blocked``; a failure names every row that leaked and what it reached,
then every difference of B's state (jobs, model versions and aliases, run and model
artifacts byte for byte, captured predictions) before and after the attacks.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from loopml.executor.models import JobStatus
from loopml.serving.service import app_name
from tests.integration.notebooks import SLOW, TRAIN_AND_LOG, notebook
from tests.security import attacks
from tests.security.victim import (
    artifact_path,
    b_state,
    diff,
    mlflow,
    model_files,
    platform_secrets,
    table,
    verdict,
    wait_captures,
    wait_status,
)

ATTACKS_SOURCE = Path(attacks.__file__).read_text()
B_MODEL, B_ENDPOINT, A_ENDPOINT = "iris", "ep-b", "ep-a"
B_RUNNING_S = 900.0  # B's second job runs through both tests; cancelled at teardown
REPLICA_RESULTS_S = 150  # the replica's attacks run in a thread; polled this long


@pytest.fixture(scope="module")
def project_b(platform, admin):
    """Project B (member bob): a finished training job, its model deployed with captured
    requests, and a job still running."""
    name = f"b-{uuid.uuid4().hex[:8]}"
    admin.create_project(name, members=["bob"])
    bob = platform.client(platform.bob_token)
    trained = bob.submit(name, TRAIN_AND_LOG, parameters={"model_name": B_MODEL})
    running = bob.submit(name, SLOW, parameters={"seconds": B_RUNNING_S}, resources={"cpus": 0.25})
    done = bob.wait(name, trained.id, timeout=180)
    assert done.status == JobStatus.SUCCEEDED, bob.logs(name, done.id)
    deployed = bob.deploy(name, f"{B_MODEL}@champion", B_ENDPOINT)
    headers = {"Authorization": f"Bearer {deployed.key}"}
    rows = {"dataframe_split": {"columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                                            "petal width (cm)"], "data": [[5.1, 3.5, 1.4, 0.2]]}}
    answers = [httpx.post(deployed.endpoint.url + "/invocations", json=rows, timeout=30,
                          headers={**headers, "x-request-id": f"b-{i}-{uuid.uuid4().hex[:6]}"}) for i in range(3)]
    assert all(a.status_code == 200 for a in answers), answers[-1].text
    assert wait_status(bob, name, running.id, {"RUNNING"}).status == JobStatus.RUNNING
    wait_captures(platform, name, 3)

    run = mlflow(platform, "/api/2.0/mlflow/runs/get", run_id=done.mlflow_run_id).json()["run"]
    source, model_root = model_files(platform, f"{name}.{B_MODEL}", 1)
    b = {"project": name, "done": done.id, "running": running.id, "run_id": done.mlflow_run_id,
         "exp_id": run["info"]["experiment_id"], "run_root": artifact_path(run["info"]["artifact_uri"]),
         "model_root": model_root, "model_source": source,
         "url": deployed.endpoint.url, "key": deployed.key, "rows": rows, "predictions": answers[0].json()}
    yield b
    bob.cancel(name, running.id)


def attack_context(platform, b: dict) -> dict:
    """What the attacker is assumed to know: every address and name, and (to recognise them,
    never to use them) the sha256 of each secret of the platform."""
    state, home = platform.state(), platform.home
    secrets = platform_secrets(home, platform.admin_token,
                               {platform.alice_token: "token of alice (the submitter)",
                                platform.bob_token: "token of bob"})
    return {
        "home": str(home), "gcs": state["urls"]["ray_address"], "dashboard": state["urls"]["ray"],
        "mlflow": state["urls"]["mlflow"], "api": platform.url.rstrip("/") + "/api/v1",
        "b_project": b["project"], "b_jobs": {"done": b["done"], "running": b["running"]}, "b_run_id": b["run_id"],
        "b_artifact": f"{b['run_root']}/notebook/output.ipynb", "b_model_artifact": f"{b['model_root']}/MLmodel",
        "b_model": f"{b['project']}.{B_MODEL}", "b_model_source": b["model_source"],
        "b_model_id": b["model_source"].removeprefix("models:/"), "b_endpoint": B_ENDPOINT,
        "b_app": app_name(b["project"], B_ENDPOINT), "b_route": f"/{b['project']}/{B_ENDPOINT}",
        "secret_hashes": {hashlib.sha256(s.encode()).hexdigest(): label for s, label in secrets.items()},
    }


SETUP = (
    "import json\n"
    "ctx = json.loads(ctx_json)\n"
    "SRC = {source!r}\n"
    "attacks = {{'__name__': 'attacks'}}\n"
    "exec(compile(SRC, 'attacks.py', 'exec'), attacks)"
)
# The model an endpoint replica of A serves: go=0 (at log time) answers "idle"; go=1 starts
# the attacks in a thread on the first call and answers "pending" until their JSON is ready.
ATTACKER_MODEL = (
    "import mlflow.pyfunc, pandas as pd, loopml\n"
    "class Attacker(mlflow.pyfunc.PythonModel):\n"
    "    def __init__(self, src, ctx):\n"
    "        self.src, self.ctx = src, ctx\n"
    "    def predict(self, context, model_input, params=None):\n"
    "        import json, threading\n"
    "        if int(model_input['go'].iloc[0]) == 0:\n"
    "            return ['idle'] * len(model_input)\n"
    "        if getattr(self, 'box', None) is None:\n"
    "            self.box = {}\n"
    "            def work():\n"
    "                try:\n"
    "                    ns = {'__name__': 'attacks'}\n"
    "                    exec(compile(self.src, 'attacks.py', 'exec'), ns)\n"
    "                    self.box['results'] = ns['run'](self.ctx)\n"
    "                except BaseException as exc:\n"
    "                    self.box['results'] = {'error_model': f'LEAKED?: the attacks broke: {exc!r}'}\n"
    "            threading.Thread(target=work, daemon=True).start()\n"
    "        done = self.box.get('results')\n"
    "        return [json.dumps(done) if done is not None else 'pending'] * len(model_input)\n"
    "def log_attacker():\n"
    "    idle = pd.DataFrame({'go': [0.0, 0.0, 0.0]})\n"
    "    return loopml.log_model(Attacker(SRC, {**ctx, 'legit': False}), 'attacker', idle)"
)
RUN = ("results = attacks['run']({**ctx, 'legit': True, 'log_pyfunc': log_attacker})\n"
       "print('RESULTS ' + json.dumps(results))")


@pytest.fixture(scope="module")
def project_a(platform, admin, project_b):
    """Project A (member alice) and the job that attacked B from its notebook: ``(name, job, results)``."""
    name = f"a-{uuid.uuid4().hex[:8]}"
    admin.create_project(name, members=["alice"])
    bob = platform.client(platform.bob_token)
    before = b_state(platform, bob, project_b)
    alice = platform.client()
    nb = notebook(SETUP.format(source=ATTACKS_SOURCE), ATTACKER_MODEL, RUN, parameters='ctx_json = "{}"')
    job = alice.submit(name, nb, parameters={"ctx_json": json.dumps(attack_context(platform, project_b))})
    job = alice.wait(name, job.id, timeout=300)
    printed = [o.get("text", "") for c in alice.output(name, job.id)["cells"] for o in c.get("outputs", [])]
    lines = [line for text in printed for line in text.splitlines() if line.startswith("RESULTS ")]
    assert job.status == JobStatus.SUCCEEDED and lines, (
        f"the attack job ended {job.status} without its table; log:\n{alice.logs(name, job.id)[-3000:]}")
    return {"name": name, "job": job, "results": json.loads(lines[-1][len("RESULTS "):]), "before": before}


def test_a_job_of_project_a_reaches_nothing_of_project_b(platform, project_a, project_b):
    bob = platform.client(platform.bob_token)
    results = project_a["results"]
    bad = verdict(results, legit=attacks.LEGIT_ROWS)
    bad += diff(project_a["before"], b_state(platform, bob, project_b))
    running = bob.job(project_b["project"], project_b["running"])
    if running.status != JobStatus.RUNNING:
        bad.append(f"B's running job {running.id} is now {running.status} ({running.message})")
    assert not bad, "from a job of A:\n" + "\n".join(bad) + "\n\nthe whole table:\n" + table(results)


def test_an_endpoint_replica_of_project_a_reaches_nothing_of_project_b(platform, project_a, project_b):
    alice, bob = platform.client(), platform.client(platform.bob_token)
    logged = project_a["results"].get("legit_log_pyfunc", "MISSING")
    assert logged.startswith("ok:"), f"the job of A could not log the attacking pyfunc model: {logged}"
    before = b_state(platform, bob, project_b)
    deployed = alice.deploy(project_a["name"], "attacker@champion", A_ENDPOINT)
    call = {"dataframe_split": {"columns": ["go"], "data": [[1.0]]}}
    deadline, answer = time.monotonic() + REPLICA_RESULTS_S, None
    while time.monotonic() < deadline:
        answer = httpx.post(deployed.endpoint.url + "/invocations", json=call, timeout=30,
                            headers={"Authorization": f"Bearer {deployed.key}"})
        assert answer.status_code in (200, 503), f"A's endpoint answered {answer.status_code}: {answer.text[:300]}"
        if answer.status_code == 200 and answer.json()["predictions"][0] != "pending":
            break
        time.sleep(2)
    else:
        pytest.fail(f"the replica's attacks gave no table within {REPLICA_RESULTS_S}s (last: {answer.text[:200]})")
    results = json.loads(answer.json()["predictions"][0])
    bad = verdict(results, legit=[])
    bad += diff(before, b_state(platform, bob, project_b))
    assert not bad, "from an endpoint replica of A:\n" + "\n".join(bad) + "\n\nthe whole table:\n" + table(results)


def test_b_endpoint_still_answers_its_own_model(project_a, project_b):
    """After the attacks (serve.run over B's app, ray.kill of its replica) B's endpoint
    answers with B's model (a restarting replica is given 30 s)."""
    deadline, answer = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        answer = httpx.post(project_b["url"] + "/invocations", json=project_b["rows"], timeout=30,
                            headers={"Authorization": f"Bearer {project_b['key']}"})
        if answer.status_code == 200 and answer.json() == project_b["predictions"]:
            return
        time.sleep(1)
    pytest.fail(f"B's endpoint answers {answer.status_code} {answer.text[:200]!r}, "
                f"not B's model's {project_b['predictions']}")

"""A model whose format runs code is served from a sandbox beside its replica.

The project's job logs a pyfunc ``PythonModel`` (cloudpickle: it runs code when loaded)
that, for a row with ``a == -1``, reports what it can see and reach from where it runs; for
any other row it answers ``a + b``. Deployed on an endpoint, it must see no Ray or MLflow
credential, only its own processes, no data dir, fail to join Ray, and still answer."""

from __future__ import annotations

import json

import httpx
import pytest

from loopml.executor.models import JobStatus
from tests.integration.notebooks import notebook

PROBE = notebook(
    "import json, os, subprocess, sys\n"
    "import mlflow.pyfunc\n"
    "import pandas as pd\n"
    "import loopml\n"
    "\n"
    "class Probe(mlflow.pyfunc.PythonModel):\n"
    "    def __init__(self, ray_address, data_dir):\n"
    "        self.ray_address, self.data_dir = ray_address, data_dir\n"
    "\n"
    "    def sees(self):\n"
    "        procs = {}\n"
    "        for pid in (p for p in os.listdir('/proc') if p.isdigit()):\n"
    "            try:\n"
    "                procs[pid] = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()[:300]\n"
    "            except OSError:\n"
    "                pass\n"
    "        join = ('import ray; ray.init(address=%r, log_to_driver=False); '\n"
    "                'print(\"JOINED\", ray.cluster_resources())' % self.ray_address)\n"
    "        try:\n"
    "            ray = subprocess.run([sys.executable, '-c', join], capture_output=True, text=True, timeout=12,\n"
    "                                 env={**os.environ, 'RAY_gcs_server_port_wait_time_s': '5'})\n"
    "            ray = {'rc': ray.returncode, 'out': (ray.stdout + ray.stderr)[-400:]}\n"
    "        except subprocess.TimeoutExpired:\n"
    "            ray = {'rc': 'timeout', 'out': ''}\n"
    "        try:\n"
    "            data = sorted(os.listdir(self.data_dir))\n"
    "        except OSError as exc:\n"
    "            data = type(exc).__name__\n"
    "        return {'env': sorted(os.environ), 'procs': procs, 'ray': ray, 'data_dir': data}\n"
    "\n"
    "    def predict(self, context, model_input, params=None):\n"
    "        return [json.dumps(self.sees() if a == -1 else {'sum': a + b})\n"
    "                for a, b in zip(model_input['a'], model_input['b'])]\n"
    "\n"
    "X = pd.DataFrame({'a': [1.0, 2.0, 3.0], 'b': [10.0, 20.0, 30.0]})\n"
    "version = loopml.log_model(Probe(ray_address, data_dir), 'probe', X)\n"
    "print(json.dumps({'version': version.version}))",
    parameters='ray_address = ""\ndata_dir = ""',
)


@pytest.fixture(scope="module")
def probe(platform, admin):
    """Endpoint ``probe`` of a fresh project serving the probe model, logged by the project's job."""
    project = "sandboxed-model"
    admin.create_project(project, members=["alice"])
    alice = platform.client()
    parameters = {"ray_address": platform.state()["urls"]["ray_address"], "data_dir": str(platform.home)}
    job = alice.wait(project, alice.submit(project, PROBE, parameters=parameters).id, timeout=240)
    assert job.status == JobStatus.SUCCEEDED, job
    deployed = alice.deploy(project, "probe@champion", "probe")
    return {"url": deployed.endpoint.url, "key": deployed.key}


def score(probe: dict, rows: list[list[float]]) -> httpx.Response:
    return httpx.post(probe["url"] + "/invocations", timeout=60, headers={"Authorization": f"Bearer {probe['key']}"},
                      json={"dataframe_split": {"columns": ["a", "b"], "data": rows}})


def test_the_sandboxed_model_answers_like_the_model(probe):
    answer = score(probe, [[1.0, 2.0], [5.0, 0.5]])
    assert answer.status_code == 200, answer.text
    assert [json.loads(p) for p in answer.json()["predictions"]] == [{"sum": 3.0}, {"sum": 5.5}]


def test_the_model_holds_no_key_sees_no_other_process_and_cannot_join_ray(probe, platform):
    answer = score(probe, [[-1.0, 0.0]])
    assert answer.status_code == 200, answer.text
    seen = json.loads(answer.json()["predictions"][0])
    leaked = [k for k in seen["env"] if k.startswith(("RAY", "MLFLOW", "LOOPML")) or "TOKEN" in k or "PASSWORD" in k]
    assert leaked == [], seen["env"]
    assert all("bwrap" in cmd or "model_host" in cmd for cmd in seen["procs"].values()), \
        seen["procs"]  # its sandbox's own processes: no replica, no raylet, no platform
    assert seen["ray"]["rc"] != 0 and "JOINED" not in seen["ray"]["out"], seen["ray"]
    assert seen["data_dir"] in ("FileNotFoundError", "PermissionError", []), seen["data_dir"]
    assert (platform.home / "client.json").exists()  # the data dir is there, only not for the model


def test_a_schema_error_stays_a_4xx_through_the_sandbox(probe):
    answer = httpx.post(probe["url"] + "/invocations", timeout=60, headers={"Authorization": f"Bearer {probe['key']}"},
                        json={"dataframe_split": {"columns": ["a", "b"], "data": [["x", 1.0]]}})
    assert answer.status_code == 422 and "column 'a'" in answer.json()["message"], answer.text

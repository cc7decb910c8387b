"""A job's kernel runs in its sandbox: checked from inside, by a notebook, on the real platform."""

from __future__ import annotations

import json
import os
import uuid

import psutil
from mlflow.tracking import MlflowClient

from loopml.executor.models import JobStatus
from tests.integration.notebooks import TRAIN_AND_LOG, notebook
from tests.integration.processes import wait_for

PROBE = notebook(
    "import json, os, subprocess, sys\n"
    "seen = {}\n"
    "seen['processes'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
    "seen['ray_env'] = sorted(k for k in os.environ if k.startswith('RAY_'))\n"
    "seen['pid1_ray_env'] = 'RAY_' in open('/proc/1/environ').read()\n"
    "def readable(path):\n"
    "    try:\n"
    "        with open(path, 'rb') as f:\n"
    "            f.read(1)\n"
    "        return True\n"
    "    except OSError:\n"
    "        return False\n"
    "seen['data_dir'] = os.path.exists(home) and bool(os.listdir(home))\n"
    "seen['secrets'] = readable(os.path.join(home, 'secrets.json'))\n"
    "seen['ray_token'] = readable(os.path.join(home, 'ray', 'auth_token'))\n"
    "seen['other_environ'] = readable(f'/proc/{other_pid}/environ')\n"
    "seen['host_tmp_file'] = os.path.exists(host_tmp_file)\n"
    "bound = {p.split('/')[2] for p in (sys.prefix, sys.base_prefix) if p.startswith('/tmp/')}  # the Python env\n"
    "seen['tmp'] = sorted(set(os.listdir('/tmp')) - {os.path.basename(os.getcwd()), 'jupyter-runtime'} - bound)\n"
    "seen['cwd_is_home'] = os.getcwd() == os.environ['HOME']\n"
    "seen['has_job_token'] = bool(os.environ.get('LOOPML_TOKEN'))\n"
    "ray_init = ('import ray, sys\\n'\n"
    "            'ray.init(address=sys.argv[1], namespace=\"loopml\", log_to_driver=False)\\n'\n"
    "            'print(\"CONNECTED\", ray.get_actor(\"loopml-dispatcher\", namespace=\"loopml\"))')\n"
    "try:\n"
    "    # a driver with a valid token connects in a few seconds; a refused one retries for a minute\n"
    "    driver = subprocess.run([sys.executable, '-c', ray_init, ray_address], capture_output=True, text=True,\n"
    "                            timeout=12, env={**os.environ, 'RAY_gcs_server_port_wait_time_s': '5'})\n"
    "    seen['ray_connected'] = driver.returncode == 0 or 'CONNECTED' in driver.stdout\n"
    "except subprocess.TimeoutExpired:\n"
    "    seen['ray_connected'] = False\n"
    "import urllib.error, urllib.request\n"
    "try:\n"
    "    urllib.request.urlopen(dashboard + '/api/jobs/', timeout=30)\n"
    "    seen['dashboard'] = 'answered'\n"
    "except urllib.error.HTTPError as e:\n"
    "    seen['dashboard'] = e.code\n"
    "os.system(f\"(python -c 'import time; time.sleep(1000)' {marker} &)\")\n"
    "print('SEEN', json.dumps(seen))",
    parameters='home = ""\nother_pid = 0\nhost_tmp_file = ""\nray_address = ""\ndashboard = ""\nmarker = ""',
)


def _with_marker(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_a_jobs_kernel_sees_only_its_sandbox_and_leaves_nothing_running(platform, alice, project, tmp_path):
    marker = f"loopml-sandbox-left-{uuid.uuid4().hex}"
    host_tmp_file = f"/tmp/loopml-sandbox-probe-{uuid.uuid4().hex}"
    with open(host_tmp_file, "w") as f:
        f.write("host")
    try:
        job = alice.wait(project, alice.submit(project, PROBE, parameters={
            "home": str(platform.home), "other_pid": os.getpid(), "host_tmp_file": host_tmp_file,
            "ray_address": platform.state()["urls"]["ray_address"], "dashboard": platform.state()["urls"]["ray"],
            "marker": marker}).id, timeout=240)
    finally:
        os.unlink(host_tmp_file)
    assert job.status == JobStatus.SUCCEEDED, (job.error, alice.logs(project, job.id)[-2000:])
    printed = [o.get("text", "") for c in alice.output(project, job.id)["cells"] for o in c.get("outputs", [])]
    seen = json.loads(next(line for text in printed for line in text.splitlines() if line.startswith("SEEN "))[5:])

    assert len(seen["processes"]) <= 4, seen["processes"]  # bwrap's init, the kernel, the cell's children
    assert seen["ray_env"] == [] and not seen["pid1_ray_env"]
    assert not seen["data_dir"] and not seen["secrets"] and not seen["ray_token"]
    assert not seen["other_environ"]
    assert not seen["host_tmp_file"] and seen["tmp"] == []
    assert seen["cwd_is_home"] and seen["has_job_token"]  # its own credentials it does get
    assert not seen["ray_connected"] and seen["dashboard"] == 401  # no Ray driver, no Ray job submission
    # the background process the job started died with its sandbox, when the attempt ended
    wait_for(lambda: not _with_marker(marker), timeout=10)


def test_a_sandboxed_job_still_logs_and_registers_its_model_in_mlflow(platform, alice, project):
    job = alice.wait(project, alice.submit(project, TRAIN_AND_LOG, parameters={"model_name": "iris"}).id,
                     timeout=240)
    assert job.status == JobStatus.SUCCEEDED, (job.error, alice.logs(project, job.id)[-2000:])
    run = MlflowClient(platform.state()["urls"]["mlflow"]).get_run(job.mlflow_run_id)
    assert run.data.metrics["train_accuracy"] > 0.9
    printed = "".join(o.get("text", "") for c in alice.output(project, job.id)["cells"] for o in c.get("outputs", []))
    assert '"version": 1' in printed

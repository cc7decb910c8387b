"""Values and files out of a job and into the next, with no shared disk: input files reach the
job's working dir, ``loopml.set_output`` values reach the job, declared output files become
artifacts of its MLflow run, and a second job given those bytes reads them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from loopml.errors import InvalidInput
from loopml.registry.tracking import JobTracking
from tests.integration.notebooks import notebook

WEIGHTS = bytes(range(256)) * 4

PRODUCER = notebook(
    "from pathlib import Path\nimport loopml\n"
    "rows = Path('data/train.csv').read_text().splitlines()\n"
    "assert rows == ['a,b', '1,2'], rows",
    "loopml.set_output('accuracy', 0.93)\n"
    "Path('model').mkdir()\n"
    "Path('model/weights.bin').write_bytes(bytes(range(256)) * 4)",
)

CONSUMER = notebook(
    "import hashlib\nfrom pathlib import Path\nimport loopml\n"
    "loopml.set_output('sha256', hashlib.sha256(Path('model/weights.bin').read_bytes()).hexdigest())",
)


def test_outputs_and_files_travel_from_one_job_to_the_next(platform, alice, project, tmp_path):
    first = alice.submit(project, PRODUCER, files={"data/train.csv": b"a,b\n1,2\n"},
                         output_files=["model/weights.bin"])
    first = alice.wait(project, first.id, timeout=180)
    assert first.status == "SUCCEEDED", first.message
    assert first.outputs == {"accuracy": 0.93}
    assert (first.input_files, first.output_files) == (["data/train.csv"], ["model/weights.bin"])

    uri = platform.state()["urls"]["mlflow"]
    mlflow = MlflowClient(tracking_uri=uri)
    local = mlflow.download_artifacts(first.mlflow_run_id, "outputs/model/weights.bin", str(tmp_path))
    assert Path(local).read_bytes() == WEIGHTS
    inputs = mlflow.download_artifacts(first.mlflow_run_id, "inputs/data/train.csv", str(tmp_path))
    assert Path(inputs).read_bytes() == b"a,b\n1,2\n"

    files = JobTracking(uri).download_files(first.mlflow_run_id, ["model/weights.bin"])  # what a pipeline does
    assert files == {"model/weights.bin": WEIGHTS}
    second = alice.wait(project, alice.submit(project, CONSUMER, files=files).id, timeout=180)
    assert second.status == "SUCCEEDED", second.message
    assert second.outputs == {"sha256": hashlib.sha256(WEIGHTS).hexdigest()}

    shown = platform.cli("jobs", "show", first.id, "-P", project)
    assert '"accuracy": 0.93' in shown.stdout and "model/weights.bin" in shown.stdout


@pytest.mark.parametrize("cell, says", [
    ("print('forgot to write it')", "did not write its declared output file(s) 'result.txt'"),
    ("import os\nos.symlink('/etc/hostname', 'result.txt')", "'result.txt' is a link that leads outside"),
    ("import os\nos.makedirs('.loopml', exist_ok=True)\nopen('.loopml/outputs.json', 'w').write('{broken')",
     "is not valid JSON"),
], ids=["missing", "link-out", "broken-outputs"])
def test_outputs_a_job_cannot_return_fail_it_saying_why(alice, project, cell, says):
    job = alice.submit(project, notebook(cell), output_files=["result.txt"])
    job = alice.wait(project, job.id, timeout=180)
    assert job.status == "FAILED"
    assert job.error.reason == "outputs" and says in job.message, job.message


def test_a_path_out_of_the_working_dir_is_refused_before_anything_runs(alice, project):
    with pytest.raises(InvalidInput, match="'..'"):
        alice.submit(project, CONSUMER, files={"../escape.txt": b"x"})
    with pytest.raises(InvalidInput, match="absolute"):
        alice.submit(project, CONSUMER, output_files=["/etc/passwd"])
    assert alice.jobs(project) == []

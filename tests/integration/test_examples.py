"""Every notebook in ``examples/`` runs unmodified, as a job on the real platform and
interactively (papermill in a kernel with a workspace's environment), and succeeds with small
parameters; and is committed clean: outputs cleared, parameters tagged."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import papermill
import pytest

from loopml.executor.models import JobStatus

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(path.name for path in EXAMPLES.glob("*.ipynb"))

# Small parameters per notebook (interactively the kernel sees examples/ by absolute path).
PARAMETERS = {
    "train_iris.ipynb": {"C": 0.5},
    "loop.ipynb": {"train_notebook": str(EXAMPLES / "train_iris.ipynb"), "requests": 30},
}
# A job sees only its own working dir (its sandbox), not examples/: a notebook that submits a
# sibling notebook gets the sibling written next to it by a first cell, as shipping it with the
# job would, and keeps its default (relative) path to it.
SIBLINGS = {"loop.ipynb": "train_iris.ipynb"}


def as_job(name: str, folder: Path) -> tuple[Path, dict]:
    """The notebook to submit for example ``name`` and its parameters."""
    parameters = dict(PARAMETERS[name])
    sibling = SIBLINGS.get(name)
    if sibling is None:
        return EXAMPLES / name, parameters
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    text = (EXAMPLES / sibling).read_text()
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"open({sibling!r}, 'w').write({text!r})"))
    parameters.pop("train_notebook")
    path = folder / name
    nbformat.write(nb, path)
    return path, parameters


def test_every_example_is_listed_here():
    assert NOTEBOOKS and sorted(PARAMETERS) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_example_is_committed_clean(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1


def _check_outcome(alice, project: str, name: str) -> None:
    model = alice.model(project, "iris")
    if name == "train_iris.ipynb":
        assert model.aliases == {"champion": 1} and 0.8 < model.versions[0].metrics["accuracy"] <= 1
    else:  # two training jobs; the requeued one's challenger was promoted and is served
        assert model.aliases["champion"] == 2 and alice.endpoint(project, "iris").version == 2


@pytest.fixture
def cleanup(alice, project):
    yield
    for endpoint in alice.endpoints(project):
        alice.delete_endpoint(project, endpoint.name)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_example_runs_as_a_job(alice, project, cleanup, name, tmp_path):
    notebook, parameters = as_job(name, tmp_path)
    job = alice.submit(project, notebook, parameters=parameters, resources={"cpus": 0.5})
    job = alice.wait(project, job.id, timeout=480)
    assert job.status is JobStatus.SUCCEEDED, (job.error, alice.logs(project, job.id)[-3000:])
    if name == "train_iris.ipynb":
        assert [(m.name, m.version) for m in job.models] == [(f"{project}.iris", 1)]
    _check_outcome(alice, project, name)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_example_runs_interactively(platform, alice, project, cleanup, name, tmp_path, monkeypatch):
    """As in a project workspace: the kernel has LOOPML_PROJECT/URL/TOKEN and the platform's MLflow."""
    for variable in [v for v in os.environ if v.startswith("LOOPML_")]:
        monkeypatch.delenv(variable)
    for variable, value in {"LOOPML_URL": platform.url, "LOOPML_TOKEN": platform.alice_token,
                            "LOOPML_PROJECT": project, "LOOPML_HOME": str(platform.home),
                            "MLFLOW_TRACKING_URI": platform.state()["urls"]["mlflow"]}.items():
        monkeypatch.setenv(variable, value)
    papermill.execute_notebook(str(EXAMPLES / name), str(tmp_path / name), parameters=PARAMETERS[name],
                               cwd=str(tmp_path), kernel_name="python3", progress_bar=False)
    _check_outcome(alice, project, name)

"""The typed contract of the job backend (attempt spec, options, reports, records) and the
``job_backend`` setting that picks the backend by entry point name."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from ray import cloudpickle

from loopml.errors import InvalidInput
from loopml.executor.attempts import AttemptOptions, AttemptRecord, AttemptReport, AttemptSpec, Updates, key
from loopml.executor.backend import JobBackend, RayJobBackend, job_backend_class
from loopml.executor.models import JobFailure, Progress, Resources
from loopml.settings import load_settings

SPEC = AttemptSpec(job_id="j1", attempt=2, notebook='{"cells": []}', parameters={"lr": 0.1}, kernel_name="python3",
                   env={"LOOPML_JOB_ID": "j1"}, warm_kernels=False, isolation="off", hide=["/data"])
RECORD = AttemptRecord(job_id="j1", attempt=2, state="failed", log="1\n", output="{}", pid=7, node="n1",
                       progress=Progress(cells_done=1, cells_total=2), started_at="2025-01-01T10:00:00+00:00",
                       error=JobFailure(reason="cell_error", cell_index=1, ename="ValueError", evalue="bad"),
                       seq=3, log_seq=2, output_seq=3)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOPML_") or name.upper() == "DATA_DIR":
            monkeypatch.delenv(name)


# ---- the models ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [SPEC, AttemptOptions(num_cpus=2, memory=2**20, resources={"node2": 1}), AttemptReport(state="running", pid=3),
     RECORD, Updates(seq=3, records=[RECORD])],
    ids=["spec", "options", "report", "record", "updates"],
)
@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)],
                         ids=["pickle", "ray-cloudpickle"])
def test_the_models_cross_ray_unchanged(value, dumps, loads) -> None:
    restored = loads(dumps(value))

    assert type(restored) is type(value) and restored == value


def test_a_report_keeps_which_fields_it_sets_through_pickling() -> None:
    report = pickle.loads(pickle.dumps(AttemptReport(message=None, log_append="x")))

    assert report.changes() == {"message": None, "log_append": "x"}


@pytest.mark.parametrize("model, fields", [
    (AttemptRecord, {"job_id": "j", "attempt": 1, "state": "done"}),
    (AttemptReport, {"state": "finished"}),
], ids=["record", "report"])
def test_a_state_outside_the_contract_is_refused(model, fields) -> None:
    with pytest.raises(ValidationError, match="state"):
        model(**fields)


def test_a_record_refuses_a_wrong_state_assigned_later() -> None:
    record = AttemptRecord(job_id="j", attempt=1)

    with pytest.raises(ValidationError, match="state"):
        record.state = "done"


def test_keys_name_the_job_and_attempt() -> None:
    assert key("j1", 2) == SPEC.key == RECORD.key == "j1:2"
    assert RECORD.finished and not AttemptRecord(job_id="j", attempt=1, state="running").finished


def test_options_are_the_resources_in_rays_terms() -> None:
    options = AttemptOptions.of(Resources(cpus=2, gpus=0.5, memory_mb=512, custom={"node2": 1}))

    assert options.ray_options() == {"num_cpus": 2, "num_gpus": 0.5, "memory": 512 * 2**20, "resources": {"node2": 1}}
    assert options.request() == {"CPU": 2, "GPU": 0.5, "memory": 512 * 2**20, "node2": 1}
    assert AttemptOptions.of(Resources()).ray_options() == {"num_cpus": 1, "num_gpus": 0}


# ---- the backend by configuration ------------------------------------------------------


def test_the_ray_backend_is_found_by_name() -> None:
    assert job_backend_class("ray") is RayJobBackend


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as refused:
        job_backend_class("slurm")

    assert refused.value.message == "No job backend named 'slurm'; known job backends: ray"
    assert refused.value.details == {"field": "job_backend"}


def test_the_ray_backend_is_built_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, ray_address="10.0.0.1:6380", kernel_name="k", warm_kernels=False,
                             job_isolation="off")

    backend = job_backend_class(settings.job_backend).from_settings(settings)

    assert isinstance(backend, RayJobBackend) and backend.dispatcher is None  # nothing connects before start()
    assert (backend.address, backend.kernel_name, backend.warm_kernels, backend.isolation) == (
        "10.0.0.1:6380", "k", False, "off")
    assert backend.hide == (str(tmp_path.resolve()),)


def test_a_backend_without_options_is_built_by_the_base_class(tmp_path: Path) -> None:
    assert type(JobBackend.from_settings(load_settings(data_dir=tmp_path))) is JobBackend


def test_a_settings_file_naming_an_unknown_backend_is_one_readable_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('job_backend = "slurm"\n')

    with pytest.raises(InvalidInput) as refused:
        load_settings(data_dir=tmp_path)

    assert "job_backend" in refused.value.message and "\n" not in refused.value.message
    assert "No job backend named 'slurm'; known job backends: ray" in refused.value.message


def test_loopml_up_refuses_an_unknown_backend_before_starting_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.cli import main

    started = []
    fake = types.SimpleNamespace(up=lambda settings, **_: started.append(settings))
    monkeypatch.setitem(sys.modules, "loopml.launcher", fake)
    monkeypatch.setattr("loopml.launcher", fake, raising=False)
    (tmp_path / "config.toml").write_text('job_backend = "slurm"\n')

    result = CliRunner().invoke(main, ["up", "--data-dir", str(tmp_path)])

    assert result.exit_code != 0 and started == []
    assert "No job backend named 'slurm'; known job backends: ray" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_checking_the_setting_does_not_import_ray(tmp_path: Path) -> None:
    code = ("import sys; from loopml.settings import load_settings; "
            f"assert load_settings(data_dir={str(tmp_path)!r}).job_backend == 'ray'; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

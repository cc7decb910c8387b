"""Values and files in and out of a job through its working dir: ``loopml.set_output`` in the
kernel, and what the runner writes before and reads after the notebook (never trusting it)."""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError
from ray import cloudpickle

import loopml
from loopml.errors import InvalidInput
from loopml.executor import workdir
from loopml.executor.attempts import AttemptRecord, AttemptReport, AttemptSpec
from loopml.executor.models import JobSubmit
from loopml.executor.runner import _collect
from loopml.executor.workdir import (
    MAX_OUTPUTS_BYTES,
    OUTPUTS_FILE,
    WorkdirError,
    check_path,
    read_files,
    read_outputs,
    write_inputs,
)


@pytest.fixture(autouse=True)
def fresh_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test is a new kernel: no outputs set, no warning given, not in a job."""
    monkeypatch.setattr(workdir, "_outputs", {})
    monkeypatch.setattr(workdir, "_warned_interactive", False)
    monkeypatch.delenv("LOOPML_JOB_ID", raising=False)
    monkeypatch.delenv(workdir.WORKDIR_ENV, raising=False)


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This kernel runs a job whose working dir is ``tmp_path/work`` (the runner says so)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("LOOPML_JOB_ID", "j1")
    monkeypatch.setenv(workdir.WORKDIR_ENV, str(work))
    return work


# ---- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path, normalised", [
    ("model.pkl", "model.pkl"),
    ("data/train.parquet", "data/train.parquet"),
    ("./data//x.csv", "data/x.csv"),
    (".hidden", ".hidden"),
    ("a/.loopml/b", "a/.loopml/b"),
], ids=["file", "nested", "dot-and-double-slash", "dotfile", "reserved-name-deeper"])
def test_a_relative_path_is_accepted_normalised(path: str, normalised: str) -> None:
    assert check_path(path) == normalised


@pytest.mark.parametrize("path, says", [
    ("", "invalid path"),
    ("   ", "invalid path"),
    ("/etc/passwd", "absolute"),
    ("../secret", "'..'"),
    ("data/../../x", "'..'"),
    ("data\\x.csv", "'\\'"),
    ("a\0b", "NUL"),
    (".", "the working dir itself"),
    (".loopml/outputs.json", "loopml keeps for itself"),
    ("x" * 1001, "longer than 1000"),
], ids=["empty", "blank", "absolute", "parent", "parent-deeper", "backslash", "nul", "dot", "reserved", "long"])
def test_a_path_leaving_the_working_dir_is_refused_saying_why(path: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        check_path(path)


# ---- loopml.set_output -----------------------------------------------------------------------


def test_set_output_in_a_job_rewrites_the_outputs_file_whole(job: Path) -> None:
    loopml.set_output("accuracy", 0.93)
    loopml.set_output("best", {"C": 0.1, "layers": (1, 2)})
    loopml.set_output("accuracy", 0.95)

    assert json.loads((job / OUTPUTS_FILE).read_text()) == {"accuracy": 0.95, "best": {"C": 0.1, "layers": [1, 2]}}
    assert loopml.outputs() == {"accuracy": 0.95, "best": {"C": 0.1, "layers": [1, 2]}}
    assert os.listdir(job / ".loopml") == ["outputs.json"]  # no partial file left beside it
    assert read_outputs(str(job)) == loopml.outputs()


def test_set_output_writes_to_the_working_dir_even_after_the_notebook_changed_directory(
        job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loopml.set_output("n", 1)
    assert read_outputs(str(job)) == {"n": 1}


def test_set_output_interactively_keeps_outputs_in_the_kernel_and_warns_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="outside a job"):
        loopml.set_output("accuracy", 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loopml.set_output("loss", 0.1)

    assert loopml.outputs() == {"accuracy": 0.9, "loss": 0.1}
    assert not (tmp_path / ".loopml").exists()


@pytest.mark.parametrize("name", ["", "1st", "has-dash", "has.dot", "spa ce", "x" * 101, None, 3],
                         ids=["empty", "digit-first", "dash", "dot", "space", "long", "none", "int"])
def test_set_output_refuses_a_name_an_expression_cannot_read(job: Path, name) -> None:
    with pytest.raises(InvalidInput, match="invalid output name") as raised:
        loopml.set_output(name, 1)
    assert raised.value.details["field"] == "name"
    assert not (job / OUTPUTS_FILE).exists()


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), float("inf"), b"bytes", {"x": [object()]}],
                         ids=["object", "set", "nan", "inf", "bytes", "nested-object"])
def test_set_output_refuses_a_value_that_is_not_json(job: Path, value) -> None:
    loopml.set_output("kept", 1)
    with pytest.raises(InvalidInput, match="not JSON-serialisable"):
        loopml.set_output("bad", value)
    assert read_outputs(str(job)) == {"kept": 1}


def test_set_output_past_the_cap_raises_naming_it_and_keeps_what_was_set(job: Path) -> None:
    loopml.set_output("small", "x")
    with pytest.raises(InvalidInput, match="64 KiB") as raised:
        loopml.set_output("big", "y" * MAX_OUTPUTS_BYTES)
    assert raised.value.details["limit"] == MAX_OUTPUTS_BYTES
    assert loopml.outputs() == read_outputs(str(job)) == {"small": "x"}
    loopml.set_output("fits", "z" * (MAX_OUTPUTS_BYTES - 100))  # the cap is on the whole, as JSON


# ---- the runner: input files ------------------------------------------------------------------


def test_input_files_are_written_at_their_paths(tmp_path: Path) -> None:
    write_inputs(str(tmp_path), {"data/train.csv": b"a,b\n1,2\n", "config.json": b"{}"})
    assert (tmp_path / "data" / "train.csv").read_bytes() == b"a,b\n1,2\n"
    assert (tmp_path / "config.json").read_bytes() == b"{}"


def test_an_input_file_never_replaces_a_file_of_the_working_dir(tmp_path: Path) -> None:
    (tmp_path / "kernel.json").write_text("{}")
    with pytest.raises(WorkdirError, match="'kernel.json' clashes"):
        write_inputs(str(tmp_path), {"kernel.json": b"mine"})
    assert (tmp_path / "kernel.json").read_text() == "{}"


def test_an_input_file_under_a_link_leading_out_is_refused(tmp_path: Path) -> None:
    outside, work = tmp_path / "outside", tmp_path / "work"
    outside.mkdir(), work.mkdir()
    (work / "data").symlink_to(outside)
    with pytest.raises(WorkdirError, match="leads outside"):
        write_inputs(str(work), {"data/x.csv": b"1"})
    assert list(outside.iterdir()) == []


# ---- the runner: outputs and output files --------------------------------------------------


def write(work: Path, path: str, data: bytes | str) -> Path:
    target = work / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode() if isinstance(data, str) else data)
    return target


def test_no_outputs_file_is_no_outputs(tmp_path: Path) -> None:
    assert read_outputs(str(tmp_path)) == {}


@pytest.mark.parametrize("content, says", [
    ("{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    ("[1, 2]", "holds a list"),
    ('{"bad-name": 1}', "invalid output name"),
    ("{" + '"a":"' + "x" * MAX_OUTPUTS_BYTES + '"}', "64 KiB"),
], ids=["not-json", "not-utf8", "list", "bad-name", "too-large"])
def test_a_broken_outputs_file_is_a_clear_error(tmp_path: Path, content, says: str) -> None:
    write(tmp_path, OUTPUTS_FILE, content)
    with pytest.raises(WorkdirError, match=says):
        read_outputs(str(tmp_path))


def test_an_outputs_file_that_links_out_of_the_working_dir_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    secret = write(tmp_path, "secret.json", '{"stolen": 1}')
    (work / ".loopml").mkdir(parents=True)
    (work / OUTPUTS_FILE).symlink_to(secret)
    with pytest.raises(WorkdirError, match="leads outside"):
        read_outputs(str(work))


def test_declared_files_are_read_and_missing_ones_named(tmp_path: Path) -> None:
    write(tmp_path, "model.pkl", b"\x00model")
    write(tmp_path, "data/train.parquet", b"PAR1")
    found, missing = read_files(str(tmp_path), ["model.pkl", "data//train.parquet", "report.html"], 2**20)
    assert found == {"model.pkl": b"\x00model", "data/train.parquet": b"PAR1"}
    assert missing == ["report.html"]


def test_a_link_inside_the_working_dir_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "real.txt", "same")
    (tmp_path / "alias.txt").symlink_to(tmp_path / "real.txt")
    assert read_files(str(tmp_path), ["alias.txt"], 100) == ({"alias.txt": b"same"}, [])


@pytest.mark.parametrize("link_to", ["/etc/hostname", "../outside.txt", "/nonexistent/file"],
                         ids=["absolute", "relative", "dangling-outside"])
def test_a_declared_file_that_links_out_of_the_working_dir_is_refused(tmp_path: Path, link_to: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write(tmp_path, "outside.txt", "secret")
    (work / "model.pkl").symlink_to(link_to)
    with pytest.raises(WorkdirError, match="'model.pkl' is a link that leads outside"):
        read_files(str(work), ["model.pkl"], 2**20)


def test_a_declared_file_under_a_folder_that_links_out_is_refused(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    write(outside, "x.csv", "secret")
    (work / "data").symlink_to(outside)
    with pytest.raises(WorkdirError, match="leads outside"):
        read_files(str(work), ["data/x.csv"], 2**20)


def test_a_declared_folder_or_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    for path in ("folder", "pipe"):
        with pytest.raises(WorkdirError, match="not a regular file"):
            read_files(str(tmp_path), [path], 2**20)


def test_declared_files_over_the_cap_are_refused_naming_it(tmp_path: Path) -> None:
    write(tmp_path, "a.bin", b"x" * 600)
    write(tmp_path, "b.bin", b"x" * 600)
    assert read_files(str(tmp_path), ["a.bin"], 1024)[0] == {"a.bin": b"x" * 600}
    with pytest.raises(WorkdirError, match=r"'b.bin' does not fit: .*1 KiB in all \(max_job_files_mb\)"):
        read_files(str(tmp_path), ["a.bin", "b.bin"], 1024)


def spec(**fields) -> AttemptSpec:
    return AttemptSpec(job_id="j1", attempt=1, notebook="{}", kernel_name="python3", **fields)


def test_a_succeeded_notebook_that_did_not_write_a_declared_file_fails_naming_it(tmp_path: Path) -> None:
    write(tmp_path, "model.pkl", b"m")
    write(tmp_path, OUTPUTS_FILE, '{"accuracy": 0.9}')
    outputs, files, problem = _collect(spec(output_files=["model.pkl", "metrics.json"]), str(tmp_path), True)
    assert (outputs, files) == ({"accuracy": 0.9}, {"model.pkl": b"m"})
    assert problem == "the notebook did not write its declared output file(s) 'metrics.json' (output_files)"


def test_a_failed_notebook_returns_what_it_wrote_and_no_complaint_of_what_it_did_not(tmp_path: Path) -> None:
    write(tmp_path, "model.pkl", b"m")
    assert _collect(spec(output_files=["model.pkl", "metrics.json"]), str(tmp_path), False) == (
        {}, {"model.pkl": b"m"}, None)


def test_a_broken_outputs_file_and_an_escaping_link_are_both_reported(tmp_path: Path) -> None:
    write(tmp_path, OUTPUTS_FILE, "{broken")
    (tmp_path / "model.pkl").symlink_to("/etc/hostname")
    outputs, files, problem = _collect(spec(output_files=["model.pkl"]), str(tmp_path), True)
    assert (outputs, files) == ({}, {})
    assert "outputs file .loopml/outputs.json (written by loopml.set_output) is not valid JSON" in problem
    assert "output file 'model.pkl' is a link that leads outside the job's working dir" in problem


# ---- the contract's new fields ------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    spec(files={"data/train.csv": b"a,b\n", "w.bin": bytes(range(256))}, output_files=["model.pkl"],
         max_files_bytes=2**20),
    AttemptReport(state="succeeded", outputs={"accuracy": 0.93, "best": {"C": [1, 2]}}, files={"model.pkl": b"\x00"}),
    AttemptRecord(job_id="j1", attempt=1, state="succeeded", outputs={"accuracy": 0.93}, files={"m.pkl": b"\x01"}),
], ids=["spec", "report", "record"])
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "ray-cloudpickle"])
def test_files_and_outputs_cross_ray_unchanged(value, dumps) -> None:
    copy = pickle.loads(dumps(value))
    assert copy == value and copy.model_fields_set == value.model_fields_set


def test_the_final_report_sets_outputs_and_files_and_a_running_one_leaves_them() -> None:
    assert AttemptReport(state="running").changes() == {"state": "running"}
    final = AttemptReport(state="succeeded", outputs={"a": 1}, files={})
    assert final.changes() == {"state": "succeeded", "outputs": {"a": 1}, "files": {}}


@pytest.mark.parametrize("fields", [{"files": {"../x": b""}}, {"files": {"/abs": b""}},
                                    {"output_files": ["a/../../b"]}, {"output_files": [".loopml/outputs.json"]}],
                         ids=["input-parent", "input-absolute", "output-parent", "output-reserved"])
def test_a_spec_refuses_paths_outside_the_working_dir(fields) -> None:
    with pytest.raises(ValidationError):
        spec(**fields)


def test_job_submit_takes_base64_files_and_names_the_field_it_refuses() -> None:
    submitted = JobSubmit(notebook={}, files={"data/x.csv": "YSxiCg=="}, output_files=["m.pkl", "./m.pkl"])
    assert submitted.decoded_files() == {"data/x.csv": b"a,b\n"}
    assert submitted.output_files == ["m.pkl"]
    for fields, says in (({"files": {"x.csv": "not base64!"}}, "not base64"),
                         ({"files": {"../x.csv": "YQ=="}}, "'..'"),
                         ({"output_files": ["/tmp/m.pkl"]}, "absolute")):
        with pytest.raises(ValidationError, match=says) as raised:
            JobSubmit(notebook={}, **fields)
        assert raised.value.errors()[0]["loc"][0] in fields

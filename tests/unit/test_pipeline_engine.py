"""The pipeline engine (issue 16), driven by a fake driver loop: parallel steps, data between
steps, the gate, grids and sweeps, the cache, failure, retry and cancel. The driver stores the
state as JSON after every transition and reads it back, as the platform does."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopml.errors import Conflict, InvalidInput
from loopml.executor.pipelines import (
    ActionFinished,
    CachedResult,
    CancelJob,
    FileRef,
    JobFinished,
    JobLaunched,
    LaunchJob,
    RunAction,
    RunState,
    StoreCache,
    advance,
    cancel,
    pipeline_from_data,
    read_native,
    retry,
    start,
)

WINE = read_native((Path(__file__).parent / "pipelines" / "wine.pipeline.yaml").read_text(), source="wine.pipeline.yaml")
WINE_HASHES = {"prepare.ipynb": "h-prepare", "train.ipynb": "h-train", "evaluate.ipynb": "h-evaluate"}
TRAIN_ACCURACY = {0.01: 0.80, 0.1: 0.95, 1.0: 0.90}

Job = Callable[[LaunchJob], dict[str, Any]]


def ref(name: str) -> FileRef:
    return FileRef(sha256=hashlib.sha256(name.encode()).hexdigest(), run_id=f"run-{name}", artifact_path=name)


def stored(state: RunState) -> RunState:
    """``state`` as the platform keeps it: written as JSON, read back, unchanged."""
    text = state.model_dump_json()
    again = RunState.model_validate_json(text)
    assert again == state and again.model_dump_json() == text
    return again


class Driver:
    """Carries out the engine's actions: a job per LaunchJob (finishing in launch order, one at a
    time, as ``job`` says), an action per RunAction, a dict as the cache."""

    def __init__(self, job: Job, cache: dict[str, CachedResult] | None = None) -> None:
        self.job = job
        self.cache = {} if cache is None else cache
        self.lookups: list[tuple[str, str]] = []
        self.launches: list[LaunchJob] = []
        self.batches: list[list[LaunchJob]] = []  # the launches of each transition that launched any
        self.running: dict[str, LaunchJob] = {}
        self.most_running: dict[str, int] = {}
        self.actions: list[RunAction] = []
        self.pending_actions: list[RunAction] = []
        self.cancelled: list[CancelJob] = []
        self.state: RunState | None = None

    def lookup(self, step: str, key: str) -> CachedResult | None:
        self.lookups.append((step, key))
        return self.cache.get(key)

    def start(self, pipeline=WINE, overrides=None, hashes=WINE_HASHES, **options) -> Driver:
        self.apply(start(pipeline, overrides, content_hash=hashes, cache_lookup=self.lookup, **options))
        return self

    def apply(self, result: tuple[RunState, list]) -> None:
        state, actions = result
        self.state = stored(state)
        launches = [action for action in actions if isinstance(action, LaunchJob)]
        if launches:
            self.batches.append(launches)
        for action in actions:
            if isinstance(action, LaunchJob):
                job_id = f"job-{len(self.launches) + 1}"
                self.launches.append(action)
                self.running[job_id] = action
                step_running = sum(launch.step == action.step for launch in self.running.values())
                self.most_running[action.step] = max(self.most_running.get(action.step, 0), step_running)
                self.send(JobLaunched(step=action.step, child_index=action.child_index, job_id=job_id))
            elif isinstance(action, RunAction):
                self.actions.append(action)
                self.pending_actions.append(action)
            elif isinstance(action, CancelJob):
                self.cancelled.append(action)
                self.running.pop(action.job_id, None)
            elif isinstance(action, StoreCache):
                self.cache[action.cache_key] = CachedResult(outputs=action.outputs, files=action.files)

    def send(self, event) -> None:
        self.apply(advance(self.state, event, cache_lookup=self.lookup))

    def finish_next(self, step: str | None = None) -> None:
        """Finish the oldest pending action, else the oldest running job (of ``step``, if given)."""
        if self.pending_actions and step is None:
            action = self.pending_actions.pop(0)
            outputs = {"model": action.arguments["model"], "version": 7}
            if action.kind == "deploy":
                outputs["endpoint"] = action.arguments["endpoint"]
            self.send(ActionFinished(step=action.step, status="SUCCEEDED", outputs=outputs))
            return
        job_id, launch = next((job_id, launch) for job_id, launch in self.running.items() if step in (None, launch.step))
        del self.running[job_id]
        result = {"status": "SUCCEEDED", **self.job(launch)}
        self.send(JobFinished(step=launch.step, child_index=launch.child_index, job_id=job_id, **result))

    def run(self) -> Driver:
        while self.running or self.pending_actions:
            self.finish_next()
        return self

    def launched(self, step: str) -> list[LaunchJob]:
        return [launch for launch in self.launches if launch.step == step]

    def statuses(self) -> dict[str, str]:
        return {step_id: step_state.status.value for step_id, step_state in self.state.steps.items()}


def wine_job(accuracy: float = 0.93, fail: str | None = None) -> Job:
    def job(launch: LaunchJob) -> dict[str, Any]:
        if launch.step == fail:
            return {"status": "FAILED", "message": "ZeroDivisionError in cell 3"}
        if launch.step == "prepare":
            return {"files": {"data/train.parquet": ref("train.parquet")}}
        if launch.step == "train":
            assert launch.input_files == {"data/train.parquet": ref("train.parquet")}
            C = launch.parameters["C"]
            return {"outputs": {"accuracy": TRAIN_ACCURACY[C], "run_id": f"run-{C}"}, "files": {"model.pkl": ref(f"m{C}")}}
        return {"outputs": {"accuracy": accuracy}}
    return job


def pipeline(steps: dict[str, Any], parameters: dict[str, Any] | None = None):
    return pipeline_from_data({"name": "small", "parameters": parameters or {}, "steps": steps}, source="small.yaml")


def hashes_of(p) -> dict[str, str]:
    return {step.file: f"h-{step.file}" for step in p.steps.values() if step.file}


# --- the reference pipeline ----------------------------------------------------------------------------------


def test_wine_runs_end_to_end_and_the_gate_deploys_when_the_threshold_is_met():
    driver = Driver(wine_job(accuracy=0.93)).start().run()

    assert driver.state.status == "SUCCEEDED"
    assert driver.statuses() == {"prepare": "SUCCEEDED", "train": "SUCCEEDED", "evaluate": "SUCCEEDED",
                                 "deploy": "SUCCEEDED"}
    train = driver.state.steps["train"]
    assert [child.parameters for child in train.children] == [{"C": 0.01}, {"C": 0.1}, {"C": 1.0}]
    assert train.outputs == {"accuracy": 0.95, "run_id": "run-0.1"} and train.files == {"model.pkl": ref("m0.1")}
    assert [child.value for child in train.children] == [0.80, 0.95, 0.90]
    [evaluate] = driver.launched("evaluate")
    assert evaluate.parameters == {"run_id": "run-0.1"}
    assert evaluate.input_files == {"data/train.parquet": ref("train.parquet"), "model.pkl": ref("m0.1")}
    assert driver.actions == [RunAction(step="deploy", kind="deploy", arguments={
        "model": "wine", "endpoint": "wine", "version": None, "canary": 20})]
    assert driver.state.steps["deploy"].outputs == {"model": "wine", "version": 7, "endpoint": "wine"}


@pytest.mark.parametrize(("overrides", "accuracy", "deployed"), [
    pytest.param(None, 0.93, True, id="met"),
    pytest.param(None, 0.84, False, id="missed"),
    pytest.param({"min_accuracy": "0.8"}, 0.84, True, id="lowered-by-override"),
])
def test_the_gate_deploys_only_when_the_condition_holds(overrides, accuracy, deployed):
    driver = Driver(wine_job(accuracy=accuracy)).start(overrides=overrides).run()

    deploy = driver.state.steps["deploy"]
    assert driver.state.status == "SUCCEEDED"
    assert bool(driver.actions) is deployed
    assert deploy.status == ("SUCCEEDED" if deployed else "SKIPPED")
    if not deployed:
        assert deploy.skipped_because == "condition"
        assert deploy.message == ("condition is false: steps.evaluate.outputs.accuracy (0.84) >= "
                                  "params.min_accuracy (0.9) is false")


def test_a_step_after_a_skipped_one_is_skipped_too_and_the_run_succeeds():
    p = pipeline({"a": {"notebook": "a.ipynb"},
                  "gate": {"notebook": "g.ipynb", "after": ["a"], "when": "params.go == true"},
                  "after_gate": {"notebook": "c.ipynb", "after": ["gate"]}}, {"go": False})
    driver = Driver(lambda launch: {}).start(p, hashes=hashes_of(p)).run()

    assert driver.statuses() == {"a": "SUCCEEDED", "gate": "SKIPPED", "after_gate": "SKIPPED"}
    assert driver.state.steps["after_gate"].message == "upstream gate was skipped"
    assert driver.state.status == "SUCCEEDED"


# --- parallelism, data between steps ------------------------------------------------------------------------


def test_independent_steps_launch_together_and_a_join_waits_for_both():
    p = pipeline({"a": {"notebook": "a.ipynb"}, "b": {"notebook": "b.ipynb"},
                  "join": {"notebook": "j.ipynb", "after": ["a", "b"]}})
    driver = Driver(lambda launch: {}).start(p, hashes=hashes_of(p))

    assert [launch.step for launch in driver.batches[0]] == ["a", "b"]
    driver.finish_next()
    assert driver.statuses() == {"a": "SUCCEEDED", "b": "RUNNING", "join": "QUEUED"}
    driver.finish_next()
    assert [[launch.step for launch in batch] for batch in driver.batches] == [["a", "b"], ["join"]]
    driver.run()
    assert driver.state.status == "SUCCEEDED"


def test_outputs_reach_downstream_parameters_with_their_json_types():
    p = pipeline({
        "a": {"notebook": "a.ipynb"},
        "b": {"notebook": "b.ipynb", "parameters": {
            "n": "{{ steps.a.outputs.n }}", "ratio": "{{ steps.a.outputs.ratio }}", "flag": "{{ steps.a.outputs.flag }}",
            "tags": "{{ steps.a.outputs.tags }}", "p": "{{ params.p }}", "literal": 5,
            "label": "run {{ steps.a.outputs.name }} n={{ steps.a.outputs.n }}"}},
    }, {"p": {"depth": 2}})
    outputs = {"n": 3, "ratio": 0.5, "flag": True, "tags": ["x", "y"], "name": "s1"}
    driver = Driver(lambda launch: {"outputs": outputs} if launch.step == "a" else {}).start(p, hashes=hashes_of(p)).run()

    [b] = driver.launched("b")
    assert b.parameters == {"n": 3, "ratio": 0.5, "flag": True, "tags": ["x", "y"], "p": {"depth": 2}, "literal": 5,
                            "label": "run s1 n=3"}
    assert type(b.parameters["n"]) is int and type(b.parameters["flag"]) is bool
    assert driver.state.steps["b"].parameters == b.parameters


def test_output_files_reach_every_downstream_step_by_relative_path():
    p = pipeline({"a": {"notebook": "a.ipynb", "outputs": ["data/x.csv"]},
                  "b": {"notebook": "b.ipynb", "after": ["a"], "outputs": ["model.pkl"]},
                  "c": {"notebook": "c.ipynb", "after": ["b"]}})
    files = {"a": {"data/x.csv": ref("x")}, "b": {"model.pkl": ref("model")}, "c": {}}
    driver = Driver(lambda launch: {"files": files[launch.step]}).start(p, hashes=hashes_of(p)).run()

    assert driver.launched("a")[0].input_files == {}
    assert driver.launched("b")[0].input_files == {"data/x.csv": ref("x")}
    assert driver.launched("c")[0].input_files == {"data/x.csv": ref("x"), "model.pkl": ref("model")}


def test_a_job_that_does_not_write_a_declared_output_fails_its_step():
    p = pipeline({"a": {"notebook": "a.ipynb", "outputs": ["data/x.csv", "data/y.csv"]},
                  "b": {"notebook": "b.ipynb", "after": ["a"]}})
    driver = Driver(lambda launch: {"files": {"data/x.csv": ref("x")}}).start(p, hashes=hashes_of(p)).run()

    assert driver.statuses() == {"a": "FAILED", "b": "SKIPPED"}
    assert "data/y.csv" in driver.state.steps["a"].message and driver.launched("b") == []


# --- foreach and search -------------------------------------------------------------------------------------


def test_a_grid_launches_every_combination_at_once_in_a_stable_order_and_min_picks_the_first_of_ties():
    p = pipeline({"grid": {"notebook": "g.ipynb", "foreach": {"a": [1, 2], "b": ["x", "y"]}, "select": {"min": "loss"}},
                  "next": {"notebook": "n.ipynb", "parameters": {"best": "{{ steps.grid.outputs.b }}"}}})
    loss = {(1, "x"): 0.5, (1, "y"): 0.2, (2, "x"): 0.2, (2, "y"): 0.9}

    def job(launch):
        if launch.step == "next":
            return {}
        return {"outputs": {"loss": loss[launch.parameters["a"], launch.parameters["b"]], "b": launch.parameters["b"],
                            "a": launch.parameters["a"]}}
    driver = Driver(job).start(p, hashes=hashes_of(p))

    assert [(launch.child_index, launch.parameters) for launch in driver.batches[0]] == [
        (0, {"a": 1, "b": "x"}), (1, {"a": 1, "b": "y"}), (2, {"a": 2, "b": "x"}), (3, {"a": 2, "b": "y"})]
    driver.run()
    assert driver.state.steps["grid"].outputs == {"loss": 0.2, "b": "y", "a": 1}
    assert driver.launched("next")[0].parameters == {"best": "y"}


def test_a_grid_without_select_lists_its_children_outputs():
    p = pipeline({"grid": {"notebook": "g.ipynb", "foreach": {"a": [1, 2]}}})
    driver = Driver(lambda launch: {"outputs": {"twice": 2 * launch.parameters["a"]}}).start(p, hashes=hashes_of(p)).run()

    assert driver.state.steps["grid"].outputs == {"children": [{"twice": 2}, {"twice": 4}]}


@pytest.mark.parametrize(("result", "message"), [
    pytest.param({"status": "FAILED", "message": "out of memory"}, "child 1 (C=0.1) failed: out of memory", id="failed"),
    pytest.param({"outputs": {"run_id": "r"}}, "child 1 (C=0.1) failed: it did not set output 'accuracy' (it set: run_id)",
                 id="no-metric"),
    pytest.param({"outputs": {"accuracy": "high"}}, "child 1 (C=0.1) failed: output 'accuracy' must be a number",
                 id="not-a-number"),
])
def test_a_bad_child_fails_its_step_once_the_others_finished(result, message):
    def job(launch):
        if launch.step == "train" and launch.child_index == 1:
            return result
        return wine_job()(launch)
    driver = Driver(job).start()
    driver.finish_next()  # prepare
    driver.finish_next()  # child 0
    driver.finish_next()  # child 1: bad, child 2 still running
    assert driver.state.steps["train"].status == "RUNNING"
    driver.run()

    assert driver.statuses() == {"prepare": "SUCCEEDED", "train": "FAILED", "evaluate": "SKIPPED", "deploy": "SKIPPED"}
    assert driver.state.steps["train"].message.startswith(message)
    assert driver.state.status == "FAILED"


SWEEP = {"notebook": "s.ipynb", "search": {"params": {"C": {"loguniform": [0.001, 10.0]}, "k": {"int": [1, 5]}},
                                           "trials": 7, "parallel": 3, "objective": {"maximize": "accuracy"}}}


def sweep_job(launch: LaunchJob) -> dict[str, Any]:
    C, k = launch.parameters["C"], launch.parameters["k"]
    return {"outputs": {"accuracy": 1 - abs(math.log10(C)) / 10 - k / 100, "C": C}}


def test_an_optuna_search_runs_its_trials_at_most_parallel_at_once_and_takes_the_best():
    p = pipeline({"sweep": SWEEP})
    driver = Driver(sweep_job).start(p, hashes=hashes_of(p))

    assert len(driver.batches[0]) == 3
    driver.run()
    sweep = driver.state.steps["sweep"]
    assert len(sweep.children) == len(driver.launched("sweep")) == 7
    assert driver.most_running["sweep"] == 3
    assert all(0.001 <= c.parameters["C"] <= 10 and c.parameters["k"] in range(1, 6) for c in sweep.children)
    assert len({(c.parameters["C"], c.parameters["k"]) for c in sweep.children}) == 7
    assert [c.value for c in sweep.children] == [sweep_job(launch)["outputs"]["accuracy"] for launch in driver.launches]
    best = max(sweep.children, key=lambda child: child.value)
    assert sweep.outputs == best.outputs and sweep.status == "SUCCEEDED"


def test_a_failed_trial_stops_the_search_and_fails_its_step():
    p = pipeline({"sweep": SWEEP})

    def job(launch):
        return {"status": "FAILED", "message": "diverged"} if launch.child_index == 0 else sweep_job(launch)
    driver = Driver(job).start(p, hashes=hashes_of(p)).run()

    assert len(driver.launches) == 3  # the first batch; no trial starts after one failed
    assert driver.state.steps["sweep"].status == "FAILED" and "diverged" in driver.state.steps["sweep"].message


def test_a_search_is_deterministic_for_a_seed_and_differs_for_another():
    p = pipeline({"sweep": SWEEP})

    def trials(**options):
        return [c.parameters for c in Driver(sweep_job).start(p, hashes=hashes_of(p), **options).run().state.steps["sweep"].children]

    assert trials() == trials()
    assert trials(seed=1) == trials(seed=1) != trials(seed=2)


# --- the cache ----------------------------------------------------------------------------------------------


def test_a_rerun_with_the_same_inputs_is_served_from_the_cache():
    first = Driver(wine_job()).start().run()
    again = Driver(wine_job(), cache=first.cache).start().run()

    assert again.launches == []
    assert again.statuses() == {"prepare": "CACHED", "train": "CACHED", "evaluate": "CACHED", "deploy": "SUCCEEDED"}
    assert again.state.steps["train"].outputs == first.state.steps["train"].outputs
    assert again.state.steps["train"].files == first.state.steps["train"].files
    assert again.actions == first.actions  # the built-in action runs again: it is never cached


def test_a_changed_notebook_misses_the_cache_from_that_step_on():
    first = Driver(wine_job()).start().run()
    again = Driver(wine_job(), cache=first.cache).start(hashes={**WINE_HASHES, "train.ipynb": "h-train-2"}).run()

    assert again.statuses()["prepare"] == "CACHED" and len(again.launched("train")) == 3
    assert again.state.steps["train"].cache_key != first.state.steps["train"].cache_key


def test_no_cache_per_run_skips_every_lookup():
    first = Driver(wine_job()).start().run()
    again = Driver(wine_job(), cache=first.cache).start(no_cache=True).run()

    assert again.lookups == [] and "CACHED" not in again.statuses().values()
    assert len(again.launches) == len(first.launches)


def test_cache_false_per_step_skips_its_lookup_only():
    p = pipeline({"a": {"notebook": "a.ipynb"}, "b": {"notebook": "b.ipynb", "after": ["a"], "cache": False}})
    first = Driver(lambda launch: {}).start(p, hashes=hashes_of(p)).run()
    again = Driver(lambda launch: {}, cache=first.cache).start(p, hashes=hashes_of(p)).run()

    assert again.statuses() == {"a": "CACHED", "b": "SUCCEEDED"}
    assert [step for step, _ in again.lookups] == ["a"] and [launch.step for launch in again.launches] == ["b"]


# --- failure, retry, cancel ---------------------------------------------------------------------------------


def test_a_failure_skips_its_dependents_lets_the_rest_finish_and_fails_the_run():
    p = pipeline({"slow": {"notebook": "s.ipynb"}, "a": {"notebook": "a.ipynb"},
                  "b": {"notebook": "b.ipynb", "after": ["a"]}, "c": {"notebook": "c.ipynb", "after": ["b"]},
                  "side": {"notebook": "d.ipynb", "after": ["a"]}})

    def job(launch):
        return {"status": "FAILED", "message": "boom"} if launch.step == "b" else {}
    driver = Driver(job).start(p, hashes=hashes_of(p))
    driver.finish_next("a")
    driver.finish_next("b")  # fails while slow and side run
    assert driver.statuses() == {"slow": "RUNNING", "a": "SUCCEEDED", "b": "FAILED", "c": "SKIPPED", "side": "RUNNING"}
    assert driver.state.steps["c"].message == "upstream b failed"
    assert driver.state.steps["c"].skipped_because == "failure"
    assert driver.state.status == "RUNNING"
    driver.run()

    assert driver.statuses() == {"slow": "SUCCEEDED", "a": "SUCCEEDED", "b": "FAILED", "c": "SKIPPED", "side": "SUCCEEDED"}
    assert driver.state.steps["b"].message == "boom" and driver.state.status == "FAILED"


def test_retry_reruns_the_failed_step_and_what_follows_only():
    driver = Driver(wine_job(fail="evaluate")).start().run()
    assert driver.statuses() == {"prepare": "SUCCEEDED", "train": "SUCCEEDED", "evaluate": "FAILED", "deploy": "SKIPPED"}
    assert driver.state.status == "FAILED"
    launched_before = len(driver.launches)

    driver.job = wine_job()
    driver.apply(retry(driver.state, cache_lookup=driver.lookup))
    driver.run()

    assert [launch.step for launch in driver.launches[launched_before:]] == ["evaluate"]
    assert driver.statuses() == {"prepare": "SUCCEEDED", "train": "SUCCEEDED", "evaluate": "SUCCEEDED",
                                 "deploy": "SUCCEEDED"}
    assert driver.state.status == "SUCCEEDED" and driver.state.attempt == 2
    with pytest.raises(Conflict, match="only a failed or cancelled run can be retried; this one is SUCCEEDED"):
        retry(driver.state)


def test_retry_keeps_cached_steps_without_asking_the_cache_again():
    first = Driver(wine_job()).start().run()
    driver = Driver(wine_job(fail="evaluate"), cache=first.cache).start(
        hashes={**WINE_HASHES, "evaluate.ipynb": "h-evaluate-2"}).run()
    assert driver.statuses() == {"prepare": "CACHED", "train": "CACHED", "evaluate": "FAILED", "deploy": "SKIPPED"}
    asked_before = len(driver.lookups)

    driver.job = wine_job()
    driver.apply(retry(driver.state, cache_lookup=driver.lookup))
    driver.run()
    assert [step for step, _ in driver.lookups[asked_before:]] == ["evaluate"]
    assert driver.statuses() == {"prepare": "CACHED", "train": "CACHED", "evaluate": "SUCCEEDED", "deploy": "SUCCEEDED"}


def test_retry_keeps_a_step_skipped_by_its_condition():
    p = pipeline({"a": {"notebook": "a.ipynb"}, "gate": {"notebook": "g.ipynb", "when": "params.go == true"},
                  "b": {"notebook": "b.ipynb", "after": ["a"]}}, {"go": False})
    driver = Driver(lambda launch: {"status": "FAILED"} if launch.step == "a" else {}).start(p, hashes=hashes_of(p)).run()
    assert driver.statuses() == {"a": "FAILED", "gate": "SKIPPED", "b": "SKIPPED"}

    driver.job = lambda launch: {}
    driver.apply(retry(driver.state))
    driver.run()
    assert driver.statuses() == {"a": "SUCCEEDED", "gate": "SKIPPED", "b": "SUCCEEDED"}
    assert driver.state.steps["gate"].skipped_because == "condition"


def test_cancel_stops_running_jobs_cancels_queued_steps_and_ignores_late_events():
    driver = Driver(wine_job()).start()
    driver.finish_next()  # prepare: the three train children are running, job-2..job-4
    driver.apply(cancel(driver.state))

    assert driver.state.status == "CANCELLED"
    assert sorted((c.child_index, c.job_id) for c in driver.cancelled) == [(0, "job-2"), (1, "job-3"), (2, "job-4")]
    assert driver.statuses() == {"prepare": "SUCCEEDED", "train": "CANCELLED", "evaluate": "CANCELLED",
                                 "deploy": "CANCELLED"}
    before = driver.state
    driver.send(JobFinished(step="train", child_index=0, status="SUCCEEDED", outputs={"accuracy": 1.0}))
    assert driver.state == before
    assert cancel(driver.state) == (driver.state, [])


def test_a_job_launched_after_cancel_is_cancelled_when_its_id_arrives_and_the_run_can_be_retried():
    p = pipeline({"a": {"notebook": "a.ipynb"}})
    state, [launch] = start(p, content_hash=hashes_of(p))
    state, actions = cancel(stored(state))
    assert actions == [] and state.steps["a"].status == "CANCELLED"

    state, actions = advance(stored(state), JobLaunched(step="a", job_id="job-9"))
    assert actions == [CancelJob(step="a", job_id="job-9")]

    state, actions = retry(stored(state))
    assert state.status == "RUNNING" and actions == [launch]
    state, _ = advance(stored(state), JobFinished(step="a", status="SUCCEEDED", job_id="job-9"))  # the old job: stale
    assert state.steps["a"].status == "RUNNING"
    state, actions = advance(stored(state), JobLaunched(step="a", job_id="job-9"))  # a duplicate of the old one
    assert actions == [] and state.steps["a"].job_id is None
    state, _ = advance(stored(state), JobLaunched(step="a", job_id="job-10"))
    state, _ = advance(stored(state), JobFinished(step="a", status="SUCCEEDED", job_id="job-10"))
    assert state.status == "SUCCEEDED" and state.steps["a"].replaced_jobs == ["job-9"]


# --- edges: parameters, events, purity ----------------------------------------------------------------------


def test_an_unknown_override_is_refused_listing_the_known_parameters():
    with pytest.raises(InvalidInput, match=r"unknown pipeline parameter 'c': pipeline 'wine-retrain' declares C, "
                                           r"min_accuracy") as exc:
        start(WINE, {"c": "2"}, content_hash=WINE_HASHES)
    assert exc.value.details["field"] == "parameters.c"


@pytest.mark.parametrize(("value", "resolved"), [("2", 2.0), (2, 2.0), (" 0.5 ", 0.5)])
def test_overrides_given_as_text_take_the_parameters_type(value, resolved):
    state, _ = start(WINE, {"C": value}, content_hash=WINE_HASHES)
    assert state.parameters == {"C": resolved, "min_accuracy": 0.9} and type(state.parameters["C"]) is float


@pytest.mark.parametrize("value", ["abc", "true", [1]])
def test_an_override_of_the_wrong_type_is_refused(value):
    with pytest.raises(InvalidInput, match="parameter 'C' is a number"):
        start(WINE, {"C": value}, content_hash=WINE_HASHES)


def test_a_step_file_without_a_content_hash_is_refused():
    with pytest.raises(InvalidInput, match="no content hash for train.ipynb"):
        start(WINE, content_hash={"prepare.ipynb": "x", "evaluate.ipynb": "y"})


def test_a_condition_that_cannot_be_evaluated_fails_its_step_with_the_reason():
    p = pipeline({"a": {"notebook": "a.ipynb"}, "b": {"notebook": "b.ipynb", "when": "steps.a.outputs.score > 1"}})
    driver = Driver(lambda launch: {"outputs": {"other": 1}}).start(p, hashes=hashes_of(p)).run()

    assert driver.statuses() == {"a": "SUCCEEDED", "b": "FAILED"}
    assert "did not set output 'score'" in driver.state.steps["b"].message


@pytest.mark.parametrize(("event", "message"), [
    pytest.param(JobFinished(step="nope", status="SUCCEEDED"), "does not have", id="unknown-step"),
    pytest.param(JobFinished(step="train", status="SUCCEEDED"), "runs children", id="child-missing"),
    pytest.param(JobFinished(step="prepare", child_index=0, status="SUCCEEDED"), "has no children", id="no-children"),
    pytest.param(JobFinished(step="deploy", status="SUCCEEDED"), "built-in action", id="job-for-action"),
])
def test_an_event_that_names_nothing_of_the_run_is_refused(event, message):
    state, _ = start(WINE, content_hash=WINE_HASHES)
    with pytest.raises(InvalidInput, match=message):
        advance(state, event)


def test_transitions_leave_the_given_state_alone():
    state, _ = start(WINE, content_hash=WINE_HASHES)
    text = state.model_dump_json()
    advance(state, JobFinished(step="prepare", status="SUCCEEDED", files={"data/train.parquet": ref("t")}))
    cancel(state)
    assert state.model_dump_json() == text

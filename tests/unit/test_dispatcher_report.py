"""Only the runner that owns an attempt may report on it: the per-attempt secret."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from loopml.executor import dispatcher as dispatcher_module
from loopml.executor import runner as runner_module
from loopml.executor.attempts import AttemptOptions, AttemptReport, AttemptSpec

Dispatcher = dispatcher_module.Dispatcher.__ray_actor_class__  # the plain class behind the actor


class FakeRunAttempt:
    """Stands for the ``run_attempt`` Ray task: records what each runner was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[AttemptSpec, Any, str]] = []

    def options(self, **options: Any) -> FakeRunAttempt:
        return self

    def remote(self, spec: AttemptSpec, dispatcher: Any, secret: str) -> asyncio.Future:
        self.calls.append((spec, dispatcher, secret))
        return asyncio.get_running_loop().create_future()  # an attempt that runs until the test ends


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> FakeRunAttempt:
    fake = FakeRunAttempt()
    monkeypatch.setattr(runner_module, "run_attempt", fake)
    return fake


def dispatcher() -> Any:
    """A dispatcher without Ray (its constructor needs the actor's runtime context)."""
    d = object.__new__(Dispatcher)
    d.attempts = {}
    d.seq, d.changed, d.me = 0, asyncio.Event(), "dispatcher-handle"
    return d


async def submitted(d: Any, job_id: str = "j1") -> None:
    await d.submit(AttemptSpec(job_id=job_id, attempt=1, notebook="{}", kernel_name="python3"),
                   AttemptOptions(num_cpus=1), None)


def test_the_runner_gets_a_secret_of_its_own_attempt(runner: FakeRunAttempt) -> None:
    async def scenario() -> None:
        d = dispatcher()
        await submitted(d, "j1")
        await submitted(d, "j2")
        (_, handle, first), (_, _, second) = runner.calls
        assert handle == "dispatcher-handle" and len(first) == 32 and first != second

    asyncio.run(scenario())


@pytest.mark.parametrize("secret", [None, "", "0" * 32, "é" * 32, 42], ids=["missing", "empty", "wrong", "non-ascii", "not-a-string"])
def test_a_report_without_the_attempts_secret_is_ignored_and_logged_without_it(
        runner: FakeRunAttempt, secret: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        d = dispatcher()
        await submitted(d)
        real = runner.calls[0][2]
        before = d.attempts["j1:1"].record.model_copy()
        caplog.set_level(logging.WARNING, logger=dispatcher_module.__name__)

        d.report("j1", 1, AttemptReport(state="running", output="forged", log_append="forged"), secret)

        assert d.attempts["j1:1"].record == before
        assert "did not come from its runner" in caplog.text and real not in caplog.text

    asyncio.run(scenario())


def test_another_attempts_secret_does_not_work(runner: FakeRunAttempt) -> None:
    async def scenario() -> None:
        d = dispatcher()
        await submitted(d, "victim")
        await submitted(d, "attacker")
        attackers_secret = runner.calls[1][2]

        d.report("victim", 1, AttemptReport(state="running"), attackers_secret)

        assert d.attempts["victim:1"].record.state == "pending"

    asyncio.run(scenario())


def test_the_owning_runners_report_is_recorded(runner: FakeRunAttempt) -> None:
    async def scenario() -> None:
        d = dispatcher()
        await submitted(d)
        secret = runner.calls[0][2]

        d.report("j1", 1, AttemptReport(state="running", pid=7, log_append="cell 1\n"), secret)

        record = d.attempts["j1:1"].record
        assert (record.state, record.pid, record.log) == ("running", 7, "cell 1\n")
        assert record.started_at is not None

    asyncio.run(scenario())


def test_an_acknowledged_attempt_forgets_its_secret(runner: FakeRunAttempt) -> None:
    async def scenario() -> None:
        d = dispatcher()
        await submitted(d)
        d.attempts["j1:1"].record.state = "succeeded"

        d.ack(["j1:1"])

        assert d.attempts == {}

    asyncio.run(scenario())


def test_the_secret_never_leaves_the_dispatcher(runner: FakeRunAttempt) -> None:
    async def scenario() -> None:
        d = dispatcher()
        await submitted(d)
        secret = runner.calls[0][2]

        updates = await d.updates(0, 0)

        assert [r.key for r in updates.records] == ["j1:1"]
        assert secret not in updates.model_dump_json() and secret not in repr(d.attempts["j1:1"])

    asyncio.run(scenario())

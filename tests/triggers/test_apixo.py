"""ApixoTaskTrigger: serialisation, and its generator run to its single event against the emulator."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_nanobanana.exceptions import ApixoConnectionNotFoundError
from airflow_provider_nanobanana.hooks import base
from airflow_provider_nanobanana.hooks.apixo import RetryPolicy
from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger
from tests.support import apixo_connection, submit

if TYPE_CHECKING:
    from airflow.triggers.base import TriggerEvent

    from airflow_provider_nanobanana.emulator import EmulatorServer
    from tests.support import EmulatorAdmin

TRIGGER_PATH = "airflow_provider_nanobanana.triggers.apixo.ApixoTaskTrigger"


def make_trigger(task_id: str, *, seconds_left: float = 20, **kwargs: object) -> ApixoTaskTrigger:
    options = {"model": "nano-banana", "poll_interval": 0.1, "initial_delay": 0.0, **kwargs}
    return ApixoTaskTrigger(apixo_task_id=task_id, end_time=time.time() + seconds_left, **options)  # type: ignore[arg-type]


async def run_to_end(trigger: ApixoTaskTrigger) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


def test_serialize_round_trips_ids_and_settings_only() -> None:
    trigger = ApixoTaskTrigger(
        apixo_task_id="task_abc",
        end_time=1_900_000_000.5,
        model="nano-banana-pro",
        apixo_conn_id="apixo_prod",
        poll_interval=5.0,
        initial_delay=10.0,
        max_consecutive_errors=4,
        submitted_at=1_899_999_990.25,
        callback_token_sha256="ab" * 32,
        deferring_try=3,
        reattached=True,
    )

    path, kwargs = trigger.serialize()

    assert path == TRIGGER_PATH
    assert kwargs == {
        "apixo_task_id": "task_abc",
        "end_time": 1_900_000_000.5,
        "model": "nano-banana-pro",
        "apixo_conn_id": "apixo_prod",
        "poll_interval": 5.0,
        "initial_delay": 10.0,
        "max_consecutive_errors": 4,
        "submitted_at": 1_899_999_990.25,
        "callback_token_sha256": "ab" * 32,
        "deferring_try": 3,
        "reattached": True,
    }
    assert ApixoTaskTrigger(**kwargs).serialize() == (path, kwargs)


async def test_success_yields_one_event_with_the_result(emulator: EmulatorServer) -> None:
    task_id = submit()

    events = await run_to_end(make_trigger(task_id))

    assert len(events) == 1
    event = events[0].payload
    assert event["status"] == "success"
    assert event["apixo_task_id"] == task_id
    assert event["model"] == "nano-banana"
    assert event["task"]["state"] == "success"
    assert event["task"]["result_urls"][0].startswith(emulator.root_url)


async def test_failed_task_yields_failed_event_with_fail_code(emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.fail_next_tasks("PROMPT_TOO_LONG", fail_msg="prompt exceeds the limit")
    task_id = submit()

    (event,) = await run_to_end(make_trigger(task_id))

    assert event.payload["status"] == "failed"
    assert event.payload["task"]["fail_code"] == "PROMPT_TOO_LONG"
    assert event.payload["task"]["fail_message"] == "prompt exceeds the limit"


async def test_deadline_yields_timeout_before_the_task_ends(emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.configure(generation_seconds=30)
    task_id = submit()
    started = time.monotonic()

    (event,) = await run_to_end(make_trigger(task_id, seconds_left=0.5))

    assert event.payload["status"] == "timeout"
    assert event.payload["task"]["state"] in ("pending", "processing")
    assert time.monotonic() - started < 5


async def test_rejected_key_yields_error_without_retrying(
    emulator: EmulatorServer, emulator_admin: EmulatorAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = submit()
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_WRONG", apixo_connection(emulator.base_url, "sk-wrong-key"))
    reads_before = emulator_admin.request_count("GET")

    (event,) = await run_to_end(make_trigger(task_id, apixo_conn_id="apixo_wrong"))

    assert event.payload["status"] == "error"
    assert "401" in event.payload["message"]
    assert "sk-wrong-key" not in event.payload["message"]
    assert emulator_admin.request_count("GET") == reads_before + 1


async def test_a_connection_the_triggerer_cannot_find_is_named(emulator_admin: EmulatorAdmin) -> None:
    with pytest.raises(ApixoConnectionNotFoundError) as caught:
        await run_to_end(make_trigger("task_1", apixo_conn_id="apixo_nowhere"))

    assert "'apixo_nowhere' is not defined for the async lookup (in the triggerer" in str(caught.value)
    assert emulator_admin.requests() == []


@pytest.fixture
def single_attempt_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hooks that do not retry, so each server error reaches the trigger's own error budget."""
    monkeypatch.setattr(base, "RetryPolicy", lambda: RetryPolicy(max_attempts=1))


@pytest.mark.usefixtures("single_attempt_reads")
@pytest.mark.parametrize(("errors", "status"), [(2, "success"), (3, "error")])
async def test_error_budget_tolerates_shorter_runs_only(
    emulator_admin: EmulatorAdmin, errors: int, status: str
) -> None:
    task_id = submit()
    emulator_admin.inject_http_errors(500, errors, "status")

    (event,) = await run_to_end(make_trigger(task_id, max_consecutive_errors=3))

    assert event.payload["status"] == status
    assert emulator_admin.request_count("GET") >= errors + (status == "success")


async def test_a_trigger_that_starts_late_reads_at_once(emulator_admin: EmulatorAdmin) -> None:
    """The cadence counts from the submission: a trigger picked up late (a busy triggerer, a restart)
    does not wait another initial delay for a task that may long be done."""
    submitted_at = time.time()
    task_id = submit()
    while emulator_admin.tasks()[0]["state"] != "success":
        await asyncio.sleep(0.05)
    trigger = make_trigger(task_id, initial_delay=30.0, poll_interval=30.0, submitted_at=submitted_at - 60)

    (event,) = await run_to_end(trigger)

    assert event.payload["status"] == "success"
    assert emulator_admin.request_count("GET") == 1


async def test_running_twice_only_reads(emulator_admin: EmulatorAdmin) -> None:
    """A trigger may run twice (triggerer restart): it must never submit anything."""
    task_id = submit()

    first = await run_to_end(make_trigger(task_id))
    second = await run_to_end(make_trigger(task_id))

    assert first[0].payload == second[0].payload
    assert emulator_admin.submissions() == 1
    assert emulator_admin.request_count("POST") == 1

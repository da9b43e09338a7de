"""NanoBananaTaskSensor: poke answers, deferral, and the same outcome rules as the operator.

The emulator is steered through its admin endpoints (``emulator_admin``), as tests in other processes must.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import PokeReturnValue

from airflow_provider_nanobanana.compat import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow_provider_nanobanana.exceptions import ApixoTaskFailedError, ApixoWaitError
from airflow_provider_nanobanana.sensors.apixo import ERRORS_KEY
from airflow_provider_nanobanana.sensors.nanobanana import NanoBananaTaskSensor
from tests.support import EmulatorAdmin, FakeStore, FakeTaskInstance, submit

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import EmulatorServer


def make_sensor(task_id: str, **kwargs: Any) -> NanoBananaTaskSensor:
    options = {"poke_interval": 0.1, "timeout": 20, **kwargs}
    return NanoBananaTaskSensor(task_id="wait", apixo_task_id=task_id, **options)


def event(status: str, message: str = "m") -> dict[str, Any]:
    return {"status": status, "apixo_task_id": "t", "model": "nano-banana", "message": message, "task": None}


def poke_until_done(sensor: NanoBananaTaskSensor) -> tuple[int, PokeReturnValue]:
    """Poke as Airflow's poke mode does, closing the hook after (``execute`` would)."""
    try:
        for pokes in range(1, 100):
            answer = sensor.poke({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
            if answer:
                assert isinstance(answer, PokeReturnValue)
                return pokes, answer
            time.sleep(0.1)
    finally:
        sensor.hook.close()
    raise AssertionError("the task never finished")


def test_poke_is_false_while_running_then_returns_the_result(emulator: EmulatorServer) -> None:
    task_id = submit("a lighthouse [emulator:seconds=3]")

    pokes, answer = poke_until_done(make_sensor(task_id, deferrable=False))

    assert pokes > 1
    assert answer.xcom_value["apixo_task_id"] == task_id
    assert answer.xcom_value["state"] == "success"
    assert len(answer.xcom_value["result_urls"]) == 1


@pytest.mark.parametrize(("code", "for_good"), [("NSFW", True), ("MODEL_UNAVAILABLE", False)])
def test_poke_on_a_failed_task_follows_the_operator_rules(
    code: str, for_good: bool, emulator_admin: EmulatorAdmin
) -> None:
    """Input-caused: fails for good. Transient: an ordinary error, so Airflow's retries apply."""
    emulator_admin.fail_next_tasks(code, fail_msg="no")
    task_id = submit()

    with pytest.raises(ApixoTaskFailedError, match=code) as raised:
        poke_until_done(make_sensor(task_id, deferrable=False))
    assert isinstance(raised.value, AirflowFailException) is for_good


def test_poke_tolerates_a_task_not_visible_yet(emulator_admin: EmulatorAdmin) -> None:
    """Right after a submission the status read may answer 404: counted, like the deferred wait."""
    task_id = submit()
    emulator_admin.inject_http_errors(404, 2, "status")

    pokes, answer = poke_until_done(make_sensor(task_id, deferrable=False, max_consecutive_errors=3))

    assert pokes > 2
    assert answer.xcom_value["state"] == "success"


def test_poke_on_an_unknown_task_ends_after_the_error_budget(emulator_admin: EmulatorAdmin) -> None:
    sensor = make_sensor("task_does_not_exist", deferrable=False, max_consecutive_errors=2)

    try:
        assert sensor.poke({"ti": FakeTaskInstance()}) is False  # type: ignore[arg-type]
        with pytest.raises(ApixoWaitError, match=r"task_does_not_exist.*404") as raised:
            sensor.poke({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
    finally:
        sensor.hook.close()
    assert not isinstance(raised.value, AirflowFailException)
    assert emulator_admin.request_count("GET") == 2


def reschedule_poke(store: FakeStore, task_id: str, try_number: int = 1) -> PokeReturnValue | bool:
    """One poke in reschedule mode: a new sensor instance, the task instance's store kept."""
    sensor = make_sensor(task_id, deferrable=False, mode="reschedule", max_consecutive_errors=3)
    try:
        return sensor.poke({"task_state_store": store, "ti": FakeTaskInstance(try_number)})  # type: ignore[arg-type]
    finally:
        sensor.hook.close()


def test_reschedule_counts_failed_reads_across_pokes(emulator_admin: EmulatorAdmin) -> None:
    store = FakeStore()

    assert [reschedule_poke(store, "task_unknown") for _ in range(2)] == [False, False]
    assert store.values[ERRORS_KEY] == {"try": 1, "errors": 2}
    with pytest.raises(ApixoWaitError, match="404"):
        reschedule_poke(store, "task_unknown")
    assert store.values == {}  # the next try starts afresh


def test_reschedule_good_read_resets_the_count(emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.configure(generation_seconds=30)
    task_id = submit()
    emulator_admin.inject_http_errors(404, 2, "status")
    store = FakeStore()

    pokes = [reschedule_poke(store, task_id) for _ in range(3)]
    emulator_admin.inject_http_errors(404, 2, "status")
    pokes += [reschedule_poke(store, task_id) for _ in range(2)]

    assert pokes == [False] * 5
    assert store.values[ERRORS_KEY] == {"try": 1, "errors": 2}


def test_reschedule_count_of_an_earlier_try_is_ignored(emulator_admin: EmulatorAdmin) -> None:
    store = FakeStore()
    store.set(ERRORS_KEY, {"try": 1, "errors": 2})

    assert reschedule_poke(store, "task_unknown", try_number=2) is False
    assert store.values[ERRORS_KEY] == {"try": 2, "errors": 1}


def test_deferrable_defers_to_the_trigger_without_requests(
    emulator: EmulatorServer, emulator_admin: EmulatorAdmin
) -> None:
    sensor = make_sensor("task_abc", model="seedream-4-5", timeout=600)

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]

    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["apixo_task_id"] == "task_abc"
    assert kwargs["model"] == "seedream-4-5"
    assert kwargs["initial_delay"] == 0.0
    assert kwargs["poll_interval"] == 0.1
    assert deferred.value.timeout is not None and deferred.value.timeout.total_seconds() > 600
    assert emulator_admin.requests() == []


def test_bad_model_id_fails_before_any_request(emulator_admin: EmulatorAdmin) -> None:
    with pytest.raises(AirflowFailException, match="model"):
        make_sensor("task_abc", model="../admin").execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
    assert emulator_admin.requests() == []


def test_timeout_event_is_a_sensor_timeout() -> None:
    with pytest.raises(AirflowSensorTimeout, match="late"):
        make_sensor("t").execute_complete({"ti": FakeTaskInstance()}, event("timeout", "late"))  # type: ignore[arg-type]


def test_error_event_is_a_retryable_wait_error() -> None:
    """Polling failed in the triggerer: the task may still finish, and a sensor's retry only reads."""
    with pytest.raises(ApixoWaitError, match="could not be polled") as raised:
        make_sensor("t").execute_complete({"ti": FakeTaskInstance()}, event("error", "could not be polled"))  # type: ignore[arg-type]
    assert not isinstance(raised.value, AirflowFailException)
    assert raised.value.task_id == "t"


@pytest.mark.parametrize("status", ["timeout", "error"])
def test_soft_fail_skips_when_the_wait_ends_without_an_outcome(status: str) -> None:
    sensor = make_sensor("t", soft_fail=True)

    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("execute_complete", {"event": event(status)}, {})  # type: ignore[arg-type]


def test_soft_fail_skips_a_poked_task_that_failed_for_good(emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.fail_next_tasks("NSFW_DETECTED")
    task_id = submit()

    with pytest.raises(AirflowSkipException):
        make_sensor(task_id, deferrable=False, soft_fail=True).execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]


@pytest.mark.parametrize("task_id", ["", "None"])
def test_missing_task_id_fails_before_any_request(task_id: str, emulator_admin: EmulatorAdmin) -> None:
    """A missing XCom renders as "None": that is not a task to wait for."""
    with pytest.raises(AirflowFailException, match="apixo_task_id"):
        make_sensor(task_id, deferrable=False).execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
    assert emulator_admin.requests() == []

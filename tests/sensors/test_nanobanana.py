"""NanoBananaTaskSensor: poke answers, deferral, and the same outcome rules as the operator."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_nanobanana.exceptions import ApixoNotFoundError, ApixoTaskFailedError
from airflow_provider_nanobanana.sensors.nanobanana import NanoBananaTaskSensor
from tests.support import submit

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import EmulatorServer


def make_sensor(task_id: str, **kwargs: Any) -> NanoBananaTaskSensor:
    options = {"poke_interval": 0.1, "timeout": 20, **kwargs}
    return NanoBananaTaskSensor(task_id="wait", apixo_task_id=task_id, **options)


def poke_until_done(sensor: NanoBananaTaskSensor) -> tuple[int, PokeReturnValue]:
    for pokes in range(1, 100):
        answer = sensor.poke({})  # type: ignore[arg-type]
        if answer:
            assert isinstance(answer, PokeReturnValue)
            return pokes, answer
        time.sleep(0.1)
    raise AssertionError("the task never finished")


def test_poke_is_false_while_running_then_returns_the_result(emulator: EmulatorServer) -> None:
    task_id = submit()

    pokes, answer = poke_until_done(make_sensor(task_id, deferrable=False))

    assert pokes > 1
    assert answer.xcom_value["apixo_task_id"] == task_id
    assert answer.xcom_value["state"] == "success"
    assert len(answer.xcom_value["result_urls"]) == 1


@pytest.mark.parametrize(
    ("code", "error"), [("NSFW", AirflowFailException), ("MODEL_UNAVAILABLE", ApixoTaskFailedError)]
)
def test_poke_on_a_failed_task_follows_the_operator_rules(
    code: str, error: type[Exception], emulator: EmulatorServer
) -> None:
    emulator.emulator.fail_next_tasks(code, "no")
    task_id = submit()

    with pytest.raises(error, match=code):
        poke_until_done(make_sensor(task_id, deferrable=False))


def test_poke_on_an_unknown_task_raises_not_found(emulator: EmulatorServer) -> None:
    with pytest.raises(ApixoNotFoundError):
        make_sensor("task_does_not_exist", deferrable=False).poke({})  # type: ignore[arg-type]


def test_deferrable_defers_to_the_trigger_without_requests(emulator: EmulatorServer) -> None:
    sensor = make_sensor("task_abc", model="seedream-4-5", timeout=600)

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]

    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["apixo_task_id"] == "task_abc"
    assert kwargs["model"] == "seedream-4-5"
    assert kwargs["initial_delay"] == 0.0
    assert kwargs["poll_interval"] == 0.1
    assert deferred.value.timeout is not None and deferred.value.timeout.total_seconds() > 600
    assert emulator.emulator.requests == []


def test_bad_model_id_fails_before_any_request(emulator: EmulatorServer) -> None:
    with pytest.raises(AirflowFailException, match="model"):
        make_sensor("task_abc", model="../admin").execute({})  # type: ignore[arg-type]
    assert emulator.emulator.requests == []


def test_timeout_event_is_a_sensor_timeout() -> None:
    event = {
        "status": "timeout",
        "apixo_task_id": "t",
        "model": "nano-banana",
        "message": "late",
        "task": None,
    }

    with pytest.raises(AirflowSensorTimeout, match="late"):
        make_sensor("t").execute_complete({}, event)  # type: ignore[arg-type]


@pytest.mark.parametrize("task_id", ["", "None"])
def test_missing_task_id_fails_before_any_request(task_id: str, emulator: EmulatorServer) -> None:
    """A missing XCom renders as "None": that is not a task to wait for."""
    with pytest.raises(AirflowFailException, match="apixo_task_id"):
        make_sensor(task_id, deferrable=False).execute({})  # type: ignore[arg-type]
    assert emulator.emulator.requests == []

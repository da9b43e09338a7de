"""ApixoTaskSensor: the sensor for any model, and NanoBananaTaskSensor as its front."""

from __future__ import annotations

from datetime import datetime

import pytest
from airflow.sdk import DAG, task

from airflow_provider_nanobanana.compat import TaskDeferred
from airflow_provider_nanobanana.sensors.apixo import ApixoTaskSensor
from airflow_provider_nanobanana.sensors.nanobanana import NanoBananaTaskSensor
from tests.support import FakeTaskInstance


def deferred(sensor: ApixoTaskSensor) -> float:
    """The interval the sensor's trigger reads at (deferring sends no request)."""
    with pytest.raises(TaskDeferred) as deferral:
        sensor.execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
    return float(deferral.value.trigger.poll_interval)


@pytest.mark.parametrize(("model", "seconds"), [("veo-3-1", 15), ("seedream-4-5", 5), ("nano-banana", 3)])
def test_it_reads_at_the_models_cadence(model: str, seconds: float) -> None:
    assert deferred(ApixoTaskSensor(task_id="wait", apixo_task_id="t", model=model)) == seconds


def test_a_poke_interval_given_wins() -> None:
    sensor = ApixoTaskSensor(task_id="wait", apixo_task_id="t", model="veo-3-1", poke_interval=7)

    assert deferred(sensor) == 7


def test_the_model_may_come_from_upstream() -> None:
    """``model`` is an XComArg or a template when the DAG is parsed: its cadence is known at execute."""
    with DAG("sensing", schedule=None, start_date=datetime(2026, 1, 1)):

        @task
        def pick() -> str:
            return "veo-3-1"

        from_upstream = ApixoTaskSensor(task_id="wait", apixo_task_id="t", model=pick())
        templated = ApixoTaskSensor(task_id="later", apixo_task_id="t", model="{{ params.model }}")

    assert from_upstream.poke_interval == templated.poke_interval == 3
    templated.model = "veo-3-1"  # as rendered
    assert deferred(templated) == 15


def test_the_generic_sensor_is_told_the_model_and_the_front_knows_it() -> None:
    with pytest.raises(TypeError, match="model"):
        ApixoTaskSensor(task_id="wait", apixo_task_id="t")  # type: ignore[call-arg]

    front = NanoBananaTaskSensor(task_id="wait", apixo_task_id="t")
    assert (front.model, deferred(front)) == ("nano-banana", 3)
    assert NanoBananaTaskSensor(task_id="other", apixo_task_id="t", model="flux-2").model == "flux-2"

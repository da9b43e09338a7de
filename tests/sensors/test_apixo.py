"""ApixoTaskSensor: the sensor for any model, and NanoBananaTaskSensor as its front."""

from __future__ import annotations

import pytest

from airflow_provider_nanobanana.sensors.apixo import ApixoTaskSensor
from airflow_provider_nanobanana.sensors.nanobanana import NanoBananaTaskSensor


@pytest.mark.parametrize(("model", "seconds"), [("veo-3-1", 15), ("seedream-4-5", 5), ("nano-banana", 3)])
def test_it_reads_at_the_models_cadence(model: str, seconds: float) -> None:
    assert ApixoTaskSensor(task_id="wait", apixo_task_id="t", model=model).poke_interval == seconds


def test_a_poke_interval_given_wins() -> None:
    sensor = ApixoTaskSensor(task_id="wait", apixo_task_id="t", model="veo-3-1", poke_interval=7)

    assert sensor.poke_interval == 7


def test_the_generic_sensor_is_told_the_model_and_the_front_knows_it() -> None:
    with pytest.raises(TypeError, match="model"):
        ApixoTaskSensor(task_id="wait", apixo_task_id="t")  # type: ignore[call-arg]

    front = NanoBananaTaskSensor(task_id="wait", apixo_task_id="t")
    assert (front.model, front.poke_interval) == ("nano-banana", 3)
    assert NanoBananaTaskSensor(task_id="other", apixo_task_id="t", model="flux-2").model == "flux-2"

"""NanoBananaTaskSensor: wait for a Nano Banana task that something else submitted."""

from __future__ import annotations

from typing import Any

from airflow_provider_nanobanana.api import NANO_BANANA
from airflow_provider_nanobanana.sensors.apixo import ApixoTaskSensor


class NanoBananaTaskSensor(ApixoTaskSensor):
    """The typed front of :class:`~airflow_provider_nanobanana.sensors.apixo.ApixoTaskSensor` for
    ``nano-banana`` (read every 3 s by default). It still takes another ``model``, as it always has,
    and then reads at that model's cadence; ``ApixoTaskSensor`` says so more plainly.

    :param model: the model the task was created with (default ``nano-banana``). Templated.
    """

    def __init__(self, *, model: str = NANO_BANANA, **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)

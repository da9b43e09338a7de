"""NanoBananaTaskTrigger: the name :class:`~.apixo.ApixoTaskTrigger` had before it served every model.

Kept so that a task deferred on it before an upgrade resumes after it: Airflow stores a deferred
task's trigger as this classpath and its kwargs, and the triggerer imports it by that path.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_nanobanana.api import NANO_BANANA
from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger


class NanoBananaTaskTrigger(ApixoTaskTrigger):
    """:class:`~.apixo.ApixoTaskTrigger` with the defaults it had under this name (``nano-banana``)."""

    def __init__(
        self,
        *,
        model: str = NANO_BANANA,
        poll_interval: float = 3.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, poll_interval=poll_interval, **kwargs)

"""NanoBananaTaskSensor: wait for an APIXO task that something else submitted."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_provider_nanobanana.exceptions import ApixoInputError, ApixoWaitTimeoutError
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from airflow_provider_nanobanana.models import DEFAULT_POLL_INTERVAL, NANO_BANANA, check_model_id
from airflow_provider_nanobanana.polling import (
    DEFAULT_MAX_CONSECUTIVE_ERRORS,
    DEFER_TIMEOUT_GRACE,
    PollOutcome,
    TaskPoller,
    check_error_budget,
)
from airflow_provider_nanobanana.triggers.nanobanana import NanoBananaTaskTrigger

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context


class NanoBananaTaskSensor(BaseSensorOperator):
    """Wait for an existing APIXO task, e.g. one whose id came from XCom.

    Returns what :class:`NanoBananaGenerateOperator` returns and treats a failed task the same way.
    It only reads the task, so its retries are always safe; it never cancels what it did not submit.

    :param apixo_task_id: the APIXO task id. Templated.
    :param model: the model the task was created with (default ``nano-banana``). Templated.
    :param apixo_conn_id: the ``apixo`` connection.
    :param deferrable: wait in the triggerer (default); otherwise ``mode`` (poke/reschedule) applies.
    :param max_consecutive_errors: failed status reads in a row that end a deferred wait.
    """

    template_fields: Sequence[str] = ("apixo_task_id", "model", "apixo_conn_id")
    ui_color = "#ffe135"

    def __init__(
        self,
        *,
        apixo_task_id: str,
        model: str = NANO_BANANA,
        apixo_conn_id: str = ApixoHook.default_conn_name,
        deferrable: bool = True,
        poke_interval: timedelta | float = DEFAULT_POLL_INTERVAL,
        max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.apixo_task_id = apixo_task_id
        self.model = model
        self.apixo_conn_id = apixo_conn_id
        self.deferrable = deferrable
        self.max_consecutive_errors = check_error_budget(max_consecutive_errors)

    @cached_property
    def hook(self) -> ApixoHook:
        return ApixoHook(self.apixo_conn_id)

    def execute(self, context: Context) -> Any:
        check_model_id(self.model)
        if not self.apixo_task_id or self.apixo_task_id == "None":
            rule = f"is empty ({self.apixo_task_id!r}): did the upstream task push it to XCom?"
            raise ApixoInputError("apixo_task_id", rule)
        if not self.deferrable:
            try:
                return super().execute(context)
            finally:
                self.hook.close()
        self.defer(
            trigger=NanoBananaTaskTrigger(
                apixo_task_id=self.apixo_task_id,
                end_time=time.time() + self.timeout,
                model=self.model,
                apixo_conn_id=self.apixo_conn_id,
                poll_interval=self.poke_interval,
                max_consecutive_errors=self.max_consecutive_errors,
            ),
            method_name=self.execute_complete.__name__,
            timeout=timedelta(seconds=self.timeout) + DEFER_TIMEOUT_GRACE,
        )

    @cached_property
    def _poller(self) -> TaskPoller:
        """Kept across pokes (in poke mode), so that only state changes are logged at INFO."""
        return TaskPoller(self.model, self.apixo_task_id, deadline=math.inf, log=self.log)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        outcome = self._poller.observe(self.hook.get_task_status(self.model, self.apixo_task_id))
        if outcome is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=outcome.result())

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger's event; a deadline becomes a sensor timeout (soft_fail applies)."""
        outcome = PollOutcome.from_event(event)
        self.log.info("%s", outcome.message)
        try:
            return outcome.result()
        except ApixoWaitTimeoutError as error:
            raise AirflowSensorTimeout(str(error)) from error

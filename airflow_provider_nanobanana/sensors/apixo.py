"""ApixoTaskSensor: wait for an APIXO task of any model that something else submitted."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_nanobanana.compat import AirflowSensorTimeout, resumes_an_earlier_try
from airflow_provider_nanobanana.downloads import DEFAULT_MAX_IMAGE_BYTES
from airflow_provider_nanobanana.exceptions import ApixoError, ApixoWaitTimeoutError
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from airflow_provider_nanobanana.links import GeneratedImageLink, remember_image_link
from airflow_provider_nanobanana.polling import (
    DEFAULT_MAX_CONSECUTIVE_ERRORS,
    DEFER_TIMEOUT_GRACE,
    PollOutcome,
    TaskPoller,
    wait_cadence,
)
from airflow_provider_nanobanana.storage import prepared_location, store_results
from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger
from airflow_provider_nanobanana.validation import (
    check_apixo_task_id,
    check_error_budget,
    check_max_image_bytes,
    check_model_id,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_nanobanana.api import TaskStatus

# Where a rescheduled sensor keeps its run of failed reads between pokes; renaming it resets the runs.
ERRORS_KEY = "apixo_poll_errors"
# What Airflow shows and checks before ``model`` is rendered; execute reads at the model's cadence.
UNRENDERED_POKE_INTERVAL = 3.0


class ApixoTaskSensor(BaseSensorOperator):
    """Wait for an existing APIXO task of any model, e.g. one whose id came from XCom.

    Pass the ``model`` the task was created with (``seedream-4-5``, ``veo-3-1``, ...). Returns what
    the generating operators return and treats a failed task the same way.
    It only reads the task, so its retries are always safe; it never cancels what it did not submit.

    A read that fails (the task not visible yet right after its submission, a garbled answer, the
    service down after the hook's retries) counts towards ``max_consecutive_errors`` as in the
    deferred wait; a good read resets the count. In poke mode the count lives in the sensor. In
    reschedule mode every poke is a new sensor, so the run of failures is kept in the task
    instance's ``task_state_store`` (key ``apixo_poll_errors``), tagged with the try number so that a
    new try starts afresh, and dropped once a read succeeds. Without a store it counts per poke.

    :param apixo_task_id: the APIXO task id. Templated.
    :param model: the model the task was created with, any APIXO model id. Templated.
    :param apixo_conn_id: the ``apixo`` connection.
    :param deferrable: wait in the triggerer (default); otherwise ``mode`` (poke/reschedule) applies.
    :param poke_interval: seconds between status reads (default: the model's, from
        :data:`~airflow_provider_nanobanana.polling.MODEL_CADENCES`, once ``model`` is rendered).
    :param max_consecutive_errors: failed status reads in a row that end the wait.
    :param output_path: where to store the result images, as in the operator. Templated.
    :param max_image_bytes: a result image larger than this fails the download (default 100 MiB).
    """

    template_fields: Sequence[str] = ("apixo_task_id", "model", "apixo_conn_id", "output_path")
    ui_color = "#ffe135"
    operator_extra_links = (GeneratedImageLink(),)

    def __init__(
        self,
        *,
        apixo_task_id: str,
        model: str,
        apixo_conn_id: str = ApixoHook.default_conn_name,
        deferrable: bool = True,
        poke_interval: timedelta | float | None = None,
        max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
        output_path: str | ObjectStoragePath | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            poke_interval=UNRENDERED_POKE_INTERVAL if poke_interval is None else poke_interval, **kwargs
        )
        # ``model`` may be a template or an XComArg until execute: the model's cadence is set there.
        self.reads_at_the_models_cadence = poke_interval is None
        self.apixo_task_id = apixo_task_id
        self.model = model
        self.apixo_conn_id = apixo_conn_id
        self.deferrable = deferrable
        self.max_consecutive_errors = check_error_budget(max_consecutive_errors)
        self.output_path = output_path
        self.max_image_bytes = check_max_image_bytes(max_image_bytes)

    @cached_property
    def hook(self) -> ApixoHook:
        return ApixoHook(self.apixo_conn_id)

    def execute(self, context: Context) -> Any:
        check_model_id(self.model)
        if self.reads_at_the_models_cadence:
            self.poke_interval = wait_cadence(self.model).poll_interval
        check_apixo_task_id(self.apixo_task_id)
        if self.output_path is not None:
            prepared_location(self.output_path)
        if not self.deferrable:
            try:
                return super().execute(context)
            finally:
                self.hook.close()
        self.defer(
            trigger=ApixoTaskTrigger(
                apixo_task_id=self.apixo_task_id,
                end_time=time.time() + self.timeout,
                model=self.model,
                apixo_conn_id=self.apixo_conn_id,
                poll_interval=self.poke_interval,
                max_consecutive_errors=self.max_consecutive_errors,
                deferring_try=context["ti"].try_number,
            ),
            method_name=self.execute_complete.__name__,
            timeout=timedelta(seconds=self.timeout) + DEFER_TIMEOUT_GRACE,
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        if resumes_an_earlier_try(context, next_kwargs):
            return self.execute(context)
        return super().resume_execution(next_method, next_kwargs, context)

    @cached_property
    def _poller(self) -> TaskPoller:
        """Kept across pokes (in poke mode): it counts failed reads and logs only state changes at INFO."""
        return self._new_poller()

    def _new_poller(self, consecutive_errors: int = 0) -> TaskPoller:
        return TaskPoller(
            self.model,
            self.apixo_task_id,
            math.inf,
            self.max_consecutive_errors,
            self.log,
            consecutive_errors,
        )

    def poke(self, context: Context) -> PokeReturnValue | bool:
        carried = _CarriedErrors.of(context) if self.reschedule else None
        # A fresh poller that goes on with the run of failed reads of the earlier pokes of this try.
        poller = self._poller if carried is None else self._new_poller(carried.read())
        try:
            answer: TaskStatus | ApixoError = self.hook.get_task_status(self.model, self.apixo_task_id)
        except ApixoError as error:
            answer = error
        outcome = poller.observe(answer)
        if carried is not None:
            carried.write(poller.consecutive_errors if outcome is None else 0)
        if outcome is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._delivered(outcome.result(), context))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger's event; a deadline becomes a sensor timeout (soft_fail applies)."""
        outcome = PollOutcome.from_event(event)
        self.log.info("%s", outcome.message)
        try:
            result = outcome.result()
        except ApixoWaitTimeoutError as error:
            raise AirflowSensorTimeout(str(error)) from error
        return self._delivered(result, context)

    def _delivered(self, result: dict[str, Any], context: Context) -> dict[str, Any]:
        """The result, its images stored when ``output_path`` is set, and the image link set."""
        if self.output_path is not None:
            result = store_results(result, self.output_path, context, self.max_image_bytes, self.log)
        remember_image_link(self, result)
        return result


@dataclass(frozen=True)
class _CarriedErrors:
    """A rescheduled sensor's run of failed reads, kept in ``task_state_store`` between its pokes."""

    store: Any
    try_number: int

    @classmethod
    def of(cls, context: Context) -> _CarriedErrors | None:
        # Airflow's own store only: before 3.3 the count starts again at each poke (documented), as
        # a Variable read and write on every poke would cost more than the run of errors it keeps.
        store, ti = context.get("task_state_store"), context.get("ti")
        return None if store is None or ti is None else cls(store, ti.try_number)

    def read(self) -> int:
        stored = self.store.get(ERRORS_KEY)
        if isinstance(stored, dict) and stored.get("try") == self.try_number:
            errors = stored.get("errors")
            return errors if isinstance(errors, int) and errors > 0 else 0
        return 0

    def write(self, errors: int) -> None:
        """Store the new count; a run that ended (a good read, or the wait's end) is dropped."""
        if errors:
            self.store.set(ERRORS_KEY, {"try": self.try_number, "errors": errors})
        else:
            self.store.delete(ERRORS_KEY)

"""ApixoTaskTrigger: waits for an APIXO task of any model in the triggerer, without holding a worker slot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_nanobanana.compat import DEFERRING_TRY
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from airflow_provider_nanobanana.polling import DEFAULT_MAX_CONSECUTIVE_ERRORS, REATTACHED

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class ApixoTaskTrigger(BaseTrigger):
    """Poll one APIXO task until it ends; yield exactly one event.

    It only reads: submitting happens on the worker, so running this trigger twice is harmless.
    Its kwargs hold ids and settings; the API key is looked up from the connection at run time.
    Every trigger of the triggerer on the same key shares one client and one request budget, and
    reads when the key's scheduler gives it a turn (see :mod:`airflow_provider_nanobanana.scheduling`).

    :param apixo_task_id: the task to wait for.
    :param end_time: Unix time at which to give up with a ``timeout`` event.
    :param model: the model the task was created with.
    :param apixo_conn_id: the ``apixo`` connection.
    :param poll_interval: the least gap between two polls, in seconds (the gap while the budget
        has room).
    :param initial_delay: seconds before the first poll, counted from ``submitted_at``.
    :param max_consecutive_errors: failed polls in a row that end the wait with an ``error`` event.
    :param submitted_at: Unix time of the submission; None (as serialised by older versions) means
        when the trigger starts.
    :param callback_token_sha256: in callback mode, the hash of the webhook URL's token: the
        plugin's route reads it here to check a call (the trigger itself only polls, rarely).
    :param deferring_try: the try that deferred, echoed in the event so that a later try resumed
        with it (Airflow 3.0 does that) can tell it is not its own.
    :param reattached: the task was submitted by an earlier try, echoed in the event so that the
        result says so.

    It has no ``on_kill`` on purpose: when a webhook wakes the task, Airflow cancels this trigger as
    if a user had (and logs so), and nothing remote may happen then.
    """

    def __init__(
        self,
        *,
        apixo_task_id: str,
        end_time: float,
        model: str,
        apixo_conn_id: str = ApixoHook.default_conn_name,
        poll_interval: float,
        initial_delay: float = 0.0,
        max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
        submitted_at: float | None = None,
        callback_token_sha256: str | None = None,
        deferring_try: int | None = None,
        reattached: bool = False,
    ) -> None:
        super().__init__()
        self.apixo_task_id = apixo_task_id
        self.end_time = end_time
        self.model = model
        self.apixo_conn_id = apixo_conn_id
        self.poll_interval = poll_interval
        self.initial_delay = initial_delay
        self.max_consecutive_errors = max_consecutive_errors
        self.submitted_at = submitted_at
        self.callback_token_sha256 = callback_token_sha256
        self.deferring_try = deferring_try
        self.reattached = reattached

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "apixo_task_id": self.apixo_task_id,
                "end_time": self.end_time,
                "model": self.model,
                "apixo_conn_id": self.apixo_conn_id,
                "poll_interval": self.poll_interval,
                "initial_delay": self.initial_delay,
                "max_consecutive_errors": self.max_consecutive_errors,
                "submitted_at": self.submitted_at,
                "callback_token_sha256": self.callback_token_sha256,
                "deferring_try": self.deferring_try,
                "reattached": self.reattached,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = ApixoHook(self.apixo_conn_id)
        try:
            outcome = await hook.await_task(
                self.model,
                self.apixo_task_id,
                initial_delay=self.initial_delay,
                poll_interval=self.poll_interval,
                deadline=self.end_time,
                max_consecutive_errors=self.max_consecutive_errors,
                submitted_at=self.submitted_at,
            )
        finally:
            await hook.aclose()
        event = {**outcome.to_event(), DEFERRING_TRY: self.deferring_try, REATTACHED: self.reattached}
        yield TriggerEvent(event)

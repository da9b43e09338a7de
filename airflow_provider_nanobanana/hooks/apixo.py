"""ApixoHook: APIXO's task API as calls: submit a task for any model, read its status, wait for it.

The connection and the shared client are :class:`~.base.ApixoBaseHook`'s, retries
:class:`~.transport.Transport`'s; the shapes of the
requests and answers are :mod:`...api`'s; waits read in the order that :mod:`...scheduling` plans
from what finished tasks took, and end by the rules of :mod:`...polling`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_nanobanana import metrics
from airflow_provider_nanobanana.api import (
    BALANCE_PATH,
    NANO_BANANA,
    PROVIDERS,
    STATUS_PATH,
    SUBMIT_PATH,
    TaskStatus,
    build_task_body,
    parse_task_id,
    status_query,
)
from airflow_provider_nanobanana.exceptions import (
    ApixoAuthError,
    ApixoBadRequestError,
    ApixoError,
    ApixoMalformedResponseError,
    ApixoNotFoundError,
    ApixoSubmissionUncertainError,
    ApixoTransportError,
)
from airflow_provider_nanobanana.hooks import connection_form
from airflow_provider_nanobanana.hooks.base import ApixoBaseHook
from airflow_provider_nanobanana.hooks.settings import ConnectionSettings
from airflow_provider_nanobanana.hooks.transport import RetryPolicy
from airflow_provider_nanobanana.polling import (
    DEFAULT_MAX_CONSECUTIVE_ERRORS,
    OutcomeStatus,
    PollOutcome,
    TaskPoller,
)
from airflow_provider_nanobanana.scheduling import DURATIONS, PollTicket, scheduler_for
from airflow_provider_nanobanana.validation import check_choice, check_model_id

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping

__all__ = ["ApixoHook", "ConnectionSettings", "RetryPolicy"]


class ApixoHook(ApixoBaseHook):
    """Talks to APIXO's task API: submit a task for any model, read its status, wait for it.

    Hooks on the same key share one kept-alive ``httpx.Client`` per process and one
    ``httpx.AsyncClient`` per event loop, and every request waits for its turn in the key's budget.
    Close a hook (:meth:`close`, :meth:`aclose`) when done with it: the last one closes the client.

    :param apixo_conn_id: the ``apixo`` connection: Base URL in host, API key in password, extras
        ``provider`` (default routing), ``timeout`` (seconds per request), ``requests_per_minute``
        (this process's budget for the key), ``max_in_flight`` (requests sent at once),
        ``rate_limit_storage`` (a Redis URL that shares the budget between processes) and
        ``callback_base_url`` (the api-server's public URL: APIXO's webhook wakes deferred tasks).
    :param retry_policy: how transient failures are retried.
    :param timeout: per-request timeout in seconds, overriding the connection's.
    """

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's extra fields, for Airflow before 3.2 (later versions read provider info)."""
        return connection_form.form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form's standard fields, for Airflow before 3.2 (later versions read provider info)."""
        return connection_form.field_behaviour()

    def submit_task(
        self,
        model: str,
        task_input: Mapping[str, Any],
        *,
        provider: str | None = None,
        callback_url: str | None = None,
        capacity_wait: float | None = None,
    ) -> str:
        """Create a task and return its id. Resent only when APIXO provably did not take it.

        :param capacity_wait: how long answers 429 are retried, paced, before this fails (default:
            the retry policy's, 300 s).
        """
        path, what, body = self._submission(model, task_input, provider, callback_url)
        try:
            data = self._call("POST", path, what=what, capacity_wait=capacity_wait, json=body)
            return self._submitted(model, data)
        except ApixoMalformedResponseError as error:
            raise ApixoSubmissionUncertainError(what, str(error)) from error

    async def asubmit_task(
        self,
        model: str,
        task_input: Mapping[str, Any],
        *,
        provider: str | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Async :meth:`submit_task`."""
        await self._async_client()  # looks the connection up without blocking the loop
        path, what, body = self._submission(model, task_input, provider, callback_url)
        try:
            return self._submitted(model, await self._acall("POST", path, what=what, json=body))
        except ApixoMalformedResponseError as error:
            raise ApixoSubmissionUncertainError(what, str(error)) from error

    def _submission(
        self, model: str, task_input: Mapping[str, Any], provider: str | None, callback_url: str | None
    ) -> tuple[str, str, dict[str, Any]]:
        check_model_id(model)
        if provider is not None:
            check_choice("provider", provider, PROVIDERS)
        body = build_task_body(
            task_input, provider=provider or self.settings.provider, callback_url=callback_url
        )
        return SUBMIT_PATH.format(model=model), f"Submitting a {model} task", body

    def _submitted(self, model: str, data: Any) -> str:
        task_id = parse_task_id(data)
        self.log.info("Submitted APIXO %s task %s", model, task_id)
        metrics.count("submit", model=model)
        return task_id

    def get_task_status(self, model: str, task_id: str, *, time_limit: float | None = None) -> TaskStatus:
        """Read a task's status; ``model`` must be the one the task was created with. An answer 429
        is retried like any transient failure, not for the key's capacity: a wait reads later.

        :param time_limit: seconds the read may take, retries included (default: as long as the
            retry policy and the request timeout allow).
        """
        check_model_id(model)
        path, what = STATUS_PATH.format(model=model), f"Reading APIXO task {task_id}"
        params = status_query(task_id)
        data = self._call("GET", path, what=what, time_limit=time_limit, capacity_wait=0, params=params)
        metrics.count("status_read", model=model)
        return TaskStatus.from_api(data)

    async def aget_task_status(self, model: str, task_id: str) -> TaskStatus:
        """Async :meth:`get_task_status`, for triggers."""
        return await self._aread_status(model, task_id, granted=False)

    async def _aread_status(self, model: str, task_id: str, *, granted: bool) -> TaskStatus:
        check_model_id(model)
        path, what = STATUS_PATH.format(model=model), f"Reading APIXO task {task_id}"
        params = status_query(task_id)
        data = await self._acall("GET", path, what=what, granted=granted, capacity_wait=0, params=params)
        metrics.count("status_read", model=model)
        return TaskStatus.from_api(data)

    def wait_for_task(
        self,
        model: str,
        task_id: str,
        *,
        initial_delay: float,
        poll_interval: float,
        deadline: float,
        max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
    ) -> PollOutcome:
        """Poll until the task ends, a run of errors exhausts the budget, or ``deadline`` (Unix time).

        Blocking, at a fixed cadence; every read still waits for its turn in the key's budget. As in
        :meth:`await_task`, a hanging read cannot outlast the deadline much.
        """
        poller = TaskPoller(model, task_id, deadline, max_consecutive_errors, self.log)
        delay = initial_delay
        while True:
            time.sleep(poller.sleep_time(delay))
            try:
                answer: TaskStatus | ApixoError = self.get_task_status(
                    model, task_id, time_limit=poller.read_budget()
                )
            except ApixoError as error:
                answer = error
            if outcome := poller.observe(answer):
                return _learned(outcome)
            delay = poll_interval

    async def await_task(
        self,
        model: str,
        task_id: str,
        *,
        initial_delay: float,
        poll_interval: float,
        deadline: float,
        max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
        submitted_at: float | None = None,
    ) -> PollOutcome:
        """Async :meth:`wait_for_task`, for triggers: each read is granted by the key's scheduler.

        ``poll_interval`` is the least gap between two reads of this task; with budget to spare it is
        the gap. A hanging read cannot outlast the deadline much.

        :param submitted_at: Unix time of the submission (default now), from which ``initial_delay``
            counts.
        """
        await self._async_client()
        poller = TaskPoller(model, task_id, deadline, max_consecutive_errors, self.log)
        known = submitted_at is not None
        ticket = PollTicket(model, submitted_at or time.time(), initial_delay, poll_interval, known)
        scheduler = scheduler_for(self.pacer)
        while True:
            granted = await _turn_before(scheduler.turn(ticket), deadline)
            try:
                async with asyncio.timeout(poller.read_budget()):
                    answer: TaskStatus | ApixoError = await self._aread_status(
                        model, task_id, granted=granted
                    )
            except ApixoError as error:
                answer = error
            except TimeoutError:
                answer = ApixoTransportError(f"Reading APIXO task {task_id} did not finish by the deadline")
            created = answer.create_time if isinstance(answer, TaskStatus) else None
            ticket.read(time.time(), None if created is None else created / 1000)
            if outcome := poller.observe(answer):
                return _learned(outcome)

    def test_connection(self) -> tuple[bool, str]:
        """A cheap authenticated call or two, for the UI's Test button; no retries.

        The balance endpoint is undocumented: an answer in another shape still proves the key once
        the same call without a key is refused; where it is missing, a status read of an unknown
        task stands in for it.
        """
        try:
            base_url = self.settings.base_url
            try:
                self._call("GET", BALANCE_PATH, what="Checking the key", attempts=1, capacity_wait=0)
            except ApixoMalformedResponseError:
                self._require_key(BALANCE_PATH)
            except ApixoNotFoundError:
                status_path, params = STATUS_PATH.format(model=NANO_BANANA), status_query("connection-test")
                with contextlib.suppress(ApixoNotFoundError, ApixoBadRequestError):
                    self._call(
                        "GET",
                        status_path,
                        what="Checking the key",
                        attempts=1,
                        capacity_wait=0,
                        params=params,
                    )
                self._require_key(status_path, params=params)
        except ApixoAuthError as error:
            return False, f"APIXO rejected the API key: {error}"
        except ApixoError as error:
            return False, str(error)
        finally:
            self.close()
        return True, f"Connected to {base_url}: the API key is valid"

    def _require_key(self, path: str, **kwargs: Any) -> None:
        """Prove the server checks keys on ``path``, so that our key's success means something."""
        try:
            no_key = {"Authorization": ""}
            self._call(
                "GET",
                path,
                what="Checking the base URL",
                attempts=1,
                capacity_wait=0,
                headers=no_key,
                **kwargs,
            )
        except ApixoAuthError:
            return
        except ApixoError:
            pass
        raise ApixoError(
            f"{self.settings.base_url} does not answer like the APIXO API (it does not ask for an API key): "
            f"check the Base URL field of the APIXO connection {self.apixo_conn_id!r}"
        )


async def _turn_before(turn: Coroutine[Any, Any, bool], deadline: float) -> bool:
    """Wait for a scheduled read until the deadline; whether its request is paid for. When the
    deadline comes first, the last read waits for the budget like any other request."""
    try:
        async with asyncio.timeout(max(0.0, deadline - time.time())):
            return await turn
    except TimeoutError:
        return False


def _learned(outcome: PollOutcome) -> PollOutcome:
    """Teach the process's duration estimates from a successful task."""
    if outcome.status is OutcomeStatus.SUCCESS and outcome.task is not None:
        DURATIONS.observe_task(outcome.model, outcome.task)
    return outcome

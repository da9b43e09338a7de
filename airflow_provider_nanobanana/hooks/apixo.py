"""ApixoHook: the connection and every HTTP call to APIXO's task API, sync and async.

Retries live here and nowhere else. A request is resent only when sending it again is safe: status
reads always; task submissions only when APIXO provably did not take them (the connection was never
made, or it answered 429, or 503 with ``Retry-After``). A submission that may have reached APIXO
without a usable answer raises :class:`ApixoSubmissionUncertainError` instead, so a paid task is
never created twice by the hook.

Every request of a process on the same key shares one kept-alive client per event loop
(:mod:`.clients`) and one request budget (:mod:`..pacing`); waits for tasks read in the order that
:mod:`..scheduling` plans from what finished tasks took.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import ssl
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from airflow.sdk.log import mask_secret
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay

from airflow_provider_nanobanana import __version__
from airflow_provider_nanobanana.callbacks import check_callback_base_url
from airflow_provider_nanobanana.compat import AirflowNotFoundException, BaseHook, aget_connection
from airflow_provider_nanobanana.exceptions import (
    ApixoApiError,
    ApixoAuthError,
    ApixoBadRequestError,
    ApixoConnectionNotFoundError,
    ApixoError,
    ApixoInputError,
    ApixoInsufficientBalanceError,
    ApixoMalformedResponseError,
    ApixoNotFoundError,
    ApixoRateLimitError,
    ApixoServerError,
    ApixoSubmissionUncertainError,
    ApixoTransportError,
)
from airflow_provider_nanobanana.get_provider_info import CONN_FIELDS
from airflow_provider_nanobanana.hooks import connection_form
from airflow_provider_nanobanana.hooks.clients import CLIENTS, AsyncClient, SyncClient
from airflow_provider_nanobanana.models import (
    BALANCE_PATH,
    DEFAULT_BASE_URL,
    NANO_BANANA,
    PROVIDERS,
    STATUS_PATH,
    SUBMIT_PATH,
    Envelope,
    TaskStatus,
    build_task_body,
    check_choice,
    check_model_id,
    parse_task_id,
    status_query,
)
from airflow_provider_nanobanana.pacing import (
    APIXO_REQUESTS_PER_MINUTE,
    DEFAULT_REQUESTS_PER_MINUTE,
    PacerConfig,
    RequestPacer,
    key_fingerprint,
    pacer_for,
)
from airflow_provider_nanobanana.polling import (
    DEFAULT_MAX_CONSECUTIVE_ERRORS,
    OutcomeStatus,
    PollOutcome,
    TaskPoller,
    check_seconds,
)
from airflow_provider_nanobanana.scheduling import DURATIONS, PollTicket, scheduler_for

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping

    from airflow.sdk import Connection
    from tenacity import RetryCallState
    from tenacity.stop import stop_base

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_IN_FLIGHT = 32
REDIS_SCHEMES = ("redis", "rediss")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; ``Retry-After`` wins when APIXO sends one."""

    max_attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0

    def wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApixoApiError) and error.retry_after is not None:
            return min(error.retry_after, self.max_wait)
        ceiling = min(self.max_wait, self.initial_wait * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook reads from an ``apixo`` connection."""

    base_url: str
    api_key: str = field(repr=False)
    provider: str
    timeout: float
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    rate_limit_storage: str | None = field(default=None, repr=False)
    callback_base_url: str | None = None

    @classmethod
    def from_connection(cls, conn: Connection, timeout: float | None = None) -> ConnectionSettings:
        """Read and check ``conn``; a bad value is named as the form shows it. ``timeout``, the
        hook's own, wins over the connection's."""
        if not conn.password:
            raise ApixoError(f"The API key field of the APIXO connection {conn.conn_id!r} is empty")
        if timeout is not None:
            check_seconds("timeout", timeout, minimum=0.1)
        try:
            return cls._read(conn, conn.password, timeout)
        except ApixoInputError as error:
            raise ApixoInputError(
                error.field, error.rule, label=_form_label(error.field, conn.conn_id)
            ) from None

    @classmethod
    def _read(cls, conn: Connection, api_key: str, timeout: float | None) -> ConnectionSettings:
        extra = conn.extra_dejson
        return cls(
            base_url=_base_url(conn.host, conn.port, _api_path(conn.schema)),
            api_key=api_key,
            provider=check_choice("extra.provider", extra.get("provider") or "auto", PROVIDERS),
            timeout=_request_timeout(timeout or extra.get("timeout") or DEFAULT_REQUEST_TIMEOUT),
            requests_per_minute=_whole_number(
                "extra.requests_per_minute",
                _given(extra.get("requests_per_minute"), DEFAULT_REQUESTS_PER_MINUTE),
                maximum=APIXO_REQUESTS_PER_MINUTE,
            ),
            max_in_flight=_whole_number(
                "extra.max_in_flight", _given(extra.get("max_in_flight"), DEFAULT_MAX_IN_FLIGHT), maximum=1000
            ),
            rate_limit_storage=_storage_uri(extra.get("rate_limit_storage")),
            callback_base_url=_callback_base_url(extra.get("callback_base_url")),
        )

    @property
    def fingerprint(self) -> str:
        """Names this key at this API in registries and Redis: a hash, never the key."""
        return key_fingerprint(self.base_url, self.api_key)

    @property
    def client_key(self) -> tuple[str, float, int]:
        """Hooks whose settings give the same key share one client."""
        return (self.fingerprint, self.timeout, self.max_in_flight)

    def pacer_config(self) -> PacerConfig:
        return PacerConfig(self.fingerprint, self.requests_per_minute, self.rate_limit_storage)

    def client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "headers": {
                "Authorization": f"Bearer {self.api_key}",
                "User-Agent": f"airflow-provider-nanobanana/{__version__}",
            },
            "timeout": httpx.Timeout(self.timeout),
        }


def _form_label(field: str, conn_id: str) -> str:
    """``extra.timeout`` as the connection form names it: its label, then where it is stored."""
    name = field.removeprefix("extra.")
    label = CONN_FIELDS[name]["label"] if name in CONN_FIELDS else name  # schema: not in the form
    return f"{label!r} field ({field}) of the APIXO connection {conn_id!r}"


def _api_path(schema: str | None) -> str | None:
    """The connection's schema is the API path (where a URI's path lands), never a protocol."""
    if schema and schema.strip("/").lower() in ("http", "https"):
        rule = f"is the API path, not the protocol; got {schema!r}: put the protocol in the Base URL"
        raise ApixoInputError("schema", rule)
    return schema


def _given(value: Any, default: int) -> Any:
    """An extra's value, or the default where the form left it empty (0 is a value, and wrong)."""
    return default if value is None or value == "" else value


def _whole_number(field: str, value: Any, *, maximum: int) -> int:
    """A whole number from 1 to ``maximum``; the UI may store it as text."""
    with contextlib.suppress(TypeError, ValueError):
        value = int(str(value))
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ApixoInputError(field, f"must be a whole number from 1 to {maximum}; got {value!r}")
    return value


def _storage_uri(value: Any) -> str | None:
    """``rate_limit_storage``: empty for this process's memory, else a Redis URL. Never echoed back,
    and its password is masked in logs."""
    if not value:
        return None
    if not isinstance(value, str) or urlsplit(value).scheme not in REDIS_SCHEMES:
        raise ApixoInputError(
            "extra.rate_limit_storage", "must be empty or a redis:// or rediss:// URL (redis://host:6379/0)"
        )
    if password := urlsplit(value).password:
        mask_secret(password)
    return value


def _callback_base_url(value: Any) -> str | None:
    """``callback_base_url``: where APIXO reaches the api-server's webhook route; empty to poll."""
    return check_callback_base_url(value, "extra.callback_base_url") if value else None


def _request_timeout(value: Any) -> float:
    """The ``timeout`` extra: the UI may store it as text."""
    with contextlib.suppress(TypeError, ValueError):
        value = float(value)
    return check_seconds("extra.timeout", value, minimum=0.1)


def _base_url(host: str | None, port: int | None, path: str | None = None) -> str:
    """The connection's host is a full base URL; a bare host name means HTTPS. The API path is the
    host's own, else the connection's schema (where a URI's path lands), else ``/api/v1``."""
    if not host:
        return DEFAULT_BASE_URL
    url = host if "://" in host else f"https://{host}"
    parts = urlsplit(url)
    if port and not parts.port:
        url = url.replace(parts.netloc, f"{parts.netloc}:{port}", 1)
    if not parts.path.strip("/"):
        url = url.rstrip("/") + "/" + ((path or "").strip("/") or "api/v1")
    return url.rstrip("/")


class ApixoHook(BaseHook):
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

    conn_name_attr = "apixo_conn_id"
    default_conn_name = "apixo_default"
    conn_type = "apixo"
    hook_name = "APIXO"

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's extra fields, for Airflow before 3.2 (later versions read provider info)."""
        return connection_form.form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form's standard fields, for Airflow before 3.2 (later versions read provider info)."""
        return connection_form.field_behaviour()

    def __init__(
        self,
        apixo_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.apixo_conn_id = apixo_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self.timeout = timeout
        self._settings: ConnectionSettings | None = None
        self._pacer: RequestPacer | None = None
        self._shared: SyncClient | None = None
        self._ashared: AsyncClient | None = None
        self._ashared_loop: asyncio.AbstractEventLoop | None = None

    # -- clients ---------------------------------------------------------------------------------

    def get_conn(self) -> httpx.Client:
        """The process's sync client for this connection's key, leased on first use."""
        return self._sync_client().client

    async def aget_conn(self) -> httpx.AsyncClient:
        """The running loop's client for this key; the connection is looked up without blocking."""
        return (await self._async_client()).client

    @property
    def settings(self) -> ConnectionSettings:
        """The connection's settings; a sync lookup, so never from inside an event loop."""
        if self._settings is None:
            try:
                conn = self.get_connection(self.apixo_conn_id)
            except AirflowNotFoundException:
                raise ApixoConnectionNotFoundError(self.apixo_conn_id, "for this task") from None
            self._settings = ConnectionSettings.from_connection(conn, self.timeout)
        return self._settings

    @property
    def pacer(self) -> RequestPacer:
        """The request budget of this connection's key, shared by the whole process."""
        if self._pacer is None:
            self._pacer = pacer_for(self.settings.pacer_config())
        return self._pacer

    def close(self) -> None:
        """Let go of the sync client (closed once no hook of the process uses it)."""
        if self._shared is not None:
            self._shared = None
            CLIENTS.release(self.settings.client_key)

    async def aclose(self) -> None:
        """Let go of the async client (closed once no hook of the loop uses it). A lease taken in
        another loop, one that has ended, can only be abandoned there."""
        if self._ashared is not None and self._ashared_loop is not None:
            self._ashared = None
            if self._ashared_loop is asyncio.get_running_loop():
                await CLIENTS.arelease(self.settings.client_key)
            else:
                CLIENTS.abandon(self._ashared_loop, self.settings.client_key)

    def _sync_client(self) -> SyncClient:
        if self._shared is None:
            settings = self.settings
            options = settings.client_options()
            self._shared = CLIENTS.lease(settings.client_key, options, settings.max_in_flight)
        return self._shared

    async def _async_client(self) -> AsyncClient:
        loop = asyncio.get_running_loop()
        if self._ashared is None or self._ashared_loop is not loop:
            if self._ashared is not None and self._ashared_loop is not None:
                CLIENTS.abandon(self._ashared_loop, self.settings.client_key)
            if self._settings is None:
                try:
                    conn = await aget_connection(self.apixo_conn_id)
                except AirflowNotFoundException:
                    where = "for the async lookup (in the triggerer, for a deferred task)"
                    raise ApixoConnectionNotFoundError(self.apixo_conn_id, where) from None
                self._settings = ConnectionSettings.from_connection(conn, self.timeout)
            settings = self.settings
            self._ashared = CLIENTS.alease(
                settings.client_key, settings.client_options(), settings.max_in_flight
            )
            self._ashared_loop = loop
        return self._ashared

    # -- the API ---------------------------------------------------------------------------------

    def submit_task(
        self,
        model: str,
        task_input: Mapping[str, Any],
        *,
        provider: str | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Create a task and return its id. Resent only when APIXO provably did not take it."""
        path, what, body = self._submission(model, task_input, provider, callback_url)
        try:
            return self._submitted(model, self._call("POST", path, what=what, json=body))
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
        return task_id

    def get_task_status(self, model: str, task_id: str, *, time_limit: float | None = None) -> TaskStatus:
        """Read a task's status; ``model`` must be the one the task was created with.

        :param time_limit: seconds the read may take, retries included (default: as long as the
            retry policy and the request timeout allow).
        """
        check_model_id(model)
        path, what = STATUS_PATH.format(model=model), f"Reading APIXO task {task_id}"
        data = self._call("GET", path, what=what, time_limit=time_limit, params=status_query(task_id))
        return TaskStatus.from_api(data)

    async def aget_task_status(self, model: str, task_id: str) -> TaskStatus:
        """Async :meth:`get_task_status`, for triggers."""
        return await self._aread_status(model, task_id, granted=False)

    async def _aread_status(self, model: str, task_id: str, *, granted: bool) -> TaskStatus:
        check_model_id(model)
        path, what = STATUS_PATH.format(model=model), f"Reading APIXO task {task_id}"
        data = await self._acall("GET", path, what=what, granted=granted, params=status_query(task_id))
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
                self._call("GET", BALANCE_PATH, what="Checking the key", attempts=1)
            except ApixoMalformedResponseError:
                self._require_key(BALANCE_PATH)
            except ApixoNotFoundError:
                status_path, params = STATUS_PATH.format(model=NANO_BANANA), status_query("connection-test")
                with contextlib.suppress(ApixoNotFoundError, ApixoBadRequestError):
                    self._call("GET", status_path, what="Checking the key", attempts=1, params=params)
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
            self._call("GET", path, what="Checking the base URL", attempts=1, headers=no_key, **kwargs)
        except ApixoAuthError:
            return
        except ApixoError:
            pass
        raise ApixoError(
            f"{self.settings.base_url} does not answer like the APIXO API (it does not ask for an API key): "
            f"check the Base URL field of the APIXO connection {self.apixo_conn_id!r}"
        )

    # -- transport -------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        attempts: int | None = None,
        time_limit: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """One request with retries. A blocking request cannot be cancelled like a coroutine, so a
        ``time_limit`` shrinks each attempt's timeouts to what is left of it and starts no retry
        that would end past it."""
        shared, pacer, timeout = self._sync_client(), self.pacer, self.settings.timeout
        ends = math.inf if time_limit is None else time.monotonic() + time_limit

        def attempt() -> Any:
            pacer.acquire()
            with shared.slots:
                left = min(timeout, max(0.0, ends - time.monotonic()))
                try:
                    response = shared.client.request(method, path, timeout=left, **kwargs)
                except httpx.HTTPError as error:
                    raise _transport_error(error, method, what, self.apixo_conn_id) from error
            return self._checked(response, what)

        return Retrying(**self._retry_options(what, attempts, time_limit))(attempt)

    async def _acall(
        self,
        method: str,
        path: str,
        *,
        what: str,
        attempts: int | None = None,
        granted: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One request with retries; ``granted``: the first attempt's turn in the budget is already
        taken (by the scheduler)."""
        shared, pacer = await self._async_client(), self.pacer
        turn_taken = granted

        async def attempt() -> Any:
            nonlocal turn_taken
            if not turn_taken:
                await pacer.aacquire()
            turn_taken = False
            async with shared.slots:
                try:
                    response = await shared.client.request(method, path, **kwargs)
                except httpx.HTTPError as error:
                    raise _transport_error(error, method, what, self.apixo_conn_id) from error
            return self._checked(response, what)

        return await AsyncRetrying(**self._retry_options(what, attempts))(attempt)

    def _checked(self, response: httpx.Response, what: str) -> Any:
        """The envelope's data; an answer that asks to slow down pauses the whole key first."""
        try:
            return _read_envelope(response, what, self.apixo_conn_id)
        except ApixoApiError as error:
            if isinstance(error, ApixoRateLimitError) or error.retry_after is not None:
                retry_after = error.retry_after
                self.pacer.pause(
                    None if retry_after is None else min(retry_after, self.retry_policy.max_wait)
                )
            raise

    def _retry_options(
        self, what: str, attempts: int | None, time_limit: float | None = None
    ) -> dict[str, Any]:
        policy = self.retry_policy
        max_attempts = attempts or policy.max_attempts
        stop: stop_base = stop_after_attempt(max_attempts)
        if time_limit is not None:
            stop = stop | stop_before_delay(time_limit)

        def log_retry(state: RetryCallState) -> None:
            self.log.warning(
                "%s failed (attempt %d of %d), retrying in %.1f s: %s",
                what,
                state.attempt_number,
                max_attempts,
                state.next_action.sleep if state.next_action else 0.0,
                state.outcome.exception() if state.outcome else None,
            )

        return {
            "retry": retry_if_exception(lambda error: isinstance(error, ApixoError) and error.transient),
            "stop": stop,
            "wait": policy.wait,
            "before_sleep": log_retry,
            "reraise": True,
        }


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


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


# What OpenSSL reports when the server answers a TLS handshake in plain HTTP (OpenSSL 3.0; 3.2 and later).
_PLAIN_HTTP_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})


def _transport_error(error: httpx.HTTPError, method: str, what: str, conn_id: str) -> ApixoError:
    """Name what went wrong on the wire (or in decoding); a POST that may have been received is final."""
    if method == "POST" and not isinstance(error, _NOT_SENT):
        return ApixoSubmissionUncertainError(what, f"{type(error).__name__}: {error}")
    try:
        url: Any = error.request.url.copy_with(query=None)
    except RuntimeError:  # an error built without its request
        url = "APIXO"
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
    message = f"{what}: request to {url} {kind} ({type(error).__name__}: {error})"
    if _answered_in_plain_http(error):
        message += (
            ". The server did not answer in TLS: if it serves plain HTTP, write http:// before the host "
            f"in the Base URL field of the APIXO connection {conn_id!r} (a host without one means https://)"
        )
    return ApixoTransportError(message)


def _answered_in_plain_http(error: BaseException) -> bool:
    """Whether the TLS handshake failed because the server answered it in plain HTTP."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:  # a chain may loop back on itself
        if isinstance(cause, ssl.SSLError):
            return getattr(cause, "reason", None) in _PLAIN_HTTP_REASONS  # None when built in Python
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


# 5xx map to ApixoServerError; other codes without an entry to the base ApixoApiError.
_ERRORS_BY_STATUS: dict[int, type[ApixoApiError]] = {
    400: ApixoBadRequestError,
    401: ApixoAuthError,
    402: ApixoInsufficientBalanceError,
    403: ApixoAuthError,
    404: ApixoNotFoundError,
    429: ApixoRateLimitError,
}


def _read_envelope(response: httpx.Response, what: str, conn_id: str) -> Any:
    """Return the envelope's ``data``, or raise the error it describes.

    APIXO may signal an error in the envelope's ``code`` under HTTP 200: that counts as the status.
    """
    try:
        envelope = Envelope.parse(response.json())
    except ValueError:
        envelope = Envelope.parse(None)
    status = response.status_code if response.status_code != 200 else envelope.code
    if status == 200:
        return envelope.data
    if response.status_code == 200 and envelope.code is None:
        raise ApixoMalformedResponseError(f"{what}: APIXO answered HTTP 200 without a JSON envelope")
    error = _api_error(status, envelope, response, conn_id)
    if response.request.method == "POST" and not _rejected(error):
        raise ApixoSubmissionUncertainError(what, str(error)) from error
    raise error


def _api_error(status: Any, envelope: Envelope, response: httpx.Response, conn_id: str) -> ApixoError:
    if not isinstance(status, int) or not 400 <= status <= 599:
        return ApixoMalformedResponseError(f"APIXO answered an envelope with code {status!r}")
    message = envelope.message or response.reason_phrase or "error"
    error_class = ApixoServerError if status >= 500 else _ERRORS_BY_STATUS.get(status, ApixoApiError)
    return error_class(status, message, envelope.error_detail, _retry_after(response), conn_id=conn_id)


def _rejected(error: ApixoError) -> bool:
    """Whether APIXO turned a submission away, so no task can exist.

    A 4xx says so. A 503 may come from a proxy that already forwarded the request, so only one
    that asks to come back later (``Retry-After``) counts.
    """
    if not isinstance(error, ApixoApiError):
        return False
    return error.http_status < 500 or (error.http_status == 503 and error.retry_after is not None)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None

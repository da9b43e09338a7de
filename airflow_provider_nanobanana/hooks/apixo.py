"""ApixoHook: the connection and every HTTP call to APIXO's task API, sync and async.

Retries live here and nowhere else. A request is resent only when sending it again is safe: status
reads always; task submissions only when APIXO provably did not take them (the connection was never
made, or it answered 429, or 503 with ``Retry-After``). A submission that may have reached APIXO
without a usable answer raises :class:`ApixoSubmissionUncertainError` instead, so a paid task is
never created twice by the hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from airflow.sdk import BaseHook
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt

from airflow_provider_nanobanana import __version__
from airflow_provider_nanobanana.exceptions import (
    ApixoApiError,
    ApixoAuthError,
    ApixoBadRequestError,
    ApixoError,
    ApixoInsufficientBalanceError,
    ApixoMalformedResponseError,
    ApixoNotFoundError,
    ApixoRateLimitError,
    ApixoServerError,
    ApixoSubmissionUncertainError,
    ApixoTransportError,
)
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
from airflow_provider_nanobanana.polling import (
    DEFAULT_MAX_CONSECUTIVE_ERRORS,
    PollOutcome,
    TaskPoller,
    check_seconds,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Connection
    from tenacity import RetryCallState

DEFAULT_REQUEST_TIMEOUT = 30.0


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

    @classmethod
    def from_connection(cls, conn: Connection, timeout: float | None = None) -> ConnectionSettings:
        if not conn.password:
            raise ApixoError(
                f"Connection {conn.conn_id!r} has no API key: put it in the connection's API key field"
            )
        extra = conn.extra_dejson
        return cls(
            base_url=_base_url(conn.host, conn.port),
            api_key=conn.password,
            provider=check_choice("extra.provider", extra.get("provider") or "auto", PROVIDERS),
            timeout=_request_timeout(timeout or extra.get("timeout") or DEFAULT_REQUEST_TIMEOUT),
        )

    def client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "headers": {
                "Authorization": f"Bearer {self.api_key}",
                "User-Agent": f"airflow-provider-nanobanana/{__version__}",
            },
            "timeout": httpx.Timeout(self.timeout),
        }


def _request_timeout(value: Any) -> float:
    """The ``timeout`` extra: the UI may store it as text."""
    with contextlib.suppress(TypeError, ValueError):
        value = float(value)
    return check_seconds("extra.timeout", value, minimum=0.1)


def _base_url(host: str | None, port: int | None) -> str:
    """The connection's host is a full base URL; a bare host name means HTTPS and the v1 API path."""
    if not host:
        return DEFAULT_BASE_URL
    url = host if "://" in host else f"https://{host}"
    parts = urlsplit(url)
    if port and not parts.port:
        url = url.replace(parts.netloc, f"{parts.netloc}:{port}", 1)
    if not parts.path.strip("/"):
        url = url.rstrip("/") + "/api/v1"
    return url.rstrip("/")


class ApixoHook(BaseHook):
    """Talks to APIXO's task API: submit a task for any model, read its status, wait for it.

    One ``httpx.Client`` and one ``httpx.AsyncClient`` per hook, kept alive across calls.

    :param apixo_conn_id: the ``apixo`` connection: base URL in host, API key in password,
        extras ``provider`` (default routing) and ``timeout`` (seconds per request).
    :param retry_policy: how transient failures are retried.
    :param timeout: per-request timeout in seconds, overriding the connection's.
    """

    conn_name_attr = "apixo_conn_id"
    default_conn_name = "apixo_default"
    conn_type = "apixo"
    hook_name = "APIXO"

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
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None

    # -- clients ---------------------------------------------------------------------------------

    def get_conn(self) -> httpx.Client:
        """The hook's sync client, created on first use."""
        if self._client is None:
            self._settings = ConnectionSettings.from_connection(
                self.get_connection(self.apixo_conn_id), self.timeout
            )
            self._client = httpx.Client(**self._settings.client_options())
        return self._client

    async def aget_conn(self) -> httpx.AsyncClient:
        """The hook's async client; the connection is looked up without blocking the event loop."""
        if self._async_client is None:
            conn = await self.aget_connection(self.apixo_conn_id)
            self._settings = ConnectionSettings.from_connection(conn, self.timeout)
            self._async_client = httpx.AsyncClient(**self._settings.client_options())
        return self._async_client

    @property
    def settings(self) -> ConnectionSettings:
        if self._settings is None:
            self.get_conn()
        assert self._settings is not None
        return self._settings

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

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
        check_model_id(model)
        if provider is not None:
            check_choice("provider", provider, PROVIDERS)
        body = build_task_body(
            task_input, provider=provider or self.settings.provider, callback_url=callback_url
        )
        what = f"Submitting a {model} task"
        try:
            data = self._call("POST", SUBMIT_PATH.format(model=model), what=what, json=body)
            task_id = parse_task_id(data)
        except ApixoMalformedResponseError as error:
            raise ApixoSubmissionUncertainError(what, str(error)) from error
        self.log.info("Submitted APIXO %s task %s", model, task_id)
        return task_id

    def get_task_status(self, model: str, task_id: str) -> TaskStatus:
        """Read a task's status; ``model`` must be the one the task was created with."""
        check_model_id(model)
        path, what = STATUS_PATH.format(model=model), f"Reading APIXO task {task_id}"
        return TaskStatus.from_api(self._call("GET", path, what=what, params=status_query(task_id)))

    async def aget_task_status(self, model: str, task_id: str) -> TaskStatus:
        """Async :meth:`get_task_status`, for triggers."""
        check_model_id(model)
        path, what = STATUS_PATH.format(model=model), f"Reading APIXO task {task_id}"
        return TaskStatus.from_api(await self._acall("GET", path, what=what, params=status_query(task_id)))

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
        """Poll until the task ends, a run of errors exhausts the budget, or ``deadline`` (Unix time)."""
        poller = TaskPoller(model, task_id, deadline, max_consecutive_errors, self.log)
        delay = initial_delay
        while True:
            time.sleep(poller.sleep_time(delay))
            try:
                answer: TaskStatus | ApixoError = self.get_task_status(model, task_id)
            except ApixoError as error:
                answer = error
            if outcome := poller.observe(answer):
                return outcome
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
    ) -> PollOutcome:
        """Async :meth:`wait_for_task`, for triggers; a hanging read cannot outlast the deadline much."""
        poller = TaskPoller(model, task_id, deadline, max_consecutive_errors, self.log)
        delay = initial_delay
        while True:
            await asyncio.sleep(poller.sleep_time(delay))
            try:
                async with asyncio.timeout(poller.read_budget()):
                    answer: TaskStatus | ApixoError = await self.aget_task_status(model, task_id)
            except ApixoError as error:
                answer = error
            except TimeoutError:
                answer = ApixoTransportError(f"Reading APIXO task {task_id} did not finish by the deadline")
            if outcome := poller.observe(answer):
                return outcome
            delay = poll_interval

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
            "check the connection's base URL"
        )

    # -- transport -------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, what: str, attempts: int | None = None, **kwargs: Any) -> Any:
        client = self.get_conn()
        retrying = Retrying(**self._retry_options(what, attempts))
        return retrying(self._send, client, method, path, what, kwargs)

    async def _acall(
        self, method: str, path: str, *, what: str, attempts: int | None = None, **kwargs: Any
    ) -> Any:
        client = await self.aget_conn()
        retrying = AsyncRetrying(**self._retry_options(what, attempts))
        return await retrying(self._asend, client, method, path, what, kwargs)

    def _send(self, client: httpx.Client, method: str, path: str, what: str, kwargs: dict[str, Any]) -> Any:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise _transport_error(error, method, what) from error
        return _read_envelope(response, what)

    async def _asend(
        self, client: httpx.AsyncClient, method: str, path: str, what: str, kwargs: dict[str, Any]
    ) -> Any:
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise _transport_error(error, method, what) from error
        return _read_envelope(response, what)

    def _retry_options(self, what: str, attempts: int | None) -> dict[str, Any]:
        policy = self.retry_policy
        max_attempts = attempts or policy.max_attempts

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
            "stop": stop_after_attempt(max_attempts),
            "wait": policy.wait,
            "before_sleep": log_retry,
            "reraise": True,
        }


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _transport_error(error: httpx.HTTPError, method: str, what: str) -> ApixoError:
    """Name what went wrong on the wire (or in decoding); a POST that may have been received is final."""
    if method == "POST" and not isinstance(error, _NOT_SENT):
        return ApixoSubmissionUncertainError(what, f"{type(error).__name__}: {error}")
    try:
        url: Any = error.request.url.copy_with(query=None)
    except RuntimeError:  # an error built without its request
        url = "APIXO"
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
    return ApixoTransportError(f"{what}: request to {url} {kind} ({type(error).__name__}: {error})")


# 5xx map to ApixoServerError; other codes without an entry to the base ApixoApiError.
_ERRORS_BY_STATUS: dict[int, type[ApixoApiError]] = {
    400: ApixoBadRequestError,
    401: ApixoAuthError,
    402: ApixoInsufficientBalanceError,
    403: ApixoAuthError,
    404: ApixoNotFoundError,
    429: ApixoRateLimitError,
}


def _read_envelope(response: httpx.Response, what: str) -> Any:
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
    error = _api_error(status, envelope, response)
    if response.request.method == "POST" and not _rejected(error):
        raise ApixoSubmissionUncertainError(what, str(error)) from error
    raise error


def _api_error(status: Any, envelope: Envelope, response: httpx.Response) -> ApixoError:
    if not isinstance(status, int) or not 400 <= status <= 599:
        return ApixoMalformedResponseError(f"APIXO answered an envelope with code {status!r}")
    message = envelope.message or response.reason_phrase or "error"
    error_class = ApixoServerError if status >= 500 else _ERRORS_BY_STATUS.get(status, ApixoApiError)
    return error_class(status, message, envelope.error_detail, _retry_after(response))


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

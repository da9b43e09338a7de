"""ApixoBaseHook: the connection, the shared clients and budget, and requests with retries.

Retries live here and nowhere else. A request is resent only when sending it again is safe: status
reads always; task submissions only when APIXO provably did not take them (the connection was never
made, or it answered 429, or 503 with ``Retry-After``); :mod:`.responses` says which is which.

Every request of a process on the same key shares one kept-alive client per event loop
(:mod:`.clients`) and one request budget (:mod:`...pacing`).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay

from airflow_provider_nanobanana import __version__
from airflow_provider_nanobanana.compat import AirflowNotFoundException, BaseHook, aget_connection
from airflow_provider_nanobanana.exceptions import (
    ApixoApiError,
    ApixoConnectionNotFoundError,
    ApixoError,
    ApixoRateLimitError,
)
from airflow_provider_nanobanana.hooks.clients import CLIENTS, AsyncClient, SyncClient
from airflow_provider_nanobanana.hooks.responses import read_envelope, transport_error
from airflow_provider_nanobanana.hooks.settings import ConnectionSettings
from airflow_provider_nanobanana.pacing import RequestPacer, pacer_for

if TYPE_CHECKING:
    from tenacity import RetryCallState
    from tenacity.stop import stop_base


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


class ApixoBaseHook(BaseHook):
    """The ``apixo`` connection and the transport every APIXO call goes through.

    :param apixo_conn_id: the ``apixo`` connection.
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
        self._pacer: RequestPacer | None = None
        self._shared: SyncClient | None = None
        self._ashared: AsyncClient | None = None
        self._ashared_loop: asyncio.AbstractEventLoop | None = None

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
            options = client_options(settings)
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
                settings.client_key, client_options(settings), settings.max_in_flight
            )
            self._ashared_loop = loop
        return self._ashared

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
                    raise transport_error(error, method, what, self.apixo_conn_id) from error
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
                    raise transport_error(error, method, what, self.apixo_conn_id) from error
            return self._checked(response, what)

        return await AsyncRetrying(**self._retry_options(what, attempts))(attempt)

    def _checked(self, response: httpx.Response, what: str) -> Any:
        """The envelope's data; an answer that asks to slow down pauses the whole key first."""
        try:
            return read_envelope(response, what, self.apixo_conn_id)
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


def client_options(settings: ConnectionSettings) -> dict[str, Any]:
    """How the shared client for a key is built: base URL, the key as a bearer token, timeouts."""
    return {
        "base_url": settings.base_url,
        "headers": {
            "Authorization": f"Bearer {settings.api_key}",
            "User-Agent": f"airflow-provider-nanobanana/{__version__}",
        },
        "timeout": httpx.Timeout(settings.timeout),
    }

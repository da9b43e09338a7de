"""Requests to APIXO: paced by the key's budget, retried when sending again is safe, answers read.

Retries live here and nowhere else. A request is resent only when sending it again is safe: status
reads always; task submissions only when APIXO provably did not take them (the connection was never
made, or it answered 429, or 503 with ``Retry-After``); :mod:`.responses` says which is which. An
answer that asks to slow down pauses every request of the key, not only the one that got it.

A 429 means "slower", not "failed": it lowers the key's rate in the pacer, and the request keeps
trying at that rate for up to ``RetryPolicy.capacity_wait`` seconds. Only other failures count
towards ``max_attempts``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_before_delay
from tenacity.stop import stop_base

from airflow_provider_nanobanana import __version__, metrics
from airflow_provider_nanobanana.exceptions import (
    ApixoApiError,
    ApixoError,
    ApixoRateLimitError,
    ApixoServerError,
)
from airflow_provider_nanobanana.hooks.responses import read_envelope, transport_error

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tenacity import RetryCallState

    from airflow_provider_nanobanana.hooks.clients import AsyncClient, SyncClient
    from airflow_provider_nanobanana.hooks.settings import ConnectionSettings
    from airflow_provider_nanobanana.pacing import RequestPacer


DEFAULT_CAPACITY_WAIT = 300.0
"""Seconds a request answered 429 keeps trying, paced: APIXO's limit is per rolling minute."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; ``Retry-After`` wins when APIXO sends one.

    ``max_attempts`` counts failures other than 429; answers 429 are retried, paced, for
    ``capacity_wait`` seconds.
    """

    max_attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0
    capacity_wait: float = DEFAULT_CAPACITY_WAIT

    def wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApixoApiError) and error.retry_after is not None:
            return min(error.retry_after, self.max_wait)
        ceiling = min(self.max_wait, self.initial_wait * 2 ** min(state.attempt_number - 1, 30))
        return random.uniform(0, ceiling)


class Transport:
    """How one hook's requests go out: on a shared client, in the key's budget, with retries.

    :param conn_id: the connection, named in errors.
    :param policy: how transient failures are retried.
    :param pacer: the key's request budget.
    :param log: where retries are logged (the hook's logger).
    """

    def __init__(
        self, conn_id: str, policy: RetryPolicy, pacer: RequestPacer, log: logging.Logger | Any
    ) -> None:
        self.conn_id = conn_id
        self.policy = policy
        self.pacer = pacer
        self.log = log

    def request(
        self,
        shared: SyncClient,
        method: str,
        path: str,
        *,
        what: str,
        timeout: float,
        attempts: int | None = None,
        time_limit: float | None = None,
        capacity_wait: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """One request with retries. A blocking request cannot be cancelled like a coroutine, so a
        ``time_limit`` shrinks each attempt's timeouts to what is left of it and starts no retry
        that would end past it. ``capacity_wait``: how long answers 429 are retried (default: the
        policy's)."""
        pacer = self.pacer
        ends = math.inf if time_limit is None else time.monotonic() + time_limit
        stop, options = self._retry_options(what, attempts, time_limit, capacity_wait)
        capacity_ends = pacer.clock() + stop.capacity_wait

        def attempt() -> Any:
            if not pacer.acquire(until=stop.pacing_deadline(capacity_ends)):
                raise stop.gave_up()
            with shared.slots:
                left = min(timeout, max(0.0, ends - time.monotonic()))
                sent_at = pacer.clock()
                try:
                    response = shared.client.request(method, path, timeout=left, **kwargs)
                except httpx.HTTPError as error:
                    metrics.count("request_error")
                    raise transport_error(error, method, what, self.conn_id) from error
            return self._checked(response, what, sent_at)

        with self._waited_for_capacity(method, what, stop):
            return Retrying(**options)(attempt)

    async def arequest(
        self,
        shared: AsyncClient,
        method: str,
        path: str,
        *,
        what: str,
        attempts: int | None = None,
        granted: bool = False,
        capacity_wait: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """One request with retries; ``granted``: the first attempt's turn in the budget is already
        taken (by the scheduler)."""
        pacer = self.pacer
        turn_taken = granted
        stop, options = self._retry_options(what, attempts, capacity_wait=capacity_wait)
        capacity_ends = pacer.clock() + stop.capacity_wait

        async def attempt() -> Any:
            nonlocal turn_taken
            if not turn_taken and not await pacer.aacquire(until=stop.pacing_deadline(capacity_ends)):
                raise stop.gave_up()
            turn_taken = False
            async with shared.slots:
                sent_at = pacer.clock()
                try:
                    response = await shared.client.request(method, path, **kwargs)
                except httpx.HTTPError as error:
                    metrics.count("request_error")
                    raise transport_error(error, method, what, self.conn_id) from error
            return self._checked(response, what, sent_at)

        with self._waited_for_capacity(method, what, stop):
            return await AsyncRetrying(**options)(attempt)

    def _checked(self, response: httpx.Response, what: str, sent_at: float) -> Any:
        """The envelope's data. A 429 slows the whole key down, any ``Retry-After`` pauses it, and
        an answer lets it speed up again."""
        try:
            data = read_envelope(response, what, self.conn_id)
        except ApixoApiError as error:
            retry_after = None if error.retry_after is None else min(error.retry_after, self.policy.max_wait)
            if isinstance(error, ApixoRateLimitError):
                metrics.count("rate_limited")
                self.pacer.rate_limited(retry_after, sent_at)
            elif retry_after is not None:
                self.pacer.pause(retry_after)
            if isinstance(error, ApixoServerError):
                metrics.count("request_error")
            raise
        self.pacer.answered()
        return data

    @contextlib.contextmanager
    def _waited_for_capacity(self, method: str, what: str, waited: _StopAfter) -> Iterator[None]:
        """Name the limit when answers 429 outlasted a capacity wait (not when there was none)."""
        try:
            yield
        except ApixoRateLimitError as error:
            if not waited.out_of_capacity:
                raise
            detail = f"{what} was still answered 429 after {waited.capacity_wait:g} s of waiting for capacity"
            if method == "POST":
                detail += "; nothing was taken, so a retry of the Airflow task sends it again"
            raise ApixoRateLimitError(
                error.http_status, error.api_message, detail, error.retry_after, conn_id=self.conn_id
            ) from error

    def _retry_options(
        self,
        what: str,
        attempts: int | None,
        time_limit: float | None = None,
        capacity_wait: float | None = None,
    ) -> tuple[_StopAfter, dict[str, Any]]:
        """How this request stops retrying, and the rest of tenacity's options."""
        policy = self.policy
        max_attempts = attempts or policy.max_attempts
        wait_for = policy.capacity_wait if capacity_wait is None else capacity_wait
        stop_after = _StopAfter(max_attempts, wait_for)
        stop: stop_base = stop_after
        if time_limit is not None:
            stop = stop | stop_before_delay(time_limit)

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            sleep = state.next_action.sleep if state.next_action else 0.0
            if isinstance(error, ApixoRateLimitError) and wait_for > 0:
                waited = state.seconds_since_start or 0.0
                first = state.attempt_number - stop_after.failures == 1
                self.log.log(
                    logging.INFO if first else logging.DEBUG,
                    "%s was answered 429 (too many requests): trying again, paced, for up to %.0f s more",
                    what,
                    max(0.0, wait_for - waited),
                )
                return
            self.log.warning(
                "%s failed (attempt %d of %d), retrying in %.1f s: %s",
                what,
                stop_after.failures,
                max_attempts,
                sleep,
                error,
            )

        return stop_after, {
            "retry": retry_if_exception(lambda error: isinstance(error, ApixoError) and error.transient),
            "stop": stop,
            "wait": policy.wait,
            "before_sleep": log_retry,
            "reraise": True,
        }


class _StopAfter(stop_base):
    """Stop after ``max_attempts`` failures other than 429, or once answers 429 have gone on for
    ``capacity_wait`` seconds: a 429 says the key's rate is spent, not that the request is wrong.
    Without a capacity wait (0), a 429 is one more failure.

    The capacity wait includes the waits for the key's lowered rate in the pacer: once a 429 was
    met, a turn that would come after the wait's end is not waited for (:meth:`gave_up`)."""

    def __init__(self, max_attempts: int, capacity_wait: float) -> None:
        self.max_attempts = max_attempts
        self.capacity_wait = capacity_wait
        self.failures = 0
        self.out_of_capacity = False
        self.limited: ApixoRateLimitError | None = None

    def __call__(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApixoRateLimitError) and self.capacity_wait > 0:
            self.limited = error
            self.out_of_capacity |= (state.seconds_since_start or 0.0) >= self.capacity_wait
            return self.out_of_capacity
        self.failures += 1
        return self.failures >= self.max_attempts

    def pacing_deadline(self, capacity_ends: float) -> float | None:
        """Until when the pacer may hold the next attempt: the capacity wait's end, once a 429 was met."""
        return None if self.limited is None else capacity_ends

    def gave_up(self) -> ApixoRateLimitError:
        """The last 429, to raise when the pacer's turn would come after the capacity wait's end."""
        assert self.limited is not None
        self.out_of_capacity = True
        return self.limited


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

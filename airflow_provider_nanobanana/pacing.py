"""RequestPacer: one request budget per APIXO key, shared by every request of the process.

APIXO allows 10,000 requests per rolling minute per key. A request beyond the budget waits here
instead of being sent into a 429, and a 429 (or any ``Retry-After``) pauses every request of the key,
not only the one that met it. Waiters are served in arrival order, so no caller starves.

The budget is what the provider was told; APIXO's 429s say what it really gets when others spend
the key too (other processes, another deployment, another service). The pacer adapts as TCP does
(:mod:`.adaptive_rate`), learning the rate with every process that shares the budget. The minute
window counts requests at whatever rate is allowed now, so a lowered rate counts what was already
sent.

The budget is a moving window kept by the ``limits`` library, chosen over ``aiolimiter`` because it
counts exactly what the API counts (requests in any 60 s), serves sync and async callers with one
algorithm, and keeps the same window in Redis when several processes (triggerers, workers) spend one
key's budget. In process memory by default; ``rate_limit_storage: redis://...`` to share it.
Registry and Redis key names carry a hash of the API key, never the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond, storage, strategies
from limits.aio import strategies as aio_strategies
from limits.aio.storage import RedisStorage
from limits.errors import StorageError

from airflow_provider_nanobanana import metrics
from airflow_provider_nanobanana.adaptive_rate import AdaptiveRate, SharedRate

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

APIXO_REQUESTS_PER_MINUTE = 10_000
DEFAULT_REQUESTS_PER_MINUTE = 9_000
"""A tenth under the API's limit: room for clock skew and requests the process does not see."""
DEFAULT_PAUSE_SECONDS = 1.0
"""How long a 429 without ``Retry-After`` pauses the key."""
MAX_PAUSE_SECONDS = 60.0
STORAGE_WARNING_SECONDS = 60.0
"""How often an unreachable shared budget is warned about."""
BURST = 10
"""Requests a second that may always go back to back (within the minute's budget)."""
_MIN_WAIT = 0.001


def key_fingerprint(base_url: str, api_key: str) -> str:
    """A stable, non-reversible name for one key at one API: what registries and Redis see."""
    return hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class PacerConfig:
    """What decides which pacer a request uses: the key (as its fingerprint) and the budget."""

    fingerprint: str
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    storage_uri: str | None = field(default=None, repr=False)
    """None keeps the budget in process memory; ``redis://host:port/db`` shares it."""


class RequestPacer:
    """The request budget of one key: sync and async callers wait their turn here.

    :param config: the key's fingerprint, budget and storage.
    :param clock: Unix time; tests pass a fake one (with ``sleep`` and ``asleep``).
    :param sleep: how a sync caller waits.
    :param asleep: how an async caller waits.
    """

    def __init__(
        self,
        config: PacerConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        rpm = config.requests_per_minute
        # The minute is the API's rule; the second keeps the minute's budget from being spent in one
        # burst (and then starving the rest of the minute), across processes too.
        self._second = RateLimitItemPerSecond(min(rpm, max(BURST, math.ceil(rpm / 60))))
        self._clock = clock
        self._sleep = sleep
        self._asleep = asleep
        self._paused_until = 0.0
        self._storage_warned_until = 0.0
        uri = config.storage_uri
        self._learned = (
            AdaptiveRate(rpm, clock, config.fingerprint)
            if uri is None
            else SharedRate(
                rpm, clock, config.fingerprint, f"{REDIS_KEY_PREFIX}:rate:{config.fingerprint}", uri
            )
        )
        self._thread_turn = threading.Lock()
        self._limiter = strategies.MovingWindowRateLimiter(_sync_storage(uri))
        self._async_parts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncParts] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def spacing(self) -> float:
        """The even gap between requests that spends the allowed rate at its pace: 60 s / rate."""
        return 60.0 / self._learned.value

    @property
    def rate(self) -> float:
        """Requests a minute this key may spend now: the budget, or less while APIXO answers 429."""
        return self._learned.value

    def pause(self, seconds: float | None) -> None:
        """APIXO said slow down: hold every request of this key for ``seconds`` (default 1 s)."""
        if wait := self._hold_all(seconds):
            log.warning("APIXO asked to slow down: pausing requests of this key for %.1f s", wait)

    def _hold_all(self, seconds: float | None) -> float:
        """Pause the key; how long for, or 0 when an earlier pause already lasts longer."""
        wait = min(MAX_PAUSE_SECONDS, DEFAULT_PAUSE_SECONDS if seconds is None else seconds)
        until = self._clock() + wait
        if until <= self._paused_until:
            return 0.0
        self._paused_until = until
        return wait

    def rate_limited(self, retry_after: float | None, sent_at: float) -> None:
        """APIXO answered 429 a request sent at ``sent_at`` (the pacer's clock): pause the key, and
        lower the rate it allows (the multiplicative decrease)."""
        self._hold_all(retry_after)
        self._learned.limited(sent_at)

    def answered(self) -> None:
        """A request was answered: raise the allowed rate a little (the additive increase)."""
        self._learned.answered()

    def clock(self) -> float:
        """The pacer's time: when a request is sent, for :meth:`rate_limited`."""
        return self._clock()

    def _items(self) -> tuple[RateLimitItem, ...]:
        return self._second, _MinuteWindow(max(1, int(self._learned.value)))

    def acquire(self, until: float | None = None) -> bool:
        """Block until one request may be sent (for the worker's sync calls). With ``until`` (the
        pacer's clock), wait no later than that: False when the turn would come after it."""
        started = self._clock()
        with self._thread_turn:
            while (wait := self._take()) > 0:
                if (left := self._left_before(until)) < wait:
                    self._sleep(left)
                    return False
                self._sleep(wait)
        metrics.timing("budget_wait", self._clock() - started)
        return True

    async def aacquire(self, until: float | None = None) -> bool:
        """Wait until one request may be sent, without blocking the event loop; ``until`` as for
        :meth:`acquire`."""
        parts = self._parts_for(asyncio.get_running_loop())
        started = self._clock()
        async with parts.turn:
            while (wait := await parts.take()) > 0:
                if (left := self._left_before(until)) < wait:
                    await self._asleep(left)
                    return False
                await self._asleep(wait)
        metrics.timing("budget_wait", self._clock() - started)
        return True

    def _left_before(self, until: float | None) -> float:
        return math.inf if until is None else max(0.0, until - self._clock())

    def _take(self) -> float:
        """Take one request from the budget; 0 when taken, else how long to wait before trying again."""
        try:
            learned = self._learned
            if isinstance(learned, SharedRate) and learned.sync_due():
                learned.sync()
            if (paused := self._paused_left()) > 0:
                return paused
            for item in self._items():
                if not self._limiter.hit(item, self.config.fingerprint):
                    stats = self._limiter.get_window_stats(item, self.config.fingerprint)
                    return self._until_free(stats.reset_time)
        except StorageError as error:
            return self._storage_failed(error)
        return 0.0

    def _paused_left(self) -> float:
        return self._paused_until - self._clock()

    def _until_free(self, reset_time: float) -> float:
        return max(_MIN_WAIT, reset_time - self._clock())

    def _storage_failed(self, error: StorageError) -> float:
        """The shared budget cannot be reached: send anyway (APIXO's 429s still pause the key)."""
        now = self._clock()
        if now >= self._storage_warned_until:
            self._storage_warned_until = now + STORAGE_WARNING_SECONDS
            log.warning("The shared request budget is unreachable, requests go unpaced: %s", error)
        return 0.0

    def _parts_for(self, loop: asyncio.AbstractEventLoop) -> _AsyncParts:
        """An asyncio lock (FIFO turns) and, for Redis, an async client: both belong to one loop."""
        parts = self._async_parts.get(loop)
        if parts is None:
            parts = _AsyncParts(self)
            self._async_parts[loop] = parts
        return parts


class _AsyncParts:
    """The loop-bound half of a pacer."""

    def __init__(self, pacer: RequestPacer) -> None:
        self.pacer = pacer
        self.turn = asyncio.Lock()
        uri = pacer.config.storage_uri
        self._limiter = None if uri is None else _async_limiter(uri)
        learned = pacer._learned
        self._shared = learned if isinstance(learned, SharedRate) else None
        self._redis = None if self._shared is None else self._shared.async_client()

    async def take(self) -> float:
        pacer = self.pacer
        if self._limiter is None:  # in memory: the sync limiter never blocks
            return pacer._take()
        try:
            if self._shared is not None and self._shared.sync_due():
                await self._shared.async_sync(self._redis)
            if (paused := pacer._paused_left()) > 0:
                return paused
            for item in pacer._items():
                if not await self._limiter.hit(item, pacer.config.fingerprint):
                    stats = await self._limiter.get_window_stats(item, pacer.config.fingerprint)
                    return pacer._until_free(stats.reset_time)
        except StorageError as error:
            return pacer._storage_failed(error)
        return 0.0


class _MinuteWindow(RateLimitItemPerMinute):
    """The key's minute window at the rate allowed now. Its storage key leaves the rate out (unlike
    ``limits``' own), so a new rate still counts the requests of the last minute."""

    def key_for(self, *identifiers: bytes | str | int | float) -> str:
        return "/".join(["minute", *(str(part) for part in identifiers)])


REDIS_KEY_PREFIX = "apixo-budget"


def _sync_storage(uri: str | None) -> storage.Storage:
    if uri is None:
        return storage.MemoryStorage()
    return storage.RedisStorage(uri, key_prefix=REDIS_KEY_PREFIX, wrap_exceptions=True)


def _async_limiter(uri: str) -> aio_strategies.MovingWindowRateLimiter:
    redis = RedisStorage(
        f"async+{uri}", implementation="redispy", key_prefix=REDIS_KEY_PREFIX, wrap_exceptions=True
    )
    return aio_strategies.MovingWindowRateLimiter(redis)


_pacers: dict[PacerConfig, RequestPacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(config: PacerConfig) -> RequestPacer:
    """The process's pacer for this key and budget: every hook on the same key gets the same one."""
    with _pacers_lock:
        pacer = _pacers.get(config)
        if pacer is None:
            pacer = _pacers[config] = RequestPacer(config)
        return pacer


def pacer_configs() -> list[PacerConfig]:
    """What this process paces: each key's fingerprint and budget, never an API key."""
    with _pacers_lock:
        return list(_pacers)


def reset_pacers() -> None:
    """Forget every key's pacer, its pause and its budget spent: a process state that starts afresh."""
    with _pacers_lock:
        _pacers.clear()

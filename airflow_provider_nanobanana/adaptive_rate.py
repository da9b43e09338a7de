"""The rate a key may spend now: its budget, or less while APIXO answers 429 (AIMD, as TCP does).

Each 429 halves the rate (not again for requests sent before that decrease: one congestion, one
halving), down to a floor; while answers come back, the rate rises by a tenth of the rate that met the
429 each minute, up to the budget. :class:`AdaptiveRate` learns it in one process;
:class:`SharedRate` learns it with every process whose budget is shared through Redis, so that a
worker's 429 slows the triggerers too. The shared state is one Redis hash per key, updated by one Lua
script (atomic, so no 429 or answer is lost between processes), synced at a process's turns in the
budget: at most once a second, and at its first turn after a 429 (the retry's).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from limits.errors import StorageError

from airflow_provider_nanobanana import metrics

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

DECREASE_FACTOR = 0.5
"""A 429 multiplies the allowed rate by this."""
RECOVERY_PER_MINUTE = 0.1
"""While answers come back, the rate rises each minute by this share of the rate that met the 429."""
MIN_REQUESTS_PER_MINUTE = 6.0
"""However often APIXO answers 429, a key is still allowed 6 requests a minute."""
RATE_LOG_SECONDS = 60.0
"""How often a change of the allowed rate is logged, at most."""
SYNC_SECONDS = 1.0
"""How often a process syncs its learned rate with the shared one (at once after a 429)."""
SHARED_RATE_TTL = 600
"""Seconds a shared learned rate outlives its last sync: a key nobody uses forgets its 429s."""

# The same arithmetic as AdaptiveRate, applied to the shared state: the answers since the last sync
# raise the rate, then a 429 (ARGV[6], empty if none) halves it unless it was sent before the last
# decrease. Lua numbers would come back truncated to integers, so they are returned as strings.
_MERGE = """
local budget, floor, factor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local share, now, answers = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
local state = redis.call('HMGET', KEYS[1], 'rate', 'rate_at_429', 'decreased_at')
local rate = tonumber(state[1]) or budget
local rate_at_429 = tonumber(state[2]) or budget
local decreased_at = tonumber(state[3]) or 0
if answers > 0 and rate < budget then
  rate = math.min(budget, rate + answers * math.max(1, share * rate_at_429) / rate)
end
local sent_at = tonumber(ARGV[6])
if sent_at and sent_at >= decreased_at then
  rate_at_429 = rate
  rate = math.max(floor, rate * factor)
  decreased_at = now
end
redis.call('HSET', KEYS[1], 'rate', rate, 'rate_at_429', rate_at_429, 'decreased_at', decreased_at)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[8]))
return {tostring(rate), tostring(rate_at_429), tostring(decreased_at)}
"""


class AdaptiveRate:
    """The requests a minute one key may spend now, learned in this process.

    :param budget: the most it may spend (the connection's ``requests_per_minute``).
    :param clock: Unix time, the pacer's.
    :param key: the key's fingerprint, which names it in the ``apixo.rate`` gauge.
    """

    def __init__(self, budget: int, clock: Callable[[], float], key: str) -> None:
        self.budget = float(budget)
        self.key = key
        self._clock = clock
        self._rate = self.budget
        self._rate_at_429 = self.budget
        self._decreased_at = 0.0
        self._logged_until = 0.0
        self._reported = int(self.budget)
        self._lock = threading.Lock()

    @property
    def value(self) -> float:
        return self._rate

    def limited(self, sent_at: float) -> None:
        """APIXO answered 429 a request sent at ``sent_at``: halve the rate, once for all the
        requests sent before the last decrease (APIXO already answers those)."""
        with self._lock:
            if sent_at < self._decreased_at:
                return
            now = self._clock()
            self._rate_at_429 = self._rate
            self._rate = max(MIN_REQUESTS_PER_MINUTE, self._rate * DECREASE_FACTOR)
            self._decreased_at = now
            self._log(now)

    def answered(self) -> None:
        """A request was answered: each answer adds ``step / rate``, so a key busy at its rate gains
        ``step`` a minute (TCP's ``cwnd += 1/cwnd``) and an idle one gains nothing it has not shown it
        can use."""
        if self._rate >= self.budget:
            return
        with self._lock:
            step = max(1.0, RECOVERY_PER_MINUTE * self._rate_at_429)
            self._rate = min(self.budget, self._rate + step / self._rate)
            self._log(self._clock())

    def _adopt(self, rate: float, rate_at_429: float, decreased_at: float) -> None:
        """Take the shared rate, capped by this process's budget (connections on one key may differ)."""
        rate = min(rate, self.budget)
        with self._lock:
            changed = rate != self._rate
            self._rate, self._rate_at_429, self._decreased_at = rate, rate_at_429, decreased_at
            if changed:
                self._log(self._clock())

    def _log(self, now: float) -> None:
        """The ``apixo.rate`` gauge at each whole request a minute; the log at most once a minute,
        and at once when the rate is back at the budget."""
        if int(self._rate) != self._reported:
            self._reported = int(self._rate)
            metrics.gauge("rate", self._reported, key=self.key)
        if self._rate >= self.budget:
            if self._logged_until:
                self._logged_until = 0.0
                log.info("APIXO key no longer limited: pacing at its budget of %d/min", self.budget)
            return
        if now < self._logged_until:
            return
        self._logged_until = now + RATE_LOG_SECONDS
        log.warning("APIXO key limited by APIXO: pacing at %d/min (budget %d/min)", self._rate, self.budget)


class SharedRate(AdaptiveRate):
    """The learned rate of a key whose budget is shared through Redis: this process's 429s and
    answers are merged into the shared rate, and the shared rate replaces the local one. Redis
    failures are raised as ``limits``' ``StorageError``, as the shared budget's own are.

    :param redis_key: the key's hash in Redis (named by the key's fingerprint, never the key).
    :param uri: the Redis URL (``redis://host:port/db``).
    """

    def __init__(self, budget: int, clock: Callable[[], float], key: str, redis_key: str, uri: str) -> None:
        super().__init__(budget, clock, key)
        self.redis_key = redis_key
        self._uri = uri
        self._client: Any = None
        self._pending_429: float | None = None
        self._pending_answers = 0
        self._synced_at = 0.0

    def limited(self, sent_at: float) -> None:
        super().limited(sent_at)
        with self._lock:
            self._pending_429 = max(sent_at, self._pending_429 or sent_at)

    def answered(self) -> None:
        super().answered()
        with self._lock:
            self._pending_answers += 1

    def sync_due(self) -> bool:
        return self._pending_429 is not None or self._clock() - self._synced_at >= SYNC_SECONDS

    def sync(self) -> None:
        """Merge into the shared rate and adopt it."""
        with _storage_errors():
            if self._client is None:
                self._client = _redis_module().Redis.from_url(self._uri)
            reply = self._client.eval(_MERGE, 1, self.redis_key, *self._take_pending())
        self._adopt(*_parsed(reply))

    def async_client(self) -> Any:
        """A client for :meth:`async_sync`; it belongs to the running event loop."""
        return _redis_module().asyncio.Redis.from_url(self._uri)

    async def async_sync(self, client: Any) -> None:
        """:meth:`sync` on an event loop, with its :meth:`async_client`."""
        with _storage_errors():
            reply = await client.eval(_MERGE, 1, self.redis_key, *self._take_pending())
        self._adopt(*_parsed(reply))

    def _take_pending(self) -> list[float | int | str]:
        with self._lock:
            now = self._clock()
            sent_at = "" if self._pending_429 is None else self._pending_429
            answers, self._pending_answers, self._pending_429 = self._pending_answers, 0, None
            self._synced_at = now
        rules = [self.budget, MIN_REQUESTS_PER_MINUTE, DECREASE_FACTOR, RECOVERY_PER_MINUTE]
        return [*rules, now, sent_at, answers, SHARED_RATE_TTL]


def _redis_module() -> Any:
    """The Redis client library, which only a shared budget needs (the ``redis`` extra)."""
    import redis

    return redis


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    try:
        yield
    except (_redis_module().RedisError, OSError) as error:
        raise StorageError(error) from error


def _parsed(reply: list[bytes]) -> tuple[float, float, float]:
    rate, rate_at_429, decreased_at = (float(part) for part in reply)
    return rate, rate_at_429, decreased_at

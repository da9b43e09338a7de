"""The learned rate through a real redis-server: one process's 429 slows every process on the key."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from airflow_provider_nanobanana import adaptive_rate
from airflow_provider_nanobanana.pacing import PacerConfig, RequestPacer, key_fingerprint
from tests.support import TEST_API_KEY

BUDGET = 9000


@pytest.fixture
def config(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> PacerConfig:
    monkeypatch.setattr(adaptive_rate, "SYNC_SECONDS", 0.0)  # every turn syncs: no waiting in tests
    return PacerConfig(key_fingerprint("http://apixo.test", TEST_API_KEY), BUDGET, redis_url)


def test_a_429_in_one_process_halves_the_rate_of_every_process_once(config: PacerConfig) -> None:
    worker, triggerer = RequestPacer(config), RequestPacer(config)  # two processes' pacers
    worker.acquire()
    sent_before = worker.clock()
    worker.rate_limited(0.0, worker.clock())
    assert worker.rate == BUDGET / 2
    worker.acquire()  # the retry's turn tells the others

    triggerer.acquire()
    assert triggerer.rate == BUDGET / 2
    # The triggerer's own 429 for a request sent before the worker's: the same congestion.
    triggerer.rate_limited(0.0, sent_before)
    triggerer.acquire()
    worker.acquire()
    assert triggerer.rate == worker.rate == BUDGET / 2

    triggerer.rate_limited(0.0, triggerer.clock())  # a new one halves it again, for both
    triggerer.acquire()
    worker.acquire()
    assert triggerer.rate == worker.rate == BUDGET / 4


def test_answers_in_one_process_raise_the_rate_of_every_process(config: PacerConfig) -> None:
    worker, triggerer = RequestPacer(config), RequestPacer(config)
    worker.rate_limited(0.0, worker.clock())
    worker.acquire()
    for _ in range(100):  # each adds a tenth of 9000 divided by the rate
        worker.answered()
    worker.acquire()

    triggerer.acquire()
    assert triggerer.rate == pytest.approx(BUDGET / 2 + 100 * 900 / (BUDGET / 2), rel=0.01)
    assert worker.rate == triggerer.rate


async def test_waits_on_an_event_loop_share_the_rate_too(config: PacerConfig) -> None:
    worker, triggerer = RequestPacer(config), RequestPacer(config)
    await triggerer.aacquire()
    triggerer.rate_limited(0.0, triggerer.clock())
    await triggerer.aacquire()

    worker.acquire()
    assert worker.rate == BUDGET / 2
    for _ in range(10):
        worker.answered()
    worker.acquire()
    await triggerer.aacquire()
    assert triggerer.rate == worker.rate > BUDGET / 2


def test_the_shared_rate_is_named_by_the_fingerprint_and_expires(config: PacerConfig) -> None:
    pacer = RequestPacer(config)
    pacer.rate_limited(0.0, pacer.clock())
    pacer.acquire()

    client = redis.Redis.from_url(config.storage_uri or "")
    [key] = client.keys("*:rate:*")
    assert key.decode() == f"apixo-budget:rate:{config.fingerprint}"
    assert 0 < client.ttl(key) <= adaptive_rate.SHARED_RATE_TTL
    assert all(TEST_API_KEY.encode() not in each for each in client.keys("*"))


def test_a_process_with_a_smaller_budget_never_adopts_more(config: PacerConfig) -> None:
    worker = RequestPacer(config)
    small = RequestPacer(dataclasses.replace(config, requests_per_minute=1000))  # another connection
    worker.rate_limited(0.0, worker.clock())
    worker.acquire()

    small.acquire()
    assert small.rate == 1000

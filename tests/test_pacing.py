"""RequestPacer: the budget holds in every window, pauses reach every caller, keys never share."""

from __future__ import annotations

import asyncio
import logging
import socket
import types
from collections import deque

import limits.storage.memory
import pytest

from airflow_provider_nanobanana import adaptive_rate, pacing
from airflow_provider_nanobanana.pacing import PacerConfig, RequestPacer, key_fingerprint, pacer_for


class FakeClock:
    """Unix time that moves only when someone sleeps; also patched into the ``limits`` storage."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_800_000_000.0
        monkeypatch.setattr(limits.storage.memory, "time", types.SimpleNamespace(time=self.time))

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    return FakeClock(monkeypatch)


def fake_pacer(clock: FakeClock, requests_per_minute: int, fingerprint: str = "key-a") -> RequestPacer:
    config = PacerConfig(fingerprint, requests_per_minute)
    return RequestPacer(config, clock=clock.time, sleep=clock.sleep, asleep=clock.asleep)


def most_in_any_window(times: list[float], seconds: float) -> int:
    window: deque[float] = deque()
    most = 0
    for at in times:
        window.append(at)
        while window[0] <= at - seconds:
            window.popleft()
        most = max(most, len(window))
    return most


@pytest.mark.parametrize("requests_per_minute", [30, 600, 9000])
def test_budget_is_never_exceeded_in_any_window(clock: FakeClock, requests_per_minute: int) -> None:
    pacer = fake_pacer(clock, requests_per_minute)
    sent = []
    for _ in range(3 * requests_per_minute):
        pacer.acquire()
        sent.append(clock.now)

    assert most_in_any_window(sent, 60.0) <= requests_per_minute
    assert most_in_any_window(sent, 1.0) <= max(pacing.BURST, -(-requests_per_minute // 60))
    # ... and it is spent, not hoarded: three minutes' worth takes about three minutes.
    assert sent[-1] - sent[0] < 3 * 60 * 1.01


def test_a_second_never_spends_the_whole_minute(clock: FakeClock) -> None:
    pacer = fake_pacer(clock, 6000)
    sent = []
    for _ in range(1000):
        pacer.acquire()
        sent.append(clock.now)

    assert most_in_any_window(sent, 1.0) == 100
    assert sent[-1] - sent[0] >= 9


def test_pause_holds_every_caller_of_the_key(clock: FakeClock) -> None:
    pacer = fake_pacer(clock, 9000)
    pacer.acquire()
    paused_at = clock.now

    pacer.pause(5.0)
    pacer.acquire()

    assert clock.now - paused_at >= 5.0


def test_pause_without_retry_after_is_short_and_capped(clock: FakeClock) -> None:
    pacer = fake_pacer(clock, 9000)
    pacer.pause(None)
    pacer.acquire()
    assert clock.now - 1_800_000_000.0 == pytest.approx(pacing.DEFAULT_PAUSE_SECONDS)

    pacer.pause(3600)
    started = clock.now
    pacer.acquire()
    assert clock.now - started == pytest.approx(pacing.MAX_PAUSE_SECONDS)


def sent_in(pacer: RequestPacer, clock: FakeClock, seconds: float) -> int:
    """Requests one caller gets through in ``seconds``, each answered without a 429."""
    ends, sent = clock.now + seconds, 0
    while clock.now < ends:
        pacer.acquire()
        pacer.answered()
        sent += 1
    return sent


def test_a_429_halves_the_rate_and_answers_raise_it_back_to_the_budget(clock: FakeClock) -> None:
    pacer = fake_pacer(clock, 600)
    assert sent_in(pacer, clock, 60) == pytest.approx(600, abs=1)  # busy at the budget
    sent_at = pacer.clock()
    clock.sleep(0.5)
    pacer.rate_limited(None, sent_at)
    assert pacer.rate == 300
    pacer.rate_limited(None, sent_at)  # sent before the decrease: the same congestion, not halved again
    assert pacer.rate == 300

    # The minute window still holds the minute before the 429: the next minute gets the halved rate.
    assert sent_in(pacer, clock, 60) == pytest.approx(300, abs=30)
    assert pacer.rate == pytest.approx(300 + 60, abs=10)  # + a tenth of 600 a minute while answered
    sent_in(pacer, clock, 10 * 60)
    assert pacer.rate == 600


def test_429s_in_a_row_lower_the_rate_to_a_floor(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    pacer = fake_pacer(clock, 9000)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_nanobanana.pacing"):
        for _ in range(20):
            pacer.rate_limited(None, pacer.clock())
            clock.sleep(1)
    assert pacer.rate == adaptive_rate.MIN_REQUESTS_PER_MINUTE
    assert pacer.spacing == pytest.approx(10.0)
    changes = [r.message for r in caplog.records if "limited by APIXO: pacing at" in r.message]
    assert changes == ["APIXO key limited by APIXO: pacing at 4500/min (budget 9000/min)"]  # once a minute


def test_a_turn_after_the_deadline_is_not_waited_for(clock: FakeClock) -> None:
    pacer = fake_pacer(clock, 30)
    for _ in range(30):  # the minute's budget, ten a second
        pacer.acquire()
    started = clock.now

    assert not pacer.acquire(until=started + 5)  # the next turn is a minute away
    assert clock.now == started + 5  # it waited up to the deadline, no further
    assert pacer.acquire(until=started + 120)
    assert started + 5 < clock.now <= started + 60


async def test_an_async_turn_after_the_deadline_is_not_waited_for(clock: FakeClock) -> None:
    pacer = fake_pacer(clock, 30)
    for _ in range(30):
        await pacer.aacquire()
    started = clock.now

    assert not await pacer.aacquire(until=started + 5)
    assert clock.now == started + 5
    assert await pacer.aacquire(until=started + 120)


def test_two_keys_never_share_a_budget(clock: FakeClock) -> None:
    first, second = fake_pacer(clock, 30, "key-a"), fake_pacer(clock, 30, "key-b")
    for _ in range(10):
        first.acquire()
    spent = clock.now

    for _ in range(10):
        second.acquire()

    assert clock.now == spent
    assert pacer_for(PacerConfig("key-a", 30)) is not pacer_for(PacerConfig("key-b", 30))
    assert pacer_for(PacerConfig("key-a", 30)) is pacer_for(PacerConfig("key-a", 30))


async def test_waiters_are_served_in_arrival_order(clock: FakeClock) -> None:
    pacer = fake_pacer(clock, 600)
    served: list[int] = []

    async def caller(number: int) -> None:
        await pacer.aacquire()
        served.append(number)

    await asyncio.gather(*(caller(number) for number in range(60)))

    assert served == list(range(60))
    assert clock.now - 1_800_000_000.0 >= 5  # 10 a second: the budget made them wait


def test_the_fingerprint_hides_the_key() -> None:
    fingerprint = key_fingerprint("https://api.apixo.ai/api/v1", "sk-secret-key-123")

    assert "sk-secret" not in fingerprint
    assert fingerprint != key_fingerprint("https://api.apixo.ai/api/v1", "sk-other-key-456")
    assert "redis" not in repr(PacerConfig(fingerprint, 100, "redis://:hunter2@localhost:6379/0"))


def test_an_unreachable_shared_budget_lets_requests_through_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = PacerConfig("key-a", 30, f"redis://:hunter2@127.0.0.1:{port}/0")
    pacer = RequestPacer(config)

    with caplog.at_level(logging.WARNING, logger="airflow_provider_nanobanana.pacing"):
        for _ in range(3):
            pacer.acquire()

    warnings = [r for r in caplog.records if "unpaced" in r.getMessage()]
    assert len(warnings) == 1
    assert "hunter2" not in caplog.text

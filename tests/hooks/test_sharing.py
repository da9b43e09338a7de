"""One client and one budget per key: shared, closed after the last user, never across event loops."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_nanobanana import pacing
from airflow_provider_nanobanana.exceptions import ApixoInputError
from airflow_provider_nanobanana.hooks.apixo import ApixoHook, RetryPolicy
from airflow_provider_nanobanana.hooks.clients import CLIENTS
from airflow_provider_nanobanana.pacing import RequestPacer
from airflow_provider_nanobanana.scheduling import PollScheduler, PollTicket
from airflow_provider_nanobanana.sensors.nanobanana import NanoBananaTaskSensor
from tests.support import TEST_API_KEY, FakeTaskInstance, apixo_connection

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import EmulatorServer
    from tests.support import EmulatorAdmin

MODEL = "nano-banana"
T2I = {"mode": "text-to-image", "prompt": "a paper boat", "aspect_ratio": "1:1", "output_format": "png"}
OTHER_KEY = "sk-apixo-second-key-5d4c"


@pytest.fixture
def other_key(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A second connection to the same emulator with another key (the emulator takes any key)."""
    monkeypatch.setattr(emulator.emulator.settings, "api_key", None)
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_OTHER", apixo_connection(emulator.base_url, OTHER_KEY))
    return "apixo_other"


async def test_hooks_on_one_key_share_one_client_until_the_last_lets_go(emulator: EmulatorServer) -> None:
    first, second = ApixoHook(), ApixoHook()
    client = await first.aget_conn()

    assert await second.aget_conn() is client
    await first.aclose()
    assert not client.is_closed
    await second.aclose()
    assert client.is_closed
    third = ApixoHook()
    assert await third.aget_conn() is not client
    await third.aclose()


async def test_two_keys_get_two_clients_and_two_budgets(emulator: EmulatorServer, other_key: str) -> None:
    ours, theirs = ApixoHook(), ApixoHook(other_key)
    try:
        assert await ours.aget_conn() is not await theirs.aget_conn()
        assert ours.pacer is not theirs.pacer
        assert ours.settings.fingerprint != theirs.settings.fingerprint
    finally:
        await ours.aclose()
        await theirs.aclose()


def test_a_client_never_crosses_event_loops(emulator: EmulatorServer) -> None:
    hook = ApixoHook()
    open_before = CLIENTS.open_clients()

    async def read() -> object:
        client = await hook.aget_conn()
        task_id = await hook.asubmit_task(MODEL, T2I)
        assert (await hook.aget_task_status(MODEL, task_id)).task_id == task_id
        return client

    first = asyncio.run(read())  # the first loop closes here, with the hook still holding its lease
    second = asyncio.run(read())

    assert second is not first
    assert CLIENTS.open_clients() == open_before + 1  # the first loop's lease was let go
    asyncio.run(hook.aclose())
    assert CLIENTS.open_clients() == open_before


def test_sync_hooks_share_one_client_and_close_it_last(emulator: EmulatorServer) -> None:
    first, second = ApixoHook(), ApixoHook()
    client = first.get_conn()

    assert second.get_conn() is client
    first.close()
    assert not client.is_closed
    second.close()
    assert client.is_closed


async def test_registries_never_hold_the_key(emulator: EmulatorServer) -> None:
    hook = ApixoHook()
    await hook.aget_conn()
    hook.get_conn()
    try:
        names = [repr(key) for key in CLIENTS.leased_keys()]
        names += [repr(config) for config in pacing.pacer_configs()]
        assert names
        assert not any(TEST_API_KEY in name for name in names)
        assert TEST_API_KEY not in repr(hook.settings)
    finally:
        hook.close()
        await hook.aclose()


async def logged(caplog: pytest.LogCaptureFixture, line: str, failure: str, within: float = 10) -> None:
    """Wait for ``line`` in the log; fail naming what broke rather than hang."""
    try:
        async with asyncio.timeout(within):
            while line not in caplog.text:
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"{failure}: no {line!r} in the log within {within:g} s")


async def test_a_429_slows_every_wait_on_the_key(
    emulator_admin: EmulatorAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    one, other = ApixoHook(), ApixoHook(retry_policy=RetryPolicy(max_attempts=1))
    task_id = await one.asubmit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(429, 1, "status", retry_after=3)
    try:
        with caplog.at_level(logging.WARNING):
            meets_the_429 = asyncio.create_task(one.aget_task_status(MODEL, task_id))
            await logged(caplog, "limited by APIXO: pacing at", "the 429 did not slow the key down")
            started = time.monotonic()
            await other.aget_task_status(MODEL, task_id)  # never saw a 429 itself
            waited = time.monotonic() - started
            await meets_the_429
    finally:
        await one.aclose()
        await other.aclose()
    assert waited > 1.5  # of the 3 s pause, however late this test noticed it began
    assert TEST_API_KEY not in caplog.text


async def test_a_429_on_another_key_does_not_slow_this_one(emulator: EmulatorServer, other_key: str) -> None:
    ours, theirs = ApixoHook(), ApixoHook(other_key)
    task_id = await ours.asubmit_task(MODEL, T2I)
    theirs.pacer.pause(30)
    try:
        started = time.monotonic()
        await ours.aget_task_status(MODEL, task_id)
        assert time.monotonic() - started < 5
    finally:
        await ours.aclose()
        await theirs.aclose()


@pytest.fixture
def counted_turns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every turn taken from any pacer, sync or async."""
    turns: list[str] = []
    sync_acquire, async_acquire = RequestPacer.acquire, RequestPacer.aacquire

    def acquire(self: RequestPacer, until: float | None = None) -> bool:
        turns.append("sync")
        return sync_acquire(self, until)

    async def aacquire(self: RequestPacer, until: float | None = None) -> bool:
        turns.append("async")
        return await async_acquire(self, until)

    monkeypatch.setattr(RequestPacer, "acquire", acquire)
    monkeypatch.setattr(RequestPacer, "aacquire", aacquire)
    return turns


def test_blocking_waits_go_through_the_pacer(emulator_admin: EmulatorAdmin, counted_turns: list[str]) -> None:
    hook = ApixoHook()
    task_id = hook.submit_task(MODEL, T2I)
    hook.wait_for_task(MODEL, task_id, initial_delay=0.1, poll_interval=0.1, deadline=time.time() + 30)
    hook.close()

    requests = emulator_admin.request_count()
    assert requests >= 3
    assert counted_turns == ["sync"] * requests


def test_sensor_pokes_go_through_the_pacer(emulator_admin: EmulatorAdmin, counted_turns: list[str]) -> None:
    hook = ApixoHook()
    task_id = hook.submit_task(MODEL, T2I)
    hook.close()
    sensor = NanoBananaTaskSensor(task_id="wait", apixo_task_id=task_id, deferrable=False)

    while not sensor.poke({"ti": FakeTaskInstance()}):  # type: ignore[arg-type]
        time.sleep(0.1)

    assert counted_turns == ["sync"] * emulator_admin.request_count()


async def test_deferred_waits_take_their_turns_from_the_scheduler(
    emulator_admin: EmulatorAdmin, counted_turns: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    granted: list[bool] = []
    turn = PollScheduler.turn

    async def counted_turn(self: PollScheduler, ticket: PollTicket) -> bool:
        granted.append(await turn(self, ticket))
        return granted[-1]

    monkeypatch.setattr(PollScheduler, "turn", counted_turn)
    hook = ApixoHook()
    task_id = await hook.asubmit_task(MODEL, T2I)
    waits = [
        hook.await_task(MODEL, task_id, initial_delay=0.1, poll_interval=0.1, deadline=time.time() + 30)
        for _ in range(5)
    ]
    outcomes = await asyncio.gather(*waits)
    await hook.aclose()

    assert {outcome.status.value for outcome in outcomes} == {"success"}
    reads = emulator_admin.request_count("GET")
    assert granted == [True] * reads  # every read was granted by the scheduler...
    assert counted_turns == ["async"] * (reads + 1)  # ...which took it from the pacer, as the submission did


async def test_a_failing_budget_ends_the_waits_instead_of_parking_them(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = ApixoHook()
    task_id = await hook.asubmit_task(MODEL, T2I)

    async def broken(self: RequestPacer, until: float | None = None) -> bool:
        raise RuntimeError("the budget's store is gone")

    monkeypatch.setattr(RequestPacer, "aacquire", broken)
    waits = [
        hook.await_task(MODEL, task_id, initial_delay=0.0, poll_interval=0.1, deadline=time.time() + 60)
        for _ in range(3)
    ]
    try:
        results = await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), timeout=10)
    finally:
        await hook.aclose()

    assert all(isinstance(result, RuntimeError) for result in results)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"requests_per_minute": 0}, "extra.requests_per_minute"),
        ({"requests_per_minute": 20_000}, "extra.requests_per_minute"),
        ({"requests_per_minute": "many"}, "extra.requests_per_minute"),
        ({"max_in_flight": 0}, "extra.max_in_flight"),
        ({"rate_limit_storage": "memcached://cache:11211"}, "extra.rate_limit_storage"),
    ],
)
def test_bad_budget_extras_are_named_before_any_request(
    emulator: EmulatorServer,
    emulator_admin: EmulatorAdmin,
    monkeypatch: pytest.MonkeyPatch,
    extra: dict[str, object],
    field: str,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_BAD", apixo_connection(emulator.base_url, **extra))

    with pytest.raises(ApixoInputError) as caught:
        ApixoHook("apixo_bad").submit_task(MODEL, T2I)

    assert caught.value.field == field
    assert emulator_admin.request_count() == 0


def test_budget_extras_from_the_form_are_read(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = "redis://:hunter2@127.0.0.1:6379/0"
    extra = {"requests_per_minute": "6000", "max_in_flight": "16", "rate_limit_storage": storage}
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_FORM", apixo_connection(emulator.base_url, **extra))

    settings = ApixoHook("apixo_form").settings

    assert (settings.requests_per_minute, settings.max_in_flight) == (6000, 16)
    assert settings.rate_limit_storage == storage
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(settings.pacer_config())

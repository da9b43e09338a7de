"""ApixoHook's retries of reads: the production policy, Retry-After, bounds, what is never retried."""

from __future__ import annotations

import time
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_nanobanana.exceptions import (
    ApixoAuthError,
    ApixoBadRequestError,
    ApixoInsufficientBalanceError,
    ApixoRateLimitError,
    ApixoServerError,
    ApixoTransportError,
)
from airflow_provider_nanobanana.hooks.apixo import ApixoHook, RetryPolicy
from tests.support import FAST, MODEL, STATUS_PATH, T2I, RecordingPolicy


def test_production_retry_policy_is_five_attempts_from_1_s_up_to_30_s():
    """Every other test injects its own policy: this pins what a deployed hook, trigger and sensor use."""
    assert (
        ApixoHook().retry_policy
        == RetryPolicy()
        == RetryPolicy(max_attempts=5, initial_wait=1.0, max_wait=30.0)
    )


def retry_state(attempt: int, error: BaseException) -> Any:
    """What tenacity hands the policy after a failed attempt."""
    outcome = Future()
    outcome.set_exception(error)
    return SimpleNamespace(attempt_number=attempt, outcome=outcome)


def test_production_backoff_grows_exponentially_with_full_jitter(monkeypatch):
    policy, error = RetryPolicy(), ApixoServerError(500, "down")
    monkeypatch.setattr("random.uniform", lambda low, high: high)  # the top of each jitter range
    ceilings = [policy.wait(retry_state(attempt, error)) for attempt in range(1, 8)]
    monkeypatch.setattr("random.uniform", lambda low, high: low)
    floors = {policy.wait(retry_state(attempt, error)) for attempt in range(1, 8)}
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert floors == {0.0}


@pytest.mark.parametrize(("retry_after", "wait"), [(0.5, 0.5), (12, 12.0), (600, 30.0)])
def test_production_policy_honours_retry_after_up_to_30_s(retry_after, wait):
    error = ApixoRateLimitError(429, "slow down", retry_after=retry_after)
    assert RetryPolicy().wait(retry_state(1, error)) == wait


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_status_read_retries_transient_errors(make_hook, emulator_admin, status):
    task_id = make_hook().submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(status, 2, "status")
    policy = RecordingPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05)
    assert make_hook(retry_policy=policy).get_task_status(MODEL, task_id).task_id == task_id
    assert emulator_admin.request_count("GET", STATUS_PATH) == 3
    assert len(policy.waits) == 2
    assert all(0 <= wait <= 0.05 for wait in policy.waits)


@pytest.mark.parametrize("status", [429, 503])
def test_status_read_honours_retry_after(make_hook, emulator_admin, status):
    task_id = make_hook().submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(status, 2, "status", retry_after=0.2)
    policy = RecordingPolicy(max_attempts=5, initial_wait=0.001, max_wait=1.0)
    started = time.monotonic()
    make_hook(retry_policy=policy).get_task_status(MODEL, task_id)
    assert policy.waits == [0.2, 0.2]
    assert time.monotonic() - started >= 0.4
    assert emulator_admin.request_count("GET", STATUS_PATH) == 3


def test_retry_after_is_capped_by_max_wait(make_hook, emulator_admin):
    task_id = make_hook().submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(429, 1, "status", retry_after=30)
    policy = RecordingPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.05)
    started = time.monotonic()
    make_hook(retry_policy=policy).get_task_status(MODEL, task_id)
    assert policy.waits == [0.05]
    assert time.monotonic() - started < 2


async def test_async_status_read_honours_retry_after(make_hook, emulator_admin):
    task_id = make_hook().submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(429, 2, "status", retry_after=0.1)
    policy = RecordingPolicy(max_attempts=5, initial_wait=0.001, max_wait=1.0)
    hook = make_hook(retry_policy=policy)
    started = time.monotonic()
    try:
        assert (await hook.aget_task_status(MODEL, task_id)).task_id == task_id
    finally:
        await hook.aclose()
    assert policy.waits == [0.1, 0.1]
    assert time.monotonic() - started >= 0.2
    assert emulator_admin.request_count("GET", STATUS_PATH) == 3


def test_backoff_without_retry_after_stays_under_max_wait(make_hook, emulator_admin):
    emulator_admin.inject_http_errors(500, 10, "status")
    policy = RecordingPolicy(max_attempts=5, initial_wait=0.01, max_wait=0.02)
    with pytest.raises(ApixoServerError):
        make_hook(retry_policy=policy).get_task_status(MODEL, "task_x")
    assert emulator_admin.request_count("GET", STATUS_PATH) == 5
    assert len(policy.waits) >= 4  # tenacity may also compute a wait after the last attempt
    assert all(0 <= wait <= 0.02 for wait in policy.waits)


def test_status_retries_are_bounded(make_hook, emulator_admin):
    emulator_admin.inject_http_errors(500, 10, "status")
    with pytest.raises(ApixoServerError) as caught:
        make_hook().get_task_status(MODEL, "task_x")
    assert caught.value.http_status == 500
    assert emulator_admin.request_count("GET", STATUS_PATH) == FAST.max_attempts


def test_a_status_read_answered_429_does_not_wait_for_capacity_the_wait_reads_later(
    make_hook, emulator_admin
):
    """A read is cheap to make again later: its 429s count as failures, as a submission's do not."""
    emulator_admin.inject_http_errors(429, 100, "status")
    with pytest.raises(ApixoRateLimitError) as caught:
        make_hook().get_task_status(MODEL, "task_x")
    assert "waiting for capacity" not in str(caught.value)
    assert emulator_admin.request_count("GET", STATUS_PATH) == FAST.max_attempts


async def test_async_status_retries_are_bounded(make_hook, emulator_admin):
    emulator_admin.inject_http_errors(503, 10, "status")
    hook = make_hook()
    try:
        with pytest.raises(ApixoServerError):
            await hook.aget_task_status(MODEL, "task_x")
    finally:
        await hook.aclose()
    assert emulator_admin.request_count("GET", STATUS_PATH) == FAST.max_attempts


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, ApixoBadRequestError), (401, ApixoAuthError), (402, ApixoInsufficientBalanceError)],
)
@pytest.mark.parametrize("endpoint", ["submit", "status"])
def test_client_errors_are_never_retried(make_hook, emulator_admin, status, error, endpoint):
    emulator_admin.inject_http_errors(status, 5, endpoint)
    hook = make_hook()
    with pytest.raises(error) as caught:
        if endpoint == "submit":
            hook.submit_task(MODEL, T2I)
        else:
            hook.get_task_status(MODEL, "task_x")
    assert caught.value.http_status == status
    assert len(emulator_admin.requests()) == 1
    assert emulator_admin.submissions() == 0


def test_status_read_timeout_is_retried_then_transport_error(make_hook, emulator_admin):
    emulator_admin.configure(latency_seconds=0.3)
    with pytest.raises(ApixoTransportError, match="timed out"):
        make_hook(timeout=0.1).get_task_status(MODEL, "task_x")
    assert emulator_admin.request_count("GET", STATUS_PATH) == FAST.max_attempts


@pytest.mark.parametrize("mode", ["blocking", "deferred"])
async def test_a_wait_outlasts_more_429s_in_a_row_than_max_consecutive_errors(
    make_hook, emulator_admin, mode
):
    """Each 429 reaches the wait (reads do not wait for capacity), and none counts as an error."""
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(429, 6, "status", retry_after=0.05)
    wait = {
        "initial_delay": 0,
        "poll_interval": 0.05,
        "deadline": time.time() + 60,
        "max_consecutive_errors": 2,
    }
    try:
        if mode == "blocking":
            outcome = hook.wait_for_task(MODEL, task_id, **wait)
        else:
            outcome = await hook.await_task(MODEL, task_id, **wait)
    finally:
        await hook.aclose()
    assert outcome.status == "success"
    assert emulator_admin.request_count("GET", STATUS_PATH) > 6

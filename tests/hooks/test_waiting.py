"""ApixoHook waiting for a task, blocking and async: outcomes, deadlines, runs of errors."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_nanobanana.exceptions import ApixoServerError
from airflow_provider_nanobanana.hooks.apixo import RetryPolicy
from airflow_provider_nanobanana.polling import OutcomeStatus
from tests.support import MODEL, STATUS_PATH, T2I, WRONG_KEY, apixo_connection


def wait_kwargs(seconds: float = 5.0, **extra: Any) -> dict[str, Any]:
    return {"initial_delay": 0.05, "poll_interval": 0.1, "deadline": time.time() + seconds, **extra}


def test_wait_for_task_success(make_hook, emulator):
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    outcome = hook.wait_for_task(MODEL, task_id, **wait_kwargs())
    assert outcome.status is OutcomeStatus.SUCCESS
    assert outcome.task_id == task_id and outcome.model == MODEL
    assert outcome.task.result_urls == (f"{emulator.root_url}/files/{task_id}/0.png",)
    assert outcome.result()["result_urls"] == [f"{emulator.root_url}/files/{task_id}/0.png"]


async def test_await_task_success(make_hook, emulator):
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    try:
        outcome = await hook.await_task(MODEL, task_id, **wait_kwargs())
    finally:
        await hook.aclose()
    assert outcome.status is OutcomeStatus.SUCCESS
    assert outcome.task.result_urls == (f"{emulator.root_url}/files/{task_id}/0.png",)


def test_wait_for_task_failed(make_hook, emulator_admin):
    emulator_admin.configure(generation_seconds=0.2, pending_seconds=0.05)
    emulator_admin.fail_next_tasks("CONTENT_VIOLATION", fail_msg="Prompt violates the content policy")
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    outcome = hook.wait_for_task(MODEL, task_id, **wait_kwargs())
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.task.fail_code == "CONTENT_VIOLATION"
    assert outcome.task.fail_message == "Prompt violates the content policy"
    assert "CONTENT_VIOLATION" in outcome.message


async def test_await_task_failed(make_hook, emulator_admin):
    emulator_admin.configure(generation_seconds=0.2, pending_seconds=0.05)
    emulator_admin.fail_next_tasks("MODEL_UNAVAILABLE")
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    try:
        outcome = await hook.await_task(MODEL, task_id, **wait_kwargs())
    finally:
        await hook.aclose()
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.task.fail_code == "MODEL_UNAVAILABLE"


def test_wait_for_task_times_out(make_hook, emulator_admin):
    hook = make_hook()
    task_id = hook.submit_task(MODEL, {**T2I, "prompt": "slow [emulator:seconds=30]"})
    started = time.monotonic()
    outcome = hook.wait_for_task(MODEL, task_id, **wait_kwargs(0.4))
    assert outcome.status is OutcomeStatus.TIMEOUT
    assert outcome.task is not None and not outcome.task.state.is_terminal
    assert time.monotonic() - started < 5  # the task takes 30 s


async def test_await_task_times_out(make_hook, emulator_admin):
    hook = make_hook()
    task_id = hook.submit_task(MODEL, {**T2I, "prompt": "slow [emulator:seconds=30]"})
    started = time.monotonic()
    try:
        outcome = await hook.await_task(MODEL, task_id, **wait_kwargs(0.4))
    finally:
        await hook.aclose()
    assert outcome.status is OutcomeStatus.TIMEOUT
    assert time.monotonic() - started < 5  # the task takes 30 s


async def test_await_task_abandons_a_hanging_read_at_the_deadline(make_hook, emulator_admin, monkeypatch):
    """A read that hangs past the deadline must not delay the timeout outcome until Airflow's own."""
    task_id = make_hook().submit_task(MODEL, T2I)
    monkeypatch.setattr("airflow_provider_nanobanana.polling.READ_OVERRUN_SECONDS", 0.2)
    emulator_admin.configure(latency_seconds=5)
    hook = make_hook(timeout=10)
    started = time.monotonic()
    try:
        outcome = await hook.await_task(
            MODEL, task_id, initial_delay=0, poll_interval=0.05, deadline=time.time() + 0.2
        )
    finally:
        await hook.aclose()
    assert outcome.status is OutcomeStatus.TIMEOUT
    assert time.monotonic() - started < 3


def test_wait_for_task_abandons_a_hanging_read_at_the_deadline(make_hook, emulator_admin, monkeypatch):
    """The blocking wait is bounded like the async one: a hanging read ends soon after the deadline."""
    task_id = make_hook().submit_task(MODEL, T2I)
    monkeypatch.setattr("airflow_provider_nanobanana.polling.READ_OVERRUN_SECONDS", 0.2)
    emulator_admin.configure(latency_seconds=5)
    hook = make_hook(timeout=10)
    started = time.monotonic()
    outcome = hook.wait_for_task(
        MODEL, task_id, initial_delay=0, poll_interval=0.05, deadline=time.time() + 0.2
    )
    assert outcome.status is OutcomeStatus.TIMEOUT
    assert "deadline" in outcome.message
    assert time.monotonic() - started < 3


def test_status_read_time_limit_starts_no_retry_past_it(make_hook, emulator_admin):
    """The policy allows ten attempts 0.3 s apart; within a 1 s limit only four can start."""
    emulator_admin.inject_http_errors(503, 10, "status", retry_after=0.3)
    policy = RetryPolicy(max_attempts=10, initial_wait=0.01, max_wait=1.0)
    with pytest.raises(ApixoServerError):
        make_hook(retry_policy=policy).get_task_status(MODEL, "task_x", time_limit=1.0)
    assert 1 <= emulator_admin.request_count("GET", STATUS_PATH) <= 4


def test_wait_for_task_gives_up_after_consecutive_errors(make_hook, emulator_admin):
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02)
    hook = make_hook(retry_policy=policy)
    task_id = hook.submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(500, 100, "status")
    outcome = hook.wait_for_task(MODEL, task_id, **wait_kwargs(max_consecutive_errors=3))
    assert outcome.status is OutcomeStatus.ERROR
    assert "500" in outcome.message
    assert emulator_admin.request_count("GET", STATUS_PATH) == 3 * policy.max_attempts


async def test_await_task_gives_up_after_consecutive_errors(make_hook, emulator_admin):
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02)
    hook = make_hook(retry_policy=policy)
    task_id = hook.submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(503, 100, "status")
    try:
        outcome = await hook.await_task(MODEL, task_id, **wait_kwargs(max_consecutive_errors=3))
    finally:
        await hook.aclose()
    assert outcome.status is OutcomeStatus.ERROR
    assert emulator_admin.request_count("GET", STATUS_PATH) == 3 * policy.max_attempts


def test_wait_for_task_tolerates_a_short_error_run(make_hook, emulator_admin, emulator):
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02)
    hook = make_hook(retry_policy=policy)
    task_id = hook.submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(
        500, 2 * policy.max_attempts, "status"
    )  # two failed polls, budget is three
    outcome = hook.wait_for_task(MODEL, task_id, **wait_kwargs(max_consecutive_errors=3))
    assert outcome.status is OutcomeStatus.SUCCESS
    assert outcome.task.result_urls == (f"{emulator.root_url}/files/{task_id}/0.png",)


async def test_await_task_tolerates_a_short_error_run(make_hook, emulator_admin):
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02)
    hook = make_hook(retry_policy=policy)
    task_id = hook.submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(500, 2 * policy.max_attempts, "status")
    try:
        outcome = await hook.await_task(MODEL, task_id, **wait_kwargs(max_consecutive_errors=3))
    finally:
        await hook.aclose()
    assert outcome.status is OutcomeStatus.SUCCESS


def test_wait_for_task_ends_at_once_on_a_wrong_key(make_hook, emulator, emulator_admin):
    task_id = make_hook().submit_task(MODEL, T2I)
    hook = make_hook("apixo_wrong", connection=apixo_connection(emulator.base_url, WRONG_KEY))
    outcome = hook.wait_for_task(MODEL, task_id, **wait_kwargs(max_consecutive_errors=5))
    assert outcome.status is OutcomeStatus.ERROR
    assert emulator_admin.request_count("GET", STATUS_PATH) == 1
    assert WRONG_KEY not in outcome.message

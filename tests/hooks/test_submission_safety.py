"""A submission is paid for: ApixoHook resends it only when the request surely was not taken."""

from __future__ import annotations

import dataclasses
import time

import httpx
import pytest
import respx

from airflow_provider_nanobanana.exceptions import (
    ApixoRateLimitError,
    ApixoSubmissionUncertainError,
    ApixoTransportError,
)
from tests.support import (
    FAKE_BASE,
    FAST,
    MODEL,
    T2I,
    TEST_API_KEY,
    RecordingPolicy,
    apixo_connection,
    envelope,
    free_port,
)


def test_submission_read_timeout_is_uncertain_and_not_resent(make_hook, emulator_admin):
    emulator_admin.configure(latency_seconds=0.5)
    with pytest.raises(ApixoSubmissionUncertainError, match="not resent"):
        make_hook(timeout=0.2).submit_task(MODEL, T2I)
    assert emulator_admin.request_count("POST") == 1
    assert emulator_admin.submissions() == 1  # the paid task exists; a resend would have made two


@pytest.mark.parametrize("retry_after", [None, 0.01], ids=["no-retry-after", "retry-after"])
@pytest.mark.parametrize("status", [500, 502, 504])
def test_submission_answered_5xx_is_uncertain_and_not_resent(make_hook, emulator_admin, status, retry_after):
    """Only a 503 with Retry-After says the request was not taken; any other 5xx may come after it was."""
    emulator_admin.inject_http_errors(status, 5, "submit", retry_after=retry_after)
    with pytest.raises(ApixoSubmissionUncertainError):
        make_hook().submit_task(MODEL, T2I)
    assert emulator_admin.request_count("POST") == 1


@pytest.mark.parametrize(("status", "retry_after"), [(429, None), (429, 0.01), (503, 0.01)])
def test_submission_turned_away_is_resent_once_accepted(make_hook, emulator_admin, status, retry_after):
    emulator_admin.inject_http_errors(status, 2, "submit", retry_after=retry_after)
    task_id = make_hook().submit_task(MODEL, T2I)
    assert emulator_admin.request_count("POST") == 3
    assert emulator_admin.submissions() == 1
    assert emulator_admin.tasks()[0]["id"] == task_id


def test_submission_answered_503_without_retry_after_is_not_resent(make_hook, emulator_admin):
    """A proxy may answer 503 after forwarding the request: only a Retry-After says it was not taken."""
    emulator_admin.inject_http_errors(503, 1, "submit")
    with pytest.raises(ApixoSubmissionUncertainError):
        make_hook().submit_task(MODEL, T2I)
    assert emulator_admin.request_count("POST") == 1


def test_submission_rate_limited_honours_retry_after(make_hook, emulator_admin):
    emulator_admin.inject_http_errors(429, 1, "submit", retry_after=0.15)
    policy = RecordingPolicy(max_attempts=3, initial_wait=0.001, max_wait=1.0)
    make_hook(retry_policy=policy).submit_task(MODEL, T2I)
    assert policy.waits == [0.15]
    assert emulator_admin.submissions() == 1


def test_submission_answered_429_more_often_than_max_attempts_waits_for_capacity(make_hook, emulator_admin):
    emulator_admin.inject_http_errors(429, 3 * FAST.max_attempts, "submit", retry_after=0.05)
    make_hook().submit_task(MODEL, T2I)
    assert emulator_admin.request_count("POST") == 3 * FAST.max_attempts + 1
    assert emulator_admin.submissions() == 1


def test_submission_answered_429_past_the_capacity_wait_fails_naming_it_and_takes_nothing(
    make_hook, emulator, emulator_admin
):
    """The capacity wait bounds the waits for the key's lowered rate too: at 20/min, a few 429s bring
    the rate to its floor, and the next turn in the pacer would come a minute later."""
    emulator_admin.inject_http_errors(429, 1000, "submit", retry_after=0.05)
    connection = apixo_connection(emulator.base_url, requests_per_minute=20)
    policy = dataclasses.replace(FAST, capacity_wait=1)
    hook = make_hook("apixo_slow", connection=connection, retry_policy=policy)
    started = time.monotonic()
    with pytest.raises(ApixoRateLimitError) as caught:
        hook.submit_task(MODEL, T2I)
    assert 1 <= time.monotonic() - started < 5
    assert "after 1 s of waiting for capacity; nothing was taken, so a retry of the Airflow task" in str(
        caught.value
    )
    assert emulator_admin.submissions() == 0


def test_submission_connect_error_is_retried_then_transport_error(make_hook):
    base = f"http://127.0.0.1:{free_port()}/api/v1"
    policy = RecordingPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05)
    hook = make_hook("apixo_closed", connection=apixo_connection(base), retry_policy=policy)
    with pytest.raises(ApixoTransportError) as caught:
        hook.submit_task(MODEL, T2I)
    assert len(policy.waits) >= 2  # retried: at least two waits between three attempts
    assert TEST_API_KEY not in str(caught.value)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("busy")]
)
def test_submission_not_sent_is_resent(make_hook, monkeypatch, error):
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_FAKE", apixo_connection(FAKE_BASE))
    accepted = httpx.Response(200, json=envelope({"taskId": "task_1"}))
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.post("/generateTask/nano-banana").mock(side_effect=[error, accepted])
        assert make_hook("apixo_fake").submit_task(MODEL, T2I) == "task_1"
    assert route.call_count == 2


def test_submission_connect_errors_are_bounded(make_hook, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_FAKE", apixo_connection(FAKE_BASE))
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.post("/generateTask/nano-banana").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(ApixoTransportError):
            make_hook("apixo_fake").submit_task(MODEL, T2I)
    assert route.call_count == FAST.max_attempts


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>ok</html>"),
        httpx.Response(200, json=envelope({})),
        httpx.Response(200, json={"code": 999, "message": "odd"}),
        httpx.Response(502, text="<html>Bad gateway</html>"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
    ids=["non-json", "no-task-id", "odd-code", "502-html", "read-error", "protocol-error"],
)
def test_submission_with_a_lost_answer_is_uncertain_and_not_resent(make_hook, monkeypatch, response):
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_FAKE", apixo_connection(FAKE_BASE))
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.post("/generateTask/nano-banana").mock(side_effect=[response])
        with pytest.raises(ApixoSubmissionUncertainError) as caught:
            make_hook("apixo_fake").submit_task(MODEL, T2I)
    assert route.call_count == 1
    assert TEST_API_KEY not in str(caught.value)

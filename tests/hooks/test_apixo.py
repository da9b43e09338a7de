"""ApixoHook: real HTTP against the emulator over loopback, respx for what a server can't easily produce.

The emulator is steered and read through its admin endpoints (``emulator_admin``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import respx

from airflow_provider_nanobanana.exceptions import (
    ApixoAuthError,
    ApixoBadRequestError,
    ApixoError,
    ApixoInputError,
    ApixoInsufficientBalanceError,
    ApixoMalformedResponseError,
    ApixoNotFoundError,
    ApixoRateLimitError,
    ApixoServerError,
    ApixoSubmissionUncertainError,
    ApixoTransportError,
)
from airflow_provider_nanobanana.hooks import apixo
from airflow_provider_nanobanana.hooks.apixo import ApixoHook, RetryPolicy
from airflow_provider_nanobanana.models import DEFAULT_BASE_URL, TaskState
from airflow_provider_nanobanana.polling import OutcomeStatus
from tests.support import FAST, TEST_API_KEY, WRONG_KEY, RecordingPolicy, apixo_connection, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator


MODEL = "nano-banana"
T2I = {"mode": "text-to-image", "prompt": "a watercolor fox", "aspect_ratio": "16:9", "output_format": "png"}
FAKE_BASE = "https://apixo.test/api/v1"
STATUS_PATH = "/api/v1/statusTask"
SUBMIT_PATH = "/api/v1/generateTask"
HEX_ID = "0123456789abcdef0123456789abcdef"


def envelope(data: Any, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def status_body(state_: str = "processing", **extra: Any) -> dict[str, Any]:
    return envelope({"taskId": "task_1", "state": state_, "createTime": 1700000000000, **extra})


def poll_until_terminal(hook: ApixoHook, task_id: str) -> tuple[list[TaskState], Any]:
    """Read the status every 50 ms; return the distinct states seen, in order, and the last status."""
    seen: list[TaskState] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = hook.get_task_status(MODEL, task_id)
        if not seen or seen[-1] is not status.state:
            seen.append(status.state)
        if status.state.is_terminal:
            return seen, status
        time.sleep(0.05)
    pytest.fail(f"task {task_id} did not finish: {seen}")


# --- real HTTP against the emulator -------------------------------------------------------------------


def test_submit_and_status_through_every_state(make_hook, emulator, emulator_admin):
    emulator_admin.configure(
        pending_seconds=1.0, generation_seconds=2.0
    )  # every state is seen even when slow
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)

    assert emulator_admin.submissions() == 1
    [task] = emulator_admin.tasks()
    assert task["id"] == task_id
    assert (task["request_type"], task["provider"], task["input"]) == ("async", "auto", T2I)
    seen, final = poll_until_terminal(hook, task_id)
    assert seen == [TaskState.PENDING, TaskState.PROCESSING, TaskState.SUCCESS]
    assert final.task_id == task_id
    assert final.result_urls == (f"{emulator.root_url}/files/{task_id}/0.png",)
    assert final.create_time is not None and final.complete_time is not None
    assert final.cost_time == 2000


async def test_async_status_through_every_state(make_hook, emulator, emulator_admin):
    emulator_admin.configure(pending_seconds=1.0, generation_seconds=2.0)
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    seen: list[TaskState] = []
    try:
        for _ in range(100):
            status = await hook.aget_task_status(MODEL, task_id)
            if not seen or seen[-1] is not status.state:
                seen.append(status.state)
            if status.state.is_terminal:
                break
            await asyncio.sleep(0.05)
    finally:
        await hook.aclose()
    assert seen == [TaskState.PENDING, TaskState.PROCESSING, TaskState.SUCCESS]
    assert status.result_urls == (f"{emulator.root_url}/files/{task_id}/0.png",)


def test_transport_is_generic_over_the_model_id(make_hook, emulator_admin):
    hook = make_hook()
    task_id = hook.submit_task("seedream-4-5", {"prompt": "x"})
    assert emulator_admin.tasks()[0]["model"] == "seedream-4-5"
    assert hook.get_task_status("seedream-4-5", task_id).task_id == task_id
    # The status must be read under the model the task was created with.
    with pytest.raises(ApixoNotFoundError):
        hook.get_task_status(MODEL, task_id)


def test_sends_the_key_as_a_bearer_token(make_hook, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_FAKE", apixo_connection(FAKE_BASE))
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.get("/statusTask/nano-banana").respond(json=status_body())
        make_hook("apixo_fake").get_task_status(MODEL, "task_1")
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TEST_API_KEY}"


@pytest.mark.parametrize("call", ["submit", "status"])
def test_wrong_key_raises_auth_error_without_leaking_the_key(make_hook, emulator, emulator_admin, call):
    hook = make_hook("apixo_wrong", connection=apixo_connection(emulator.base_url, WRONG_KEY))
    with pytest.raises(ApixoAuthError) as caught:
        if call == "submit":
            hook.submit_task(MODEL, T2I)
        else:
            hook.get_task_status(MODEL, "task_x")
    assert caught.value.http_status == 401
    assert "Check the API key field of the APIXO connection 'apixo_wrong'" in str(caught.value)
    assert WRONG_KEY not in str(caught.value)
    assert TEST_API_KEY not in str(caught.value)
    assert len(emulator_admin.requests()) == 1  # never retried
    assert emulator_admin.submissions() == 0


def test_bad_request_carries_the_servers_detail(make_hook, emulator_admin):
    hook = make_hook()
    with pytest.raises(ApixoBadRequestError) as caught:
        hook.submit_task(MODEL, {"mode": "text-to-image"})
    assert caught.value.http_status == 400
    assert caught.value.detail == "Missing required field: input.prompt"
    assert "Missing required field: input.prompt" in str(caught.value)
    assert emulator_admin.request_count("POST") == 1
    assert emulator_admin.submissions() == 0


def test_unknown_task_raises_not_found_once(make_hook, emulator_admin):
    with pytest.raises(ApixoNotFoundError) as caught:
        make_hook().get_task_status(MODEL, "task_doesnotexist")
    assert caught.value.http_status == 404
    assert emulator_admin.request_count("GET", STATUS_PATH) == 1


def test_sync_client_is_reused_across_calls(make_hook, emulator_admin):
    hook = make_hook()
    client = hook.get_conn()
    assert hook.get_conn() is client
    task_id = hook.submit_task(MODEL, T2I)
    hook.get_task_status(MODEL, task_id)
    assert hook.get_conn() is client
    assert not client.is_closed
    hook.close()
    assert client.is_closed
    assert hook.get_conn() is not client


async def test_async_client_is_reused_across_calls(make_hook, emulator_admin):
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    client = await hook.aget_conn()
    try:
        assert await hook.aget_conn() is client
        await hook.aget_task_status(MODEL, task_id)
        await hook.aget_task_status(MODEL, task_id)
        assert await hook.aget_conn() is client
    finally:
        await hook.aclose()
    assert client.is_closed


# --- retries --------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize(("status", "error"), [(429, ApixoRateLimitError), (500, ApixoServerError)])
def test_status_retries_are_bounded(make_hook, emulator_admin, status, error):
    emulator_admin.inject_http_errors(status, 10, "status")
    with pytest.raises(error) as caught:
        make_hook().get_task_status(MODEL, "task_x")
    assert caught.value.http_status == status
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


# --- submission safety ----------------------------------------------------------------------------------


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


def test_submission_rate_limited_every_time_gives_up(make_hook, emulator_admin):
    emulator_admin.inject_http_errors(429, 10, "submit")
    with pytest.raises(ApixoRateLimitError):
        make_hook().submit_task(MODEL, T2I)
    assert emulator_admin.request_count("POST") == FAST.max_attempts
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


# --- envelope corner cases ------------------------------------------------------------------------------


@pytest.fixture
def fake_api(make_hook, monkeypatch) -> Iterator[tuple[respx.MockRouter, ApixoHook]]:
    """A hook on ``apixo_fake`` and a respx router for its base URL."""
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_FAKE", apixo_connection(FAKE_BASE))
    with respx.mock(base_url=FAKE_BASE, assert_all_called=False) as mock:
        yield mock, make_hook("apixo_fake")


def test_code_not_200_under_http_200_is_an_error(fake_api):
    mock, hook = fake_api
    route = mock.get("/statusTask/nano-banana").respond(
        json={"code": 401, "message": "Invalid or missing API key"}
    )
    with pytest.raises(ApixoAuthError):
        hook.get_task_status(MODEL, "task_1")
    assert route.call_count == 1


def test_code_400_under_http_200_carries_detail(fake_api):
    mock, hook = fake_api
    mock.post("/generateTask/nano-banana").respond(
        json={"code": 400, "message": "Invalid request", "data": {"error": "Missing required field: input"}}
    )
    with pytest.raises(ApixoBadRequestError) as caught:
        hook.submit_task(MODEL, T2I)
    assert caught.value.detail == "Missing required field: input"


def test_code_429_under_http_200_is_retried(fake_api):
    mock, hook = fake_api
    route = mock.get("/statusTask/nano-banana").mock(
        side_effect=[
            httpx.Response(200, json={"code": 429, "message": "Rate limit exceeded"}),
            httpx.Response(200, json=status_body()),
        ]
    )
    assert hook.get_task_status(MODEL, "task_1").state is TaskState.PROCESSING
    assert route.call_count == 2


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={"code": 999, "message": "odd"}),
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"message": "no code"}),
        httpx.Response(200, json=envelope(None)),
        httpx.Response(200, json=status_body("queued")),
        httpx.Response(200, json=status_body("success", resultJson="{not json")),
        httpx.Response(200, json=status_body("success", resultJson='{"urls": ["https://x/y.png"]}')),
        httpx.Response(200, json=status_body("success")),
        httpx.Response(200, json=envelope({"state": "pending"})),
    ],
    ids=[
        "code-999",
        "non-json",
        "json-list",
        "no-code",
        "no-data",
        "unknown-state",
        "result-json-invalid",
        "result-json-without-urls",
        "success-without-result-json",
        "no-task-id",
    ],
)
def test_malformed_status_answers(fake_api, response):
    mock, hook = fake_api
    route = mock.get("/statusTask/nano-banana").mock(side_effect=[response])
    with pytest.raises(ApixoMalformedResponseError):
        hook.get_task_status(MODEL, "task_1")
    assert route.call_count == 1


async def test_malformed_status_answer_async(fake_api):
    mock, hook = fake_api
    mock.get("/statusTask/nano-banana").respond(json=status_body("queued"))
    try:
        with pytest.raises(ApixoMalformedResponseError, match="queued"):
            await hook.aget_task_status(MODEL, "task_1")
    finally:
        await hook.aclose()


def test_result_json_as_an_object_is_accepted(fake_api):
    mock, hook = fake_api
    urls = ["https://cdn.apixo.ai/output/a.png", "https://cdn.apixo.ai/output/b.png"]
    mock.get("/statusTask/nano-banana").respond(
        json=status_body("success", resultJson={"resultUrls": urls}, completeTime=1700000001000)
    )
    status = hook.get_task_status(MODEL, "task_1")
    assert status.state is TaskState.SUCCESS
    assert status.result_urls == tuple(urls)
    assert status.cost_time is None  # costTime may be missing


def test_result_json_as_a_string_is_parsed(fake_api):
    mock, hook = fake_api
    result = json.dumps({"resultUrls": ["https://cdn.apixo.ai/output/abc123.png"]})
    mock.get("/statusTask/nano-banana").respond(json=status_body("success", resultJson=result))
    assert hook.get_task_status(MODEL, "task_1").result_urls == ("https://cdn.apixo.ai/output/abc123.png",)


def test_failed_task_reports_fail_code(fake_api):
    mock, hook = fake_api
    mock.get("/statusTask/nano-banana").respond(
        json=status_body("failed", failCode="NSFW_DETECTED", failMsg="Content flagged")
    )
    status = hook.get_task_status(MODEL, "task_1")
    assert (status.state, status.fail_code, status.fail_message) == (
        TaskState.FAILED,
        "NSFW_DETECTED",
        "Content flagged",
    )
    assert status.result_urls == ()


def test_hex_task_ids_work(fake_api):
    mock, hook = fake_api
    mock.post("/generateTask/nano-banana").respond(json=envelope({"taskId": HEX_ID}))
    status_route = mock.get("/statusTask/nano-banana", params={"taskId": HEX_ID}).respond(
        json=envelope({"taskId": HEX_ID, "state": "pending", "createTime": 1})
    )
    task_id = hook.submit_task(MODEL, T2I)
    assert task_id == HEX_ID
    assert hook.get_task_status(MODEL, task_id).task_id == HEX_ID
    assert status_route.call_count == 1


def test_numeric_task_ids_are_kept_as_strings(fake_api):
    mock, hook = fake_api
    mock.post("/generateTask/nano-banana").respond(json=envelope({"taskId": 12345}))
    mock.get("/statusTask/nano-banana", params={"taskId": "12345"}).respond(
        json=envelope({"taskId": 12345, "state": "processing", "createTime": 1})
    )
    task_id = hook.submit_task(MODEL, T2I)
    assert task_id == "12345"
    assert hook.get_task_status(MODEL, task_id).task_id == "12345"


def test_submit_sends_the_contract_body(fake_api):
    mock, hook = fake_api
    route = mock.post("/generateTask/nano-banana").respond(json=envelope({"taskId": "task_1"}))
    hook.submit_task(MODEL, T2I, provider="official", callback_url="https://example.com/hooks/apixo")
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "request_type": "callback",
        "callback_url": "https://example.com/hooks/apixo",
        "provider": "official",
        "input": T2I,
    }


@pytest.mark.parametrize(("offset", "expected"), [(30, 0.05), (-30, 0.0)], ids=["future", "past"])
def test_retry_after_as_an_http_date(make_hook, monkeypatch, offset, expected):
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_FAKE", apixo_connection(FAKE_BASE))
    policy = RecordingPolicy(max_attempts=3, initial_wait=0.0001, max_wait=0.05)
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=offset), usegmt=True)
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.get("/statusTask/nano-banana").mock(
            side_effect=[
                httpx.Response(
                    429, json={"code": 429, "message": "slow down"}, headers={"Retry-After": when}
                ),
                httpx.Response(200, json=status_body()),
            ]
        )
        make_hook("apixo_fake", retry_policy=policy).get_task_status(MODEL, "task_1")
    assert route.call_count == 2
    assert policy.waits == [expected]


def test_unparseable_retry_after_falls_back_to_backoff(fake_api, monkeypatch):
    mock, _ = fake_api
    policy = RecordingPolicy(max_attempts=3, initial_wait=0.001, max_wait=1.0)
    hook = ApixoHook("apixo_fake", retry_policy=policy, timeout=5)
    mock.get("/statusTask/nano-banana").mock(
        side_effect=[
            httpx.Response(429, json={"code": 429, "message": "x"}, headers={"Retry-After": "soon-ish"}),
            httpx.Response(200, json=status_body()),
        ]
    )
    try:
        hook.get_task_status(MODEL, "task_1")
    finally:
        hook.close()
    assert len(policy.waits) == 1
    assert 0 <= policy.waits[0] <= 0.001


# --- connection settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ({"host": "http://127.0.0.1:8080/api/v1"}, "http://127.0.0.1:8080/api/v1"),
        ({"host": "https://proxy.example.com/apixo/api/v1/"}, "https://proxy.example.com/apixo/api/v1"),
        ({"host": "https://api.example.com"}, "https://api.example.com/api/v1"),
        ({"host": "api.example.com"}, "https://api.example.com/api/v1"),
        ({"host": "api.example.com", "port": 8443}, "https://api.example.com:8443/api/v1"),
        ({"host": "gw.example.com", "schema": "apixo/api/v1"}, "https://gw.example.com/apixo/api/v1"),
        ({"host": "https://gw.example.com/v2", "schema": "other"}, "https://gw.example.com/v2"),
        ({"host": ""}, DEFAULT_BASE_URL),
        ({}, DEFAULT_BASE_URL),
    ],
    ids=[
        "full-url",
        "trailing-slash",
        "no-path",
        "bare-host",
        "bare-host-port",
        "path-in-schema",
        "host-path-wins",
        "empty",
        "no-host",
    ],
)
def test_base_url_from_connection(make_hook, conn, expected):
    connection = json.dumps({"conn_type": "apixo", "password": TEST_API_KEY, **conn})
    assert make_hook("apixo_url", connection=connection).settings.base_url == expected


@pytest.mark.parametrize("schema", ["https", "HTTP", "/http/"])
def test_a_protocol_in_the_schema_is_refused_before_any_request(make_hook, emulator_admin, schema):
    connection = json.dumps(
        {"conn_type": "apixo", "host": "api.example.com", "schema": schema, "password": "k"}
    )
    with pytest.raises(ApixoInputError) as caught:
        _ = make_hook("apixo_schema", connection=connection).settings
    assert caught.value.field == "schema"
    assert "of the APIXO connection 'apixo_schema'" in str(caught.value)
    assert "put the protocol in the Base URL" in str(caught.value)
    assert emulator_admin.requests() == []


def test_bare_host_is_called_over_https_under_api_v1(make_hook):
    hook = make_hook("apixo_bare", connection=apixo_connection("apixo.test"))
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.get("/statusTask/nano-banana").respond(json=status_body())
        hook.get_task_status(MODEL, "task_1")
    assert str(route.calls.last.request.url) == f"{FAKE_BASE}/statusTask/nano-banana?taskId=task_1"


def test_empty_host_calls_the_public_api(make_hook):
    hook = make_hook("apixo_public", connection=apixo_connection(""))
    with respx.mock(base_url=DEFAULT_BASE_URL) as mock:
        route = mock.get("/statusTask/nano-banana").respond(json=status_body())
        hook.get_task_status(MODEL, "task_1")
    assert route.call_count == 1


def test_provider_extra_is_the_default_routing(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_value", connection=apixo_connection(emulator.base_url, provider="value"))
    assert hook.settings.provider == "value"
    first = hook.submit_task(MODEL, T2I)
    second = hook.submit_task(MODEL, T2I, provider="official")
    providers = {task["id"]: task["provider"] for task in emulator_admin.tasks()}
    assert providers == {first: "value", second: "official"}


def test_invalid_provider_extra_raises_before_any_request(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_badp", connection=apixo_connection(emulator.base_url, provider="cheapest"))
    with pytest.raises(ApixoInputError) as caught:
        hook.submit_task(MODEL, T2I)
    assert caught.value.field == "extra.provider"
    assert str(caught.value) == (
        "Invalid 'Default provider routing' field (extra.provider) of the APIXO connection 'apixo_badp': "
        "must be one of auto, value, official; got 'cheapest'"
    )
    assert emulator_admin.requests() == []


def test_invalid_provider_argument_raises_before_any_request(make_hook, emulator_admin):
    with pytest.raises(ApixoInputError) as caught:
        make_hook().submit_task(MODEL, T2I, provider="cheapest")
    assert caught.value.field == "provider"
    assert emulator_admin.requests() == []


@pytest.mark.parametrize("timeout", ["soon", -1])
def test_invalid_timeout_extra_names_the_extra(make_hook, emulator, emulator_admin, timeout):
    hook = make_hook(
        "apixo_badt", connection=apixo_connection(emulator.base_url, timeout=timeout), timeout=None
    )
    with pytest.raises(ApixoInputError) as caught:
        hook.submit_task(MODEL, T2I)
    assert caught.value.field == "extra.timeout"
    assert emulator_admin.requests() == []


def test_timeout_extra_applies_per_request(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_slow", connection=apixo_connection(emulator.base_url, timeout=0.1), timeout=None)
    assert hook.settings.timeout == 0.1
    emulator_admin.configure(latency_seconds=0.3)
    with pytest.raises(ApixoTransportError, match="timed out"):
        hook.get_task_status(MODEL, "task_x")


def test_hook_timeout_overrides_the_extra(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_slow", connection=apixo_connection(emulator.base_url, timeout=0.1), timeout=2.0)
    assert hook.settings.timeout == 2.0
    emulator_admin.configure(latency_seconds=0.3)
    task_id = hook.submit_task(MODEL, T2I)
    assert hook.get_task_status(MODEL, task_id).task_id == task_id


def test_a_bad_hook_timeout_is_the_hooks_not_the_connections(make_hook, emulator_admin):
    with pytest.raises(ApixoInputError) as caught:
        make_hook(timeout=-1).submit_task(MODEL, T2I)
    assert (caught.value.field, "connection" in str(caught.value)) == ("timeout", False)
    assert emulator_admin.requests() == []


@pytest.mark.parametrize("password", ["", None])
def test_connection_without_api_key(make_hook, emulator, emulator_admin, password):
    conn: dict[str, Any] = {"conn_type": "apixo", "host": emulator.base_url}
    if password is not None:
        conn["password"] = password
    hook = make_hook("apixo_nokey", connection=json.dumps(conn))
    with pytest.raises(ApixoError, match="The API key field of the APIXO connection 'apixo_nokey' is empty"):
        hook.get_task_status(MODEL, "task_x")
    assert emulator_admin.requests() == []
    ok, message = hook.test_connection()
    assert not ok
    assert "API key" in message


# --- waiting ------------------------------------------------------------------------------------------


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


# --- test_connection ------------------------------------------------------------------------------------


def test_test_connection_with_a_good_key(make_hook, emulator, emulator_admin):
    ok, message = make_hook().test_connection()
    assert ok
    assert emulator.base_url in message
    assert emulator_admin.requests() == [{"method": "GET", "path": "/api/v1/apikeys/current-balance"}]


def test_test_connection_with_a_wrong_key(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_wrong", connection=apixo_connection(emulator.base_url, WRONG_KEY))
    ok, message = hook.test_connection()
    assert not ok
    assert message == (
        "APIXO rejected the API key: APIXO answered 401 (Invalid or missing API key). "
        "Check the API key field of the APIXO connection 'apixo_wrong'"
    )
    assert WRONG_KEY not in message
    assert len(emulator_admin.requests()) == 1


def test_test_connection_with_an_unreachable_host(make_hook):
    base = f"http://127.0.0.1:{free_port()}/api/v1"
    ok, message = make_hook("apixo_closed", connection=apixo_connection(base)).test_connection()
    assert not ok
    assert message
    assert TEST_API_KEY not in message


def _status_route(request: httpx.Request) -> httpx.Response:
    """APIXO's status read: 401 without a key, 404 for an unknown task with one."""
    if request.headers.get("Authorization") != f"Bearer {TEST_API_KEY}":
        return httpx.Response(401, json={"code": 401, "message": "Invalid or missing API key"})
    return httpx.Response(404, json={"code": 404, "message": "Task not found"})


def test_test_connection_falls_back_to_a_status_read(fake_api):
    mock, hook = fake_api
    balance = mock.get("/apikeys/current-balance").respond(404, json={"code": 404, "message": "Not found"})
    probe = mock.get("/statusTask/nano-banana").mock(side_effect=_status_route)
    ok, message = hook.test_connection()
    assert ok, message
    assert balance.call_count == 1 and probe.call_count == 2
    with_key, without_key = (call.request.headers["Authorization"] for call in probe.calls)
    assert (with_key, without_key) == (f"Bearer {TEST_API_KEY}", "")


def test_test_connection_fallback_still_rejects_a_wrong_key(fake_api):
    mock, hook = fake_api
    mock.get("/apikeys/current-balance").respond(404, json={"code": 404, "message": "Not found"})
    mock.get("/statusTask/nano-banana").respond(
        401, json={"code": 401, "message": "Invalid or missing API key"}
    )
    ok, message = hook.test_connection()
    assert not ok
    assert "API key" in message


def _balance_route(request: httpx.Request) -> httpx.Response:
    """A balance endpoint in an undocumented shape that still refuses a call without the key."""
    if request.headers.get("Authorization") != f"Bearer {TEST_API_KEY}":
        return httpx.Response(401, json={"code": 401, "message": "Invalid or missing API key"})
    return httpx.Response(200, text="<html>balance: 12</html>")


def test_test_connection_accepts_an_unexpected_shape_once_a_keyless_call_is_refused(fake_api):
    mock, hook = fake_api
    balance = mock.get("/apikeys/current-balance").mock(side_effect=_balance_route)
    ok, message = hook.test_connection()
    assert ok, message
    with_key, without_key = (call.request.headers["Authorization"] for call in balance.calls)
    assert (with_key, without_key) == (f"Bearer {TEST_API_KEY}", "")


def test_test_connection_rejects_an_unexpected_shape_that_needs_no_key(fake_api):
    """Any web server answers 200 somewhere: without a refused keyless call that proves nothing."""
    mock, hook = fake_api
    balance = mock.get("/apikeys/current-balance").respond(200, json={"hello": "world"})
    ok, message = hook.test_connection()
    assert not ok
    assert f"{FAKE_BASE} does not answer like the APIXO API" in message
    assert balance.call_count == 2


def test_test_connection_fallback_accepts_a_status_read_answered_400(fake_api):
    """A status read may refuse the made-up task id as a bad request: the key still passed."""
    mock, hook = fake_api
    mock.get("/apikeys/current-balance").respond(404, json={"code": 404, "message": "Not found"})
    probe = mock.get("/statusTask/nano-banana").mock(
        side_effect=lambda request: (
            httpx.Response(400, json={"code": 400, "message": "Invalid request"})
            if request.headers.get("Authorization")
            else httpx.Response(401, json={"code": 401, "message": "Invalid or missing API key"})
        )
    )
    ok, message = hook.test_connection()
    assert ok, message
    assert probe.call_count == 2


@pytest.mark.parametrize("host", ["https://127.0.0.1:{port}/api/v1", "127.0.0.1:{port}"])
def test_test_connection_reports_a_tls_failure_naming_the_host(make_hook, emulator, host):
    """HTTPS to a plain-HTTP port (a host without a scheme means https): a real TLS handshake
    failure, with the hint the Base URL needs http://."""
    hook = make_hook("apixo_tls", connection=apixo_connection(host.format(port=emulator.port)))
    ok, message = hook.test_connection()
    assert not ok
    assert f"https://127.0.0.1:{emulator.port}/api/v1/apikeys/current-balance failed" in message
    assert "SSL" in message
    hint = "write http:// before the host in the Base URL field of the APIXO connection 'apixo_tls'"
    assert hint in message


def tls_failure(reason: str | None, *, loop: bool = False) -> httpx.ConnectError:
    """An httpx error over an SSLError with ``reason``, as httpx raises it (a loop as respx wraps it)."""
    ssl_error = ssl.SSLError(1, f"[SSL: {reason}] handshake failed")
    if reason is not None:
        ssl_error.reason = reason  # type: ignore[misc]
    error = httpx.ConnectError(str(ssl_error))
    error.__cause__ = ssl_error
    if loop:
        middle = RuntimeError("wrapped")
        error.__cause__, middle.__cause__ = middle, error
    return error


@pytest.mark.parametrize(
    ("error", "hinted"),
    [
        (tls_failure("WRONG_VERSION_NUMBER"), True),  # OpenSSL 3.0 answered in plain HTTP
        (tls_failure("RECORD_LAYER_FAILURE"), True),  # the same with OpenSSL 3.2 and later
        (tls_failure("CERTIFICATE_VERIFY_FAILED"), False),  # a TLS server, an untrusted certificate
        (tls_failure(None), False),
        (tls_failure("WRONG_VERSION_NUMBER", loop=True), False),  # a cycle ends the walk
    ],
)
def test_only_a_handshake_answered_in_plain_http_suggests_http(error: httpx.ConnectError, hinted: bool):
    transport_error = apixo._transport_error(error, "GET", "Reading", "apixo_tls")
    assert ("write http:// before the host" in str(transport_error)) is hinted


def test_test_connection_reports_a_timeout_naming_the_host(make_hook, emulator, emulator_admin):
    emulator_admin.configure(latency_seconds=2)
    ok, message = make_hook(timeout=0.2).test_connection()
    assert not ok
    assert f"{emulator.base_url}/apikeys/current-balance timed out" in message


def test_test_connection_is_not_retried(fake_api):
    mock, hook = fake_api
    route = mock.get("/apikeys/current-balance").respond(503, json={"code": 503, "message": "down"})
    ok, message = hook.test_connection()
    assert not ok
    assert "503" in message
    assert route.call_count == 1


def test_test_connection_with_a_wrong_base_path_and_a_wrong_key(make_hook, emulator):
    """Every path answers 404 behind a wrong base URL: that proves nothing about the key."""
    base = emulator.root_url + "/not-the-api/v1"
    hook = make_hook("apixo_wrongpath", connection=apixo_connection(base, WRONG_KEY))
    ok, message = hook.test_connection()
    assert not ok, message
    assert "check the Base URL field of the APIXO connection 'apixo_wrongpath'" in message


# --- model ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["black-forest/flux", "nano banana", "../admin", ""])
def test_bad_model_id_is_rejected_before_any_request(make_hook, emulator_admin, model):
    hook = make_hook()
    with pytest.raises(ApixoInputError) as caught:
        hook.submit_task(model, T2I)
    assert caught.value.field == "model"
    with pytest.raises(ApixoInputError):
        hook.get_task_status(model, "task_1")
    assert emulator_admin.requests() == []


async def test_bad_model_id_is_rejected_before_any_request_async(make_hook, emulator_admin):
    hook = make_hook()
    try:
        with pytest.raises(ApixoInputError):
            await hook.aget_task_status("a/b", "task_1")
    finally:
        await hook.aclose()
    assert emulator_admin.requests() == []

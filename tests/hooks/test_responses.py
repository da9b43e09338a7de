"""ApixoHook on answers a server can't easily be made to give (respx): envelopes, results, Retry-After."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from airflow_provider_nanobanana.api import TaskState
from airflow_provider_nanobanana.exceptions import (
    ApixoAuthError,
    ApixoBadRequestError,
    ApixoMalformedResponseError,
)
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from tests.support import FAKE_BASE, MODEL, T2I, RecordingPolicy, apixo_connection, envelope, status_body

HEX_ID = "0123456789abcdef0123456789abcdef"


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

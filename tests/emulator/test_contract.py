"""The emulator keeps APIXO's contract: the bearer key, request validation, status errors, balance."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support import MODEL, get_status, post_task, t2i_body

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import Emulator, EmulatorServer


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic apixo-emulator-key"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "not-bearer", "empty"],
)
def test_bad_or_missing_key_is_401(
    server: EmulatorServer, emulator: Emulator, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.base_url, headers=headers, trust_env=False) as client:
        submitted = client.post(f"/generateTask/{MODEL}", json=t2i_body())
        polled = client.get(f"/statusTask/{MODEL}", params={"taskId": "task_x"})
        balance = client.get("/apikeys/current-balance")
    for answer in (submitted, polled, balance):
        assert answer.status_code == 401
        assert answer.json() == {"code": 401, "message": "Invalid or missing API key"}
    assert emulator.submissions() == 0


def test_any_key_mode_accepts_any_non_empty_token(server: EmulatorServer, emulator: Emulator) -> None:
    emulator.settings.api_key = None
    with httpx.Client(base_url=server.base_url, trust_env=False) as client:
        ok = client.get("/apikeys/current-balance", headers={"Authorization": "Bearer whatever"})
        empty = client.get("/apikeys/current-balance", headers={"Authorization": "Bearer"})
    assert (ok.status_code, empty.status_code) == (200, 401)


def test_the_key_is_never_echoed(
    server: EmulatorServer, api: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = [api.post(f"/generateTask/{MODEL}", json=t2i_body()).text, api.get("/nope").text]
    bodies.append(httpx.get(server.base_url + "/statusTask/x", trust_env=False).text)
    bodies.append(httpx.get(server.root_url + "/_emulator/settings", trust_env=False).text)
    assert all(server.api_key not in body for body in bodies)
    assert server.api_key not in caplog.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": {"mode": "text-to-image"}}, "Missing required field: input.prompt"),
        ({"input": {"prompt": "x"}}, "Missing required field: input.mode"),
        ({"request_type": "async"}, "Missing required field: input"),
        ({"input": {"mode": "sketch", "prompt": "x"}}, "input.mode"),
        ({"input": {"mode": "text-to-image", "prompt": ""}}, "input.prompt"),
        ({"input": {"mode": "text-to-image", "prompt": "x" * 5001}}, "input.prompt"),
        ({"request_type": "poll", "input": {"mode": "text-to-image", "prompt": "x"}}, "request_type"),
        ({"request_type": "callback", "input": {"mode": "text-to-image", "prompt": "x"}}, "callback_url"),
        ({"provider": "cheap", "input": {"mode": "text-to-image", "prompt": "x"}}, "provider"),
        ({"input": {"mode": "image-to-image", "prompt": "x"}}, "Missing required field: input.image_urls"),
        ({"input": {"mode": "image-to-image", "prompt": "x", "image_urls": []}}, "input.image_urls"),
        (
            {"input": {"mode": "image-to-image", "prompt": "x", "image_urls": ["https://a/b.png"] * 6}},
            "image_urls",
        ),
        (
            {"input": {"mode": "image-to-image", "prompt": "x", "image_urls": ["ftp://a/b.png"]}},
            "image_urls[0]",
        ),
        ({"input": {"mode": "text-to-image", "prompt": "x", "aspect_ratio": "7:3"}}, "input.aspect_ratio"),
        ({"input": {"mode": "text-to-image", "prompt": "x", "output_format": "webp"}}, "input.output_format"),
        ([1, 2], "JSON object"),
    ],
)
def test_invalid_body_is_400_naming_the_field(
    api: httpx.Client, emulator: Emulator, body: Any, field: str
) -> None:
    answer = api.post(f"/generateTask/{MODEL}", json=body)
    assert answer.status_code == 400
    payload = answer.json()
    assert (payload["code"], payload["message"]) == (400, "Invalid request")
    assert field in payload["data"]["error"]
    assert emulator.submissions() == 0


def test_non_json_body_is_400(api: httpx.Client) -> None:
    answer = api.post(
        f"/generateTask/{MODEL}", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["data"]["error"] == "Request body must be valid JSON"


def test_valid_variants_are_accepted(api: httpx.Client, emulator: Emulator) -> None:
    callback = {
        "request_type": "callback",
        "callback_url": "https://example.com/hook",
        "provider": "official",
    }
    post_task(api, {**t2i_body(aspect_ratio="auto", output_format="jpeg"), **callback})
    i2i = {"mode": "image-to-image", "prompt": "x", "image_urls": ["https://a/b.png"] * 5}
    post_task(api, {"input": i2i})
    post_task(api, {"input": {"anything": True}}, model="flux-2")
    assert api.post("/generateTask/flux-2", json={"prompt": "x"}).status_code == 400
    assert (emulator.submissions(), emulator.submissions(MODEL), emulator.submissions("flux-2")) == (3, 2, 1)


def test_submit_answers_an_opaque_task_id_and_records_the_body(api: httpx.Client, emulator: Emulator) -> None:
    answer = api.post(f"/generateTask/{MODEL}", json=t2i_body(aspect_ratio="16:9"))
    payload = answer.json()
    assert (payload["code"], payload["message"]) == (200, "success")
    task_id = payload["data"]["taskId"]
    assert task_id.startswith("task_") and len(task_id) >= 5 + 16
    int(task_id[5:], 16)
    [task] = emulator.tasks
    assert (task.id, task.model, task.body["input"]["aspect_ratio"]) == (task_id, MODEL, "16:9")
    assert abs(task.created_at - time.time()) < 5


def test_status_404_for_unknown_id_and_wrong_model(api: httpx.Client) -> None:
    task_id = post_task(api, t2i_body())
    for answer in (get_status(api, "task_00000000000000000000"), get_status(api, task_id, model="flux-2")):
        assert answer.status_code == 404
        assert answer.json() == {"code": 404, "message": "Task not found"}
    assert get_status(api, task_id).status_code == 200


def test_status_without_task_id_is_400(api: httpx.Client) -> None:
    answer = api.get(f"/statusTask/{MODEL}")
    assert answer.status_code == 400
    assert "taskId" in answer.json()["data"]["error"]


def test_balance(api: httpx.Client) -> None:
    answer = api.get("/apikeys/current-balance")
    assert answer.status_code == 200
    assert answer.json() == {"code": 200, "message": "success", "data": {"balance": 1000.0}}


def test_request_log_covers_api_calls_only(api: httpx.Client, raw: httpx.Client, emulator: Emulator) -> None:
    task_id = post_task(api, t2i_body())
    get_status(api, task_id)
    get_status(api, task_id)
    raw.get("/_emulator/health")
    raw.get(f"/files/{task_id}/0.png")
    assert [(method, path) for method, path, _ in emulator.requests] == [
        ("POST", f"/api/v1/generateTask/{MODEL}"),
        ("GET", f"/api/v1/statusTask/{MODEL}"),
        ("GET", f"/api/v1/statusTask/{MODEL}"),
    ]
    assert emulator.request_count("get", "/api/v1/statusTask") == 2
    assert emulator.request_count(method="POST") == 1
    assert emulator.request_count() == 3

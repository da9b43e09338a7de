"""The emulator's admin endpoints (``/_emulator/*``): health, tasks, reset, faults, settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support import MODEL, post_task, t2i_body, wait_terminal

if TYPE_CHECKING:
    import httpx

    from airflow_provider_nanobanana.emulator import Emulator


def test_admin_health_tasks_and_reset(api: httpx.Client, raw: httpx.Client, emulator: Emulator) -> None:
    assert raw.get("/_emulator/health").json() == {"status": "ok"}
    task_id = post_task(
        api, {**t2i_body(), "request_type": "callback", "callback_url": "http://127.0.0.1:9/hook"}
    )
    [listed] = raw.get("/_emulator/tasks").json()["tasks"]
    assert listed == {
        "id": task_id,
        "model": MODEL,
        "state": "pending",
        "request_type": "callback",
        "callback_url": "http://127.0.0.1:9/hook",
        "provider": None,
        "input": t2i_body()["input"],
    }
    assert raw.post("/_emulator/reset").status_code == 200
    assert raw.get("/_emulator/tasks").json() == {"tasks": []}
    assert emulator.requests == []


def test_admin_faults(api: httpx.Client, raw: httpx.Client) -> None:
    faults = {
        "fail_next_tasks": {"fail_code": "MODEL_UNAVAILABLE", "fail_msg": "down", "count": 1},
        "http_errors": {"status": 429, "times": 1, "endpoint": "submit", "retry_after": 1},
    }
    assert raw.post("/_emulator/faults", json=faults).status_code == 200
    throttled = api.post(f"/generateTask/{MODEL}", json=t2i_body())
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")
    failed = wait_terminal(api, post_task(api, t2i_body()))
    assert (failed["state"], failed["failCode"], failed["failMsg"]) == ("failed", "MODEL_UNAVAILABLE", "down")
    assert raw.post("/_emulator/faults", json={"http_errors": {"status": 200, "times": 1}}).status_code == 422
    assert raw.post("/_emulator/faults", json={"typo": {}}).status_code == 422


def test_admin_settings(raw: httpx.Client, emulator: Emulator) -> None:
    answer = raw.patch("/_emulator/settings", json={"generation_seconds": 0.05, "latency_seconds": 0.01})
    assert answer.status_code == 200
    assert answer.json()["generation_seconds"] == 0.05
    assert "api_key" not in answer.json()
    assert (emulator.settings.generation_seconds, emulator.settings.latency_seconds) == (0.05, 0.01)
    assert raw.patch("/_emulator/settings", json={"latency_seconds": -1}).status_code == 422

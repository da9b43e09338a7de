"""The emulator's faults and limits: failed tasks, injected HTTP errors, rate limit, timing, latency."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support import (
    GENERATION,
    MODEL,
    decode,
    get_status,
    post_task,
    result_url,
    t2i_body,
    wait_terminal,
)

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import Emulator, EmulatorServer
    from tests.support import EmulatorAdmin


def test_fail_next_tasks_fails_exactly_count_tasks(api: httpx.Client, emulator: Emulator) -> None:
    emulator.fail_next_tasks("CONTENT_VIOLATION", "blocked by policy", count=2)
    task_ids = [post_task(api, t2i_body()) for _ in range(3)]
    results = [wait_terminal(api, task_id) for task_id in task_ids]
    assert [r["state"] for r in results] == ["failed", "failed", "success"]
    failed = results[0]
    assert (failed["failCode"], failed["failMsg"]) == ("CONTENT_VIOLATION", "blocked by policy")
    assert "resultJson" not in failed and failed["completeTime"] >= failed["createTime"]


def test_prompt_marker_fails_the_task(api: httpx.Client) -> None:
    failed = wait_terminal(api, post_task(api, t2i_body("a fox [emulator:fail=NSFW_DETECTED]")))
    assert (failed["state"], failed["failCode"]) == ("failed", "NSFW_DETECTED")
    assert wait_terminal(api, post_task(api, t2i_body("a fox")))["state"] == "success"


def test_prompt_marker_sets_the_generation_time(api: httpx.Client, emulator: Emulator) -> None:
    task_id = post_task(api, t2i_body("slow [emulator:seconds=30]"))
    time.sleep(GENERATION + 0.1)
    assert get_status(api, task_id).json()["data"]["state"] == "processing"
    assert emulator.tasks[0].generation_seconds == 30


def test_injected_429_with_retry_after_then_normal(api: httpx.Client, emulator: Emulator) -> None:
    emulator.inject_http_errors(429, times=2, endpoint="submit", retry_after=2)
    for _ in range(2):
        answer = api.post(f"/generateTask/{MODEL}", json=t2i_body())
        assert answer.status_code == 429
        assert answer.json() == {"code": 429, "message": "Rate limit exceeded"}
        assert answer.headers["Retry-After"] == "2"
    assert emulator.submissions() == 0
    assert api.get("/apikeys/current-balance").status_code == 200
    task_id = post_task(api, t2i_body())
    assert get_status(api, task_id).status_code == 200
    assert emulator.submissions() == 1


def test_the_per_minute_limit_counts_every_request_of_a_key(
    server: EmulatorServer, api: httpx.Client, emulator: Emulator
) -> None:
    emulator.settings.requests_per_minute = 3
    task_id = post_task(api, t2i_body())
    assert get_status(api, task_id).status_code == 200
    assert api.get("/apikeys/current-balance").status_code == 200

    refused = api.post(f"/generateTask/{MODEL}", json=t2i_body())

    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers  # the contract documents no rate-limit headers
    assert emulator.submissions() == 1
    other_key = {"Authorization": "Bearer another-key"}
    emulator.settings.api_key = None
    assert api.get("/apikeys/current-balance", headers=other_key).status_code == 200  # its own minute
    stats = httpx.get(server.root_url + "/_emulator/stats", trust_env=False).json()
    assert stats == {
        "requests": 5,
        "rate_limited": 1,
        "tasks": 1,
        "downloads": 0,
        "downloads_with_credentials": 0,
    }


def test_generation_time_is_drawn_from_the_range(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.generation_seconds, emulator.settings.generation_seconds_max = 10.0, 20.0
    for _ in range(20):
        post_task(api, t2i_body())

    drawn = {task.generation_seconds for task in emulator.tasks}
    assert all(10.0 <= seconds <= 20.0 for seconds in drawn)
    assert len(drawn) > 1


VIDEO = "veo-3-1"
"""A model without a known schema that takes longer: only its ``input`` object is checked."""


def video_body(prompt: str = "a fox running through snow") -> dict[str, Any]:
    return {"request_type": "async", "input": {"prompt": prompt, "duration": 8}}


def test_a_model_takes_its_own_generation_time_and_others_the_default(
    api: httpx.Client, admin: EmulatorAdmin, raw: httpx.Client
) -> None:
    admin.configure(model_generation_seconds={VIDEO: 2.0})  # far beyond the image: a busy CI
    submitted = time.monotonic()  # before the request: the emulator starts its clock on receipt
    video = post_task(api, video_body(), model=VIDEO)
    image = post_task(api, t2i_body(), model="flux-2")

    assert wait_terminal(api, image, model="flux-2")["costTime"] == round(GENERATION * 1000)
    assert get_status(api, video, VIDEO).json()["data"]["state"] in ("pending", "processing")
    done = wait_terminal(api, video, model=VIDEO)
    assert time.monotonic() - submitted >= 2.0
    assert done["state"] == "success"
    assert done["costTime"] == done["completeTime"] - done["createTime"] == 2000

    url = result_url(done)
    assert url.endswith(f"/files/{video}/0.png"), "every model's result is an image"
    download = httpx.get(url, trust_env=False)
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    assert decode(download.content, "PNG").size == (512, 512)
    assert [task["model"] for task in raw.get("/_emulator/tasks").json()["tasks"]] == [VIDEO, "flux-2"]


def test_the_prompt_marker_beats_the_model_time_which_beats_the_default_range(
    api: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    admin.configure(generation_seconds=10, generation_seconds_max=20, model_generation_seconds={VIDEO: 30})
    marked = post_task(api, video_body("a fox [emulator:seconds=0.2]"), model=VIDEO)
    plain = post_task(api, video_body(), model=VIDEO)
    other = post_task(api, t2i_body(), model="flux-2")

    assert wait_terminal(api, marked, model=VIDEO)["costTime"] == 200
    seconds = {task.id: task.generation_seconds for task in emulator.tasks}
    assert (seconds[marked], seconds[plain]) == (0.2, 30)
    assert 10 <= seconds[other] <= 20
    assert get_status(api, plain, VIDEO).json()["data"]["state"] == "processing"


def test_model_times_are_patched_whole_checked_shown_and_kept_by_reset(
    raw: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    assert raw.get("/_emulator/settings").json()["model_generation_seconds"] == {}
    shown = admin.configure(model_generation_seconds={VIDEO: 45, "flux-2": 8.5})
    assert shown["model_generation_seconds"] == {VIDEO: 45.0, "flux-2": 8.5}
    replaced = admin.configure(model_generation_seconds={"flux-2": 2})
    assert replaced["model_generation_seconds"] == {"flux-2": 2}
    assert admin.configure(generation_seconds=1)["model_generation_seconds"] == {"flux-2": 2}, "left alone"
    for bad in ({VIDEO: -1}, {VIDEO: "slow"}, {VIDEO: "5"}, {VIDEO: True}, {VIDEO: None}, {"": 1}, [45]):
        answer = raw.patch("/_emulator/settings", json={"model_generation_seconds": bad})
        assert answer.status_code == 422, bad
    admin.reset()
    assert raw.get("/_emulator/settings").json()["model_generation_seconds"] == {"flux-2": 2}
    assert emulator.settings.model_generation_seconds == {"flux-2": 2}
    assert admin.configure(model_generation_seconds={})["model_generation_seconds"] == {}


def test_injected_500_on_status_counts_down(api: httpx.Client, emulator: Emulator) -> None:
    task_id = post_task(api, t2i_body())
    emulator.inject_http_errors(500, times=2, endpoint="status")
    codes = [get_status(api, task_id).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    assert api.post(f"/generateTask/{MODEL}", json=t2i_body()).status_code == 200


def test_injected_retry_after_as_an_http_date(api: httpx.Client, emulator: Emulator) -> None:
    emulator.inject_http_errors(429, times=1, retry_after=30, retry_after_format="http-date")
    answer = api.get("/apikeys/current-balance")
    seconds = parsedate_to_datetime(answer.headers["Retry-After"]).timestamp() - time.time()
    assert answer.status_code == 429
    assert 25 < seconds <= 30


def test_injected_503_on_any_endpoint(api: httpx.Client, emulator: Emulator) -> None:
    emulator.inject_http_errors(503, times=1, retry_after=0.5)
    answer = api.get("/apikeys/current-balance")
    assert answer.status_code == 503 and answer.json()["code"] == 503
    assert answer.headers["Retry-After"] == "0.5"
    assert "Retry-After" not in api.get("/apikeys/current-balance").headers


def test_fault_arguments_are_checked(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="status"):
        emulator.inject_http_errors(200, times=1)
    with pytest.raises(ValueError, match="endpoint"):
        emulator.inject_http_errors(500, times=1, endpoint="download")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count"):
        emulator.fail_next_tasks("X", count=0)


def test_latency_creates_the_task_before_the_late_answer(server: EmulatorServer, emulator: Emulator) -> None:
    emulator.settings.latency_seconds = 3
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.base_url, headers=headers, trust_env=False, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"/generateTask/{MODEL}", json=t2i_body())
        assert time.monotonic() - started < 2.5
    assert emulator.submissions() == 1


def test_latency_delays_answers(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.latency_seconds = 0.2
    started = time.monotonic()
    assert api.get("/apikeys/current-balance").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_pending_is_clamped_to_generation(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.pending_seconds = 5.0
    task_id = post_task(api, t2i_body())
    assert emulator.tasks[0].pending_seconds == GENERATION
    assert wait_terminal(api, task_id, timeout=2)["state"] == "success"

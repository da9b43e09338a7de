"""The APIXO emulator, exercised over real loopback HTTP as the provider will use it."""

from __future__ import annotations

import io
import json
import logging
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image, ImageFont

from airflow_provider_nanobanana.emulator import Emulator, EmulatorServer, EmulatorSettings, cli, create_app
from airflow_provider_nanobanana.emulator.app import forged_url
from airflow_provider_nanobanana.emulator.images import _printable, _wrap, image_size, render_image
from airflow_provider_nanobanana.emulator.validation import ASPECT_RATIOS
from tests.support import EmulatorAdmin, LocalReceiver, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_nanobanana.emulator.state import CallbackRecord

MODEL = "nano-banana"
GENERATION = 0.3
I2I = {"mode": "image-to-image", "prompt": "x"}
PENDING = 0.1
RETRY_DELAYS = (0.05, 0.1, 0.2)
"""Callback retry delays for this module: APIXO's shape (3 growing waits), much shorter."""


def t2i(prompt: str = "a watercolor fox", **extra: Any) -> dict[str, Any]:
    """A valid text-to-image body; ``extra`` entries go into ``input``."""
    return {"request_type": "async", "input": {"mode": "text-to-image", "prompt": prompt, **extra}}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    settings = EmulatorSettings(
        generation_seconds=GENERATION, pending_seconds=PENDING, callback_retry_delays=RETRY_DELAYS
    )
    with EmulatorServer(settings=settings) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server: EmulatorServer) -> Iterator[None]:
    server.emulator.reset()
    yield
    server.emulator.reset()
    settings = server.emulator.settings
    settings.api_key, settings.latency_seconds = "apixo-emulator-key", 0.0
    settings.generation_seconds, settings.pending_seconds = GENERATION, PENDING
    settings.generation_seconds_max, settings.requests_per_minute = None, None
    settings.model_generation_seconds = {}
    settings.callback_retry_delays, settings.callback_timeout_seconds = RETRY_DELAYS, 30.0


@pytest.fixture
def emulator(server: EmulatorServer) -> Emulator:
    return server.emulator


@pytest.fixture
def api(server: EmulatorServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.base_url, headers=headers, trust_env=False, timeout=5.0) as client:
        yield client


@pytest.fixture
def raw(server: EmulatorServer) -> Iterator[httpx.Client]:
    """No auth header: downloads, admin calls, and auth failures."""
    with httpx.Client(base_url=server.root_url, trust_env=False, timeout=5.0) as client:
        yield client


def submit(api: httpx.Client, body: dict[str, Any], model: str = MODEL) -> str:
    answer = api.post(f"/generateTask/{model}", json=body)
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["data"]["taskId"]
    return task_id


def status(api: httpx.Client, task_id: str, model: str = MODEL) -> httpx.Response:
    return api.get(f"/statusTask/{model}", params={"taskId": task_id})


def wait_terminal(
    api: httpx.Client, task_id: str, timeout: float = 3.0, model: str = MODEL
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data: dict[str, Any] = status(api, task_id, model).json()["data"]
        if data["state"] in ("success", "failed"):
            return data
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} did not finish within {timeout} s")


def result_url(data: dict[str, Any]) -> str:
    assert isinstance(data["resultJson"], str)
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert len(urls) == 1
    url: str = urls[0]
    return url


def decode(data: bytes, image_format: str) -> Image.Image:
    """Decode with Pillow, checking the format really is the one asked for."""
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == image_format and image.mode == "RGB"
    return image


INK_LEVEL = 200
"""Text is white; the panel behind it darkens the background to at most 128, so only text is brighter."""

PROMPT_AREA = (0.1, 0.1, 0.9, 0.6)
FOOTER_AREA = (0.1, 0.7, 0.9, 1.0)
"""Where the prompt and the footer (ratio, task id) sit, as fractions of the sides (footer: square images)."""


def ink(image: Image.Image, area: tuple[float, float, float, float]) -> bytes:
    """A mask of the text pixels in an area: 255 where a pixel is near white, else 0."""
    width, height = image.size
    box = (round(area[0] * width), round(area[1] * height), round(area[2] * width), round(area[3] * height))
    mask = image.crop(box).convert("L").point(lambda level: 255 if level >= INK_LEVEL else 0)
    return mask.tobytes()


def ink_count(image: Image.Image, area: tuple[float, float, float, float]) -> int:
    return ink(image, area).count(255)


# --- authentication -------------------------------------------------------------------------------


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
        submitted = client.post(f"/generateTask/{MODEL}", json=t2i())
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
    bodies = [api.post(f"/generateTask/{MODEL}", json=t2i()).text, api.get("/nope").text]
    bodies.append(httpx.get(server.base_url + "/statusTask/x", trust_env=False).text)
    bodies.append(httpx.get(server.root_url + "/_emulator/settings", trust_env=False).text)
    assert all(server.api_key not in body for body in bodies)
    assert server.api_key not in caplog.text


# --- validation -----------------------------------------------------------------------------------


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
    submit(api, {**t2i(aspect_ratio="auto", output_format="jpeg"), **callback})
    i2i = {"mode": "image-to-image", "prompt": "x", "image_urls": ["https://a/b.png"] * 5}
    submit(api, {"input": i2i})
    submit(api, {"input": {"anything": True}}, model="flux-2")
    assert api.post("/generateTask/flux-2", json={"prompt": "x"}).status_code == 400
    assert (emulator.submissions(), emulator.submissions(MODEL), emulator.submissions("flux-2")) == (3, 2, 1)


def test_submit_answers_an_opaque_task_id_and_records_the_body(api: httpx.Client, emulator: Emulator) -> None:
    answer = api.post(f"/generateTask/{MODEL}", json=t2i(aspect_ratio="16:9"))
    payload = answer.json()
    assert (payload["code"], payload["message"]) == (200, "success")
    task_id = payload["data"]["taskId"]
    assert task_id.startswith("task_") and len(task_id) >= 5 + 16
    int(task_id[5:], 16)
    [task] = emulator.tasks
    assert (task.id, task.model, task.body["input"]["aspect_ratio"]) == (task_id, MODEL, "16:9")
    assert abs(task.created_at - time.time()) < 5


# --- state progression and results ---------------------------------------------------------------


def test_state_progresses_pending_processing_success(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.pending_seconds = 1.0  # the first read comes in time even on a loaded machine
    task_id = submit(api, t2i("a fox [emulator:seconds=2]"))
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = status(api, task_id)
        assert answer.status_code == 200
        assert (answer.json()["code"], answer.json()["message"]) == (200, "success")
        seen.append(answer.json()["data"])
        if seen[-1]["state"] == "success":
            break
        time.sleep(0.02)
    states = [data["state"] for data in seen]
    assert states[0] == "pending" and "processing" in states and states[-1] == "success"
    assert states == sorted(states, key=["pending", "processing", "success"].index)
    for data in seen[:-1]:
        assert set(data) == {"taskId", "state", "createTime"}
    final = seen[-1]
    assert final["taskId"] == task_id and isinstance(final["createTime"], int)
    assert final["completeTime"] - final["createTime"] == final["costTime"] == 2000
    assert "failCode" not in final


def test_png_result_is_a_real_png_sized_by_aspect_ratio(server: EmulatorServer, api: httpx.Client) -> None:
    task_id = submit(api, t2i(aspect_ratio="16:9", output_format="png"))
    url = result_url(wait_terminal(api, task_id))
    assert url == f"{server.root_url}/files/{task_id}/0.png"
    download = httpx.get(url, trust_env=False)
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    image = decode(download.content, "PNG")
    assert image.size == (512, 288)
    assert ink_count(image, PROMPT_AREA) > 200, "the prompt is not drawn"


def test_jpeg_result_is_a_real_baseline_jpeg(server: EmulatorServer, api: httpx.Client) -> None:
    task_id = submit(api, t2i(aspect_ratio="9:16", output_format="jpeg"))
    url = result_url(wait_terminal(api, task_id))
    assert url.endswith(f"/files/{task_id}/0.jpeg")
    download = httpx.get(url, trust_env=False)
    assert download.status_code == 200 and download.headers["content-type"] == "image/jpeg"
    image = decode(download.content, "JPEG")
    assert image.size == (288, 512) and "progressive" not in image.info
    assert ink_count(image, PROMPT_AREA) > 200, "the prompt is not drawn"
    alias = httpx.get(url.replace("0.jpeg", "0.jpg"), trust_env=False)
    assert alias.content == download.content


def test_auto_aspect_ratio_is_square_and_default_format_is_png(api: httpx.Client) -> None:
    task_id = submit(api, t2i(aspect_ratio="auto"))
    url = result_url(wait_terminal(api, task_id))
    assert decode(httpx.get(url, trust_env=False).content, "PNG").size == (512, 512)


def test_files_are_404_when_unknown_or_not_ready(
    server: EmulatorServer, api: httpx.Client, raw: httpx.Client
) -> None:
    task_id = submit(api, t2i())
    assert raw.get(f"/files/{task_id}/0.png").status_code == 404
    wait_terminal(api, task_id)
    assert raw.get(f"/files/{task_id}/0.png").status_code == 200
    assert raw.get(f"/files/{task_id}/0.jpeg").status_code == 404
    assert raw.get("/files/task_unknown/0.png").status_code == 404


def test_images_differ_per_task(api: httpx.Client, raw: httpx.Client) -> None:
    first, second = submit(api, t2i("one")), submit(api, t2i("two"))
    wait_terminal(api, first), wait_terminal(api, second)
    assert raw.get(f"/files/{first}/0.png").content != raw.get(f"/files/{second}/0.png").content


# --- faults -------------------------------------------------------------------------------------


def test_fail_next_tasks_fails_exactly_count_tasks(api: httpx.Client, emulator: Emulator) -> None:
    emulator.fail_next_tasks("CONTENT_VIOLATION", "blocked by policy", count=2)
    task_ids = [submit(api, t2i()) for _ in range(3)]
    results = [wait_terminal(api, task_id) for task_id in task_ids]
    assert [r["state"] for r in results] == ["failed", "failed", "success"]
    failed = results[0]
    assert (failed["failCode"], failed["failMsg"]) == ("CONTENT_VIOLATION", "blocked by policy")
    assert "resultJson" not in failed and failed["completeTime"] >= failed["createTime"]


def test_prompt_marker_fails_the_task(api: httpx.Client) -> None:
    failed = wait_terminal(api, submit(api, t2i("a fox [emulator:fail=NSFW_DETECTED]")))
    assert (failed["state"], failed["failCode"]) == ("failed", "NSFW_DETECTED")
    assert wait_terminal(api, submit(api, t2i("a fox")))["state"] == "success"


def test_prompt_marker_sets_the_generation_time(api: httpx.Client, emulator: Emulator) -> None:
    task_id = submit(api, t2i("slow [emulator:seconds=30]"))
    time.sleep(GENERATION + 0.1)
    assert status(api, task_id).json()["data"]["state"] == "processing"
    assert emulator.tasks[0].generation_seconds == 30


def test_injected_429_with_retry_after_then_normal(api: httpx.Client, emulator: Emulator) -> None:
    emulator.inject_http_errors(429, times=2, endpoint="submit", retry_after=2)
    for _ in range(2):
        answer = api.post(f"/generateTask/{MODEL}", json=t2i())
        assert answer.status_code == 429
        assert answer.json() == {"code": 429, "message": "Rate limit exceeded"}
        assert answer.headers["Retry-After"] == "2"
    assert emulator.submissions() == 0
    assert api.get("/apikeys/current-balance").status_code == 200
    task_id = submit(api, t2i())
    assert status(api, task_id).status_code == 200
    assert emulator.submissions() == 1


def test_the_per_minute_limit_counts_every_request_of_a_key(
    server: EmulatorServer, api: httpx.Client, emulator: Emulator
) -> None:
    emulator.settings.requests_per_minute = 3
    task_id = submit(api, t2i())
    assert status(api, task_id).status_code == 200
    assert api.get("/apikeys/current-balance").status_code == 200

    refused = api.post(f"/generateTask/{MODEL}", json=t2i())

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
        submit(api, t2i())

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
    video = submit(api, video_body(), model=VIDEO)
    submitted = time.monotonic()
    image = submit(api, t2i(), model="flux-2")

    assert wait_terminal(api, image, model="flux-2")["costTime"] == round(GENERATION * 1000)
    assert status(api, video, VIDEO).json()["data"]["state"] in ("pending", "processing")
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
    marked = submit(api, video_body("a fox [emulator:seconds=0.2]"), model=VIDEO)
    plain = submit(api, video_body(), model=VIDEO)
    other = submit(api, t2i(), model="flux-2")

    assert wait_terminal(api, marked, model=VIDEO)["costTime"] == 200
    seconds = {task.id: task.generation_seconds for task in emulator.tasks}
    assert (seconds[marked], seconds[plain]) == (0.2, 30)
    assert 10 <= seconds[other] <= 20
    assert status(api, plain, VIDEO).json()["data"]["state"] == "processing"


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
    task_id = submit(api, t2i())
    emulator.inject_http_errors(500, times=2, endpoint="status")
    codes = [status(api, task_id).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    assert api.post(f"/generateTask/{MODEL}", json=t2i()).status_code == 200


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
            client.post(f"/generateTask/{MODEL}", json=t2i())
        assert time.monotonic() - started < 2.5
    assert emulator.submissions() == 1


def test_latency_delays_answers(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.latency_seconds = 0.2
    started = time.monotonic()
    assert api.get("/apikeys/current-balance").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_pending_is_clamped_to_generation(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.pending_seconds = 5.0
    task_id = submit(api, t2i())
    assert emulator.tasks[0].pending_seconds == GENERATION
    assert wait_terminal(api, task_id, timeout=2)["state"] == "success"


# --- status errors and balance --------------------------------------------------------------------


def test_status_404_for_unknown_id_and_wrong_model(api: httpx.Client) -> None:
    task_id = submit(api, t2i())
    for answer in (status(api, "task_00000000000000000000"), status(api, task_id, model="flux-2")):
        assert answer.status_code == 404
        assert answer.json() == {"code": 404, "message": "Task not found"}
    assert status(api, task_id).status_code == 200


def test_status_without_task_id_is_400(api: httpx.Client) -> None:
    answer = api.get(f"/statusTask/{MODEL}")
    assert answer.status_code == 400
    assert "taskId" in answer.json()["data"]["error"]


def test_balance(api: httpx.Client) -> None:
    answer = api.get("/apikeys/current-balance")
    assert answer.status_code == 200
    assert answer.json() == {"code": 200, "message": "success", "data": {"balance": 1000.0}}


def test_request_log_covers_api_calls_only(api: httpx.Client, raw: httpx.Client, emulator: Emulator) -> None:
    task_id = submit(api, t2i())
    status(api, task_id)
    status(api, task_id)
    raw.get("/_emulator/health")
    raw.get(f"/files/{task_id}/0.png")
    assert emulator.requests == [
        ("POST", f"/api/v1/generateTask/{MODEL}"),
        ("GET", f"/api/v1/statusTask/{MODEL}"),
        ("GET", f"/api/v1/statusTask/{MODEL}"),
    ]
    assert emulator.request_count("get", "/api/v1/statusTask") == 2
    assert emulator.request_count(method="POST") == 1
    assert emulator.request_count() == 3


# --- admin ----------------------------------------------------------------------------------------


def test_admin_health_tasks_and_reset(api: httpx.Client, raw: httpx.Client, emulator: Emulator) -> None:
    assert raw.get("/_emulator/health").json() == {"status": "ok"}
    task_id = submit(api, {**t2i(), "request_type": "callback", "callback_url": "http://127.0.0.1:9/hook"})
    [listed] = raw.get("/_emulator/tasks").json()["tasks"]
    assert listed == {
        "id": task_id,
        "model": MODEL,
        "state": "pending",
        "request_type": "callback",
        "callback_url": "http://127.0.0.1:9/hook",
        "provider": None,
        "input": t2i()["input"],
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
    throttled = api.post(f"/generateTask/{MODEL}", json=t2i())
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")
    failed = wait_terminal(api, submit(api, t2i()))
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


# --- callbacks ----------------------------------------------------------------------------------


HOOK = "/hook?secret=s"
"""Where the callbacks go on the receiver: a path with a query of its own."""


ENDED = {"delivered", "gave_up", "dropped", "refused"}
"""Outcomes that end a delivery (``retrying`` does not)."""

QUIET = 0.4
"""How long to watch for calls that must not come: longer than any retry delay these tests use."""


@pytest.fixture
def admin(server: EmulatorServer) -> Iterator[EmulatorAdmin]:
    client = EmulatorAdmin(server.root_url)
    yield client
    client.close()


def callback_body(url: str, prompt: str = "a watercolor fox") -> dict[str, Any]:
    return {**t2i(prompt), "request_type": "callback", "callback_url": url}


def settled(emulator: Emulator, deliveries: int = 1, timeout: float = 5.0) -> list[CallbackRecord]:
    """Wait until ``deliveries`` callback deliveries have ended; every record so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = emulator.callbacks
        if sum(record.outcome in ENDED for record in records) >= deliveries:
            return records
        time.sleep(0.02)
    raise AssertionError(f"{deliveries} callback deliveries did not end: {emulator.callbacks}")


def ends_at(emulator: Emulator, task_id: str) -> float:
    """When the task reaches its terminal state, on the monotonic clock."""
    task = emulator.task(task_id)
    assert task is not None
    return task.created_monotonic + task.generation_seconds


def test_callback_is_posted_once_on_200_with_the_status_envelope(
    api: httpx.Client, raw: httpx.Client, emulator: Emulator
) -> None:
    with LocalReceiver(path=HOOK) as receiver:
        task_id = submit(api, callback_body(receiver.url))
        [record] = settled(emulator)
        time.sleep(QUIET)
    [(_, path, payload)] = receiver.received
    assert path == "/hook?secret=s"
    assert payload == status(api, task_id).json(), "the same envelope statusTask answers"
    assert payload["data"]["state"] == "success" and isinstance(payload["data"]["resultJson"], str)
    assert (record.task_id, record.outcome, record.attempt, record.status_code) == (
        task_id,
        "delivered",
        1,
        200,
    )
    assert record.error is None and not record.duplicate and abs(record.at - time.time()) < 5
    [listed] = raw.get("/_emulator/callbacks").json()["callbacks"]
    assert listed == {
        "task_id": task_id,
        "url": receiver.url,
        "outcome": "delivered",
        "attempt": 1,
        "status_code": 200,
        "error": None,
        "at": record.at,
        "duplicate": False,
    }


def test_callbacks_go_to_loopback_hosts_only(api: httpx.Client, emulator: Emulator) -> None:
    task_id = submit(api, callback_body("https://example.com/h"))
    [record] = settled(emulator)
    assert (record.task_id, record.outcome, record.attempt) == (task_id, "refused", None)
    assert "loopback" in (record.error or "")


def test_failed_callback_is_retried_with_growing_delays_until_200(
    api: httpx.Client, emulator: Emulator
) -> None:
    emulator.settings.callback_retry_delays = (0.1, 0.3, 0.6)
    with LocalReceiver((503, 0), (500, 0), path=HOOK) as receiver:
        task_id = submit(api, callback_body(receiver.url))
        records = settled(emulator)
        time.sleep(QUIET)
    assert [(r.attempt, r.status_code, r.outcome) for r in records] == [
        (1, 503, "retrying"),
        (2, 500, "retrying"),
        (3, 200, "delivered"),
    ]
    assert len(receiver.received) == 3
    assert all(body["data"]["taskId"] == task_id for _, _, body in receiver.received)
    starts = [at for at, _, _ in receiver.received]
    first, second = starts[1] - starts[0], starts[2] - starts[1]
    assert 0.1 <= first < 0.3 <= second < 0.6, (first, second)
    assert records[0].at < records[1].at < records[2].at


def test_a_receiver_that_is_down_is_retried_3_times_then_given_up(
    api: httpx.Client, emulator: Emulator
) -> None:
    task_id = submit(api, callback_body(f"http://127.0.0.1:{free_port()}/hook"))
    records = settled(emulator)
    time.sleep(QUIET)
    assert emulator.callbacks == records, "nothing after giving up"
    assert [(r.attempt, r.outcome) for r in records] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "retrying"),
        (4, "gave_up"),
    ]
    assert all((r.task_id, r.status_code, r.error) == (task_id, None, "ConnectError") for r in records)


def test_a_receiver_slower_than_the_timeout_has_failed(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.callback_timeout_seconds = 0.2
    with LocalReceiver((200, 0.5), path=HOOK) as receiver:
        submit(api, callback_body(receiver.url))
        records = settled(emulator)
    assert [(r.attempt, r.status_code, r.outcome) for r in records] == [
        (1, None, "retrying"),
        (2, 200, "delivered"),
    ]
    assert records[0].error == "no answer within 0.2 s"
    assert len(receiver.received) == 2


def test_apixo_timing_is_the_default() -> None:
    settings = EmulatorSettings()
    assert (settings.callback_timeout_seconds, settings.callback_retry_delays) == (30.0, (1.0, 2.0, 4.0))


def test_drop_loses_the_next_deliveries_unsent(
    api: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    admin.fault_callbacks(drop=2)
    with LocalReceiver(path=HOOK) as receiver:
        lost = [submit(api, callback_body(receiver.url, f"lost {n}")) for n in range(2)]
        settled(emulator, deliveries=2)
        kept = submit(api, callback_body(receiver.url))
        records = settled(emulator, deliveries=3)
        time.sleep(QUIET)
    assert sorted((r.task_id, r.outcome, r.attempt) for r in records[:2]) == sorted(
        (task_id, "dropped", None) for task_id in lost
    )
    assert (records[2].task_id, records[2].outcome) == (kept, "delivered")
    assert [body["data"]["taskId"] for _, _, body in receiver.received] == [kept]


def test_delay_holds_every_first_attempt_until_set_to_0(
    api: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    admin.fault_callbacks(delay_seconds=0.5)
    with LocalReceiver(path=HOOK) as receiver:
        held = [submit(api, callback_body(receiver.url, f"held {n}")) for n in range(2)]
        settled(emulator, deliveries=2)
        admin.fault_callbacks(delay_seconds=0)
        prompt = submit(api, callback_body(receiver.url, "prompt"))
        settled(emulator, deliveries=3)
    hit_at = {body["data"]["taskId"]: at for at, _, body in receiver.received}
    for task_id in held:
        assert 0.5 <= hit_at[task_id] - ends_at(emulator, task_id) < 1.5
    assert hit_at[prompt] - ends_at(emulator, prompt) < 0.4
    assert len(receiver.received) == 3


def test_duplicate_posts_the_next_deliveries_twice(
    api: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    admin.fault_callbacks(duplicate=1)
    with LocalReceiver((503, 0), path=HOOK) as receiver:
        doubled = submit(api, callback_body(receiver.url))
        settled(emulator, deliveries=2)
        single = submit(api, callback_body(receiver.url))
        records = settled(emulator, deliveries=3)
        time.sleep(QUIET)
    assert [(r.task_id, r.attempt, r.outcome, r.duplicate) for r in records] == [
        (doubled, 1, "retrying", False),
        (doubled, 2, "delivered", False),
        (doubled, 1, "delivered", True),
        (single, 1, "delivered", False),
    ]
    bodies = [body for _, _, body in receiver.received]
    assert bodies[1] == bodies[2] and bodies[1]["data"]["taskId"] == doubled
    assert len(bodies) == 4


def test_forge_precedes_the_next_deliveries_with_one_copy_carrying_a_wrong_token(
    api: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    admin.fault_callbacks(forge=1)
    with LocalReceiver((403, 0), path=HOOK) as receiver:
        forged = submit(api, callback_body(receiver.url))
        settled(emulator)
        true = submit(api, callback_body(receiver.url))
        records = settled(emulator, deliveries=2)
        time.sleep(QUIET)
    assert [(r.task_id, r.attempt, r.outcome, r.status_code) for r in records] == [
        (forged, 1, "forged", 403),  # sent once: a refusal is what the forger gets, not a retry
        (forged, 1, "delivered", 200),
        (true, 1, "delivered", 200),
    ]
    paths = [urlsplit(path) for _, path, _ in receiver.received]
    assert [parse_qs(path.query)["secret"] for path in paths] == [["s"]] * 3
    assert parse_qs(paths[0].query)["token"][0].startswith("forged-")
    assert [path.query for path in paths[1:]] == ["secret=s", "secret=s"]
    assert receiver.received[0][2] == receiver.received[1][2]  # the true payload, under a wrong token
    assert records[0].url.endswith(receiver.received[0][1])  # the record shows where the forgery went


def test_a_forged_url_replaces_the_token_and_keeps_the_rest() -> None:
    url = "http://127.0.0.1:8080/nanobanana/callback/ti-1?token=right&x=1"
    forged = urlsplit(forged_url(url))
    query = parse_qs(forged.query)
    assert (forged.netloc, forged.path, query["x"]) == ("127.0.0.1:8080", "/nanobanana/callback/ti-1", ["1"])
    assert query["token"] != ["right"] and len(query["token"]) == 1
    assert forged_url(url) != forged_url(url)


def test_callback_faults_are_checked_and_cleared_by_reset(
    api: httpx.Client, raw: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    for bad in ({"drop": -1}, {"delay_seconds": -0.1}, {"duplicate": 1.5}, {"forge": -1}, {"typo": 1}):
        assert raw.post("/_emulator/faults", json={"callbacks": bad}).status_code == 422
    with pytest.raises(ValueError, match="negative"):
        emulator.fault_callbacks(drop=-1)
    admin.fault_callbacks(drop=3, delay_seconds=30, duplicate=3, forge=3)
    admin.reset()
    with LocalReceiver(path=HOOK) as receiver:
        task_id = submit(api, callback_body(receiver.url))
        [record] = settled(emulator, timeout=2)
        time.sleep(QUIET)
    assert (record.task_id, record.outcome, record.duplicate) == (task_id, "delivered", False)
    assert len(receiver.received) == 1


def test_reset_stops_deliveries_in_flight(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.callback_retry_delays = (0.3, 0.3, 0.3)
    with LocalReceiver((503, 0), path=HOOK) as receiver:
        submit(api, callback_body(receiver.url))
        deadline = time.monotonic() + 3
        while not emulator.callbacks and time.monotonic() < deadline:
            time.sleep(0.02)
        emulator.reset()
        time.sleep(0.6)
    assert emulator.callbacks == []
    assert len(receiver.received) == 1


def test_callback_settings_are_patched_and_shown(raw: httpx.Client, emulator: Emulator) -> None:
    patch = {"callback_retry_delays": [0.01, 0.02], "callback_timeout_seconds": 1.5}
    answer = raw.patch("/_emulator/settings", json=patch)
    assert answer.status_code == 200
    assert (answer.json()["callback_retry_delays"], answer.json()["callback_timeout_seconds"]) == (
        [0.01, 0.02],
        1.5,
    )
    assert emulator.settings.callback_retry_delays == (0.01, 0.02)
    for bad in ({"callback_retry_delays": [-1]}, {"callback_timeout_seconds": 0}):
        assert raw.patch("/_emulator/settings", json=bad).status_code == 422


# --- images, server and CLI -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "size"), [("1:1", (512, 512)), ("4:5", (410, 512)), ("21:9", (512, 219)), ("x", (512, 512))]
)
def test_image_size(ratio: str, size: tuple[int, int]) -> None:
    assert image_size(ratio) == size


FORMATS = [("png", "PNG"), ("jpeg", "JPEG"), ("jpg", "JPEG")]
"""Output format names the emulator accepts, and what Pillow calls the decoded file."""


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
@pytest.mark.parametrize(("output_format", "image_format"), FORMATS)
def test_every_aspect_ratio_renders_at_its_size(ratio: str, output_format: str, image_format: str) -> None:
    data = render_image(output_format, prompt="a watercolor fox", aspect_ratio=ratio, task_id="task_1")
    assert decode(data, image_format).size == image_size(ratio)


@pytest.mark.parametrize(("output_format", "image_format"), FORMATS[:2])
def test_the_prompt_is_drawn_as_text(output_format: str, image_format: str) -> None:
    def prompt_ink(prompt: str) -> int:
        data = render_image(output_format, prompt=prompt, aspect_ratio="1:1", task_id="task_1")
        return ink_count(decode(data, image_format), PROMPT_AREA)

    without, short, longer = prompt_ink(""), prompt_ink("fox"), prompt_ink("a watercolor fox in the snow")
    assert without == 0, "the background alone is never near white behind the panel"
    assert 100 < short < longer


def test_the_footer_shows_the_ratio_and_the_task_id() -> None:
    def footer(task_id: str, ratio: str = "1:1") -> bytes:
        data = render_image("png", prompt="a watercolor fox", aspect_ratio=ratio, task_id=task_id)
        return ink(decode(data, "PNG"), FOOTER_AREA)

    first = footer("task_0123456789abcdef01234567")
    assert first.count(255) > footer("").count(255) > 100
    assert first != footer("task_fedcba9876543210fedcba98"), "another id, other glyphs"
    assert first != footer("task_0123456789abcdef01234567", "4:3"), "another ratio, other glyphs"
    assert first == footer("task_0123456789abcdef01234567")


def test_a_long_prompt_is_shortened_and_still_renders() -> None:
    data = render_image("png", prompt="a watercolor fox " * 300, aspect_ratio="21:9", task_id="task_1")
    image = decode(data, "PNG")
    assert image.size == (512, 219)
    assert ink_count(image, (0.1, 0.1, 0.9, 0.5)) > 200


def test_wrap_fits_the_width_and_ends_a_shortened_text_with_an_ellipsis() -> None:
    font = ImageFont.load_default(size=20)
    assert _wrap("a watercolor fox", font, 400, max_lines=3) == (["a watercolor fox"], False)
    lines, shortened = _wrap("a watercolor fox " * 50, font, 200, max_lines=3)
    assert shortened and len(lines) == 3 and lines[-1].endswith("\u2026")
    assert all(font.getlength(line) <= 200 for line in lines)
    url = "https://example.com/" + "x" * 80
    lines, shortened = _wrap(url, font, 200, max_lines=10)
    assert not shortened and len(lines) > 1 and "".join(lines) == url
    assert all(font.getlength(line) <= 200 for line in lines)


def test_characters_the_font_cannot_draw_are_replaced() -> None:
    assert _printable("caf\u00e9 \u2014 \u6771 \u201cok\u201d") == "cafe - ? \u201cok\u201d"


def test_unknown_output_format_is_refused() -> None:
    with pytest.raises(ValueError, match="webp"):
        render_image("webp", prompt="x", aspect_ratio="1:1", task_id="task_1")


def test_create_app_serves_the_given_emulator() -> None:
    emulator = Emulator(EmulatorSettings(api_key="k"))
    app = create_app(emulator)
    assert any(getattr(route, "path", "") == "/api/v1/generateTask/{model}" for route in app.routes)


def test_server_exposes_urls_and_stops(emulator: Emulator) -> None:
    with EmulatorServer(settings=EmulatorSettings(api_key=None)) as other:
        assert other.base_url == f"http://127.0.0.1:{other.port}/api/v1" and other.port > 0
        assert other.api_key
        assert httpx.get(other.root_url + "/_emulator/health", trust_env=False).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(other.root_url + "/_emulator/health", trust_env=False)


def test_cli_parser_defaults_and_flags() -> None:
    parser = cli.build_parser()
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port, defaults.api_key, defaults.any_key) == (
        "127.0.0.1",
        8089,
        "apixo-emulator-key",
        False,
    )
    args = parser.parse_args(
        ["--port", "0", "--any-key", "--generation-seconds", "1.5", "--latency-seconds", "2"]
    )
    settings = cli.settings_from_args(args)
    assert (settings.api_key, settings.generation_seconds, settings.latency_seconds) == (None, 1.5, 2.0)
    assert cli.settings_from_args(parser.parse_args(["--api-key", "k"])).api_key == "k"
    assert cli.settings_from_args(defaults).model_generation_seconds == {}
    for bad in (["--api-key", "k", "--any-key"], ["--latency-seconds", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_cli_help_names_the_default_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps help to the terminal's width
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    assert "the only bearer token accepted (default: apixo-emulator-key)" in capsys.readouterr().out


def test_cli_model_seconds_are_repeatable_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    flags = ["--model-seconds", "veo-3-1=45", "--model-seconds", "flux-2=8", "--model-seconds", "x=0"]
    settings = cli.settings_from_args(parser.parse_args(flags))
    assert settings.model_generation_seconds == {"veo-3-1": 45.0, "flux-2": 8.0, "x": 0.0}
    for bad in ("veo-3-1", "veo-3-1=", "=45", "veo-3-1=-1", "veo-3-1=slow", "veo-3-1=inf", "veo-3-1=nan"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--model-seconds", bad])
        error = capsys.readouterr().err
        assert "argument --model-seconds: expected MODEL=SECONDS" in error and repr(bad) in error, error


def test_cli_main_prints_the_connection(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_wait_for_stop", lambda: None)
    assert cli.main(["--port", "0", "--api-key", "secret-k"]) == 0
    lines = capsys.readouterr().out.splitlines()
    out = [line for line in lines if line.startswith(("APIXO emulator", "export "))]  # not log lines
    assert len(out) == 2, lines
    assert out[0].startswith("APIXO emulator serving at http://127.0.0.1:") and out[0].endswith("/api/v1")
    prefix = "export AIRFLOW_CONN_APIXO_DEFAULT='"
    assert out[1].startswith(prefix) and out[1].endswith("'")
    conn = json.loads(out[1][len(prefix) : -1])
    assert conn == {"conn_type": "apixo", "host": out[0].rsplit(" ", 1)[1], "password": "secret-k"}


def test_stop_is_not_held_up_by_injected_latency() -> None:
    server = EmulatorServer(settings=EmulatorSettings(latency_seconds=30)).start()
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.base_url + "/apikeys/current-balance", headers=headers, timeout=0.1, trust_env=False)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.5

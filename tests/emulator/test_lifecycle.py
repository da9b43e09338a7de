"""An emulator task's life: pending, processing, success, and its result as a real image file."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from tests.support import (
    PROMPT_AREA,
    decode,
    get_status,
    ink_count,
    post_task,
    result_url,
    t2i_body,
    wait_terminal,
)

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import Emulator, EmulatorServer


def test_state_progresses_pending_processing_success(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.pending_seconds = 1.0  # the first read comes in time even on a loaded machine
    task_id = post_task(api, t2i_body("a fox [emulator:seconds=2]"))
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = get_status(api, task_id)
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
    task_id = post_task(api, t2i_body(aspect_ratio="16:9", output_format="png"))
    url = result_url(wait_terminal(api, task_id))
    assert url == f"{server.root_url}/files/{task_id}/0.png"
    download = httpx.get(url, trust_env=False)
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    image = decode(download.content, "PNG")
    assert image.size == (512, 288)
    assert ink_count(image, PROMPT_AREA) > 200, "the prompt is not drawn"


def test_jpeg_result_is_a_real_baseline_jpeg(server: EmulatorServer, api: httpx.Client) -> None:
    task_id = post_task(api, t2i_body(aspect_ratio="9:16", output_format="jpeg"))
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
    task_id = post_task(api, t2i_body(aspect_ratio="auto"))
    url = result_url(wait_terminal(api, task_id))
    assert decode(httpx.get(url, trust_env=False).content, "PNG").size == (512, 512)


def test_files_are_404_when_unknown_or_not_ready(
    server: EmulatorServer, api: httpx.Client, raw: httpx.Client
) -> None:
    task_id = post_task(api, t2i_body())
    assert raw.get(f"/files/{task_id}/0.png").status_code == 404
    wait_terminal(api, task_id)
    assert raw.get(f"/files/{task_id}/0.png").status_code == 200
    assert raw.get(f"/files/{task_id}/0.jpeg").status_code == 404
    assert raw.get("/files/task_unknown/0.png").status_code == 404


def test_images_differ_per_task(api: httpx.Client, raw: httpx.Client) -> None:
    first, second = post_task(api, t2i_body("one")), post_task(api, t2i_body("two"))
    wait_terminal(api, first), wait_terminal(api, second)
    assert raw.get(f"/files/{first}/0.png").content != raw.get(f"/files/{second}/0.png").content

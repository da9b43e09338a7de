"""Reference images, fetched as APIXO fetches them: an unusable one fails the paid task with APIXO's
code, and a usable one shows, shrunk, in the corner of the result."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from PIL import Image, ImageChops, ImageStat

from airflow_provider_nanobanana.emulator.images import THUMBNAIL_SIDE
from tests.support import post_task, result_url, t2i_body, wait_terminal

if TYPE_CHECKING:
    import httpx

    from airflow_provider_nanobanana.emulator import Emulator, EmulatorServer


def edit_body(*urls: str) -> dict[str, object]:
    return {
        "request_type": "async",
        "input": {"mode": "image-to-image", "prompt": "make it blue", "image_urls": list(urls)},
    }


def image(raw: httpx.Client, url: str) -> Image.Image:
    return Image.open(io.BytesIO(raw.get(url).raise_for_status().content)).convert("RGB")


def difference(first: Image.Image, second: Image.Image) -> float:
    """Mean difference per channel, 0 (same) to 255."""
    return sum(ImageStat.Stat(ImageChops.difference(first, second)).mean) / 3


def test_an_edit_shows_its_source_in_the_corner(
    api: httpx.Client, raw: httpx.Client, emulator: Emulator
) -> None:
    source_url = result_url(wait_terminal(api, post_task(api, t2i_body("a red kite"))))
    source = image(raw, source_url)

    edited = image(raw, result_url(wait_terminal(api, post_task(api, edit_body(source_url)))))

    corner = (0, 0, THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    thumbnail = source.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    assert difference(edited.crop(corner), thumbnail) < 8
    assert difference(source.crop(corner), thumbnail) > 20, "a result without a source shows none"
    assert emulator.reference_fetches == [source_url]
    assert emulator.downloads == (3, 0), "fetched without credentials, as a public URL is"


def test_an_unreachable_reference_fails_the_task_as_apixo_does(api: httpx.Client) -> None:
    data = wait_terminal(api, post_task(api, edit_body("http://127.0.0.1:9/mug.png")))

    assert data["state"] == "failed"
    assert data["failCode"] == "IMAGE_DOWNLOAD_FAILED"
    assert data["failMsg"] == "image_urls[0] could not be fetched (ConnectError)"


def test_a_reference_that_is_not_an_image_fails_the_task(api: httpx.Client, server: EmulatorServer) -> None:
    usable = result_url(wait_terminal(api, post_task(api, t2i_body())))

    data = wait_terminal(api, post_task(api, edit_body(usable, f"{server.root_url}/_emulator/health")))

    assert (data["state"], data["failCode"]) == ("failed", "UNSUPPORTED_FORMAT")
    assert data["failMsg"] == "image_urls[1] is not a JPG, PNG or WebP image"


def test_a_missing_reference_fails_the_task(api: httpx.Client, server: EmulatorServer) -> None:
    data = wait_terminal(api, post_task(api, edit_body(f"{server.root_url}/files/task_none/0.png")))

    assert (data["failCode"], data["failMsg"]) == ("IMAGE_DOWNLOAD_FAILED", "image_urls[0] answered HTTP 404")

"""Reference images fetched as APIXO fetches them: a GET from the service, without credentials.

Each image-to-image task's ``image_urls`` are fetched right after it is created (the submission is
answered at once, as APIXO's is); the task cannot end before. A failed fetch or bytes that are not a
JPG, PNG or WebP image fail the task with APIXO's codes, so an unreachable reference is found the way
a real one is: after the task was paid for. The first image, shrunk, is drawn into the result.
"""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

import httpx
from PIL import Image, UnidentifiedImageError

from airflow_provider_nanobanana.emulator.images import THUMBNAIL_SIDE

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator.state import EmulatedTask, Emulator

__all__ = ["MAX_REFERENCE_BYTES", "fetch_references"]

MAX_REFERENCE_BYTES = 10 * 1024 * 1024
"""APIXO takes reference images of at most 10 MB."""
_FORMATS = ("PNG", "JPEG", "WEBP")


class _Unusable(Exception):
    """A reference APIXO could not use: its failCode and failMsg."""

    def __init__(self, fail_code: str, fail_msg: str) -> None:
        super().__init__(fail_code, fail_msg)
        self.failure = (fail_code, fail_msg)


async def fetch_references(emulator: Emulator, task: EmulatedTask) -> None:
    """Fetch every reference of ``task``, then let it end (failed if one was unusable)."""
    timeout = emulator.settings.reference_timeout_seconds
    thumbnail = None
    try:
        for index, url in enumerate(task.image_urls):
            emulator.record_reference_fetch(url)
            body = await _fetch(url, index, timeout)
            image = _decoded(body, index)
            if index == 0:
                thumbnail = _thumbnail(image)
    except _Unusable as unusable:
        emulator.references_fetched(task.task_id, unusable.failure, None)
        return
    emulator.references_fetched(task.task_id, None, thumbnail)


async def _fetch(url: str, index: int, timeout: float) -> bytes:
    """The body at ``url``, through the transport: a client would log the URL, signature and all."""
    try:
        async with asyncio.timeout(timeout), httpx.AsyncHTTPTransport() as transport:
            response = await transport.handle_async_request(httpx.Request("GET", url))
            try:
                if response.status_code != 200:
                    raise _download_failed(index, f"answered HTTP {response.status_code}")
                return await _read_bounded(response, index)
            finally:
                await response.aclose()
    except (httpx.HTTPError, TimeoutError) as error:
        raise _download_failed(index, f"could not be fetched ({type(error).__name__})") from None


def _download_failed(index: int, problem: str) -> _Unusable:
    return _Unusable("IMAGE_DOWNLOAD_FAILED", f"image_urls[{index}] {problem}")


async def _read_bounded(response: httpx.Response, index: int) -> bytes:
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_REFERENCE_BYTES:
            raise _Unusable("IMAGE_TOO_LARGE", f"image_urls[{index}] is over 10 MB")
    return body


def _decoded(body: bytes, index: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(body))
        image.load()
    except (UnidentifiedImageError, OSError):
        image = None
    if image is None or image.format not in _FORMATS:
        raise _Unusable("UNSUPPORTED_FORMAT", f"image_urls[{index}] is not a JPG, PNG or WebP image")
    return image


def _thumbnail(image: Image.Image) -> bytes:
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()

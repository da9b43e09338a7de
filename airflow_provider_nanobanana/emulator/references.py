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
_REDIRECTS = 5


class _Unusable(Exception):
    """A reference APIXO could not use: its failCode and failMsg."""

    def __init__(self, fail_code: str, fail_msg: str) -> None:
        super().__init__(fail_code, fail_msg)
        self.failure = (fail_code, fail_msg)


async def fetch_references(emulator: Emulator, task: EmulatedTask) -> None:
    """Fetch every reference of ``task``, then let it end (failed if one was unusable). Whatever
    goes wrong fails the task rather than leaving it processing for ever."""
    epoch = emulator.epoch
    timeout = emulator.settings.reference_timeout_seconds
    failure, thumbnail = None, None
    try:
        for index, url in enumerate(task.image_urls):
            emulator.record_reference_fetch(url, epoch)
            body = await _fetch(url, index, timeout)
            image = await asyncio.to_thread(_decoded, body, index)
            if index == 0:
                thumbnail = _thumbnail(image)
    except _Unusable as unusable:
        failure = unusable.failure
    except Exception as error:
        failure = ("IMAGE_DOWNLOAD_FAILED", f"a reference could not be used ({type(error).__name__})")
    finally:
        emulator.references_fetched(task.task_id, failure, None if failure else thumbnail)


async def _fetch(url: str, index: int, timeout: float) -> bytes:
    """The body at ``url``, redirects followed, through the transport: a client would log the URL,
    signature and all."""
    try:
        async with asyncio.timeout(timeout), httpx.AsyncHTTPTransport() as transport:
            for _ in range(_REDIRECTS + 1):
                request = httpx.Request("GET", url)
                response = await transport.handle_async_request(request)
                try:
                    if not response.is_redirect:
                        return await _body(response, index)
                    url = str(request.url.join(response.headers["location"]))
                finally:
                    await response.aclose()
    except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as error:
        raise _download_failed(index, f"could not be fetched ({type(error).__name__})") from None
    raise _download_failed(index, f"redirects more than {_REDIRECTS} times")


def _download_failed(index: int, problem: str) -> _Unusable:
    return _Unusable("IMAGE_DOWNLOAD_FAILED", f"image_urls[{index}] {problem}")


async def _body(response: httpx.Response, index: int) -> bytes:
    if response.status_code != 200:
        raise _download_failed(index, f"answered HTTP {response.status_code}")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_REFERENCE_BYTES:
            raise _Unusable("IMAGE_TOO_LARGE", f"image_urls[{index}] is over 10 MB")
    return bytes(body)


def _decoded(body: bytes, index: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(body))
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
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

"""Reading image hosts: result images downloaded (streamed, bounded, checked, retried, all or nothing),
and reference images probed before a task that needs them is paid for.

Downloads use a client of their own, never the hook's: the image host is not APIXO and must never
see the API key. Each image streams in bounded chunks into a temporary object next to its final
name and is moved there only once complete and checked, so a failed download leaves nothing behind.
Where to store, and under which name, is :mod:`.storage`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import tenacity

from airflow_provider_nanobanana import __version__
from airflow_provider_nanobanana.exceptions import (
    ApixoInputError,
    ApixoReferenceError,
    ApixoStorageError,
    shown_url,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.sdk import ObjectStoragePath

logger = logging.getLogger(__name__)

DEFAULT_MAX_IMAGE_BYTES = 100 * 1024 * 1024
"""Far above what the API returns (a 4K PNG is a few tens of MB), low enough to stop a runaway body."""
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=15.0)
"""Per network operation; the whole download of one image is bounded by :data:`DOWNLOAD_DEADLINE`."""
DOWNLOAD_DEADLINE = 600.0
DOWNLOAD_ATTEMPTS = 3
CHUNK_BYTES = 64 * 1024
# What may go better on the next attempt; a bad body, a redirect loop or a refused scheme will not.
_RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

# Leading bytes of each image format the API can return, and the extension written for it.
_SIGNATURES: tuple[tuple[re.Pattern[bytes], str, str], ...] = (
    (re.compile(rb"\x89PNG\r\n\x1a\n"), "image/png", ".png"),
    (re.compile(rb"\xff\xd8\xff"), "image/jpeg", ".jpg"),
    (re.compile(rb"RIFF....WEBP", re.DOTALL), "image/webp", ".webp"),
    (re.compile(rb"GIF8[79]a"), "image/gif", ".gif"),
)
_SNIFF_BYTES = 12
MAX_REFERENCE_BYTES = 10 * 1024 * 1024
"""APIXO takes reference images of at most 10 MB."""
PROBE_TIMEOUT = httpx.Timeout(10.0)
"""A reference that takes longer to start answering is unlikely to reach APIXO either."""
_PROBE_REDIRECTS = 5
_REFERENCE_TYPES = ("image/png", "image/jpeg", "image/webp")
USER_AGENT = f"airflow-provider-nanobanana/{__version__}"
"""Some hosts refuse requests without a User-Agent; this one says who asks."""
# A declared type outside these is refused before the body is read (an error page, JSON, ...).
_ACCEPTED_DECLARED = ("image/", "application/octet-stream", "binary/octet-stream")


@dataclass(frozen=True)
class StoredImage:
    """One stored result image."""

    uri: str
    content_type: str
    size: int
    sha256: str


class ImageDownloader:
    """Streams images from their hosts into a store: bounded, checked, retried, all or nothing."""

    def __init__(
        self,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        *,
        attempts: int = DOWNLOAD_ATTEMPTS,
        retry_wait: tenacity.wait.wait_base | None = None,
        log: logging.Logger | Any = logger,
    ) -> None:
        self.max_image_bytes = max_image_bytes
        self.attempts = attempts
        self.retry_wait = retry_wait or tenacity.wait_exponential(multiplier=1, max=10)
        self.log = log
        # No auth, no APIXO base URL: this client only ever talks to image hosts.
        self._client = httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True)

    def __enter__(self) -> ImageDownloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def store(self, url: str, folder: ObjectStoragePath, name: str) -> StoredImage:
        """Download ``url`` to ``folder/name.<ext>``; retried while the failure is transient."""
        _check_url(url)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self.retry_wait,
            retry=tenacity.retry_if_exception(_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(self._store_once, url, folder, name)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "Download attempt %d of %d failed, retrying: %s", state.attempt_number, self.attempts, error
        )

    def _store_once(self, url: str, folder: ObjectStoragePath, name: str) -> StoredImage:
        partial = folder / f".{name}.part"
        try:
            with self._client.stream("GET", url) as response:
                _check_response(url, response, self.max_image_bytes)
                content_type, extension, digest, size = self._write(url, response, partial)
            target = folder / f"{name}{extension}"
            partial.replace(target)
        except httpx.HTTPError as error:
            _discard(partial)
            problem = f"failed: {type(error).__name__}: {error}"
            raise ApixoStorageError(url, problem, retryable=isinstance(error, _RETRYABLE)) from error
        except BaseException:
            _discard(partial)
            raise
        return StoredImage(str(target), content_type, size, digest)

    def _write(
        self, url: str, response: httpx.Response, partial: ObjectStoragePath
    ) -> tuple[str, str, str, int]:
        digest, size = hashlib.sha256(), 0
        deadline = time.monotonic() + DOWNLOAD_DEADLINE
        chunks = response.iter_bytes(CHUNK_BYTES)
        head = _head(chunks)
        content_type, extension = _sniff(url, head)
        with partial.open("wb") as sink:
            for chunk in _prepend(head, chunks):
                size += len(chunk)
                if size > self.max_image_bytes:
                    raise ApixoStorageError(url, f"is larger than max_image_bytes ({self.max_image_bytes})")
                if time.monotonic() > deadline:
                    raise ApixoStorageError(url, f"took over {DOWNLOAD_DEADLINE:g} s")
                digest.update(chunk)
                sink.write(chunk)
        return content_type, extension, digest.hexdigest(), size


def _check_url(url: Any) -> None:
    try:
        scheme = httpx.URL(url).scheme if isinstance(url, str) else None
    except httpx.InvalidURL:
        scheme = None
    if scheme not in ("http", "https"):
        raise ApixoStorageError(str(url), "is not an http(s) URL: refused")


def _check_response(url: str, response: httpx.Response, max_image_bytes: int) -> None:
    if response.status_code >= 400:
        retryable = response.status_code in (408, 425, 429) or response.status_code >= 500
        raise ApixoStorageError(url, f"answered HTTP {response.status_code}", retryable=retryable)
    declared = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared and not declared.startswith(_ACCEPTED_DECLARED):
        raise ApixoStorageError(url, f"is not an image (Content-Type {declared})")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_image_bytes:
        raise ApixoStorageError(url, f"is {length} bytes, over max_image_bytes ({max_image_bytes})")


def _head(chunks: Iterator[bytes]) -> bytes:
    """At least the first :data:`_SNIFF_BYTES` of the body (fewer only if the body is shorter)."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= _SNIFF_BYTES:
            break
    return head


def _prepend(head: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from chunks


def _sniff(url: str, head: bytes) -> tuple[str, str]:
    """The image type the bytes really are, whatever the host declared."""
    for signature, content_type, extension in _SIGNATURES:
        if signature.match(head):
            return content_type, extension
    raise ApixoStorageError(url, f"is not a PNG, JPEG, WebP or GIF image (starts with {head[:8]!r})")


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ApixoStorageError) and error.retryable


def _discard(partial: ObjectStoragePath) -> None:
    with contextlib.suppress(OSError):  # the store is unreachable: the original error says more
        partial.unlink(missing_ok=True)


def probe_reference(field: str, url: str, name: str) -> None:
    """Read the first bytes of a reference image as APIXO will fetch it: a GET without credentials.

    Refuses, naming ``field`` and showing the reference as ``name`` (as the DAG gave it), what APIXO
    would fail the paid task for: an error status, not a JPG, PNG or WebP image, over 10 MB. No
    answer or a 5xx raises a retryable error. It talks to httpx's transport, not a client: a client
    logs each URL it requests, signature and all.
    """
    for _ in range(_PROBE_REDIRECTS + 1):
        request = httpx.Request(
            "GET",
            url,
            headers={"Range": f"bytes=0-{_SNIFF_BYTES - 1}", "User-Agent": USER_AGENT},
            extensions={"timeout": PROBE_TIMEOUT.as_dict()},
        )
        try:
            with httpx.HTTPTransport(proxy=_proxy_for(request.url)) as transport:
                response = transport.handle_request(request)
                with contextlib.closing(response):
                    if not response.is_redirect:
                        _check_reference(field, name, response)
                        return
                    url = str(request.url.join(response.headers["location"]))
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            raise ApixoInputError(field, f"{shown_url(name)} leads to a URL APIXO cannot fetch") from None
        except httpx.HTTPError as error:
            raise ApixoReferenceError(field, name, f"could not be read ({type(error).__name__})") from None
    raise ApixoInputError(field, f"{shown_url(name)} redirects more than {_PROBE_REDIRECTS} times")


def _proxy_for(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``...), as a client would."""
    if urllib.request.proxy_bypass(url.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme) or proxies.get("all")


def _check_reference(field: str, name: str, response: httpx.Response) -> None:
    status = response.status_code
    if status in (408, 425, 429) or status >= 500:
        raise ApixoReferenceError(field, name, f"answered HTTP {status}")
    if status >= 400:
        raise ApixoInputError(field, f"{shown_url(name)} {_refusal(status)}")
    size = _total_size(response)
    if size is not None and size > MAX_REFERENCE_BYTES:
        raise ApixoInputError(field, f"{shown_url(name)} is {size:,} bytes; APIXO takes at most 10 MB")
    head = b""
    for chunk in response.iter_raw():
        head += chunk
        if len(head) >= _SNIFF_BYTES:
            break
    if not any(signature.match(head) and kind in _REFERENCE_TYPES for signature, kind, _ in _SIGNATURES):
        raise ApixoInputError(field, f"{shown_url(name)} is not a JPG, PNG or WebP image, which APIXO needs")


def _refusal(status: int) -> str:
    if status in (401, 403):
        return (
            f"refused a GET without credentials (HTTP {status}), so APIXO would be refused too: a private "
            "or expired URL? Pass the object as s3://conn_id@bucket/key or an ObjectStoragePath and the "
            "provider signs it"
        )
    if status in (404, 410):
        return f"has no image (HTTP {status}): deleted, mistyped, or never stored?"
    return f"answered HTTP {status}"


def _total_size(response: httpx.Response) -> int | None:
    """The whole image's size: from ``Content-Range`` when the range was served, else the length."""
    total = response.headers.get("content-range", "").rpartition("/")[2]
    if response.status_code == 206:
        return int(total) if total.isdigit() else None
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None

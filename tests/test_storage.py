"""Storing result images: real downloads over loopback into a local folder and an in-memory store."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec
import pytest
import tenacity
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io.store import attach

from airflow_provider_nanobanana.downloads import ImageDownloader
from airflow_provider_nanobanana.exceptions import ApixoInputError, ApixoStorageError
from airflow_provider_nanobanana.storage import output_location, store_results
from tests.support import FakeTaskInstance

if TYPE_CHECKING:
    from collections.abc import Iterator

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)  # several chunks
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(5_000)
CAP = 100_000


class ImageHost:
    """A loopback image host with the ways a download goes wrong; it records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.flaky_left = 1
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                host.requests.append((self.path, dict(self.headers)))
                route = getattr(host, "route_" + self.path.strip("/").split(".")[0].replace("-", "_"), None)
                if route is None:
                    self._send(404, "text/plain", b"no such image")
                else:
                    route(self)

            def _send(self, status: int, content_type: str, body: bytes, length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.handle_error = lambda *args: None  # a client that stops reading is expected

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{path}"

    def hits(self, path: str) -> int:
        return sum(1 for requested, _ in self.requests if requested == "/" + path)

    def route_image(self, handler: Any) -> None:
        handler._send(200, "image/png", PNG)

    def route_photo(self, handler: Any) -> None:
        handler._send(200, "image/jpeg", JPEG)

    def route_page(self, handler: Any) -> None:
        handler._send(200, "text/html; charset=utf-8", b"<html>Access denied</html>")

    def route_disguised_jpeg(self, handler: Any) -> None:
        handler._send(200, "image/png", JPEG)

    def route_disguised(self, handler: Any) -> None:
        handler._send(200, "image/png", b"<html>Access denied</html>")

    def route_huge(self, handler: Any) -> None:
        handler._send(200, "image/png", PNG[: CAP + 1])

    def route_endless(self, handler: Any) -> None:
        """No length announced: only counting the bytes as they come finds it is too big."""
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(PNG[: CAP + 1])
        handler.close_connection = True

    def route_cut(self, handler: Any) -> None:
        """The connection drops half-way through the announced body."""
        handler._send(200, "image/jpeg", JPEG[: len(JPEG) // 2], length=len(JPEG))
        handler.close_connection = True

    def route_flaky(self, handler: Any) -> None:
        if self.flaky_left:
            self.flaky_left -= 1
            handler._send(503, "text/plain", b"busy")
        else:
            handler._send(200, "image/jpeg", JPEG)

    def route_webp(self, handler: Any) -> None:
        handler._send(200, "image/webp", b"RIFF\x10\x00\x00\x00WEBPVP8 " + JPEG)

    def route_wave(self, handler: Any) -> None:
        """RIFF, but audio: not a WebP image."""
        handler._send(200, "application/octet-stream", b"RIFF\x00\x00\x00\x00WAVEfmt " + JPEG)

    def route_elsewhere(self, handler: Any) -> None:
        handler.send_response(302)
        handler.send_header("Location", "ftp://127.0.0.1/cover.png")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def route_moved(self, handler: Any) -> None:
        handler.send_response(302)
        handler.send_header("Location", "/photo.jpg")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def __enter__(self) -> ImageHost:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def host() -> Iterator[ImageHost]:
    with ImageHost() as image_host:
        yield image_host


@pytest.fixture
def memory_store() -> Iterator[ObjectStoragePath]:
    """An fsspec in-memory store, attached the way a provider's filesystem is."""
    fs = fsspec.filesystem("memory")
    attach("memory", fs=fs)
    yield ObjectStoragePath("memory://bucket/covers/")
    if fs.exists("/bucket"):
        fs.rm("/bucket", recursive=True)


def context(map_index: int = -1) -> dict[str, Any]:
    return {"ti": FakeTaskInstance(map_index=map_index)}


def result(*urls: str) -> dict[str, Any]:
    return {"apixo_task_id": "task_abc", "state": "success", "result_urls": list(urls)}


def downloader() -> ImageDownloader:
    return ImageDownloader(CAP, retry_wait=tenacity.wait_none())


def leftovers(folder: ObjectStoragePath) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_stores_every_image_in_a_local_folder_under_a_deterministic_name(
    host: ImageHost, tmp_path: Path
) -> None:
    stored = store_results(
        result(host.url("image.png"), host.url("moved")), str(tmp_path / "out"), context(3), 10**7
    )

    prefix = "covers__manual__2026-11-26T00-00-00-00-00__generate__3__task_abc"
    assert stored["stored_paths"] == [
        (tmp_path / "out" / f"{prefix}_0.png").as_uri(),
        (tmp_path / "out" / f"{prefix}_1.jpg").as_uri(),
    ]
    assert stored["content_types"] == ["image/png", "image/jpeg"]
    assert stored["sizes"] == [len(PNG), len(JPEG)]
    assert stored["sha256"] == [hashlib.sha256(PNG).hexdigest(), hashlib.sha256(JPEG).hexdigest()]
    assert (tmp_path / "out" / f"{prefix}_0.png").read_bytes() == PNG
    assert (tmp_path / "out" / f"{prefix}_1.jpg").read_bytes() == JPEG
    assert stored["result_urls"] == [host.url("image.png"), host.url("moved")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{prefix}_0.png", f"{prefix}_1.jpg"]


def test_stores_into_an_object_store_and_a_rerun_overwrites_its_own_output(
    host: ImageHost, memory_store: ObjectStoragePath
) -> None:
    first = store_results(result(host.url("image.png")), memory_store, context(), 10**7)
    (stored,) = [ObjectStoragePath(uri) for uri in first["stored_paths"]]
    stored.write_bytes(b"stale")

    again = store_results(result(host.url("image.png")), memory_store, context(), 10**7)

    assert again["stored_paths"] == first["stored_paths"]
    assert first["stored_paths"][0].startswith(str(memory_store / "covers__"))  # as Airflow spells it
    assert stored.read_bytes() == PNG
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == again["sha256"][0]
    assert leftovers(memory_store) == [stored.name]


def test_a_local_folder_may_have_any_name(host: ImageHost, tmp_path: Path) -> None:
    folder = tmp_path / "my covers" / "été #1"

    stored = store_results(result(host.url("photo.jpg")), str(folder), context(), 10**7)

    (image,) = folder.iterdir()
    assert image.read_bytes() == JPEG
    assert stored["stored_paths"] == [f"file://{image}"]


def test_long_airflow_ids_make_a_short_unique_name(host: ImageHost, tmp_path: Path) -> None:
    names = []
    for run in ("a", "b"):
        ti = FakeTaskInstance()
        ti.dag_id, ti.run_id, ti.task_id = "d" * 250, run * 250, "t" * 250
        stored = store_results(result(host.url("photo.jpg")), str(tmp_path), {"ti": ti}, 10**7)
        names.append(Path(stored["stored_paths"][0]).name)

    assert names[0] != names[1]
    assert all(len(name.encode()) < 200 and name.endswith("__task_abc_0.jpg") for name in names)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names)


def test_the_extension_is_the_type_of_the_bytes(host: ImageHost, tmp_path: Path) -> None:
    folder = output_location(str(tmp_path))

    assert downloader().store(host.url("webp"), folder, "a").uri.endswith("/a.webp")
    assert downloader().store(host.url("disguised-jpeg"), folder, "b").uri.endswith("/b.jpg")


def test_a_transient_failure_is_retried(host: ImageHost, tmp_path: Path) -> None:
    image = downloader().store(host.url("flaky"), output_location(str(tmp_path)), "cover")

    assert host.hits("flaky") == 2
    assert Path(tmp_path / "cover.jpg").read_bytes() == JPEG
    assert image.size == len(JPEG)


@pytest.mark.parametrize(
    ("path", "attempts", "problem"),
    [
        ("missing.png", 1, "answered HTTP 404"),
        ("page", 1, "is not an image (Content-Type text/html)"),
        ("disguised.png", 1, "is not a PNG, JPEG, WebP or GIF image"),
        ("huge.png", 1, f"over max_image_bytes ({CAP})"),
        ("endless.png", 1, f"is larger than max_image_bytes ({CAP})"),
        ("cut.png", 3, "failed: RemoteProtocolError"),
        ("wave", 1, "is not a PNG, JPEG, WebP or GIF image"),
        ("elsewhere", 1, "failed: UnsupportedProtocol"),
    ],
)
def test_a_failed_download_fails_clearly_and_leaves_nothing_behind(
    host: ImageHost, tmp_path: Path, memory_store: ObjectStoragePath, path: str, attempts: int, problem: str
) -> None:
    for folder in (output_location(str(tmp_path)), memory_store):
        folder.mkdir(parents=True, exist_ok=True)
        with pytest.raises(ApixoStorageError, match=re.escape(problem)) as raised:
            downloader().store(host.url(path), folder, "cover")
        assert host.url(path) in str(raised.value)
        assert leftovers(folder) == []
    assert host.hits(path) == 2 * attempts


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/a.png", "data:image/png;base64,AA", 7])
def test_a_url_that_is_not_http_is_refused_without_a_request(tmp_path: Path, url: Any) -> None:
    with pytest.raises(ApixoStorageError, match=r"is not an http\(s\) URL"):
        downloader().store(url, output_location(str(tmp_path)), "cover")
    assert leftovers(output_location(str(tmp_path))) == []


@pytest.mark.parametrize("output_path", ["", "   ", None, 3])
def test_output_path_must_be_a_path(output_path: Any) -> None:
    with pytest.raises(ApixoInputError, match="Invalid output_path: must be a non-empty path or URI"):
        output_location(output_path)


@pytest.mark.parametrize("output_path", ["covers", "./covers", "file://covers/"])
def test_a_local_output_path_must_be_absolute(output_path: str) -> None:
    with pytest.raises(ApixoInputError, match="Invalid output_path: must be an absolute folder"):
        output_location(output_path)


@pytest.mark.skipif(
    ObjectStoragePath("covers").is_absolute(),
    reason="this Airflow's ObjectStoragePath makes it '/covers' itself",
)
def test_a_relative_object_storage_path_is_refused_too() -> None:
    with pytest.raises(ApixoInputError, match="Invalid output_path: must be an absolute folder"):
        output_location(ObjectStoragePath("covers"))


@pytest.mark.parametrize(
    "output_path", ["/data/covers", "~/covers", "file:///data/covers", "file://localhost/d"]
)
def test_an_absolute_local_output_path_is_a_local_folder(output_path: str) -> None:
    folder = output_location(output_path)
    assert folder.protocol == "file" and folder.is_absolute()

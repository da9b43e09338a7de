"""Run the emulator with uvicorn in a background thread, for tests and the CLI.

Tests need a real HTTP server (the provider's own clients, timeouts and retries must be exercised)
without a separate process to manage: a daemon thread on a free loopback port does that.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

import httpx
import uvicorn

from airflow_provider_nanobanana.emulator.app import API_PREFIX, create_app
from airflow_provider_nanobanana.emulator.state import Emulator, EmulatorSettings

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["EmulatorServer"]

ANY_KEY_TOKEN = "apixo-emulator-any-key"
"""What ``api_key`` reports when the emulator accepts any token: some token is still needed."""


class EmulatorServer:
    """An :class:`Emulator` served over HTTP on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        settings: EmulatorSettings | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        if emulator is not None and settings is not None:
            raise ValueError("pass either an emulator or settings, not both")
        self.emulator = emulator if emulator is not None else Emulator(settings)
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._closing: threading.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        """``http://host:port``, where result files and admin endpoints live."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, to use as the Airflow connection's host."""
        return self.root_url + API_PREFIX

    @property
    def api_key(self) -> str:
        """A bearer token the emulator accepts."""
        return self.emulator.settings.api_key or ANY_KEY_TOKEN

    def start(self) -> EmulatorServer:
        """Bind, serve in a daemon thread, and return once the server answers."""
        if self._thread is not None:
            raise RuntimeError("the emulator server is already running")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        app = create_app(self.emulator)
        self._closing = app.state.closing
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,  # requests held by latency_seconds must not block stop()
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="apixo-emulator", daemon=True
        )
        self._thread.start()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit (cutting injected latency short) and wait for the thread."""
        if self._closing is not None:
            self._closing.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._server = None
        self._thread = None
        self._closing = None

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError("the emulator server thread exited during start-up")
            try:
                if _health_ok(self.root_url):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"the emulator did not answer within {self.startup_timeout} s")

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket bound before uvicorn starts, so port 0 resolves to a known port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _health_ok(root_url: str) -> bool:
    """One health probe; proxies from the environment are ignored (loopback must stay loopback)."""
    with httpx.Client(trust_env=False, timeout=1.0) as client:
        return client.get(root_url + "/_emulator/health").status_code == 200

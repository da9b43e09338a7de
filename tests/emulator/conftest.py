"""Fixtures of the emulator tests: one emulator per test module on loopback, reset around each test.

The tests here talk to it over plain HTTP (``api``, ``raw``) and its admin client, not through the hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_nanobanana.emulator import EmulatorServer, EmulatorSettings
from tests.support import GENERATION, PENDING, RETRY_DELAYS, EmulatorAdmin

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_nanobanana.emulator import Emulator


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


@pytest.fixture
def admin(server: EmulatorServer) -> Iterator[EmulatorAdmin]:
    client = EmulatorAdmin(server.root_url)
    yield client
    client.close()

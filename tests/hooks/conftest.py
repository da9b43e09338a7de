"""Fixtures of the hook tests: most call the emulator over loopback; ``fake_api`` is for the answers a
real server can't easily be made to give."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import respx

from tests.support import FAKE_BASE, apixo_connection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_nanobanana.hooks.apixo import ApixoHook


@pytest.fixture
def fake_api(
    make_hook: Callable[..., ApixoHook], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[respx.MockRouter, ApixoHook]]:
    """A hook on ``apixo_fake`` and a respx router for its base URL."""
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_FAKE", apixo_connection(FAKE_BASE))
    with respx.mock(base_url=FAKE_BASE, assert_all_called=False) as mock:
        yield mock, make_hook("apixo_fake")

"""The hooks of one event loop share a recent lookup of their connection: in the triggerer each lookup
is three round trips to the supervisor, and a thousand triggers look up the same connection."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest

from airflow_provider_nanobanana.exceptions import ApixoConnectionNotFoundError
from airflow_provider_nanobanana.hooks import base
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from tests.support import TEST_API_KEY, apixo_connection

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_nanobanana.emulator import EmulatorServer


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The connection ids the hooks asked Airflow for, in order."""
    asked: list[str] = []
    look_up = base.aget_connection

    async def counted(conn_id: str) -> Connection:
        asked.append(conn_id)
        return await look_up(conn_id)

    monkeypatch.setattr(base, "aget_connection", counted)
    return asked


async def settings_of(*hooks: ApixoHook) -> list[base.ConnectionSettings]:
    """Each hook's settings, looked up at once as triggers starting together do; the hooks closed."""
    try:
        await asyncio.gather(*(hook.aget_conn() for hook in hooks))
        return [hook.settings for hook in hooks]
    finally:
        await asyncio.gather(*(hook.aclose() for hook in hooks))


@pytest.mark.usefixtures("emulator")
async def test_hooks_of_one_loop_share_one_lookup_also_while_it_is_under_way(lookups: list[str]) -> None:
    together = await settings_of(*(ApixoHook() for _ in range(20)))
    later = await settings_of(ApixoHook())

    assert lookups == ["apixo_default"]
    assert all(settings is together[0] for settings in [*together, *later])


async def test_an_edited_connection_reaches_hooks_after_the_reuse_time(
    emulator: EmulatorServer, lookups: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def edit(requests_per_minute: int) -> None:
        connection = apixo_connection(emulator.base_url, requests_per_minute=requests_per_minute)
        monkeypatch.setenv("AIRFLOW_CONN_APIXO_EDITED", connection)

    monkeypatch.setattr(base.CONNECTIONS, "seconds", 1.0)
    edit(6000)
    (before,) = await settings_of(ApixoHook("apixo_edited"))
    edit(5000)
    (reused,) = await settings_of(ApixoHook("apixo_edited"))
    await asyncio.sleep(1.1)
    (after,) = await settings_of(ApixoHook("apixo_edited"))

    assert [s.requests_per_minute for s in (before, reused, after)] == [6000, 6000, 5000]
    assert lookups == ["apixo_edited", "apixo_edited"]


@pytest.mark.usefixtures("emulator")
def test_each_event_loop_looks_up_on_its_own(lookups: list[str]) -> None:
    asyncio.run(settings_of(ApixoHook()))
    asyncio.run(settings_of(ApixoHook()))

    assert lookups == ["apixo_default", "apixo_default"]


async def test_a_failed_lookup_is_neither_kept_nor_shared(
    emulator: EmulatorServer, lookups: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_APIXO_LATER", raising=False)
    hooks = [ApixoHook("apixo_later"), ApixoHook("apixo_later")]
    errors = await asyncio.gather(*(hook.aget_conn() for hook in hooks), return_exceptions=True)
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_LATER", apixo_connection(emulator.base_url))

    (found,) = await settings_of(ApixoHook("apixo_later"))

    assert all(isinstance(error, ApixoConnectionNotFoundError) for error in errors)
    assert errors[0] is not errors[1]  # each hook's own, with its own traceback
    assert found.base_url == emulator.base_url
    assert lookups == ["apixo_later"] * 4  # the shared one, each hook's own after it, the next


@pytest.mark.usefixtures("emulator")
async def test_a_hook_timeout_is_kept_apart_from_the_connection_s(lookups: list[str]) -> None:
    default, own = await settings_of(ApixoHook(), ApixoHook(timeout=2.5))

    assert (default.timeout, own.timeout) == (30.0, 2.5)
    assert lookups == ["apixo_default", "apixo_default"]


@pytest.mark.usefixtures("emulator")
async def test_reused_settings_log_nothing_and_keep_the_key_out_of_their_repr(
    lookups: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shared = await settings_of(ApixoHook(), ApixoHook())

    assert shared[0].api_key == TEST_API_KEY
    assert TEST_API_KEY not in repr(shared) + caplog.text

"""ApixoHook's settings from its connection: base URL, provider routing, timeout, API key."""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx

from airflow_provider_nanobanana.api import DEFAULT_BASE_URL
from airflow_provider_nanobanana.exceptions import ApixoError, ApixoInputError, ApixoTransportError
from tests.support import FAKE_BASE, MODEL, T2I, TEST_API_KEY, apixo_connection, status_body


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ({"host": "http://127.0.0.1:8080/api/v1"}, "http://127.0.0.1:8080/api/v1"),
        ({"host": "https://proxy.example.com/apixo/api/v1/"}, "https://proxy.example.com/apixo/api/v1"),
        ({"host": "https://api.example.com"}, "https://api.example.com/api/v1"),
        ({"host": "api.example.com"}, "https://api.example.com/api/v1"),
        ({"host": "api.example.com", "port": 8443}, "https://api.example.com:8443/api/v1"),
        ({"host": "gw.example.com", "schema": "apixo/api/v1"}, "https://gw.example.com/apixo/api/v1"),
        ({"host": "https://gw.example.com/v2", "schema": "other"}, "https://gw.example.com/v2"),
        ({"host": ""}, DEFAULT_BASE_URL),
        ({}, DEFAULT_BASE_URL),
    ],
    ids=[
        "full-url",
        "trailing-slash",
        "no-path",
        "bare-host",
        "bare-host-port",
        "path-in-schema",
        "host-path-wins",
        "empty",
        "no-host",
    ],
)
def test_base_url_from_connection(make_hook, conn, expected):
    connection = json.dumps({"conn_type": "apixo", "password": TEST_API_KEY, **conn})
    assert make_hook("apixo_url", connection=connection).settings.base_url == expected


@pytest.mark.parametrize("schema", ["https", "HTTP", "/http/"])
def test_a_protocol_in_the_schema_is_refused_before_any_request(make_hook, emulator_admin, schema):
    connection = json.dumps(
        {"conn_type": "apixo", "host": "api.example.com", "schema": schema, "password": "k"}
    )
    with pytest.raises(ApixoInputError) as caught:
        _ = make_hook("apixo_schema", connection=connection).settings
    assert caught.value.field == "schema"
    assert "of the APIXO connection 'apixo_schema'" in str(caught.value)
    assert "put the protocol in the Base URL" in str(caught.value)
    assert emulator_admin.requests() == []


def test_bare_host_is_called_over_https_under_api_v1(make_hook):
    hook = make_hook("apixo_bare", connection=apixo_connection("apixo.test"))
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.get("/statusTask/nano-banana").respond(json=status_body())
        hook.get_task_status(MODEL, "task_1")
    assert str(route.calls.last.request.url) == f"{FAKE_BASE}/statusTask/nano-banana?taskId=task_1"


def test_empty_host_calls_the_public_api(make_hook):
    hook = make_hook("apixo_public", connection=apixo_connection(""))
    with respx.mock(base_url=DEFAULT_BASE_URL) as mock:
        route = mock.get("/statusTask/nano-banana").respond(json=status_body())
        hook.get_task_status(MODEL, "task_1")
    assert route.call_count == 1


def test_provider_extra_is_the_default_routing(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_value", connection=apixo_connection(emulator.base_url, provider="value"))
    assert hook.settings.provider == "value"
    first = hook.submit_task(MODEL, T2I)
    second = hook.submit_task(MODEL, T2I, provider="official")
    providers = {task["id"]: task["provider"] for task in emulator_admin.tasks()}
    assert providers == {first: "value", second: "official"}


def test_invalid_provider_extra_raises_before_any_request(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_badp", connection=apixo_connection(emulator.base_url, provider="cheapest"))
    with pytest.raises(ApixoInputError) as caught:
        hook.submit_task(MODEL, T2I)
    assert caught.value.field == "extra.provider"
    assert str(caught.value) == (
        "Invalid 'Default provider routing' field (extra.provider) of the APIXO connection 'apixo_badp': "
        "must be one of auto, value, official; got 'cheapest'"
    )
    assert emulator_admin.requests() == []


def test_invalid_provider_argument_raises_before_any_request(make_hook, emulator_admin):
    with pytest.raises(ApixoInputError) as caught:
        make_hook().submit_task(MODEL, T2I, provider="cheapest")
    assert caught.value.field == "provider"
    assert emulator_admin.requests() == []


@pytest.mark.parametrize("timeout", ["soon", -1])
def test_invalid_timeout_extra_names_the_extra(make_hook, emulator, emulator_admin, timeout):
    hook = make_hook(
        "apixo_badt", connection=apixo_connection(emulator.base_url, timeout=timeout), timeout=None
    )
    with pytest.raises(ApixoInputError) as caught:
        hook.submit_task(MODEL, T2I)
    assert caught.value.field == "extra.timeout"
    assert emulator_admin.requests() == []


def test_timeout_extra_applies_per_request(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_slow", connection=apixo_connection(emulator.base_url, timeout=0.1), timeout=None)
    assert hook.settings.timeout == 0.1
    emulator_admin.configure(latency_seconds=0.3)
    with pytest.raises(ApixoTransportError, match="timed out"):
        hook.get_task_status(MODEL, "task_x")


def test_hook_timeout_overrides_the_extra(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_slow", connection=apixo_connection(emulator.base_url, timeout=0.1), timeout=2.0)
    assert hook.settings.timeout == 2.0
    emulator_admin.configure(latency_seconds=0.3)
    task_id = hook.submit_task(MODEL, T2I)
    assert hook.get_task_status(MODEL, task_id).task_id == task_id


def test_a_bad_hook_timeout_is_the_hooks_not_the_connections(make_hook, emulator_admin):
    with pytest.raises(ApixoInputError) as caught:
        make_hook(timeout=-1).submit_task(MODEL, T2I)
    assert (caught.value.field, "connection" in str(caught.value)) == ("timeout", False)
    assert emulator_admin.requests() == []


@pytest.mark.parametrize("password", ["", None])
def test_connection_without_api_key(make_hook, emulator, emulator_admin, password):
    conn: dict[str, Any] = {"conn_type": "apixo", "host": emulator.base_url}
    if password is not None:
        conn["password"] = password
    hook = make_hook("apixo_nokey", connection=json.dumps(conn))
    with pytest.raises(ApixoError, match="The API key field of the APIXO connection 'apixo_nokey' is empty"):
        hook.get_task_status(MODEL, "task_x")
    assert emulator_admin.requests() == []
    ok, message = hook.test_connection()
    assert not ok
    assert "API key" in message

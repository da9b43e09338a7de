"""ApixoHook.test_connection: the key checked with one request, hosts and TLS failures named."""

from __future__ import annotations

import ssl

import httpx
import pytest

from airflow_provider_nanobanana.hooks import responses
from tests.support import FAKE_BASE, TEST_API_KEY, WRONG_KEY, apixo_connection, free_port


def test_test_connection_with_a_good_key(make_hook, emulator, emulator_admin):
    ok, message = make_hook().test_connection()
    assert ok
    assert emulator.base_url in message
    assert emulator_admin.requests() == [{"method": "GET", "path": "/api/v1/apikeys/current-balance"}]


def test_test_connection_with_a_wrong_key(make_hook, emulator, emulator_admin):
    hook = make_hook("apixo_wrong", connection=apixo_connection(emulator.base_url, WRONG_KEY))
    ok, message = hook.test_connection()
    assert not ok
    assert message == (
        "APIXO rejected the API key: APIXO answered 401 (Invalid or missing API key). "
        "Check the API key field of the APIXO connection 'apixo_wrong'"
    )
    assert WRONG_KEY not in message
    assert len(emulator_admin.requests()) == 1


def test_test_connection_answered_429_says_so_at_once(make_hook, emulator_admin):
    """The Test button does not wait for the key's capacity as a submission would."""
    emulator_admin.inject_http_errors(429, 100, "any")
    ok, message = make_hook().test_connection()
    assert not ok
    assert "APIXO answered 429" in message
    assert len(emulator_admin.requests()) == 1


def test_test_connection_with_an_unreachable_host(make_hook):
    base = f"http://127.0.0.1:{free_port()}/api/v1"
    ok, message = make_hook("apixo_closed", connection=apixo_connection(base)).test_connection()
    assert not ok
    assert message
    assert TEST_API_KEY not in message


def _status_route(request: httpx.Request) -> httpx.Response:
    """APIXO's status read: 401 without a key, 404 for an unknown task with one."""
    if request.headers.get("Authorization") != f"Bearer {TEST_API_KEY}":
        return httpx.Response(401, json={"code": 401, "message": "Invalid or missing API key"})
    return httpx.Response(404, json={"code": 404, "message": "Task not found"})


def test_test_connection_falls_back_to_a_status_read(fake_api):
    mock, hook = fake_api
    balance = mock.get("/apikeys/current-balance").respond(404, json={"code": 404, "message": "Not found"})
    probe = mock.get("/statusTask/nano-banana").mock(side_effect=_status_route)
    ok, message = hook.test_connection()
    assert ok, message
    assert balance.call_count == 1 and probe.call_count == 2
    with_key, without_key = (call.request.headers["Authorization"] for call in probe.calls)
    assert (with_key, without_key) == (f"Bearer {TEST_API_KEY}", "")


def test_test_connection_fallback_still_rejects_a_wrong_key(fake_api):
    mock, hook = fake_api
    mock.get("/apikeys/current-balance").respond(404, json={"code": 404, "message": "Not found"})
    mock.get("/statusTask/nano-banana").respond(
        401, json={"code": 401, "message": "Invalid or missing API key"}
    )
    ok, message = hook.test_connection()
    assert not ok
    assert "API key" in message


def _balance_route(request: httpx.Request) -> httpx.Response:
    """A balance endpoint in an undocumented shape that still refuses a call without the key."""
    if request.headers.get("Authorization") != f"Bearer {TEST_API_KEY}":
        return httpx.Response(401, json={"code": 401, "message": "Invalid or missing API key"})
    return httpx.Response(200, text="<html>balance: 12</html>")


def test_test_connection_accepts_an_unexpected_shape_once_a_keyless_call_is_refused(fake_api):
    mock, hook = fake_api
    balance = mock.get("/apikeys/current-balance").mock(side_effect=_balance_route)
    ok, message = hook.test_connection()
    assert ok, message
    with_key, without_key = (call.request.headers["Authorization"] for call in balance.calls)
    assert (with_key, without_key) == (f"Bearer {TEST_API_KEY}", "")


def test_test_connection_rejects_an_unexpected_shape_that_needs_no_key(fake_api):
    """Any web server answers 200 somewhere: without a refused keyless call that proves nothing."""
    mock, hook = fake_api
    balance = mock.get("/apikeys/current-balance").respond(200, json={"hello": "world"})
    ok, message = hook.test_connection()
    assert not ok
    assert f"{FAKE_BASE} does not answer like the APIXO API" in message
    assert balance.call_count == 2


def test_test_connection_fallback_accepts_a_status_read_answered_400(fake_api):
    """A status read may refuse the made-up task id as a bad request: the key still passed."""
    mock, hook = fake_api
    mock.get("/apikeys/current-balance").respond(404, json={"code": 404, "message": "Not found"})
    probe = mock.get("/statusTask/nano-banana").mock(
        side_effect=lambda request: (
            httpx.Response(400, json={"code": 400, "message": "Invalid request"})
            if request.headers.get("Authorization")
            else httpx.Response(401, json={"code": 401, "message": "Invalid or missing API key"})
        )
    )
    ok, message = hook.test_connection()
    assert ok, message
    assert probe.call_count == 2


@pytest.mark.parametrize("host", ["https://127.0.0.1:{port}/api/v1", "127.0.0.1:{port}"])
def test_test_connection_reports_a_tls_failure_naming_the_host(make_hook, emulator, host):
    """HTTPS to a plain-HTTP port (a host without a scheme means https): a real TLS handshake
    failure, with the hint the Base URL needs http://."""
    hook = make_hook("apixo_tls", connection=apixo_connection(host.format(port=emulator.port)))
    ok, message = hook.test_connection()
    assert not ok
    assert f"https://127.0.0.1:{emulator.port}/api/v1/apikeys/current-balance failed" in message
    assert "SSL" in message
    hint = "write http:// before the host in the Base URL field of the APIXO connection 'apixo_tls'"
    assert hint in message


def tls_failure(reason: str | None, *, loop: bool = False) -> httpx.ConnectError:
    """An httpx error over an SSLError with ``reason``, as httpx raises it (a loop as respx wraps it)."""
    ssl_error = ssl.SSLError(1, f"[SSL: {reason}] handshake failed")
    if reason is not None:
        ssl_error.reason = reason  # type: ignore[misc]
    error = httpx.ConnectError(str(ssl_error))
    error.__cause__ = ssl_error
    if loop:
        middle = RuntimeError("wrapped")
        error.__cause__, middle.__cause__ = middle, error
    return error


@pytest.mark.parametrize(
    ("error", "hinted"),
    [
        (tls_failure("WRONG_VERSION_NUMBER"), True),  # OpenSSL 3.0 answered in plain HTTP
        (tls_failure("RECORD_LAYER_FAILURE"), True),  # the same with OpenSSL 3.2 and later
        (tls_failure("CERTIFICATE_VERIFY_FAILED"), False),  # a TLS server, an untrusted certificate
        (tls_failure(None), False),
        (tls_failure("WRONG_VERSION_NUMBER", loop=True), False),  # a cycle ends the walk
    ],
)
def test_only_a_handshake_answered_in_plain_http_suggests_http(error: httpx.ConnectError, hinted: bool):
    transport_error = responses.transport_error(error, "GET", "Reading", "apixo_tls")
    assert ("write http:// before the host" in str(transport_error)) is hinted


def test_test_connection_reports_a_timeout_naming_the_host(make_hook, emulator, emulator_admin):
    emulator_admin.configure(latency_seconds=2)
    ok, message = make_hook(timeout=0.2).test_connection()
    assert not ok
    assert f"{emulator.base_url}/apikeys/current-balance timed out" in message


def test_test_connection_is_not_retried(fake_api):
    mock, hook = fake_api
    route = mock.get("/apikeys/current-balance").respond(503, json={"code": 503, "message": "down"})
    ok, message = hook.test_connection()
    assert not ok
    assert "503" in message
    assert route.call_count == 1


def test_test_connection_with_a_wrong_base_path_and_a_wrong_key(make_hook, emulator):
    """Every path answers 404 behind a wrong base URL: that proves nothing about the key."""
    base = emulator.root_url + "/not-the-api/v1"
    hook = make_hook("apixo_wrongpath", connection=apixo_connection(base, WRONG_KEY))
    ok, message = hook.test_connection()
    assert not ok, message
    assert "check the Base URL field of the APIXO connection 'apixo_wrongpath'" in message

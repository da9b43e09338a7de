"""Callback mode on the worker: the minted URL, the token check, and the operator around them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from airflow_provider_nanobanana import plugin
from airflow_provider_nanobanana.callbacks import (
    MAX_CALLBACK_BYTES,
    TRIGGER_CLASSPATHS,
    mint_ticket,
    token_matches,
    token_sha256,
)
from airflow_provider_nanobanana.compat import TaskDeferred
from airflow_provider_nanobanana.exceptions import ApixoInputError
from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from airflow_provider_nanobanana.reattach import RECORD_KEY
from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger
from airflow_provider_nanobanana.triggers.nanobanana import NanoBananaTaskTrigger
from airflow_provider_nanobanana.validation import check_callback_base_url
from tests.support import FakeStore, FakeTaskInstance, apixo_connection, ended

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import EmulatorServer
    from tests.support import EmulatorAdmin

STATUS_READS = ("GET", "/api/v1/statusTask")


def test_a_ticket_is_a_url_under_the_base_with_a_fresh_secret_and_only_its_hash_to_keep() -> None:
    first = mint_ticket("https://airflow.example.com/", "0193-ti")
    second = mint_ticket("https://airflow.example.com/", "0193-ti")

    url = urlsplit(first.url)
    assert (url.scheme, url.netloc, url.path) == (
        "https",
        "airflow.example.com",
        "/nanobanana/callback/0193-ti",
    )
    assert parse_qs(url.query) == {"token": [first.token]}
    assert len(first.token) >= 40 and first.token != second.token
    assert first.token_sha256 == token_sha256(first.token) != first.token
    assert first.token not in repr(first)


def test_only_the_right_token_matches() -> None:
    ticket = mint_ticket("https://airflow.example.com", "ti")

    assert token_matches(ticket.token, ticket.token_sha256)
    assert not token_matches(ticket.token[:-1], ticket.token_sha256)
    assert not token_matches("", ticket.token_sha256)


@pytest.mark.parametrize(
    "value",
    [
        "http://airflow.example.com",
        "ftp://airflow.example.com",
        "airflow.example.com",
        "https://a.example/?x=1",
        "https://user:pw@a.example",
    ],
)
def test_the_base_url_must_be_https_or_local_without_a_query(value: str) -> None:
    with pytest.raises(ApixoInputError, match="Invalid callback_base_url: "):
        check_callback_base_url(value)


def test_loopback_http_is_allowed_for_tests() -> None:
    assert check_callback_base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"


def test_the_route_looks_for_the_triggers_by_their_real_class_paths() -> None:
    """Today's trigger, and the name it had when tasks still waiting on it deferred."""
    today, _ = ApixoTaskTrigger(apixo_task_id="t", end_time=0, model="m", poll_interval=1).serialize()
    before, _ = NanoBananaTaskTrigger(apixo_task_id="t", end_time=0).serialize()

    assert {today, before} == TRIGGER_CLASSPATHS


# --- the operator in callback mode --------------------------------------------------------------------


CALLBACK_BASE = "http://127.0.0.1:8793"


@pytest.fixture
def callback_connection(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """``apixo_callback``: the emulator, with APIXO's webhook pointed at an api-server."""
    connection = apixo_connection(emulator.base_url, callback_base_url=CALLBACK_BASE)
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_CALLBACK", connection)
    return "apixo_callback"


def operator(**kwargs: Any) -> NanoBananaGenerateOperator:
    options = {"prompt": "a lighthouse", "callback_poll_interval": 30, "timeout": 60, **kwargs}
    return NanoBananaGenerateOperator(task_id="generate", **options)


def deferred(op: NanoBananaGenerateOperator, ti: FakeTaskInstance) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as raised:
        op.execute({"ti": ti, "task_state_store": FakeStore()})  # type: ignore[arg-type]
    return raised.value


def test_callback_mode_hands_apixo_a_secret_url_and_keeps_only_its_hash(
    callback_connection: str, emulator_admin: EmulatorAdmin
) -> None:
    ti = FakeTaskInstance()

    deferral = deferred(operator(apixo_conn_id=callback_connection), ti)

    (task,) = emulator_admin.tasks()
    url = urlsplit(task["callback_url"])
    assert task["request_type"] == "callback"
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{CALLBACK_BASE}/nanobanana/callback/{ti.id}"
    (token,) = parse_qs(url.query)["token"]
    _, trigger_kwargs = deferral.trigger.serialize()
    assert trigger_kwargs["callback_token_sha256"] == token_sha256(token)
    assert token not in repr(trigger_kwargs) and token not in repr(deferral.kwargs)
    assert (trigger_kwargs["poll_interval"], trigger_kwargs["initial_delay"]) == (30, 30)
    assert emulator_admin.request_count(*STATUS_READS) == 0


def test_each_try_mints_its_own_token(callback_connection: str, emulator_admin: EmulatorAdmin) -> None:
    for _ in range(2):
        deferred(operator(apixo_conn_id=callback_connection, reattach=False), FakeTaskInstance())

    first, second = (
        parse_qs(urlsplit(task["callback_url"]).query)["token"] for task in emulator_admin.tasks()
    )
    assert first != second


def test_the_operator_can_name_its_own_callback_base_url(emulator_admin: EmulatorAdmin) -> None:
    deferred(operator(callback_base_url="https://airflow.example.com/"), FakeTaskInstance())

    (task,) = emulator_admin.tasks()
    assert task["callback_url"].startswith("https://airflow.example.com/nanobanana/callback/")


def test_a_task_can_turn_callback_mode_off(callback_connection: str, emulator_admin: EmulatorAdmin) -> None:
    _, trigger_kwargs = deferred(
        operator(apixo_conn_id=callback_connection, request_type="async"), FakeTaskInstance()
    ).trigger.serialize()

    (task,) = emulator_admin.tasks()
    assert task["request_type"] == "async"
    assert trigger_kwargs["callback_token_sha256"] is None


def test_a_task_with_its_own_endpoint_sends_the_webhook_there(
    callback_connection: str, emulator_admin: EmulatorAdmin
) -> None:
    own = "https://hooks.example/apixo"
    _, trigger_kwargs = deferred(
        operator(apixo_conn_id=callback_connection, callback_url=own), FakeTaskInstance()
    ).trigger.serialize()

    (task,) = emulator_admin.tasks()
    assert (task["request_type"], task["callback_url"]) == ("callback", own)
    assert trigger_kwargs["callback_token_sha256"] is None


def test_without_a_deferral_the_task_polls(callback_connection: str, emulator_admin: EmulatorAdmin) -> None:
    op = operator(apixo_conn_id=callback_connection, deferrable=False, initial_delay=0.1, poll_interval=0.1)

    op.execute({"ti": FakeTaskInstance(), "task_state_store": FakeStore()})  # type: ignore[arg-type]

    (task,) = emulator_admin.tasks()
    assert task["request_type"] == "async"


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"callback_base_url": "https://a.example", "deferrable": False}, "needs deferrable=True"),
        ({"callback_base_url": "https://a.example", "wait_for_completion": False}, "needs deferrable=True"),
        ({"callback_poll_interval": 0}, "must be at least 1 seconds"),
    ],
)
def test_callback_settings_are_checked_when_the_dag_is_parsed(kwargs: dict[str, Any], rule: str) -> None:
    with pytest.raises(ApixoInputError, match=rule):
        operator(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"callback_base_url": "http://airflow.example.com"}, "callback_base_url"),
        (
            {"callback_base_url": "https://a.example", "callback_url": "https://hooks.example/x"},
            "callback_base_url",
        ),
    ],
)
def test_bad_callback_settings_fail_before_any_request(
    emulator_admin: EmulatorAdmin, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApixoInputError, match=f"Invalid {field}: "):
        operator(**kwargs).execute({"ti": FakeTaskInstance(), "task_state_store": FakeStore()})  # type: ignore[arg-type]
    assert emulator_admin.requests() == []


def test_a_bad_callback_base_url_extra_names_the_extra(
    emulator: EmulatorServer, emulator_admin: EmulatorAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = apixo_connection(emulator.base_url, callback_base_url="ftp://airflow.example.com")
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_CALLBACK", connection)

    named = (
        r"Invalid 'Callback base URL' field \(extra\.callback_base_url\) "
        r"of the APIXO connection 'apixo_callback': "
    )
    with pytest.raises(ApixoInputError, match=named):
        deferred(operator(apixo_conn_id="apixo_callback"), FakeTaskInstance())
    assert emulator_admin.requests() == []


def test_credentials_in_a_callback_base_url_are_not_repeated_in_the_error(
    emulator: EmulatorServer, emulator_admin: EmulatorAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://airflow:hunter2@airflow.example.com"
    monkeypatch.setenv(
        "AIRFLOW_CONN_APIXO_CALLBACK", apixo_connection(emulator.base_url, callback_base_url=url)
    )

    with pytest.raises(ApixoInputError) as raised:
        deferred(operator(apixo_conn_id="apixo_callback"), FakeTaskInstance())

    assert "hunter2" not in str(raised.value)
    assert str(raised.value).endswith("got 'https://airflow.example.com'")
    assert emulator_admin.requests() == []


def test_a_webhook_is_believed_only_after_a_status_read(
    callback_connection: str, emulator_admin: EmulatorAdmin
) -> None:
    """Resumed as Airflow resumes it: ``resume_execution`` with the event merged into the kwargs."""
    op = operator(apixo_conn_id=callback_connection, prompt="a kite [emulator:seconds=1]")
    context = {"ti": FakeTaskInstance(), "task_state_store": FakeStore()}
    with pytest.raises(TaskDeferred) as raised:
        op.execute(context)  # type: ignore[arg-type]
    deferral = raised.value
    _, trigger_kwargs = deferral.trigger.serialize()
    woken = {"status": "callback", "apixo_task_id": trigger_kwargs["apixo_task_id"], "model": "nano-banana"}

    with pytest.raises(TaskDeferred) as again:  # the webhook came early (or lied): wait again
        op.resume_execution("execute_complete", {"event": woken, **deferral.kwargs}, context)  # type: ignore[arg-type]
    _, polling_again = again.value.trigger.serialize()
    usual_cadence = {"poll_interval": op.poll_interval, "initial_delay": op.initial_delay}
    assert polling_again == {**trigger_kwargs, **usual_cadence}  # APIXO will not call twice
    assert emulator_admin.request_count(*STATUS_READS) == 1
    assert RECORD_KEY in context["task_state_store"].values

    ended(emulator_admin, trigger_kwargs["apixo_task_id"])
    result = op.resume_execution("execute_complete", {"event": woken, **again.value.kwargs}, context)  # type: ignore[arg-type]

    assert result["state"] == "success"
    assert emulator_admin.request_count(*STATUS_READS) == 2
    assert context["task_state_store"].delivered()


# --- the route, where it needs no metadata DB (the rest runs under airflow standalone: tests/e2e) ------


def test_the_route_refuses_a_body_over_the_limit() -> None:
    client = TestClient(plugin.app)

    declared = client.post("/callback/x", params={"token": "t"}, content=b"x" * (MAX_CALLBACK_BYTES + 1))
    assert declared.status_code == 413
    assert client.post("/callback/x", params={"token": "t"}, content=b"{}").status_code == 200


def test_the_route_ignores_a_call_that_names_no_task_instance() -> None:
    answer = TestClient(plugin.app).post("/callback/not-a-uuid", params={"token": "t"}, json={})

    assert (answer.status_code, answer.json()) == (200, {"detail": "ignored"})


def test_the_route_counts_a_body_that_declares_no_length() -> None:
    chunks = iter([b"x" * MAX_CALLBACK_BYTES, b"x"])

    answer = TestClient(plugin.app).post("/callback/x", params={"token": "t"}, content=chunks)

    assert answer.status_code == 413

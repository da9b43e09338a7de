"""ApixoHook over real HTTP against the emulator on loopback: states, errors, clients, model ids."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
import respx

from airflow_provider_nanobanana.api import TaskState
from airflow_provider_nanobanana.exceptions import (
    ApixoAuthError,
    ApixoBadRequestError,
    ApixoInputError,
    ApixoNotFoundError,
)
from tests.support import (
    FAKE_BASE,
    MODEL,
    STATUS_PATH,
    T2I,
    TEST_API_KEY,
    WRONG_KEY,
    apixo_connection,
    status_body,
)

if TYPE_CHECKING:
    from airflow_provider_nanobanana.hooks.apixo import ApixoHook


def poll_until_terminal(hook: ApixoHook, task_id: str) -> tuple[list[TaskState], Any]:
    """Read the status every 50 ms; return the distinct states seen, in order, and the last status."""
    seen: list[TaskState] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = hook.get_task_status(MODEL, task_id)
        if not seen or seen[-1] is not status.state:
            seen.append(status.state)
        if status.state.is_terminal:
            return seen, status
        time.sleep(0.05)
    pytest.fail(f"task {task_id} did not finish: {seen}")


def test_submit_and_status_through_every_state(make_hook, emulator, emulator_admin):
    emulator_admin.configure(
        pending_seconds=1.0, generation_seconds=2.0
    )  # every state is seen even when slow
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)

    assert emulator_admin.submissions() == 1
    [task] = emulator_admin.tasks()
    assert task["id"] == task_id
    assert (task["request_type"], task["provider"], task["input"]) == ("async", "auto", T2I)
    seen, final = poll_until_terminal(hook, task_id)
    assert seen == [TaskState.PENDING, TaskState.PROCESSING, TaskState.SUCCESS]
    assert final.task_id == task_id
    assert final.result_urls == (f"{emulator.root_url}/files/{task_id}/0.png",)
    assert final.create_time is not None and final.complete_time is not None
    assert final.cost_time == 2000


async def test_async_status_through_every_state(make_hook, emulator, emulator_admin):
    emulator_admin.configure(pending_seconds=1.0, generation_seconds=2.0)
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    seen: list[TaskState] = []
    try:
        for _ in range(100):
            status = await hook.aget_task_status(MODEL, task_id)
            if not seen or seen[-1] is not status.state:
                seen.append(status.state)
            if status.state.is_terminal:
                break
            await asyncio.sleep(0.05)
    finally:
        await hook.aclose()
    assert seen == [TaskState.PENDING, TaskState.PROCESSING, TaskState.SUCCESS]
    assert status.result_urls == (f"{emulator.root_url}/files/{task_id}/0.png",)


def test_transport_is_generic_over_the_model_id(make_hook, emulator_admin):
    hook = make_hook()
    task_id = hook.submit_task("seedream-4-5", {"prompt": "x"})
    assert emulator_admin.tasks()[0]["model"] == "seedream-4-5"
    assert hook.get_task_status("seedream-4-5", task_id).task_id == task_id
    # The status must be read under the model the task was created with.
    with pytest.raises(ApixoNotFoundError):
        hook.get_task_status(MODEL, task_id)


def test_sends_the_key_as_a_bearer_token(make_hook, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_FAKE", apixo_connection(FAKE_BASE))
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.get("/statusTask/nano-banana").respond(json=status_body())
        make_hook("apixo_fake").get_task_status(MODEL, "task_1")
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TEST_API_KEY}"


@pytest.mark.parametrize("call", ["submit", "status"])
def test_wrong_key_raises_auth_error_without_leaking_the_key(make_hook, emulator, emulator_admin, call):
    hook = make_hook("apixo_wrong", connection=apixo_connection(emulator.base_url, WRONG_KEY))
    with pytest.raises(ApixoAuthError) as caught:
        if call == "submit":
            hook.submit_task(MODEL, T2I)
        else:
            hook.get_task_status(MODEL, "task_x")
    assert caught.value.http_status == 401
    assert "Check the API key field of the APIXO connection 'apixo_wrong'" in str(caught.value)
    assert WRONG_KEY not in str(caught.value)
    assert TEST_API_KEY not in str(caught.value)
    assert len(emulator_admin.requests()) == 1  # never retried
    assert emulator_admin.submissions() == 0


def test_bad_request_carries_the_servers_detail(make_hook, emulator_admin):
    hook = make_hook()
    with pytest.raises(ApixoBadRequestError) as caught:
        hook.submit_task(MODEL, {"mode": "text-to-image"})
    assert caught.value.http_status == 400
    assert caught.value.detail == "Missing required field: input.prompt"
    assert "Missing required field: input.prompt" in str(caught.value)
    assert emulator_admin.request_count("POST") == 1
    assert emulator_admin.submissions() == 0


def test_unknown_task_raises_not_found_once(make_hook, emulator_admin):
    with pytest.raises(ApixoNotFoundError) as caught:
        make_hook().get_task_status(MODEL, "task_doesnotexist")
    assert caught.value.http_status == 404
    assert emulator_admin.request_count("GET", STATUS_PATH) == 1


def test_sync_client_is_reused_across_calls(make_hook, emulator_admin):
    hook = make_hook()
    client = hook.get_conn()
    assert hook.get_conn() is client
    task_id = hook.submit_task(MODEL, T2I)
    hook.get_task_status(MODEL, task_id)
    assert hook.get_conn() is client
    assert not client.is_closed
    hook.close()
    assert client.is_closed
    assert hook.get_conn() is not client


async def test_async_client_is_reused_across_calls(make_hook, emulator_admin):
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    client = await hook.aget_conn()
    try:
        assert await hook.aget_conn() is client
        await hook.aget_task_status(MODEL, task_id)
        await hook.aget_task_status(MODEL, task_id)
        assert await hook.aget_conn() is client
    finally:
        await hook.aclose()
    assert client.is_closed


@pytest.mark.parametrize("model", ["black-forest/flux", "nano banana", "../admin", ""])
def test_bad_model_id_is_rejected_before_any_request(make_hook, emulator_admin, model):
    hook = make_hook()
    with pytest.raises(ApixoInputError) as caught:
        hook.submit_task(model, T2I)
    assert caught.value.field == "model"
    with pytest.raises(ApixoInputError):
        hook.get_task_status(model, "task_1")
    assert emulator_admin.requests() == []


async def test_bad_model_id_is_rejected_before_any_request_async(make_hook, emulator_admin):
    hook = make_hook()
    try:
        with pytest.raises(ApixoInputError):
            await hook.aget_task_status("a/b", "task_1")
    finally:
        await hook.aclose()
    assert emulator_admin.requests() == []

"""The webhook route's answers, fast: the task instance it names is served from a stand-in session.

The route reads one row (the task instance and its trigger) and, when the call passes, hands Airflow
an event. Here that row is built in the test and the hand-over recorded, so each answer is checked in
milliseconds; ``tests/e2e/test_callbacks.py`` wakes real deferred tasks under ``airflow standalone``.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_nanobanana import plugin
from airflow_provider_nanobanana.callbacks import mint_ticket

if TYPE_CHECKING:
    from collections.abc import Iterator

TRIGGERS = {
    "today": "airflow_provider_nanobanana.triggers.apixo.ApixoTaskTrigger",
    "before-the-rename": "airflow_provider_nanobanana.triggers.nanobanana.NanoBananaTaskTrigger",
}
TICKET = mint_ticket("https://airflow.example.com", "ti")
APIXO_TASK = "task_abc"


@dataclass
class StoredTrigger:
    classpath: str
    kwargs: dict[str, Any]
    created_date: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=1))


@dataclass
class StoredTaskInstance:
    state: str | None = "deferred"
    next_method: str | None = "execute_complete"
    trigger: StoredTrigger | None = None
    try_number: int = 1


@dataclass
class Airflow:
    """What the route sees of the metadata DB, and what it handed to Airflow."""

    ti: StoredTaskInstance | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def airflow(monkeypatch: pytest.MonkeyPatch) -> Airflow:
    import airflow.models.trigger
    import airflow.utils.session

    stored = Airflow()

    class Session:
        def get(self, *args: Any, **kwargs: Any) -> StoredTaskInstance | None:
            return stored.ti

    @contextmanager
    def create_session() -> Iterator[Session]:
        yield Session()

    def handle_event_submit(event: Any, *, task_instance: Any, session: Any) -> None:
        stored.events.append(event.payload)

    monkeypatch.setattr(airflow.utils.session, "create_session", create_session)
    monkeypatch.setattr(airflow.models.trigger, "handle_event_submit", handle_event_submit)
    return stored


def deferred_on(classpath: str, **kwargs: Any) -> StoredTaskInstance:
    trigger_kwargs = {"apixo_task_id": APIXO_TASK, "callback_token_sha256": TICKET.token_sha256, **kwargs}
    return StoredTaskInstance(trigger=StoredTrigger(classpath, trigger_kwargs), try_number=2)


def call(token: str = TICKET.token, task_id: str = APIXO_TASK) -> tuple[int, str]:
    body = json.dumps({"code": 200, "msg": "success", "data": {"taskId": task_id, "state": "success"}})
    answer = TestClient(plugin.app).post(f"/callback/{uuid.uuid4()}", params={"token": token}, content=body)
    return answer.status_code, answer.json()["detail"]


@pytest.mark.parametrize("classpath", TRIGGERS.values(), ids=TRIGGERS.keys())
def test_the_right_token_wakes_the_task_once_with_its_try(airflow: Airflow, classpath: str) -> None:
    airflow.ti = deferred_on(classpath)

    assert call() == (200, "woken")
    assert airflow.events == [{"status": "callback", "deferring_try": 2}]


def test_a_wrong_token_is_refused_and_wakes_nothing(airflow: Airflow) -> None:
    airflow.ti = deferred_on(TRIGGERS["today"])

    assert call(token=TICKET.token[:-1] + "x") == (403, "wrong token")
    assert call(token="") == (403, "wrong token")
    assert airflow.events == []


@pytest.mark.parametrize("state", ["scheduled", "queued", "running", None])
def test_a_task_not_deferred_yet_asks_apixo_to_call_again(airflow: Airflow, state: str | None) -> None:
    airflow.ti = StoredTaskInstance(state=state, next_method=None)

    assert call() == (503, "not ready: call again")
    assert airflow.events == []


def test_a_deferral_younger_than_its_settling_time_asks_apixo_to_call_again(airflow: Airflow) -> None:
    airflow.ti = deferred_on(TRIGGERS["today"])
    assert airflow.ti.trigger is not None
    airflow.ti.trigger.created_date = datetime.now(UTC)

    assert call() == (503, "not ready: call again")
    assert airflow.events == []


@pytest.mark.parametrize(
    "ti",
    [
        None,  # no such task instance
        StoredTaskInstance(state="success", next_method=None),  # over: APIXO's retry came late
        StoredTaskInstance(state="running", next_method="execute_complete"),  # woken already, resumed
        StoredTaskInstance(trigger=None),
        deferred_on("some.other.Trigger"),
    ],
    ids=["unknown", "ended", "resumed", "no-trigger", "another-trigger"],
)
def test_calls_for_nothing_waiting_are_acknowledged_and_wake_nothing(
    airflow: Airflow, ti: StoredTaskInstance | None
) -> None:
    airflow.ti = ti

    assert call() == (200, "ignored")
    assert airflow.events == []


def test_a_valid_token_naming_another_apixo_task_wakes_nothing(airflow: Airflow) -> None:
    airflow.ti = deferred_on(TRIGGERS["today"])

    assert call(task_id="task_other") == (200, "ignored")
    assert airflow.events == []

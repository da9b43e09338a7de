"""Callback mode in a real Airflow: APIXO's webhook wakes the deferred task through the plugin route."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.standalone import wait_until

if TYPE_CHECKING:
    from tests.e2e.standalone import Standalone
    from tests.support import EmulatorAdmin

pytestmark = pytest.mark.e2e

DAG_ID = "e2e_callback"
STATUS_READS = ("GET", "/api/v1/statusTask")


def start(standalone: Standalone, prompt: str, dag_id: str = DAG_ID) -> str:
    standalone.wait_for_dags(dag_id)
    return standalone.trigger(dag_id, prompt=prompt)


def deferred_task(standalone: Standalone, run_id: str, dag_id: str = DAG_ID) -> dict[str, Any]:
    """The generate task instance once it is deferred (its ``id`` is in the callback URL)."""

    def deferred() -> dict[str, Any] | None:
        ti = standalone.task_instance(dag_id, run_id, "generate")
        return ti if ti["state"] == "deferred" else None

    return wait_until("the task to defer", deferred, timeout=60)


def post_callback(standalone: Standalone, ti_id: str, token: str, apixo_task_id: str) -> httpx.Response:
    """What APIXO sends: the status envelope, to the task instance's callback URL."""
    envelope = {"code": 200, "msg": "success", "data": {"taskId": apixo_task_id, "state": "success"}}
    url = f"{standalone.url}/nanobanana/callback/{ti_id}"
    return httpx.post(url, params={"token": token}, json=envelope, timeout=30, trust_env=False)


def deliver(standalone: Standalone, ti_id: str, token: str, apixo_task_id: str) -> httpx.Response:
    """Call back as APIXO does: again after a 503, until answered 200."""

    def answered() -> httpx.Response | None:
        answer = post_callback(standalone, ti_id, token, apixo_task_id)
        return None if answer.status_code == 503 else answer

    answer = wait_until("a callback answered", answered, timeout=20, interval=1)
    assert answer.status_code == 200, answer.text
    return answer


def token_of(task: dict[str, Any]) -> str:
    return parse_qs(urlsplit(task["callback_url"]).query)["token"][0]


def test_the_webhook_wakes_the_task_within_two_seconds_with_one_status_read(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    # A forgery (a wrong token) goes first and wakes nothing; APIXO may deliver twice: the second
    # changes nothing either.
    emulator_admin.fault_callbacks(duplicate=1, forge=1)
    run_id = start(standalone, "a kite [emulator:seconds=10]")  # past the route's 5 s of settling

    assert standalone.wait_for_run(DAG_ID, run_id) == "success"
    wait_until("the duplicate delivered", lambda: len(emulator_admin.callbacks()) == 3, timeout=30)
    calls = [(call["outcome"], call["status_code"]) for call in emulator_admin.callbacks()]
    assert calls == [("forged", 403), ("delivered", 200), ("delivered", 200)]
    result = standalone.xcom(DAG_ID, run_id, "generate")
    ended = datetime.fromisoformat(standalone.task_instance(DAG_ID, run_id, "generate")["end_date"])
    assert ended.timestamp() - result["complete_time"] / 1000 < 2
    assert emulator_admin.request_count(*STATUS_READS) == 1
    assert emulator_admin.submissions() == 1
    (task,) = emulator_admin.tasks()
    assert task["request_type"] == "callback"
    ti = standalone.task_instance(DAG_ID, run_id, "generate")
    assert urlsplit(task["callback_url"]).path == f"/nanobanana/callback/{ti['id']}"


def test_a_forged_call_is_refused_a_true_one_is_verified_and_a_replay_ignored(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    run_id = start(standalone, "a kite [emulator:seconds=30]")
    ti = deferred_task(standalone, run_id)
    (task,) = emulator_admin.tasks()

    forged = post_callback(standalone, ti["id"], "a-guess", task["id"])
    assert forged.status_code == 403
    assert standalone.task_instance(DAG_ID, run_id, "generate")["state"] == "deferred"
    assert emulator_admin.request_count(*STATUS_READS) == 0

    # The right token before APIXO is done (a payload that lies): the task wakes, reads, waits again.
    early = deliver(standalone, ti["id"], token_of(task), task["id"])
    assert early.json() == {"detail": "woken"}
    try:
        wait_until("the status read", lambda: emulator_admin.request_count(*STATUS_READS) == 1, 30)
    except TimeoutError:
        raise AssertionError(
            f"{standalone.task_instance(DAG_ID, run_id, 'generate')}\n"
            f"{standalone.task_log(DAG_ID, run_id, 'generate')}\n{standalone.log_tail(60)}"
        ) from None
    deferred_task(standalone, run_id)

    assert standalone.wait_for_run(DAG_ID, run_id) == "success"
    reads = emulator_admin.request_count(*STATUS_READS)
    replay = post_callback(standalone, ti["id"], token_of(task), task["id"])
    assert replay.status_code == 200
    assert standalone.task_instance(DAG_ID, run_id, "generate")["state"] == "success"
    assert emulator_admin.request_count(*STATUS_READS) == reads  # nothing read for the replay
    assert emulator_admin.submissions() == 1


def test_a_webhook_before_the_task_defers_is_answered_503_and_apixos_retry_wakes_it(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    """The task ends while the worker still waits for the submission's answer: the webhook is early."""
    emulator_admin.configure(
        generation_seconds=0, pending_seconds=0, latency_seconds=1.5, callback_retry_delays=[2, 4, 8]
    )

    run_id = start(standalone, "a kite")

    state = standalone.wait_for_run(DAG_ID, run_id)
    calls = emulator_admin.callbacks()
    assert state == "success", f"{calls}\n{standalone.task_log(DAG_ID, run_id, 'generate')}"
    attempts = [(call["attempt"], call["status_code"]) for call in calls]
    assert attempts[0] == (1, 503)
    assert attempts[-1][1] == 200


def test_lost_webhooks_are_made_up_for_by_the_polling_net(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_callbacks(drop=1)

    run_id = start(standalone, "a kite [emulator:seconds=2]", dag_id="e2e_callback_net")

    assert standalone.wait_for_run("e2e_callback_net", run_id) == "success"
    assert [call["outcome"] for call in emulator_admin.callbacks()] == ["dropped"]
    assert emulator_admin.request_count(*STATUS_READS) >= 1


def test_the_webhook_token_is_in_no_file_airflow_wrote(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    """Only its hash is kept (in the trigger's kwargs, deleted with the trigger); the api-server's access
    log masks the ``token`` parameter."""
    run_id = start(standalone, "a kite [emulator:seconds=2]")
    state = standalone.wait_for_run(DAG_ID, run_id)
    calls = emulator_admin.callbacks()
    assert state == "success", f"{calls}\n{standalone.task_log(DAG_ID, run_id, 'generate')}"
    (task,) = emulator_admin.tasks()
    token = token_of(task).encode()

    written = [path for path in standalone.home.rglob("*") if path.is_file()]
    assert any(path.name == "airflow.db" for path in written)
    assert [path for path in written if token in path.read_bytes()] == []
    unknown = "01900000-0000-7000-8000-000000000000"
    assert post_callback(standalone, unknown, "any", task["id"]).status_code == 200


@pytest.mark.parametrize("dag_id", ["e2e_upgraded", "e2e_upgraded_callback"])
def test_a_task_deferred_on_the_triggers_old_name_still_ends(
    standalone: Standalone, emulator_admin: EmulatorAdmin, dag_id: str
) -> None:
    """A provider upgrade while tasks wait: the triggerer re-creates the old trigger from its stored
    classpath and kwargs, and in callback mode the route still wakes the task waiting on it."""
    run_id = start(standalone, "a kite [emulator:seconds=6]", dag_id=dag_id)

    state = standalone.wait_for_run(dag_id, run_id)

    assert state == "success", standalone.task_log(dag_id, run_id, "generate")
    assert emulator_admin.submissions() == 1
    if dag_id == "e2e_upgraded_callback":  # only the webhook can end it in time
        assert [call["status_code"] for call in emulator_admin.callbacks()][-1] == 200

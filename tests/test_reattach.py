"""Reattach on retry: a paid-for APIXO task is waited for again, never submitted twice.

Unit tests drive the operator with a dictionary standing in for ``task_state_store``; the DAG tests
run real retries with ``dag.test()``, where the store is Airflow's own. Clearing is tested under
``airflow standalone`` (tests/e2e): ``dag.test()`` deletes and re-creates a run instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from airflow.models.taskinstance import TaskInstance
from airflow.models.variable import Variable
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.utils.session import create_session
from sqlalchemy import select

from airflow_provider_nanobanana.compat import AIRFLOW_V_3_3_PLUS, AirflowFailException, TaskDeferred
from airflow_provider_nanobanana.exceptions import (
    ApixoTaskFailedError,
    ApixoTaskRejectedError,
    ApixoWaitError,
)
from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from airflow_provider_nanobanana.reattach import RECORD_KEY, RECORD_RETENTION
from airflow_provider_nanobanana.state_store import VARIABLE_PREFIX
from tests.dags import provider_dags
from tests.support import FakeStore, FakeTaskInstance, ended, run

if TYPE_CHECKING:
    from airflow.sdk import DAG
    from airflow.triggers.base import BaseTrigger

    from tests.support import EmulatorAdmin

LONG = "[emulator:seconds=30]"


class BrokenStore(FakeStore):
    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        raise RuntimeError("state store unavailable")


def context(store: FakeStore) -> Any:
    return {"ti": FakeTaskInstance(), "task_state_store": store}


def operator(**kwargs: Any) -> NanoBananaGenerateOperator:
    options = {"prompt": "a lighthouse", "initial_delay": 0.1, "poll_interval": 0.1, "timeout": 20, **kwargs}
    return NanoBananaGenerateOperator(task_id="generate", **options)


def recorded(task_id: str) -> FakeStore:
    """The store as an earlier try left it after submitting ``task_id``."""
    submission = {"task_id": task_id, "model": "nano-banana", "submitted_at": time.time(), "request": "r"}
    return FakeStore(**{RECORD_KEY: submission})


# --- one try ----------------------------------------------------------------------------------------


def test_submission_is_recorded_before_the_wait(emulator_admin: EmulatorAdmin) -> None:
    store = FakeStore()
    ctx = context(store)

    with pytest.raises(TaskDeferred):
        operator().execute(ctx)

    (task,) = emulator_admin.tasks()
    assert store.values[RECORD_KEY]["task_id"] == task["id"] == ctx["ti"].xcom["apixo_task_id"]
    assert store.values[RECORD_KEY]["model"] == "nano-banana"
    assert time.time() - store.values[RECORD_KEY]["submitted_at"] < 10
    assert store.retention[RECORD_KEY] == RECORD_RETENTION


async def first_event(trigger: BaseTrigger) -> Any:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


def finish(op: NanoBananaGenerateOperator, store: FakeStore, ti: FakeTaskInstance | None = None) -> Any:
    """One try to its end: blocking, or deferred, its trigger run, and resumed with the event."""
    ctx = {"ti": ti or FakeTaskInstance(), "task_state_store": store}
    try:
        return op.execute(ctx)
    except TaskDeferred as deferred:
        event = asyncio.run(first_event(deferred.trigger))
        return op.resume_execution(deferred.method_name, {"event": event}, ctx)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "blocking"])
def test_success_marks_the_record_delivered_so_a_clear_submits_anew(
    deferrable: bool, emulator_admin: EmulatorAdmin
) -> None:
    store = FakeStore()
    op = operator(deferrable=deferrable)

    assert finish(op, store)["state"] == "success"
    assert store.values[RECORD_KEY]["delivered_max_tries"] == 0
    cleared = FakeTaskInstance(try_number=2, max_tries=1)  # a clear raises max_tries by the tries made
    assert finish(op, store, cleared)["reattached"] is False
    assert emulator_admin.submissions() == 2


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "blocking"])
def test_a_retry_after_a_success_airflow_did_not_record_delivers_it_again(
    deferrable: bool, emulator_admin: EmulatorAdmin
) -> None:
    """Airflow failed try 1 on missed heartbeats while it still ran; it delivered, then try 2 started."""
    store = FakeStore()
    op = operator(deferrable=deferrable, retries=2)
    first = finish(op, store, FakeTaskInstance(max_tries=2))

    retry = finish(op, store, FakeTaskInstance(try_number=2, max_tries=2))

    assert (retry["apixo_task_id"], retry["reattached"]) == (first["apixo_task_id"], True)
    assert emulator_admin.submissions() == 1
    assert store.delivered()


def test_no_wait_marks_the_record_delivered_once_the_id_is_returned(emulator_admin: EmulatorAdmin) -> None:
    store = FakeStore()

    task_id = operator(wait_for_completion=False).execute(context(store))

    assert task_id == emulator_admin.tasks()[0]["id"]
    assert store.delivered()


# --- the next try -----------------------------------------------------------------------------------


def first_try(**kwargs: Any) -> tuple[FakeStore, str]:
    """An earlier try that submitted and deferred, then was lost: its store and its APIXO task id."""
    store = FakeStore()
    with pytest.raises(TaskDeferred) as deferred:
        operator(**kwargs).execute(context(store))
    return store, deferred.value.trigger.apixo_task_id


def test_retry_reattaches_to_a_running_task_in_the_triggerer(emulator_admin: EmulatorAdmin) -> None:
    store, task_id = first_try(prompt=LONG)
    ctx = context(store)

    with pytest.raises(TaskDeferred) as deferred:
        operator(prompt=LONG).execute(ctx)

    assert deferred.value.trigger.apixo_task_id == task_id
    assert deferred.value.trigger.reattached is True  # its event, then its result, will say so
    assert ctx["ti"].xcom["apixo_task_id"] == task_id
    assert emulator_admin.submissions() == 1


def test_retry_resumed_with_an_earlier_trys_event_starts_over(emulator_admin: EmulatorAdmin) -> None:
    """Airflow 3.0 resumes the next try of a failed deferred task with the earlier try's event: a
    failure that try saw must not fail this one without a new generation."""
    emulator_admin.fail_next_tasks("GENERATION_FAILED")
    store = FakeStore()
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context(store))
    failure = asyncio.run(first_event(deferred.value.trigger))
    with pytest.raises(ApixoTaskFailedError):
        operator().resume_execution("execute_complete", {"event": failure}, context(store))
    retry = {"ti": FakeTaskInstance(try_number=2), "task_state_store": store}

    with pytest.raises(TaskDeferred) as again:
        operator().resume_execution("execute_complete", {"event": failure}, retry)

    assert failure["deferring_try"] == 1 and again.value.trigger.deferring_try == 2
    assert emulator_admin.submissions() == 2


def test_retry_reattaches_to_a_running_task_blocking(emulator_admin: EmulatorAdmin) -> None:
    prompt = "a lighthouse [emulator:seconds=3]"
    store, task_id = first_try(prompt=prompt)

    result = operator(prompt=prompt, deferrable=False).execute(context(store))

    assert result["apixo_task_id"] == task_id and result["state"] == "success"
    assert result["reattached"] is True
    assert emulator_admin.request_count("GET", "/api/v1/statusTask") >= 2  # it waited, then read success
    assert emulator_admin.submissions() == 1
    assert store.delivered()


def test_retry_returns_a_task_that_succeeded_meanwhile_without_waiting(emulator_admin: EmulatorAdmin) -> None:
    store, task_id = first_try()
    ended(emulator_admin, task_id)

    result = operator().execute(context(store))  # deferrable, yet no TaskDeferred: nothing to wait for

    assert result["apixo_task_id"] == task_id and result["result_urls"]
    assert result["reattached"] is True
    assert emulator_admin.submissions() == 1
    assert store.delivered()


def test_retry_after_an_input_caused_failure_fails_for_good(emulator_admin: EmulatorAdmin) -> None:
    prompt = "a cat [emulator:fail=NSFW_DETECTED]"
    store, task_id = first_try(prompt=prompt)
    ended(emulator_admin, task_id)

    with pytest.raises(ApixoTaskRejectedError, match="NSFW_DETECTED"):
        operator(prompt=prompt).execute(context(store))

    assert emulator_admin.submissions() == 1
    assert RECORD_KEY not in store.values


def test_retry_after_a_transient_failure_submits_a_new_task(emulator_admin: EmulatorAdmin) -> None:
    prompt = "a cat [emulator:fail=GENERATION_FAILED]"
    store, task_id = first_try(prompt=prompt)
    ended(emulator_admin, task_id)

    with pytest.raises(TaskDeferred) as deferred:
        operator(prompt=prompt).execute(context(store))

    assert deferred.value.trigger.apixo_task_id == store.values[RECORD_KEY]["task_id"] != task_id
    assert emulator_admin.submissions() == 2


@pytest.mark.parametrize(
    ("age", "reattached"), [(0, True), (3600, False)], ids=["just submitted", "an hour old"]
)
def test_a_task_apixo_does_not_know_is_waited_for_only_while_it_may_not_be_visible_yet(
    age: float, reattached: bool, emulator_admin: EmulatorAdmin
) -> None:
    store, _ = first_try()
    store.values[RECORD_KEY] |= {"task_id": "task_unknown", "submitted_at": time.time() - age}

    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context(store))

    assert (deferred.value.trigger.apixo_task_id == "task_unknown") is reattached
    assert emulator_admin.submissions() == (1 if reattached else 2)


def test_a_changed_request_is_submitted_anew(emulator_admin: EmulatorAdmin) -> None:
    """A user who fixes the prompt and clears a task that ran out of time wants the new prompt."""
    store, task_id = first_try(prompt=f"a lighthouse {LONG}")

    with pytest.raises(TaskDeferred) as deferred:
        operator(prompt=f"a harbour {LONG}").execute(context(store))

    new_id = deferred.value.trigger.apixo_task_id
    assert new_id != task_id and store.values[RECORD_KEY]["task_id"] == new_id
    assert emulator_admin.tasks()[1]["input"]["prompt"] == f"a harbour {LONG}"


def test_reattach_off_submits_on_every_try_and_records_nothing(emulator_admin: EmulatorAdmin) -> None:
    store, task_id = first_try(prompt=LONG)

    with pytest.raises(TaskDeferred) as deferred:
        operator(prompt=LONG, reattach=False).execute(context(store))

    assert deferred.value.trigger.apixo_task_id != task_id
    assert store.values[RECORD_KEY]["task_id"] == task_id  # untouched
    assert emulator_admin.submissions() == 2


# --- a wait that ends without an outcome ------------------------------------------------------------


def wait_without_outcome(status: str) -> tuple[str, dict[str, Any]]:
    if status == "lost trigger":
        return TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}
    event = {
        "status": status,
        "apixo_task_id": "task_1",
        "model": "nano-banana",
        "message": "m",
        "task": None,
    }
    return "execute_complete", {"event": event}


@pytest.mark.parametrize("status", ["timeout", "error", "lost trigger"])
def test_wait_without_outcome_is_retryable_while_the_record_holds_the_task(status: str) -> None:
    store = recorded("task_1")
    ctx = context(store)
    ctx["ti"].xcom_push("apixo_task_id", "task_1")

    with pytest.raises(ApixoWaitError, match="waits for that same APIXO task") as raised:
        operator().resume_execution(*wait_without_outcome(status), ctx)

    assert not isinstance(raised.value, AirflowFailException)
    assert store.values[RECORD_KEY]["task_id"] == "task_1"


def test_a_transient_failure_event_drops_the_record_so_the_retry_submits_anew() -> None:
    store = recorded("task_1")
    ctx = context(store)
    ctx["ti"].xcom_push("apixo_task_id", "task_1")
    task = {
        "apixo_task_id": "task_1",
        "state": "failed",
        "result_urls": [],
        "create_time": 1,
        "complete_time": 2,
        "cost_time": 1,
        "fail_code": "GENERATION_FAILED",
        "fail_message": "busy",
    }
    event = {
        "status": "failed",
        "apixo_task_id": "task_1",
        "model": "nano-banana",
        "message": "m",
        "task": task,
    }

    with pytest.raises(ApixoTaskFailedError) as raised:
        operator().resume_execution("execute_complete", {"event": event}, ctx)

    assert not isinstance(raised.value, AirflowFailException)
    assert RECORD_KEY not in store.values


@pytest.mark.parametrize("store", [None, BrokenStore()], ids=["no store", "store down"])
@pytest.mark.usefixtures("emulator")
def test_without_a_record_a_wait_without_outcome_fails_for_good(
    store: FakeStore | None, emulator_admin: EmulatorAdmin
) -> None:
    ctx = {"ti": FakeTaskInstance(), "task_state_store": store}
    op = operator(deferrable=False, prompt=f"a lighthouse {LONG}", timeout=1)

    with pytest.raises(AirflowFailException, match=r"Not retried, so the image is not paid for twice"):
        op.execute(ctx)

    assert emulator_admin.submissions() == 1


# --- real retries and clears ------------------------------------------------------------------------


def last_try_number(dag_id: str) -> int:
    with create_session() as session:
        latest = select(TaskInstance.try_number).where(TaskInstance.dag_id == dag_id)
        return int(session.scalars(latest.order_by(TaskInstance.start_date.desc())).first() or 0)


@pytest.mark.dag
@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize(
    ("dag", "prompt"),
    [
        # Deferred: the first try's 3 s wait runs out; the task finishes at 5 s.
        (provider_dags.generate_retrying, "a kite [emulator:seconds=5]"),
        # Blocking: execution_timeout (4 s) kills the first try's wait; the task finishes at 6 s.
        (provider_dags.generate_blocking_timeout, "a kite [emulator:seconds=6]"),
    ],
    ids=["deadline", "execution_timeout"],
)
def test_retry_after_a_wait_without_outcome_waits_for_the_same_task(
    dag: DAG, prompt: str, emulator_admin: EmulatorAdmin
) -> None:
    state, xcoms = run(dag, prompt=prompt)

    assert state == "success"
    assert last_try_number(dag.dag_id) == 2
    (task,) = emulator_admin.tasks()
    result = xcoms[("generate", "return_value")]
    assert result["apixo_task_id"] == task["id"]
    assert (result["try_number"], result["reattached"]) == (2, True)  # one generation, paid by try 1
    assert emulator_admin.submissions() == 1


def records_of(dag_id: str, apixo_task_id: str) -> list[dict[str, Any]]:
    """The DAG's records of one APIXO task in Airflow's database: 3.3's store, else the stand-in's
    Variables (other tests' runs of the DAG leave theirs)."""
    with create_session() as session:
        if AIRFLOW_V_3_3_PLUS:
            from airflow.models.task_state_store import TaskStateStoreModel as Row

            query = select(Row.value).where(Row.dag_id == dag_id, Row.key == RECORD_KEY)
            records = [json.loads(value) for value in session.scalars(query)]
        else:
            variables = session.scalars(select(Variable).where(Variable.key.like(f"{VARIABLE_PREFIX}%")))
            stored = [json.loads(variable.val) for variable in variables]
            records = [entry["value"] for entry in stored if entry["task_instance"][0] == dag_id]
    return [record for record in records if record["task_id"] == apixo_task_id]


@pytest.mark.dag
@pytest.mark.usefixtures("airflow_db")
def test_a_success_leaves_a_delivered_record_in_airflows_store_and_no_variable(
    emulator_admin: EmulatorAdmin,
) -> None:
    """3.3 keeps the record, marked delivered, for the retry of a try whose success Airflow missed;
    the stand-in deletes its Variable, which would otherwise pile up in the UI."""
    state, xcoms = run(provider_dags.generate_blocking, prompt="a kite")

    assert state == "success"
    records = records_of("test_generate_blocking", xcoms[("generate", "return_value")]["apixo_task_id"])
    if AIRFLOW_V_3_3_PLUS:
        assert [record["delivered_max_tries"] for record in records] == [0]
    else:
        assert records == []


@pytest.mark.usefixtures("emulator")
async def test_the_same_trigger_running_twice_only_reads_and_both_agree(
    emulator_admin: EmulatorAdmin,
) -> None:
    """A trigger re-created from its kwargs while the first still runs: both read, both agree, no POST."""
    with pytest.raises(TaskDeferred) as deferred:
        operator(initial_delay=0.2, poll_interval=0.2).execute(context(FakeStore()))
    _, kwargs = deferred.value.trigger.serialize()
    twins = [type(deferred.value.trigger)(**kwargs) for _ in range(2)]

    first, second = await asyncio.gather(*(first_event(trigger) for trigger in twins))

    assert first["status"] == second["status"] == "success"
    assert first["task"]["result_urls"] == second["task"]["result_urls"]
    assert emulator_admin.submissions() == 1

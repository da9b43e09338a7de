"""The operator and the sensor inside a real Airflow: ``dag.test()`` on SQLite, emulator over loopback.

With ``deferrable=True`` the trigger is serialised, rebuilt and run to its event by Airflow itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

from tests.dags import provider_dags
from tests.support import run

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_provider_nanobanana.emulator import EmulatorServer

pytestmark = [pytest.mark.dag, pytest.mark.usefixtures("airflow_db")]


def assert_generated(result: dict[str, Any], emulator: EmulatorServer, suffix: str = ".png") -> None:
    assert result["state"] == "success"
    assert result["apixo_task_id"] == emulator.emulator.tasks[0].task_id
    assert len(result["result_urls"]) == 1 and result["result_urls"][0].endswith(suffix)
    assert result["complete_time"] >= result["create_time"] > 0
    assert set(result) == {
        "apixo_task_id",
        "state",
        "result_urls",
        "create_time",
        "complete_time",
        "cost_time",
    }


@pytest.mark.parametrize(
    ("dag", "deferred"),
    [(provider_dags.generate_deferrable, True), (provider_dags.generate_blocking, False)],
    ids=["deferred", "blocking"],
)
def test_generate_waits_for_the_images(
    dag: DAG, deferred: bool, emulator: EmulatorServer, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.emulator.settings.generation_seconds = 2.0  # room for reads while it runs, even when slow
    state, xcoms = run(dag, prompt="a red kite over dunes", output_format="jpeg")

    assert state == "success"
    assert ("Pausing task as DEFERRED" in capfd.readouterr().out) is deferred
    assert_generated(xcoms[("generate", "return_value")], emulator, suffix=".jpeg")
    assert xcoms[("generate", "apixo_task_id")] == emulator.emulator.tasks[0].task_id
    assert emulator.emulator.submissions() == 1
    assert emulator.emulator.tasks[0].input["prompt"] == "a red kite over dunes"
    status_reads = emulator.emulator.request_count("GET", "/api/v1/statusTask/nano-banana")
    # Blocking, it polls through pending/processing to success. Deferred, the cadence counts from
    # the submission: a trigger that dag.test() starts late may find the task done at its first read.
    assert status_reads >= (1 if deferred else 2)


def test_generate_without_waiting_returns_the_task_id(emulator: EmulatorServer) -> None:
    state, xcoms = run(provider_dags.generate_no_wait)

    assert state == "success"
    task_id = emulator.emulator.tasks[0].task_id
    assert xcoms[("generate", "return_value")] == task_id
    assert xcoms[("generate", "apixo_task_id")] == task_id
    assert emulator.emulator.request_count("GET") == 0


@pytest.mark.parametrize(
    "dag",
    [provider_dags.sensor_deferrable, provider_dags.sensor_poke, provider_dags.sensor_reschedule],
    ids=["deferred", "poke", "reschedule"],
)
def test_sensor_waits_for_a_task_submitted_upstream(dag: DAG, emulator: EmulatorServer) -> None:
    state, xcoms = run(dag)

    assert state == "success"
    assert_generated(xcoms[("wait", "return_value")], emulator)
    assert emulator.emulator.submissions() == 1
    assert emulator.emulator.request_count("GET") >= 2  # it saw the task running before it finished


def test_transient_failure_is_retried_with_a_new_task(emulator: EmulatorServer) -> None:
    emulator.emulator.fail_next_tasks("GENERATION_FAILED")

    state, xcoms = run(provider_dags.generate_retrying)

    assert state == "success"
    failed, succeeded = emulator.emulator.tasks
    assert emulator.emulator.state_of(failed.task_id) == "failed"
    assert xcoms[("generate", "return_value")]["apixo_task_id"] == succeeded.task_id


@pytest.mark.parametrize(
    "prompt",
    ["a cat [emulator:fail=NSFW_DETECTED]", "a slow cat [emulator:seconds=30]"],
    ids=["input-caused failure", "timeout after paying"],
)
def test_paid_or_hopeless_task_is_paid_for_once(prompt: str, emulator: EmulatorServer) -> None:
    state, xcoms = run(provider_dags.generate_retrying, prompt=prompt)

    assert state == "failed"
    # Not retried (input-caused), or retried by waiting for the same task again (timeout).
    assert emulator.emulator.submissions() == 1
    assert ("generate", "return_value") not in xcoms
    assert xcoms[("generate", "apixo_task_id")] == emulator.emulator.tasks[0].task_id


def test_bad_input_fails_before_any_request(emulator: EmulatorServer) -> None:
    state, _ = run(provider_dags.generate_blocking, output_format="gif")

    assert state == "failed"
    assert emulator.emulator.requests == []


def test_mapped_batch_generates_one_task_per_prompt(emulator: EmulatorServer) -> None:
    dag_run = provider_dags.generate_mapped.test()

    assert dag_run.state == "success"
    assert sorted(task.prompt for task in emulator.emulator.tasks) == [
        "a blue kite",
        "a green kite",
        "a red kite",
    ]
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id="test_generate_mapped", run_id=dag_run.run_id).all()
    results = [row.value for row in rows if row.key == "return_value"]
    assert sorted(result["apixo_task_id"] for result in results) == sorted(
        t.task_id for t in emulator.emulator.tasks
    )

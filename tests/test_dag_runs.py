"""The operator and the sensor inside a real Airflow: ``dag.test()`` on SQLite, emulator over loopback.

With ``deferrable=True`` the trigger is serialised, rebuilt and run to its event by Airflow itself.
The emulator is steered and read through its admin endpoints, as under ``airflow standalone``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

from tests.dags import provider_dags
from tests.support import RESCHEDULES_IN_DAG_TEST, EmulatorAdmin, run

if TYPE_CHECKING:
    from airflow.sdk import DAG

pytestmark = [pytest.mark.dag, pytest.mark.usefixtures("airflow_db")]
STATUS_READS = "/api/v1/statusTask/nano-banana"
# Long enough to be read while it runs, however late a slow machine starts the waiting task.
SLOW = "[emulator:seconds=3]"


def deferred_in(output: str) -> bool:
    return "Pausing task as DEFERRED" in output


def assert_generated(result: dict[str, Any], admin: EmulatorAdmin, suffix: str = ".png") -> None:
    assert result["state"] == "success"
    assert result["apixo_task_id"] == admin.tasks()[0]["id"]
    assert len(result["result_urls"]) == 1 and result["result_urls"][0].endswith(suffix)
    assert result["complete_time"] >= result["create_time"] > 0
    assert set(result) - {"try_number", "reattached"} == {  # those two: the operator's, not the sensor's
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
    dag: DAG, deferred: bool, emulator_admin: EmulatorAdmin, capfd: pytest.CaptureFixture[str]
) -> None:
    prompt = f"a red kite over dunes {SLOW}"
    state, xcoms = run(dag, prompt=prompt, output_format="jpeg")

    assert state == "success"
    assert deferred_in(capfd.readouterr().out) is deferred
    result = xcoms[("generate", "return_value")]
    assert_generated(result, emulator_admin, suffix=".jpeg")
    assert (result["try_number"], result["reattached"]) == (1, False)
    [task] = emulator_admin.tasks()
    assert xcoms[("generate", "apixo_task_id")] == task["id"]
    assert task["input"]["prompt"] == prompt
    status_reads = emulator_admin.request_count("GET", STATUS_READS)
    # Blocking, it polls through pending/processing to success. Deferred, the cadence counts from
    # the submission: a trigger that dag.test() starts late may find the task done at its first read.
    assert status_reads >= (1 if deferred else 2)


def test_generate_without_waiting_returns_the_task_id(emulator_admin: EmulatorAdmin) -> None:
    state, xcoms = run(provider_dags.generate_no_wait)

    assert state == "success"
    [task] = emulator_admin.tasks()
    assert xcoms[("generate", "return_value")] == task["id"]
    assert xcoms[("generate", "apixo_task_id")] == task["id"]
    assert emulator_admin.request_count("GET") == 0


@pytest.mark.parametrize(
    ("dag", "deferred"),
    [
        (provider_dags.sensor_deferrable, True),
        (provider_dags.sensor_poke, False),
        pytest.param(provider_dags.sensor_reschedule, False, marks=RESCHEDULES_IN_DAG_TEST),
    ],
    ids=["deferred", "poke", "reschedule"],
)
def test_sensor_waits_for_a_task_submitted_upstream(
    dag: DAG, deferred: bool, emulator_admin: EmulatorAdmin, capfd: pytest.CaptureFixture[str]
) -> None:
    # Longer than SLOW: the sensor starts only after the submitting task has ended, later on older
    # Airflows, and later still when make test runs four versions' suites at once on two cores.
    state, xcoms = run(dag, prompt="a lighthouse [emulator:seconds=20]")

    assert state == "success"
    assert deferred_in(capfd.readouterr().out) is deferred
    assert_generated(xcoms[("wait", "return_value")], emulator_admin)
    assert emulator_admin.submissions() == 1
    assert emulator_admin.request_count("GET", STATUS_READS) >= 2  # it saw the task running, then done


def test_transient_failure_is_retried_with_a_new_task(emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.fail_next_tasks("GENERATION_FAILED")

    state, xcoms = run(provider_dags.generate_retrying)

    assert state == "success"
    failed, succeeded = emulator_admin.tasks()
    assert failed["state"] == "failed"
    assert xcoms[("generate", "return_value")]["apixo_task_id"] == succeeded["id"]


@pytest.mark.parametrize(
    "prompt",
    ["a cat [emulator:fail=NSFW_DETECTED]", "a slow cat [emulator:seconds=30]"],
    ids=["input-caused failure", "timeout after paying"],
)
def test_paid_or_hopeless_task_is_paid_for_once(prompt: str, emulator_admin: EmulatorAdmin) -> None:
    state, xcoms = run(provider_dags.generate_retrying, prompt=prompt)

    assert state == "failed"
    # Not retried (input-caused), or retried by waiting for the same task again (timeout).
    [task] = emulator_admin.tasks()
    assert ("generate", "return_value") not in xcoms
    assert xcoms[("generate", "apixo_task_id")] == task["id"]


def test_each_mapped_retry_reattaches_to_its_own_task(emulator_admin: EmulatorAdmin) -> None:
    state, _ = run(provider_dags.generate_mapped_retrying)

    assert state == "success"
    assert emulator_admin.submissions() == 2  # one per map index, not one per try
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id="test_generate_mapped_retrying", key="return_value")
        results = {row.map_index: row.value["apixo_task_id"] for row in rows}
    ids = {task["input"]["prompt"]: task["id"] for task in emulator_admin.tasks()}
    assert results == {0: ids["a red kite [emulator:seconds=5]"], 1: ids["a blue kite [emulator:seconds=5]"]}


def test_bad_input_fails_before_any_request(emulator_admin: EmulatorAdmin) -> None:
    state, _ = run(provider_dags.generate_blocking, output_format="gif")

    assert state == "failed"
    assert emulator_admin.requests() == []


def test_mapped_batch_generates_one_task_per_prompt(emulator_admin: EmulatorAdmin) -> None:
    dag_run = provider_dags.generate_mapped.test()

    assert dag_run.state == "success"
    tasks = emulator_admin.tasks()
    assert sorted(task["input"]["prompt"] for task in tasks) == ["a blue kite", "a green kite", "a red kite"]
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id="test_generate_mapped", run_id=dag_run.run_id).all()
    results = [row.value for row in rows if row.key == "return_value"]
    assert sorted(result["apixo_task_id"] for result in results) == sorted(task["id"] for task in tasks)

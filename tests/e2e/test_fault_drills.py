"""Fault drills in a real Airflow: processes killed, paused and duplicated; one payment, one outcome."""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from airflow_provider_nanobanana.compat import AIRFLOW_V_3_1_PLUS
from tests.e2e.standalone import wait_until

if TYPE_CHECKING:
    from tests.e2e.standalone import Standalone
    from tests.support import EmulatorAdmin

pytestmark = pytest.mark.e2e


def assert_delivered_once(
    standalone: Standalone, emulator_admin: EmulatorAdmin, dag_id: str, run_id: str
) -> None:
    """The run succeeded with the one APIXO task that was paid for."""
    assert standalone.wait_for_run(dag_id, run_id) == "success"
    (task,) = emulator_admin.tasks()
    assert standalone.xcom(dag_id, run_id, "generate")["apixo_task_id"] == task["id"]
    assert emulator_admin.submissions() == 1


def family(process: psutil.Process) -> list[psutil.Process]:
    return [process, *process.children(recursive=True)]


def deferred_on_a_triggerer(standalone: Standalone) -> tuple[str, dict[str, Any]]:
    """A run of ``e2e_deferred`` whose 15 s task a triggerer waits for: the run id, the triggerer's job."""
    standalone.wait_for_dags("e2e_deferred")
    run_id = standalone.trigger("e2e_deferred", prompt="a kite [emulator:seconds=15]")
    return run_id, standalone.wait_for_trigger_assigned("e2e_deferred", run_id, "generate")


def test_worker_killed_after_submitting_reattaches_on_retry(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    """Blocking: SIGKILL the task's process once the task id is out; the retry waits for that task.

    Airflow 3.0 does not retry a task whose process was killed (3.1 does): the run fails, nothing
    more is paid, and clearing the task waits for the task paid for.
    """
    standalone.wait_for_dags("e2e_blocking")
    run_id = standalone.trigger("e2e_blocking", prompt="a kite [emulator:seconds=12]")
    ti = standalone.task_instance("e2e_blocking", run_id, "generate")

    def task_id_out() -> Any:
        return standalone.xcom_or_none("e2e_blocking", run_id, "generate", "apixo_task_id")

    # XCom gets the id right after the record does: from then on a crash must not cost a second task.
    wait_until("the task id in XCom", task_id_out, timeout=120)
    process = wait_until("the task's process", lambda: standalone.task_process(ti["id"]), timeout=30)

    process.send_signal(signal.SIGKILL)

    if not AIRFLOW_V_3_1_PLUS:
        # Airflow 3.0 fails a task whose process died, retries left or not: a user's clear is the retry.
        assert standalone.wait_for_run("e2e_blocking", run_id) == "failed"
        assert emulator_admin.submissions() == 1
        standalone.clear("e2e_blocking", run_id, "generate")
    assert_delivered_once(standalone, emulator_admin, "e2e_blocking", run_id)
    assert standalone.task_instance("e2e_blocking", run_id, "generate")["try_number"] == 2


def kill_family(process: psutil.Process) -> None:
    """SIGKILL a process and its children at once, as the kernel's OOM killer or a lost node would."""
    for member in family(process):
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


def test_triggerer_killed_while_deferred_a_new_one_finishes_the_wait(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    run_id, _ = deferred_on_a_triggerer(standalone)

    for triggerer in standalone.triggerers():
        kill_family(triggerer)
    standalone.start_triggerer()

    assert_delivered_once(standalone, emulator_admin, "e2e_deferred", run_id)


def test_trigger_running_twice_at_once_gives_one_outcome(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    """A triggerer paused past its heartbeat (a frozen VM) loses its trigger to a new one, then wakes up."""
    run_id, running_on = deferred_on_a_triggerer(standalone)
    frozen = [member for triggerer in standalone.triggerers() for member in family(triggerer)]
    for member in frozen:
        member.suspend()
    try:
        standalone.start_triggerer()

        def moved() -> bool:
            now_on = standalone.task_instance("e2e_deferred", run_id, "generate")["triggerer_job"]
            return now_on is not None and now_on["id"] != running_on["id"]

        wait_until("a second triggerer to take the trigger over", moved, timeout=90)
    finally:
        for member in frozen:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.resume()

    assert_delivered_once(standalone, emulator_admin, "e2e_deferred", run_id)


def test_clear_after_success_generates_a_new_image(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    standalone.wait_for_dags("e2e_deferred")
    run_id = standalone.trigger("e2e_deferred", prompt="a kite")
    assert standalone.wait_for_run("e2e_deferred", run_id) == "success"
    first = standalone.xcom("e2e_deferred", run_id, "generate")["apixo_task_id"]

    standalone.clear("e2e_deferred", run_id, "generate")

    assert standalone.wait_for_run("e2e_deferred", run_id) == "success"
    second = standalone.xcom("e2e_deferred", run_id, "generate")["apixo_task_id"]
    assert [task["id"] for task in emulator_admin.tasks()] == [first, second]


def test_clear_after_a_wait_that_ran_out_delivers_the_task_paid_for(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    """The 4 s wait runs out and the run fails (no retries); the task finishes at 20 s; a clear returns it."""
    standalone.wait_for_dags("e2e_short_wait")
    run_id = standalone.trigger("e2e_short_wait", prompt="a kite [emulator:seconds=20]")
    assert standalone.wait_for_run("e2e_short_wait", run_id) == "failed"
    wait_until(
        "the APIXO task to finish", lambda: emulator_admin.tasks()[0]["state"] == "success", timeout=60
    )

    standalone.clear("e2e_short_wait", run_id, "generate")

    assert_delivered_once(standalone, emulator_admin, "e2e_short_wait", run_id)

"""Fault drills in a real Airflow: processes killed, paused and duplicated; one payment, one outcome."""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from tests.e2e.standalone import wait_until

if TYPE_CHECKING:
    from tests.e2e.standalone import Standalone
    from tests.support import EmulatorAdmin

pytestmark = pytest.mark.e2e


def test_worker_killed_after_submitting_reattaches_on_retry(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    """Blocking: SIGKILL the task's process once the task id is out; the retry waits for that task."""
    standalone.wait_for_dags("e2e_blocking")
    run_id = standalone.trigger("e2e_blocking", prompt="a kite [emulator:seconds=12]")
    ti = standalone.task_instance("e2e_blocking", run_id, "generate")

    def task_id_out() -> Any:
        return standalone.xcom_or_none("e2e_blocking", run_id, "generate", "apixo_task_id")

    # XCom gets the id right after the record does: from then on a crash must not cost a second task.
    wait_until("the task id in XCom", task_id_out, timeout=120)
    process = wait_until("the task's process", lambda: standalone.task_process(ti["id"]), timeout=30)

    process.send_signal(signal.SIGKILL)

    assert standalone.wait_for_run("e2e_blocking", run_id) == "success"
    (task,) = emulator_admin.tasks()
    assert standalone.xcom("e2e_blocking", run_id, "generate")["apixo_task_id"] == task["id"]
    assert standalone.task_instance("e2e_blocking", run_id, "generate")["try_number"] == 2
    assert emulator_admin.submissions() == 1


def kill_family(process: psutil.Process) -> None:
    """SIGKILL a process and its children at once, as the kernel's OOM killer or a lost node would."""
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


def test_triggerer_killed_while_deferred_a_new_one_finishes_the_wait(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    standalone.wait_for_dags("e2e_deferred")
    run_id = standalone.trigger("e2e_deferred", prompt="a kite [emulator:seconds=15]")
    standalone.wait_for_trigger_assigned("e2e_deferred", run_id, "generate")

    for triggerer in standalone.triggerers():
        kill_family(triggerer)
    standalone.start_triggerer()

    assert standalone.wait_for_run("e2e_deferred", run_id) == "success"
    (task,) = emulator_admin.tasks()
    assert standalone.xcom("e2e_deferred", run_id, "generate")["apixo_task_id"] == task["id"]
    assert emulator_admin.submissions() == 1


def test_trigger_running_twice_at_once_gives_one_outcome(
    standalone: Standalone, emulator_admin: EmulatorAdmin
) -> None:
    """A triggerer paused past its heartbeat (a frozen VM) loses its trigger to a new one, then wakes up."""
    standalone.wait_for_dags("e2e_deferred")
    run_id = standalone.trigger("e2e_deferred", prompt="a kite [emulator:seconds=15]")
    running_on = standalone.wait_for_trigger_assigned("e2e_deferred", run_id, "generate")
    frozen = [member for t in standalone.triggerers() for member in [t, *t.children(recursive=True)]]
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

    assert standalone.wait_for_run("e2e_deferred", run_id) == "success"
    (task,) = emulator_admin.tasks()
    assert standalone.xcom("e2e_deferred", run_id, "generate")["apixo_task_id"] == task["id"]
    assert emulator_admin.submissions() == 1


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
    (task,) = emulator_admin.tasks()
    wait_until(
        "the APIXO task to finish", lambda: emulator_admin.tasks()[0]["state"] == "success", timeout=60
    )

    standalone.clear("e2e_short_wait", run_id, "generate")

    assert standalone.wait_for_run("e2e_short_wait", run_id) == "success"
    assert standalone.xcom("e2e_short_wait", run_id, "generate")["apixo_task_id"] == task["id"]
    assert emulator_admin.submissions() == 1

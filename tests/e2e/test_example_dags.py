"""Every shipped example DAG succeeds in a real Airflow, scheduler, workers and triggerer apart."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from tests.e2e.standalone import FINISHED_RUN_STATES, wait_until
from tests.support import error_lines

if TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.standalone import Standalone
    from tests.support import EmulatorAdmin, LocalReceiver

pytestmark = pytest.mark.e2e

EXAMPLES = (
    "example_nanobanana_text_to_image",
    "example_nanobanana_image_to_image",
    "example_nanobanana_sensor",
    "example_nanobanana_publish",
    "example_nanobanana_batch",
    "example_nanobanana_taskflow",
    "example_apixo_models",
)
CONSUMER = "example_nanobanana_asset_consumer"


def test_every_example_dag_succeeds(
    standalone: Standalone, emulator_admin: EmulatorAdmin, cms: LocalReceiver
) -> None:
    standalone.wait_for_dags(*EXAMPLES, CONSUMER)
    output_before = standalone.log.stat().st_size
    standalone.unpause(CONSUMER)  # scheduled on the covers the publish example stores
    for dag_id in EXAMPLES:  # all at once, as a scheduler would run them
        standalone.trigger(dag_id)

    states: dict[str, list[str]] = {}
    tasks: dict[str, dict[str, str]] = {}

    def finished() -> bool:
        for dag_id in EXAMPLES:
            runs = standalone.runs(dag_id)
            states[dag_id] = [run["state"] for run in runs]
            tasks.update(
                {run["dag_run_id"]: standalone.task_states(dag_id, run["dag_run_id"]) for run in runs}
            )
        return all(state in FINISHED_RUN_STATES for runs in states.values() for state in runs)

    try:
        wait_until("every example run to finish", finished, timeout=240, interval=2)
    finally:
        trouble = [
            f"{dag_id} {run['dag_run_id']} {task_id}: {state}\n"
            + standalone.task_log(dag_id, run["dag_run_id"], task_id)
            + "\n"
            + standalone.log_lines(task_id)
            for dag_id in EXAMPLES
            for run in standalone.runs(dag_id)
            for task_id, state in tasks.get(run["dag_run_id"], {}).items()
            if state not in ("success", None)
        ]
    assert not trouble, "\n".join(trouble)
    # Unpausing the daily publish example also starts its latest scheduled run.
    publish_runs = len(states["example_nanobanana_publish"])
    assert len(cms.received) == publish_runs
    # One APIXO task per generating task and run, however many tries the runs took: text to image,
    # image to image (2), sensor, publish (3 a run), batch (3), TaskFlow, other models (2).
    assert emulator_admin.submissions() == 1 + 2 + 1 + 3 * publish_runs + 3 + 1 + 2
    assert sorted(task["model"] for task in emulator_admin.tasks() if task["model"] != "nano-banana") == [
        "seedream-4-5",
        "veo-3-1",
    ]
    covers = {cover["stored_path"] for _, _, manifest in cms.received for cover in manifest["covers"]}
    assert len(covers) == 3 * publish_runs
    assert_the_consumer_saw(standalone, covers)
    assert_the_image_link_is_set(standalone)
    assert_no_error_was_logged(standalone, output_before)


def assert_the_consumer_saw(standalone: Standalone, covers: set[str]) -> None:
    """The asset-scheduled DAG ran on the covers' events and read their stored URIs from ``extra``.

    The scheduler folds events that arrive close together into fewer runs, so not every cover
    need start a run of its own: every cover a run reports must be one that was stored.
    """
    seen: set[str] = set()

    def saw_covers() -> bool:
        for run in standalone.runs(CONSUMER):
            if run["state"] == "success":
                seen.update(standalone.xcom(CONSUMER, run["dag_run_id"], "new_covers"))
        return bool(seen)

    with contextlib.suppress(TimeoutError):
        wait_until("the asset consumer to run", saw_covers, timeout=60, interval=2)
    runs = standalone.runs(CONSUMER)
    logs = "\n".join(standalone.task_log(CONSUMER, run["dag_run_id"], "new_covers") for run in runs)
    assert seen and seen <= covers, f"consumer runs: {runs}\n{logs}"


def assert_the_image_link_is_set(standalone: Standalone) -> None:
    """The task page's "Generated image" link, as the UI reads it, opens the image."""
    dag_id = "example_nanobanana_text_to_image"
    (run,) = standalone.runs(dag_id)
    result = standalone.xcom(dag_id, run["dag_run_id"], "generate")
    links = standalone.extra_links(dag_id, run["dag_run_id"], "generate")
    assert links == {"Generated image": result["result_urls"][0]}


def assert_no_error_was_logged(standalone: Standalone, output_before: int) -> None:
    """Successful runs log no error: in the last try's logs of every task (``attempt=N.log`` and its
    triggers' ``attempt=N.log.trigger.*.log``), nor from the provider in what standalone's parts
    printed meanwhile (the api-server runs its plugin, the triggerer its triggers)."""
    logs = [
        log for dag_id in EXAMPLES for log in (standalone.home / "logs" / f"dag_id={dag_id}").rglob("*.log")
    ]
    last_try: dict[Path, int] = {}
    for log in logs:
        last_try[log.parent] = max(last_try.get(log.parent, 0), _try(log))
    last_logs = [log for log in logs if _try(log) == last_try[log.parent]]
    assert last_logs
    logged = {str(log): error_lines(log.read_text(errors="replace")) for log in last_logs}
    assert {log: lines for log, lines in logged.items() if lines} == {}
    # The scheduler's own error lines are Airflow's to fix: under load it logs a deferred task's quick
    # resumption as "state changed externally" (apache/airflow#72716); the runs still succeed.
    printed = standalone.log.read_bytes()[output_before:].decode(errors="replace")
    assert [line for line in error_lines(printed) if "airflow_provider_nanobanana" in line] == []


def _try(log: Path) -> int:
    """The try a log file belongs to: ``attempt=2.log``, ``attempt=2.log.trigger.7.log``."""
    return int(log.name.removeprefix("attempt=").split(".", 1)[0])

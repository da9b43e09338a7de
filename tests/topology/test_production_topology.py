"""The provider where teams outgrow one box: CeleryExecutor on Postgres, two workers, two triggerers.

Driven through the REST API like the e2e tests, with the emulator enforcing a per-minute limit that
the processes' own budgets would overrun many times over unless they share one through Redis.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.standalone import wait_until
from tests.topology.celery import kill_family
from tests.topology.conftest import BUDGET_PER_MINUTE, EMULATOR_REQUESTS_PER_MINUTE

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support import EmulatorAdmin
    from tests.topology.celery import CeleryAirflow

pytestmark = pytest.mark.topology

BATCH = [f"a lighthouse, study {n} [emulator:seconds=10]" for n in range(60)]
"""The mapped batch: 60 deferred generations of 10 s in the ``apixo`` pool."""
BLOCKING = [f"a kite, study {n} [emulator:seconds=20]" for n in range(12)]
"""Polled on the workers through ``apixo_unshared``, long enough to be running when a worker is killed."""
LATE_429_SHARE = 0.15
"""At most this share of ``apixo_unshared``'s requests is answered 429 once a minute has passed."""


def kill_a_worker_running(airflow: CeleryAirflow, dag_id: str, run_id: str) -> dict[str, Any]:
    """Once a task of the run has submitted its APIXO task and still waits, kill its Celery worker."""

    def submitted_and_running() -> dict[str, Any] | None:
        for ti in airflow.task_instances(dag_id, run_id, "generate"):
            if (
                ti["state"] == "running"
                and ti["pid"]
                and airflow.xcom_or_none(dag_id, run_id, "generate", "apixo_task_id", ti["map_index"])
            ):
                return ti
        return None

    ti = wait_until("a blocking task waiting on a worker", submitted_and_running, timeout=120)
    (worker,) = [
        w for w in airflow.celery_workers() if ti["pid"] in {c.pid for c in w.children(recursive=True)}
    ]
    kill_family(worker)
    return ti


def deferred_by_triggerer(airflow: CeleryAirflow, dag_id: str, run_id: str) -> dict[int, list[int]]:
    """Map indexes of the run's deferred tasks, by the id of the triggerer job running their trigger."""
    on: dict[int, list[int]] = {}
    for ti in airflow.task_instances(dag_id, run_id, "generate"):
        if ti["state"] == "deferred" and ti["triggerer_job"]:
            on.setdefault(ti["triggerer_job"]["id"], []).append(ti["map_index"])
    return on


def kill_a_triggerer_running(airflow: CeleryAirflow, dag_id: str, run_id: str) -> tuple[list[int], float]:
    """Once a triggerer runs ten of the batch's triggers, kill it and wait until a live one runs them
    all: the map indexes the killed one ran, and how many seconds the take-over took."""

    def busy() -> tuple[int, list[int]] | None:
        on = deferred_by_triggerer(airflow, dag_id, run_id)
        return next(((job, waiting) for job, waiting in on.items() if len(waiting) >= 10), None)

    try:
        killed, waiting = wait_until("ten of the batch's triggers on one triggerer", busy, timeout=180)
    except TimeoutError:
        states = Counter(ti["state"] for ti in airflow.task_instances(dag_id, run_id, "generate"))
        raise AssertionError(f"{deferred_by_triggerer(airflow, dag_id, run_id)} {states}") from None
    airflow.kill_triggerer(killed)
    killed_at = time.monotonic()
    wait_until(
        "a live triggerer to take the triggers over",
        lambda: killed not in deferred_by_triggerer(airflow, dag_id, run_id),
        timeout=60,
    )
    return waiting, time.monotonic() - killed_at


def test_batch_kills_and_callbacks_on_celery_postgres_and_two_triggerers(
    celery_airflow: CeleryAirflow,
    limited_emulator: EmulatorAdmin,
    unshared_emulator: EmulatorAdmin,
    topology_home: Path,
) -> None:
    airflow = celery_airflow
    airflow.wait_for_dags("example_nanobanana_batch", "topology_blocking", "e2e_callback")
    started = time.monotonic()

    # Callback mode through the api-server while both triggerers are live.
    callback_run = airflow.trigger("e2e_callback", prompt="a kite, called back")
    assert airflow.wait_for_run("e2e_callback", callback_run) == "success"
    (delivery,) = limited_emulator.callbacks()
    assert delivery["url"].startswith(f"{airflow.url}/nanobanana/callback/")
    assert delivery["outcome"] == "delivered"

    # The batch (deferred) and the blocking tasks together; a worker, then a triggerer, killed.
    batch_run = airflow.trigger("example_nanobanana_batch", prompts=BATCH)
    blocking_run = airflow.trigger("topology_blocking", prompts=BLOCKING, conn_id="apixo_unshared")
    killed_on_worker = kill_a_worker_running(airflow, "topology_blocking", blocking_run)
    airflow.start_worker()  # the lost node's replacement, as an orchestrator would start one
    moved, take_over = kill_a_triggerer_running(airflow, "example_nanobanana_batch", batch_run)
    assert airflow.wait_for_run("topology_blocking", blocking_run, timeout=300) == "success"
    assert airflow.wait_for_run("example_nanobanana_batch", batch_run, timeout=300) == "success"
    elapsed = time.monotonic() - started

    # One APIXO task per generating task instance, the killed ones' included.
    shared = Counter(task["input"]["prompt"] for task in limited_emulator.tasks())
    assert shared == Counter([*BATCH, "a kite, called back"])
    assert Counter(task["input"]["prompt"] for task in unshared_emulator.tasks()) == Counter(BLOCKING)
    for dag_id, run_id, count in (
        ("example_nanobanana_batch", batch_run, len(BATCH)),
        ("topology_blocking", blocking_run, len(BLOCKING)),
    ):
        results = [airflow.xcom(dag_id, run_id, "generate", map_index=n) for n in range(count)]
        assert len({result["apixo_task_id"] for result in results}) == count
    retried = airflow.task_instances("topology_blocking", blocking_run, "generate")
    # Retried (more than once where a loaded machine's late heartbeat failed a live retry too), and
    # paid for once: the prompts above.
    assert retried[killed_on_worker["map_index"]]["try_number"] >= 2

    # Every image stored; one budget, shared through Redis, kept ten-odd processes under the key's limit.
    assert len(list((topology_home / "output" / "batch").iterdir())) == len(BATCH)
    assert limited_emulator.rate_limited() == 0
    # Without Redis, each process learns from APIXO's 429s: after a minute they are a small share.
    late_share = share_limited_after_a_minute(unshared_emulator)
    assert late_share <= LATE_429_SHARE
    print(
        f"\ntopology: {limited_emulator.request_count()} API requests in {elapsed:.0f} s "
        f"(budget {BUDGET_PER_MINUTE}/min shared through Redis, key limit "
        f"{EMULATOR_REQUESTS_PER_MINUTE}/min), 0 answers 429; {len(moved)} triggers taken over "
        f"{take_over:.0f} s after their triggerer was killed; unshared: "
        f"{unshared_emulator.request_count()} requests, {unshared_emulator.rate_limited()} answered 429, "
        f"{late_share:.0%} of its requests after the first minute"
    )


def share_limited_after_a_minute(emulator: EmulatorAdmin) -> float:
    """The share of the key's requests answered 429 from a minute after its first request on."""
    times = emulator.request_times()
    after = times[0] + 60
    late = sum(1 for at in times if at >= after)
    limited = sum(1 for at in emulator.rate_limited_times() if at >= after)
    return limited / late if late else 0.0

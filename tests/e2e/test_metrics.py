"""Metrics from where the work happens under airflow standalone: the worker and the triggerer."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.standalone import Standalone
    from tests.support import EmulatorAdmin, StatsdReceiver

pytestmark = pytest.mark.e2e
DAG_ID = "example_nanobanana_text_to_image"


def test_the_triggerer_reports_its_reads_and_the_worker_the_outcome(
    standalone: Standalone, emulator_admin: EmulatorAdmin, statsd: StatsdReceiver
) -> None:
    standalone.wait_for_dags(DAG_ID)
    before = {name: statsd.count(f"airflow.apixo.{name}") for name in ("status_read", "task.success")}

    run_id = standalone.trigger(DAG_ID)
    assert standalone.wait_for_run(DAG_ID, run_id) == "success"
    time.sleep(1)  # the last datagrams

    # The task deferred: every status read was the triggerer's.
    reads = statsd.count("airflow.apixo.status_read") - before["status_read"]
    assert reads == emulator_admin.request_count("GET", "/api/v1/statusTask") >= 1
    assert statsd.count("airflow.apixo.task.success") - before["task.success"] == 1

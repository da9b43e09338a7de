"""The provider's metrics from a real run: ``airflow dags test``, configured as users configure
``[metrics]``, sends them through Airflow's ``Stats`` to a StatsD receiver on loopback."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_nanobanana import metrics
from tests.dags import provider_dags
from tests.support import StatsdReceiver, dags_test, run

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support import EmulatorAdmin

pytestmark = [pytest.mark.dag, pytest.mark.usefixtures("airflow_db")]


def test_a_batch_reports_each_request_wait_and_outcome(emulator_admin: EmulatorAdmin, tmp_path: Path) -> None:
    emulator_admin.inject_http_errors(429, 1, "submit", retry_after=0.2)  # answered, then retried
    emulator_admin.inject_http_errors(500, 1, "status")
    prompts = ["a red kite over dunes", "a blue kite [emulator:fail=CONTENT_VIOLATION]"]

    with StatsdReceiver() as statsd:
        environment = {**statsd.environment(), "NANOBANANA_OUTPUT_DIR": str(tmp_path)}
        dags_test("example_nanobanana_batch", {"prompts": prompts}, environment)
        time.sleep(0.5)  # the last datagrams

    by_model = {"submit": 2, "task.success": 1, "task.skipped": 1}
    for name, total in by_model.items():
        assert statsd.count(f"airflow.apixo.{name}") == total, name
        assert statsd.count(f"airflow.apixo.{name}.nano-banana") == total, name  # the model in the name
    assert statsd.count("airflow.apixo.rate_limited") == 1  # the key's, whatever the model
    assert statsd.count("airflow.apixo.request_error") == 1
    assert statsd.count("airflow.apixo.task.failed") == 0
    assert statsd.count("airflow.apixo.status_read") >= 2
    [image] = (tmp_path / "batch").iterdir()
    assert statsd.count("airflow.apixo.stored_bytes") == image.stat().st_size
    assert len(statsd.values("airflow.apixo.generation_time", "ms")) == 1
    assert len(statsd.values("airflow.apixo.detection_delay", "ms")) == 2  # the skipped one's outcome too
    assert len(statsd.values("airflow.apixo.budget_wait", "ms")) >= 4  # every request took its turn
    assert statsd.values("airflow.apixo.rate", "g")[0] == 4500  # the 429 halved the default 9,000


def test_an_unresolvable_statsd_host_never_fails_the_generation(emulator_admin: EmulatorAdmin) -> None:
    environment = {"AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "statsd.invalid"}

    output = dags_test("test_generate_deferrable", {"prompt": "a lighthouse"}, environment)

    assert "state=success" in "".join(line for line in output.splitlines() if "DagRun Finished" in line)
    assert output.count("Could not configure StatsClient") == 1  # Airflow's fallback, logged once
    assert emulator_admin.submissions() == 1


def test_a_failing_metrics_backend_never_fails_the_task(
    emulator_admin: EmulatorAdmin, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Unreachable:
        def __getattr__(self, name: str) -> object:
            raise OSError("statsd.invalid: Name or service not known")

    monkeypatch.setattr(metrics, "Stats", Unreachable())
    monkeypatch.setattr(metrics, "_failed", False)
    with caplog.at_level(logging.WARNING, logger=metrics.__name__):
        state, _ = run(provider_dags.generate_deferrable, prompt="a lighthouse")

    assert state == "success"
    warnings = [record for record in caplog.records if record.name == metrics.__name__]
    assert len(warnings) == 1
    assert "Could not send the metric" in warnings[0].getMessage()


def test_a_failed_generation_is_counted_once(
    emulator_admin: EmulatorAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, object]] = []

    class Recorder:
        def incr(self, stat: str, count: int = 1, *, tags: dict[str, str] | None = None) -> None:
            sent.append((stat, count))

        def __getattr__(self, name: str) -> object:
            return lambda *args, **kwargs: None

    monkeypatch.setattr(metrics, "Stats", Recorder())
    emulator_admin.fail_next_tasks("GENERATION_FAILED")  # transient: Airflow may retry it
    state, _ = run(provider_dags.generate_deferrable, prompt="a lighthouse")

    assert state == "failed"
    assert sent.count(("apixo.task.failed", 1)) == 1
    assert sent.count(("apixo.task.failed.nano-banana", 1)) == 1
    assert not [stat for stat, _ in sent if stat.startswith(("apixo.task.success", "apixo.task.skipped"))]

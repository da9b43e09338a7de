"""What the provider reports to Airflow's metrics, under Airflow's prefix: ``apixo.*``.

Sent through Airflow's ``Stats``, so StatsD, Datadog and OpenTelemetry all work as ``[metrics]``
configures them, from wherever the work happens (a worker's task, the triggerer). A metric about a
model is sent twice, as Airflow's own are: tagged ``model=<id>`` for backends that take tags, and
with the model in its name (``apixo.submit.nano-banana``) for plain StatsD, which drops tags. No name
or tag ever holds the API key or a prompt; a key is named by its fingerprint.

Metrics never fail a task: the first error sending one is logged, later ones are not.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_nanobanana.compat import Stats

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

PREFIX = "apixo"
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_-]")
_failed = False


def count(name: str, value: int = 1, *, model: str | None = None) -> None:
    """Add ``value`` to the counter ``apixo.<name>``."""
    _send(lambda stat, tags: Stats.incr(stat, value, tags=tags), name, model)


def timing(name: str, seconds: float, *, model: str | None = None) -> None:
    """Record ``seconds`` in the timer ``apixo.<name>``."""
    elapsed = timedelta(seconds=max(0.0, seconds))
    _send(lambda stat, tags: Stats.timing(stat, elapsed, tags=tags), name, model)


def gauge(name: str, value: float, *, key: str) -> None:
    """Set the gauge ``apixo.<name>`` of one API key (``key``: its fingerprint)."""
    _send(lambda stat, tags: Stats.gauge(stat, value, tags=tags), name, None, {"key": key})


def detected(model: str, complete_time_ms: int | None) -> None:
    """A task's outcome reached the Airflow task: how long after APIXO's ``completeTime``."""
    if complete_time_ms is not None:
        timing("detection_delay", time.time() - complete_time_ms / 1000, model=model)


def delivered(model: str, result: Mapping[str, Any]) -> None:
    """A generation delivered: the task's success, APIXO's ``costTime``, the bytes stored."""
    count("task.success", model=model)
    if result.get("cost_time") is not None:
        timing("generation_time", result["cost_time"] / 1000, model=model)
    if "sizes" in result:
        count("stored_bytes", sum(result["sizes"]), model=model)


def _send(
    emit: Callable[[str, dict[str, Any]], object],
    name: str,
    model: str | None,
    tags: dict[str, Any] | None = None,
) -> None:
    global _failed
    stat = f"{PREFIX}.{name}"
    try:
        if model is None:
            emit(stat, tags or {})
            return
        emit(stat, {**(tags or {}), "model": model})
        emit(f"{stat}.{_NOT_IN_A_NAME.sub('_', model)}", tags or {})
    except Exception as error:  # a metric must never fail the work it reports on
        if not _failed:
            _failed = True
            log.warning("Could not send the metric %s (later failures are not logged): %s", stat, error)

"""A trigger that measures the event-loop lag of the triggerer it runs in (row (f) of ``make bench``).

The real ``airflow triggerer`` only imports trigger classes it can find, so row (f) puts this
directory on its ``PYTHONPATH``. It samples the loop as row (a)'s lag probe does: how much later
than asked a 100 ms sleep ends, inside the measured window. It also times the runner's garbage
collections in the window, as each one stops the loop. It hands both back as its event, through the
triggerer and Airflow's database like any trigger's event.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TICK = 0.1


class LoopLagTrigger(BaseTrigger):
    """Sleep ``TICK`` over and over; between Unix times ``start`` and ``end`` record each overshoot,
    and each garbage collection's generation and duration.

    :param start: when the measured window opens (Unix time).
    :param end: when it closes; the one event follows, its payload
        ``{"lags": [seconds, ...], "collections": [[generation, seconds], ...]}``.
    """

    def __init__(self, *, start: float, end: float) -> None:
        super().__init__()
        self.start = start
        self.end = end

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {"start": self.start, "end": self.end}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = asyncio.get_running_loop()
        lags: list[float] = []
        collections: list[tuple[int, float]] = []
        timer = _collection_timer(collections, self.start, self.end)
        gc.callbacks.append(timer)
        try:
            while time.time() < self.end:
                before = loop.time()
                await asyncio.sleep(TICK)
                if self.start <= time.time() < self.end:
                    lags.append(loop.time() - before - TICK)
        finally:
            gc.callbacks.remove(timer)
        yield TriggerEvent({"lags": lags, "collections": collections})


def _collection_timer(collections: list[tuple[int, float]], start: float, end: float) -> Any:
    """A ``gc.callbacks`` entry that records (generation, seconds) of each collection in the window."""
    started: list[float] = []

    def timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started and start <= time.time() < end:
            collections.append((info["generation"], time.perf_counter() - started.pop()))

    return timer

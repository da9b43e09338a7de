"""Poll timing that learns: which waiting task reads its status next, and when.

A thousand tasks in flight on one key finish about sixty a second; submissions take a third of the
key's budget and leave less than two status reads per task. Reads are then scarce, and who gets the
next one decides how late a finished task is noticed. :class:`ReadPlanner` decides:

- A task may be read once its cadence allows (``initial_delay`` after submission, then no more often
  than every ``poll_interval``) and once it could have finished: not before the earliest time a task
  of its model has been seen to finish, since such a read is almost surely wasted. With budget to
  spare every allowed read is granted at once: today's cadence, minus the reads that cannot succeed.
- When the budget binds, the next read goes to the task that has gone *unseen the longest while it
  could have finished*: time since its last read, or since that earliest finish, whichever is later.
  Serving the stalest first evens out the gaps between reads, and even gaps are what keep the worst
  detection delays low for a given number of reads. Nobody starves: every waiting task's staleness
  grows until it is first.

:class:`DurationEstimates` learns that earliest finish per model from finished tasks. Until it has
seen enough of a model, the cadence alone decides. :class:`PollScheduler` is the asyncio glue: one
per key and event loop, it takes requests from the key's pacer at an even pace and hands each to the
planner's choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_nanobanana.api import TaskStatus
    from airflow_provider_nanobanana.pacing import RequestPacer

log = logging.getLogger(__name__)

EARLIEST_QUANTILE = 0.01
"""Which quantile of recent durations counts as "the earliest a task finishes"."""
MIN_SAMPLES = 20
"""Finished tasks of a model seen before its durations are trusted."""
WINDOW = 512
"""Recent durations kept per model: old enough to be stable, young enough to follow a change."""
CATCH_UP = 4
"""Reads a lagging dispatcher may grant back to back to catch up with its pace."""


class DurationEstimates:
    """Recent durations of finished tasks per model (creation to completion), thread-safe."""

    def __init__(self, window: int = WINDOW, min_samples: int = MIN_SAMPLES) -> None:
        self._window = window
        self._min_samples = min_samples
        self._samples: dict[str, deque[float]] = {}
        self._earliest: dict[str, float] = {}
        self._fresh: dict[str, int] = {}
        self._lock = threading.Lock()

    def observe(self, model: str, seconds: float) -> None:
        with self._lock:
            samples = self._samples.setdefault(model, deque(maxlen=self._window))
            samples.append(seconds)
            self._fresh[model] = self._fresh.get(model, 0) + 1
            # Re-sorting on every sample would cost more than it tells: refresh every 1/16 window.
            if len(samples) >= self._min_samples and (
                model not in self._earliest or self._fresh[model] >= self._window // 16
            ):
                ordered = sorted(samples)
                self._earliest[model] = ordered[int(EARLIEST_QUANTILE * (len(ordered) - 1))]
                self._fresh[model] = 0

    def observe_task(self, model: str, task: TaskStatus) -> None:
        """Learn from a finished task: ``completeTime - createTime``, else ``costTime``."""
        if task.complete_time is not None and task.create_time is not None:
            millis: int | None = task.complete_time - task.create_time
        else:
            millis = task.cost_time
        if millis is not None and millis >= 0:
            self.observe(model, millis / 1000)

    def samples(self, model: str) -> list[float]:
        """The durations kept for ``model``, oldest first, in seconds."""
        with self._lock:
            return list(self._samples.get(model, ()))

    def earliest(self, model: str) -> float | None:
        """Seconds after creation before which a task of ``model`` has hardly ever finished; None
        until enough tasks were seen."""
        return self._earliest.get(model)


DURATIONS = DurationEstimates()
"""The process's estimates: every wait learns from every other."""


@dataclass(eq=False)
class PollTicket:
    """One task's place in the read plan. Times are Unix seconds.

    :param created_at: when the task was created: the submission time until APIXO's ``createTime``
        is known, or when the wait began if even that is unknown (``created_known`` False, as for a
        sensor): learned durations then only apply once the first read tells the creation time.
    """

    model: str
    created_at: float
    initial_delay: float
    poll_interval: float
    created_known: bool = True
    last_read: float | None = None
    turn: int = field(default=0, init=False)
    queued: bool = field(default=False, init=False)

    def ready_at(self, earliest: float | None) -> float:
        """When the next read is allowed: by the cadence, and not before the task could have finished."""
        if self.last_read is None:
            cadence = self.created_at + self.initial_delay
        else:
            cadence = self.last_read + self.poll_interval
        return max(cadence, self._could_finish(earliest))

    def unseen_since(self, earliest: float | None) -> float:
        """Since when a finish could have gone unseen: the later of the last read and the time the
        task could first have finished."""
        could_finish = self._could_finish(earliest)
        return could_finish if self.last_read is None else max(self.last_read, could_finish)

    def _could_finish(self, earliest: float | None) -> float:
        if earliest is None or not self.created_known:
            return self.created_at + self.initial_delay
        return self.created_at + earliest

    def read(self, at: float, created_at: float | None = None) -> None:
        """Record a read; APIXO's own creation time replaces the submission time when known."""
        self.last_read = at
        if created_at is not None:
            self.created_at, self.created_known = created_at, True


_Entry = tuple[float, int, int, PollTicket]


class ReadPlanner:
    """Which queued ticket reads next: pure bookkeeping, driven by the caller's clock."""

    def __init__(self, durations: DurationEstimates = DURATIONS) -> None:
        self._durations = durations
        self._waiting: list[_Entry] = []  # by ready_at: not yet allowed by the cadence
        self._ready: list[_Entry] = []  # by unseen_since: allowed, stalest first
        self._order = itertools.count()
        self._queued = 0

    def __len__(self) -> int:
        return self._queued

    def add(self, ticket: PollTicket) -> None:
        ticket.turn += 1
        ticket.queued = True
        self._queued += 1
        ready = ticket.ready_at(self._durations.earliest(ticket.model))
        heapq.heappush(self._waiting, (ready, next(self._order), ticket.turn, ticket))

    def remove(self, ticket: PollTicket) -> None:
        """Take a ticket out (its wait was cancelled or hit the deadline); its entries go stale."""
        if ticket.queued:
            ticket.queued = False
            self._queued -= 1

    def next_ready(self, now: float) -> float | None:
        """When a queued ticket may be read: ``now`` or earlier if one may already; None if none queued."""
        self._promote(now)
        if self._ready:
            return now
        return self._waiting[0][0] if self._waiting else None

    def pop(self, now: float) -> PollTicket | None:
        """The ticket to read now, taken out of the plan; None if no queued ticket may be read yet."""
        self._promote(now)
        if not self._ready:
            return None
        ticket = heapq.heappop(self._ready)[3]
        self.remove(ticket)
        return ticket

    def _promote(self, now: float) -> None:
        self._drop_stale(self._waiting)
        while self._waiting and self._waiting[0][0] <= now:
            _, order, turn, ticket = heapq.heappop(self._waiting)
            key = ticket.unseen_since(self._durations.earliest(ticket.model))
            heapq.heappush(self._ready, (key, order, turn, ticket))
            self._drop_stale(self._waiting)
        self._drop_stale(self._ready)

    @staticmethod
    def _drop_stale(heap: list[_Entry]) -> None:
        while heap and not (heap[0][3].queued and heap[0][2] == heap[0][3].turn):
            heapq.heappop(heap)


class PollScheduler:
    """Grants status reads to the waits of one key in one event loop, in the planner's order.

    A grant carries one request of the key's budget, already taken from the pacer. Should taking
    it fail, every waiting read is let go ungranted (it then asks the pacer itself, and fails
    there) rather than left parked until its deadline. An idle scheduler holds nothing of its loop.
    """

    def __init__(
        self,
        pacer: RequestPacer,
        durations: DurationEstimates = DURATIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pacer = pacer
        self._clock = clock
        self._planner = ReadPlanner(durations)
        self._grants: dict[PollTicket, asyncio.Future[bool]] = {}
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._next_grant = 0.0

    async def turn(self, ticket: PollTicket) -> bool:
        """Wait until ``ticket`` may read; True when the read's request is already paid from the
        budget, False when the scheduler could not pay it."""
        grant = asyncio.get_running_loop().create_future()
        self._grants[ticket] = grant
        self._planner.add(ticket)
        self._wake.set()
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        try:
            return await grant
        finally:
            self._planner.remove(ticket)
            self._grants.pop(ticket, None)

    async def _dispatch(self) -> None:
        try:
            while (ready := self._planner.next_ready(now := self._clock())) is not None:
                if ready > now:
                    await self._sleep_until_woken(ready - now)
                    continue
                await self._pace(now)
                await self._pacer.aacquire()
                self._grant_next()
        except Exception:
            log.exception("Scheduling APIXO status reads failed; the waiting reads go ungranted")
            for grant in self._grants.values():
                if not grant.done():
                    grant.set_result(False)
        finally:
            self._dispatcher, self._wake = None, asyncio.Event()

    def _grant_next(self) -> None:
        """Hand the request just paid for to the planner's choice, skipping waits that ended."""
        while (ticket := self._planner.pop(self._clock())) is not None:
            grant = self._grants.pop(ticket, None)
            if grant is not None and not grant.done():
                grant.set_result(True)
                return

    async def _pace(self, now: float) -> None:
        """Spread reads evenly at the budget's pace: bursts would only open connections and then
        leave the rest of the second without reads. A lagging loop may catch up a few reads."""
        spacing = self._pacer.spacing
        self._next_grant = max(self._next_grant, now - CATCH_UP * spacing)
        if self._next_grant > now:
            await asyncio.sleep(self._next_grant - now)
        self._next_grant += spacing

    async def _sleep_until_woken(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, PollScheduler]] = (
    weakref.WeakKeyDictionary()
)


def scheduler_for(pacer: RequestPacer) -> PollScheduler:
    """The running loop's scheduler for this pacer (one key's budget)."""
    per_loop = _schedulers.setdefault(asyncio.get_running_loop(), {})
    scheduler = per_loop.get(id(pacer))
    if scheduler is None:
        scheduler = per_loop[id(pacer)] = PollScheduler(pacer)
    return scheduler

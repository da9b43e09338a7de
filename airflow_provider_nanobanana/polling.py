"""Waiting for an APIXO task: the rules shared by the trigger, the blocking operator and the sensor.

:data:`MODEL_CADENCES` says how long and how often to wait for each model; :class:`TaskPoller`
decides after each poll whether the wait is over; :class:`PollOutcome` is how it ended, carried as a
trigger event and turned into a return value or the right exception.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

from airflow_provider_nanobanana.api import TaskState, TaskStatus, is_input_fail_code
from airflow_provider_nanobanana.exceptions import (
    ApixoError,
    ApixoMalformedResponseError,
    ApixoNotFoundError,
    ApixoRateLimitError,
    ApixoTaskFailedError,
    ApixoTaskRejectedError,
    ApixoWaitError,
    ApixoWaitTimeoutError,
)

DEFAULT_MAX_CONSECUTIVE_ERRORS = 5
# Airflow's own defer timeout fires this much after the trigger's deadline, so the trigger's
# ``timeout`` event (with its message) always arrives first.
DEFER_TIMEOUT_GRACE = timedelta(seconds=60)
# A status read still running this long past the deadline is abandoned (APIXO is hanging), so that
# the wait's own ``timeout`` outcome still comes before Airflow's defer timeout.
READ_OVERRUN_SECONDS = DEFER_TIMEOUT_GRACE.total_seconds() / 2


@dataclass(frozen=True)
class WaitCadence:
    """How to wait for one model's tasks: seconds before the first poll, between polls, in all."""

    initial_delay: float
    poll_interval: float
    timeout: float


# The API's polling guidance by model family (first poll, then every so often), with a timeout
# well past its "about 2 minutes" for images: a scheduled batch can queue at the API, and a wait
# that gives up early leaves a paid task behind. A model not listed waits as a quality image model.
FAST_IMAGE = WaitCadence(initial_delay=5, poll_interval=3, timeout=300)
QUALITY_IMAGE = WaitCadence(initial_delay=10, poll_interval=5, timeout=300)
VIDEO = WaitCadence(initial_delay=60, poll_interval=15, timeout=600)
MODEL_CADENCES: Mapping[str, WaitCadence] = {
    "nano-banana": FAST_IMAGE,
    "nano-banana-2": FAST_IMAGE,
    "nano-banana-pro": QUALITY_IMAGE,
    "seedream-4-5": QUALITY_IMAGE,
    "seedream-5-0": QUALITY_IMAGE,
    "flux-2": QUALITY_IMAGE,
    "gpt-image-1": QUALITY_IMAGE,
    "veo-3-1": VIDEO,
}


def wait_cadence(model: str) -> WaitCadence:
    """The default wait for ``model``'s tasks (:data:`MODEL_CADENCES`)."""
    return MODEL_CADENCES.get(model, QUALITY_IMAGE)


class OutcomeStatus(StrEnum):
    """How a wait ended: the closed set of trigger event statuses."""

    SUCCESS = "success"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"


_TERMINAL_STATE = {OutcomeStatus.SUCCESS: TaskState.SUCCESS, OutcomeStatus.FAILED: TaskState.FAILED}


REATTACHED = "reattached"
"""The key of a trigger event that says an earlier try submitted the task waited for."""


@dataclass(frozen=True)
class PollOutcome:
    """The end of a wait. ``task`` is the last status read, when there was one."""

    status: OutcomeStatus
    task_id: str
    model: str
    message: str
    task: TaskStatus | None = None

    def to_event(self) -> dict[str, Any]:
        """Trigger event payload: everything the resumed task needs (``defer`` kwargs may be dropped)."""
        return {
            "status": self.status.value,
            "apixo_task_id": self.task_id,
            "model": self.model,
            "message": self.message,
            "task": None if self.task is None else self.task.to_dict(),
        }

    @classmethod
    def from_event(cls, event: Any) -> PollOutcome:
        """Validate and read back a trigger event; anything unexpected is a malformed event."""
        try:
            outcome = cls(
                status=OutcomeStatus(event["status"]),
                task_id=str(event["apixo_task_id"]),
                model=str(event["model"]),
                message=str(event.get("message", "")),
                task=None if event.get("task") is None else TaskStatus.from_dict(event["task"]),
            )
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ApixoMalformedResponseError(f"Unexpected trigger event: {event!r:.300}") from None
        expected = _TERMINAL_STATE.get(outcome.status)
        if expected is not None and (outcome.task is None or outcome.task.state is not expected):
            raise ApixoMalformedResponseError(f"Trigger event contradicts its task state: {event!r:.300}")
        return outcome

    def result(self) -> dict[str, Any]:
        """The operator's return value on success; otherwise raise what Airflow should act on.

        A failure caused by the input raises :class:`ApixoTaskRejectedError` (no Airflow retries); a
        transient one :class:`ApixoTaskFailedError`. A wait that ended without an outcome raises
        :class:`ApixoWaitError` (:class:`ApixoWaitTimeoutError` for the deadline): the task may still
        finish, so the caller decides whether a retry may submit again.
        """
        if self.status is OutcomeStatus.SUCCESS and self.task is not None:
            return self.task.result()
        if self.status is OutcomeStatus.FAILED and self.task is not None:
            code, message = self.task.fail_code, self.task.fail_message
            if is_input_fail_code(code):
                raise ApixoTaskRejectedError(self.task_id, code, message)
            raise ApixoTaskFailedError(self.task_id, code, message)
        if self.status is OutcomeStatus.TIMEOUT:
            raise ApixoWaitTimeoutError(self.task_id, self.message)
        raise ApixoWaitError(self.task_id, self.message)


@dataclass
class TaskPoller:
    """Bookkeeping of one wait: wall-clock deadline, state changes, consecutive failed polls.

    The deadline is a Unix time so it survives a trigger moving to another triggerer process.
    ``consecutive_errors`` starts above 0 where a wait resumes a run of failed polls (a
    rescheduled sensor's next poke).
    """

    model: str
    task_id: str
    deadline: float
    max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS
    log: logging.Logger | Any = field(default_factory=lambda: logging.getLogger(__name__))
    consecutive_errors: int = 0
    _state: TaskState | None = field(default=None, init=False)
    _last: TaskStatus | None = field(default=None, init=False)

    def sleep_time(self, delay: float) -> float:
        """How long to sleep before the next poll: never past the deadline."""
        return max(0.0, min(delay, self.deadline - time.time()))

    def read_budget(self) -> float:
        """How long the next status read may take, retries included."""
        return max(0.0, self.deadline - time.time()) + READ_OVERRUN_SECONDS

    def observe(self, answer: TaskStatus | ApixoError) -> PollOutcome | None:
        """Account for one poll; return the outcome when the wait is over."""
        outcome = self._on_error(answer) if isinstance(answer, ApixoError) else self._on_status(answer)
        if outcome is None and time.time() >= self.deadline:
            return self._end(OutcomeStatus.TIMEOUT, "did not finish before the deadline", self._last)
        return outcome

    def _on_status(self, status: TaskStatus) -> PollOutcome | None:
        self.consecutive_errors = 0
        self.log.debug("APIXO task %s is %s", self.task_id, status.state.value)
        if status.state != self._state:
            self.log.info("APIXO task %s is now %s", self.task_id, status.state.value)
            self._state = status.state
        self._last = status
        return final_outcome(self.model, status)

    def _on_error(self, error: ApixoError) -> PollOutcome | None:
        if isinstance(error, ApixoRateLimitError):  # the key's rate is spent, the task is fine: read later
            self.log.debug(
                "Reading APIXO task %s was answered 429 (too many requests): reading later", self.task_id
            )
            return None
        # A task read right after submission may not be visible yet, and a garbled answer may be a
        # proxy's: both count towards the budget like network errors rather than end the wait.
        tolerated = error.transient or isinstance(error, ApixoNotFoundError | ApixoMalformedResponseError)
        self.consecutive_errors += 1
        if tolerated and self.consecutive_errors < self.max_consecutive_errors:
            self.log.warning(
                "Polling APIXO task %s failed (%d of %d tolerated in a row): %s",
                self.task_id,
                self.consecutive_errors,
                self.max_consecutive_errors - 1,
                error,
            )
            return None
        return self._end(OutcomeStatus.ERROR, f"could not be polled: {error}", self._last)

    def _end(self, status: OutcomeStatus, detail: str, task: TaskStatus | None) -> PollOutcome:
        return _outcome(status, self.model, self.task_id, detail, task)


def final_outcome(model: str, status: TaskStatus) -> PollOutcome | None:
    """What one status read means on its own: the outcome once the task has ended, else None."""
    if status.state is TaskState.SUCCESS:
        detail = f"produced {len(status.result_urls)} image(s)"
        return _outcome(OutcomeStatus.SUCCESS, model, status.task_id, detail, status)
    if status.state is TaskState.FAILED:
        detail = f"failed with {status.fail_code}: {status.fail_message}"
        return _outcome(OutcomeStatus.FAILED, model, status.task_id, detail, status)
    return None


def _outcome(
    status: OutcomeStatus, model: str, task_id: str, detail: str, task: TaskStatus | None
) -> PollOutcome:
    return PollOutcome(status, task_id, model, f"APIXO task {task_id} ({model}) {detail}", task)

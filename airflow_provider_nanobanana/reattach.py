"""Reattach on retry: the APIXO task a try submitted, kept as unfinished work in ``task_state_store``.

Right after a submission the operator records the APIXO task id in Airflow's ``task_state_store``,
which outlives the try (it is keyed by DAG, run, task and map index). A later try that finds a record
waits for that task instead of paying for a new one. The record is dropped as soon as the Airflow
task has an outcome (success, or an APIXO failure), because Airflow 3.3 does not empty the store
when a task is cleared: a record is therefore always work that was paid for and not yet delivered,
and clearing a succeeded task submits anew.

Why not ``airflow.sdk.ResumableJobMixin``: it polls on the worker only, while this operator defers
by default; on a failed job it always resubmits, which would pay again for a prompt the moderation
refused; and it keeps the id after success, so a clear would hand back the old image. The same
idea, written once on ``task_state_store`` for both ways of waiting, avoids all three.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import Context

# Renaming the key would orphan the records of retries already scheduled.
RECORD_KEY = "apixo_submission"
# APIXO keeps a task's results for 15 days at most: a record older than that cannot be reattached.
RECORD_RETENTION = timedelta(days=15)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """One paid-for APIXO task: enough to wait for it again from any try."""

    task_id: str
    model: str
    submitted_at: float

    @classmethod
    def from_stored(cls, stored: Any) -> Submission | None:
        try:
            return cls(str(stored["task_id"]), str(stored["model"]), float(stored["submitted_at"]))
        except (TypeError, KeyError, ValueError):
            return None


class SubmissionRecord:
    """The unfinished submission of one task instance, across its tries.

    Storing is best effort: a store that cannot be reached costs crash recovery (logged), never the
    image already paid for.
    """

    def __init__(self, store: Any) -> None:
        self._store = store

    @classmethod
    def of(cls, context: Context) -> SubmissionRecord:
        store = context.get("task_state_store")
        if store is None:
            log.warning("No task_state_store in the context: a retry cannot reattach to a submitted task")
        return cls(store)

    def read(self) -> Submission | None:
        if self._store is None:
            return None
        stored = self._store.get(RECORD_KEY)
        if stored is None:
            return None
        submission = Submission.from_stored(stored)
        if submission is None:
            log.warning("Ignoring an unreadable submission record: %r", stored)
        return submission

    def holds(self, task_id: str | None) -> bool:
        """Whether the next try would find this task: what makes an Airflow retry safe."""
        try:
            submission = self.read()
        except Exception:
            return False
        return submission is not None and submission.task_id == task_id

    def write(self, submission: Submission) -> None:
        if self._store is not None:
            self._best_effort(self._store.set, RECORD_KEY, asdict(submission), retention=RECORD_RETENTION)

    def drop(self) -> None:
        if self._store is not None:
            self._best_effort(self._store.delete, RECORD_KEY)

    @staticmethod
    def _best_effort(change: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        try:
            change(*args, **kwargs)
        except Exception as error:
            log.warning("task_state_store is unavailable (%s): reattaching on retry may not work", error)

"""Reattach on retry: the APIXO task a try submitted, kept as unfinished work in ``task_state_store``.

Right after a submission the operator records the APIXO task id in Airflow's ``task_state_store``,
which outlives the try (it is keyed by DAG, run, task and map index; before Airflow 3.3, the
stand-in of :mod:`.state_store`). A later try that finds a record
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

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_nanobanana.state_store import task_state_store

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow.sdk import Context

# Renaming the key would orphan the records of retries already scheduled.
RECORD_KEY = "apixo_submission"
# APIXO keeps a task's results for 15 days at most: a record older than that cannot be reattached.
RECORD_RETENTION = timedelta(days=15)
# APIXO's result URLs last 24 hours to 15 days (its pages disagree): older results may be gone.
RESULT_URLS_KEPT_AT_LEAST = timedelta(hours=24)
# A task read right after its submission may not be visible yet: only after this long does a 404
# mean that APIXO does not know the task (expired, another account) rather than "not yet".
NOT_VISIBLE_GRACE = timedelta(minutes=2)

log = logging.getLogger(__name__)


def request_fingerprint(model: str, task_input: Mapping[str, Any], provider: str | None) -> str:
    """What a task was asked to do, hashed: a try reattaches only to a task for the same request.

    The callback URL is left out: it may carry a per-try secret, and it does not change the image.
    """
    canonical = json.dumps([model, task_input, provider], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Submission:
    """One paid-for APIXO task: enough to wait for it again from any try."""

    task_id: str
    model: str
    submitted_at: float
    request: str

    @classmethod
    def from_stored(cls, stored: Any) -> Submission | None:
        try:
            fields = ("task_id", "model", "submitted_at", "request")
            task_id, model, submitted_at, request = (stored[name] for name in fields)
            return cls(str(task_id), str(model), float(submitted_at), str(request))
        except (TypeError, KeyError, ValueError):
            return None

    def age(self) -> timedelta:
        return timedelta(seconds=time.time() - self.submitted_at)


class SubmissionRecord:
    """The unfinished submission of one task instance, across its tries.

    Writing and dropping are best effort: a store that cannot be written costs crash recovery
    (logged), never the image already paid for. Reading is not: a try that cannot tell whether a
    task was already submitted fails before submitting, and its retry asks again.
    """

    def __init__(self, store: Any) -> None:
        self._store = store

    @classmethod
    def of(cls, context: Context, *, resumed: bool = False) -> SubmissionRecord:
        """The record of this task instance; ``resumed``: back from the triggerer, not a new start."""
        ti = context.get("ti")
        store = task_state_store(context, new_try=not resumed and getattr(ti, "try_number", 0) == 1)
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

"""Reattach on retry: the APIXO task a try submitted, and what a later try does with it.

Right after a submission the operator records the APIXO task id in Airflow's ``task_state_store``,
which outlives the try (it is keyed by DAG, run, task and map index; before Airflow 3.3, the
stand-in of :mod:`.state_store`). A later try that finds a record
waits for that task instead of paying for a new one. An APIXO failure drops the record. A success
marks it delivered, with the task instance's ``max_tries``: Airflow raises ``max_tries`` when a task
is cleared and never on a retry, so a later try tells a clear (submit anew: clearing a succeeded
task generates a new image) from a retry of a try whose success Airflow did not record (it failed
that try while it still ran, a missed heartbeat): that retry delivers the same task again. The
stand-in drops the record on success instead (its Variables would pile up in the UI), which leaves
that rare retry paying again before 3.3.

Why not ``airflow.sdk.ResumableJobMixin``: it polls on the worker only, while this operator defers
by default; on a failed job it always resubmits, which would pay again for a prompt the moderation
refused; and it keeps the id after success, so a clear would hand back the old image. The same
idea, written once on ``task_state_store`` for both ways of waiting, avoids all three.

The operator only orchestrates: :func:`earlier_submission` decides whether a try waits for an
earlier try's task or submits anew, and :func:`paid_for` whether a try that ends without an outcome
may be retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_nanobanana.api import is_input_fail_code
from airflow_provider_nanobanana.compat import AirflowFailException, AirflowTaskTimeout
from airflow_provider_nanobanana.exceptions import (
    ApixoNotFoundError,
    ApixoStorageError,
    ApixoTaskFailedError,
    ApixoWaitError,
)
from airflow_provider_nanobanana.polling import OutcomeStatus, PollOutcome, final_outcome
from airflow_provider_nanobanana.state_store import outlives_success, task_state_store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from airflow.sdk import Context

    from airflow_provider_nanobanana.hooks.apixo import ApixoHook

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
    delivered_max_tries: int | None = None
    """Set once a try delivered the task's outcome: the task instance's ``max_tries`` then."""

    @classmethod
    def from_stored(cls, stored: Any) -> Submission | None:
        try:
            fields = ("task_id", "model", "submitted_at", "request")
            task_id, model, submitted_at, request = (stored[name] for name in fields)
            delivered = stored.get("delivered_max_tries")
            return cls(
                str(task_id),
                str(model),
                float(submitted_at),
                str(request),
                None if delivered is None else int(delivered),
            )
        except (AttributeError, TypeError, KeyError, ValueError):
            return None

    def age(self) -> timedelta:
        return timedelta(seconds=time.time() - self.submitted_at)


class SubmissionRecord:
    """The unfinished submission of one task instance, across its tries.

    Writing and dropping are best effort: a store that cannot be written costs crash recovery
    (logged), never the image already paid for. Reading is not: a try that cannot tell whether a
    task was already submitted fails before submitting, and its retry asks again.
    """

    def __init__(self, store: Any, max_tries: int | None = None) -> None:
        self._store = store
        self.max_tries = max_tries
        """The task instance's ``max_tries`` in this try: None where a delivered record is dropped."""

    @classmethod
    def of(cls, context: Context, *, resumed: bool = False) -> SubmissionRecord:
        """The record of this task instance; ``resumed``: back from the triggerer, not a new start."""
        ti = context.get("ti")
        store = task_state_store(context, new_try=not resumed and getattr(ti, "try_number", 0) == 1)
        if store is None:
            log.warning("No task_state_store in the context: a retry cannot reattach to a submitted task")
            return cls(None)
        return cls(store, getattr(ti, "max_tries", None) if outlives_success(store) else None)

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

    def deliver(self, task_id: str | None) -> None:
        """This try has the task's outcome: mark the record delivered, or drop it (see the module)."""
        if self.max_tries is None:
            self.drop()
            return
        self._best_effort(self._mark_delivered, task_id)

    def _mark_delivered(self, task_id: str | None) -> None:
        submission = self.read()
        if submission is not None and submission.task_id == task_id:
            self.write(replace(submission, delivered_max_tries=self.max_tries))

    @staticmethod
    def _best_effort(change: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        try:
            change(*args, **kwargs)
        except Exception as error:
            log.warning("task_state_store is unavailable (%s): reattaching on retry may not work", error)


def earlier_submission(
    record: SubmissionRecord, fingerprint: str, hook: ApixoHook, log: logging.Logger | Any
) -> tuple[Submission, PollOutcome | None] | None:
    """The task an earlier try submitted for this request, and its outcome if it has succeeded.

    None means submit anew: nothing recorded, a changed request, a transient failure, or a task
    that APIXO still does not know after :data:`NOT_VISIBLE_GRACE`. An input-caused failure
    fails for good.
    """
    previous = record.read()
    if previous is None:
        return None
    if previous.request != fingerprint:
        log.warning(
            "APIXO task %s of an earlier try was for another request (the DAG or its inputs "
            "changed since): submitting the new request",
            previous.task_id,
        )
        record.drop()
        return None
    if previous.delivered_max_tries is not None and previous.delivered_max_tries != record.max_tries:
        log.info("APIXO task %s was delivered before a clear: submitting anew", previous.task_id)
        record.drop()
        return None
    if previous.delivered_max_tries is not None:
        log.warning(
            "An earlier try delivered APIXO task %s, but Airflow failed that try (a missed heartbeat?) "
            "before recording its success: delivering that task again instead of paying for a new one",
            previous.task_id,
        )
    try:
        status = hook.get_task_status(previous.model, previous.task_id)
    except ApixoNotFoundError as error:
        if previous.age() < NOT_VISIBLE_GRACE:
            log.info("Reattaching to APIXO task %s, not visible yet: %s", previous.task_id, error)
            return previous, None
        log.warning("Not reattaching (%s): submitting a new task", error)
        record.drop()
        return None
    outcome = final_outcome(previous.model, status)
    if outcome is not None and outcome.status is OutcomeStatus.FAILED:
        record.drop()
        if is_input_fail_code(status.fail_code):
            outcome.result()  # raises ApixoTaskRejectedError: the same request would fail again
        log.warning("Not reattaching: %s. Submitting a new task.", outcome.message)
        return None
    log.info(
        "Reattaching to APIXO task %s (%s), submitted %s ago by an earlier try: it is %s",
        previous.task_id,
        previous.model,
        previous.age(),
        status.state.value,
    )
    if outcome is not None and previous.age() > RESULT_URLS_KEPT_AT_LEAST:
        log.warning(
            "Its result URLs may have expired (APIXO keeps them 24 hours to 15 days): "
            "use reattach=False to generate anew"
        )
    return previous, outcome


@contextmanager
def paid_for(task_id: str | None, model: str, record: SubmissionRecord) -> Iterator[None]:
    """After submission: an APIXO outcome ends the record; a wait without one keeps it.

    Success marks the record delivered; an APIXO failure drops it (a transient failure then
    retries with a new task). Anything else (a deadline, polling errors, a lost trigger,
    ``execution_timeout``) leaves the task paid for and unfinished: when the record holds it, the
    next try waits for it again, so Airflow may retry; otherwise a retry would pay twice, so the
    task fails for good.
    """
    try:
        yield
    except ApixoTaskFailedError:
        record.drop()
        raise
    except (Exception, AirflowTaskTimeout) as error:
        cause = f"After submitting APIXO task {task_id}: {type(error).__name__}: {error}."
        if not record.holds(task_id):
            raise AirflowFailException(
                f"{cause} Not retried, so the image is not paid for twice: wait for it with ApixoTaskSensor("
                f"apixo_task_id={task_id!r}, model={model!r}), or clear this task to submit anew."
            ) from error
        if isinstance(error, ApixoStorageError) and not error.retryable:
            raise AirflowFailException(
                f"{cause} Retrying cannot help: fix output_path or max_image_bytes, then clear this "
                "task: it waits for that same APIXO task and stores its images without paying again."
            ) from error
        raise ApixoWaitError(
            str(task_id),
            f"{cause} The next try of this Airflow task (a retry, or a clear) waits for that "
            "same APIXO task instead of submitting a new one.",
        ) from error
    else:
        record.deliver(task_id)

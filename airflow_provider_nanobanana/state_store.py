"""The task instance's store that outlives its tries: Airflow's ``task_state_store``, or a stand-in.

Reattaching a retry to the APIXO task an earlier try paid for needs a place that a new try can read.
Airflow 3.3 puts ``task_state_store`` in the context. Airflow 3.1 and 3.2 have none, and nothing a task
writes survives into its next try but Airflow Variables (a new try's XComs are deleted before it
runs). There the stand-in keeps each value in one Variable per task instance and key, with the same
``get``/``set``/``delete`` as Airflow's store.

It speaks to the supervisor directly instead of through ``Variable``: ``Variable.get`` turns a failed
read into "not set" on 3.1 and 3.2, and ``Variable.set`` only logs a failed write; a record that
cannot be read must fail the try before it pays again, not look empty.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_nanobanana.compat import AIRFLOW_V_3_3_PLUS

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.sdk import Context

VARIABLE_PREFIX = "nanobanana.state."
"""The stand-in's Variables are named this and a hash of the task instance and key."""

log = logging.getLogger(__name__)


class StateStore(Protocol):
    """What the provider uses of ``task_state_store``."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None: ...

    def delete(self, key: str) -> None: ...


def task_state_store(context: Context, *, new_try: bool = False) -> StateStore | None:
    """This task instance's store: Airflow's own from 3.3, else the stand-in; None outside a task run.

    :param new_try: the start of the task instance's first try, when nothing can be stored for it
        yet: the stand-in then reads only what it wrote itself (Airflow logs every read of a missing
        Variable as an error).
    """
    store: StateStore | None = context.get("task_state_store")  # type: ignore[assignment,unused-ignore]
    if store is not None or AIRFLOW_V_3_3_PLUS:
        return store
    ti = context.get("ti")
    if ti is None or _supervisor() is None:
        return None
    _announce_stand_in()
    return VariableStateStore(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, new_try=new_try)


def outlives_success(store: StateStore) -> bool:
    """Whether a record may stay after its task succeeds: Airflow's store expires its rows and can
    clear them on success (``[state_store] clear_on_success``); the stand-in's Variables would pile up."""
    return not isinstance(store, VariableStateStore)


@functools.cache
def _announce_stand_in() -> None:
    log.info(
        "This Airflow has no task_state_store (it came with 3.3): submitted APIXO tasks are recorded in "
        "Airflow Variables named %s<hash> until their Airflow task has an outcome (a try that Airflow "
        "fails while it still runs, on missed heartbeats, may then be paid for again by its retry)",
        VARIABLE_PREFIX,
    )


class VariableStateStore:
    """``task_state_store`` for one task instance, kept in Airflow Variables (Airflow 3.1 and 3.2).

    A value's retention is kept beside it: an expired value reads as absent and is deleted.
    """

    def __init__(
        self, dag_id: str, run_id: str, task_id: str, map_index: int | None, *, new_try: bool = False
    ) -> None:
        self._scope = [dag_id, run_id, task_id, -1 if map_index is None else map_index]
        self._nothing_stored_before = new_try
        self._written: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable, VariableResult

        if self._nothing_stored_before:
            return self._written.get(key, default)
        answer = _ask(GetVariable(key=self._name(key)))
        if isinstance(answer, ErrorResponse) and answer.error.value == "VARIABLE_NOT_FOUND":
            return default
        if not isinstance(answer, VariableResult):
            raise RuntimeError(f"Reading the Airflow Variable {self._name(key)} failed: {answer!r}")
        stored = json.loads(answer.value or "null")
        if not isinstance(stored, dict) or stored.get("expires_at", 0) < time.time():
            self.delete(key)
            return default
        return stored.get("value", default)

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None:
        from airflow.sdk.execution_time.comms import PutVariable

        days = 30.0 if retention is None else retention.total_seconds() / 86400  # Airflow's default
        stored = {"value": value, "expires_at": time.time() + days * 86400, "task_instance": self._scope}
        description = f"APIXO provider: {key} of task instance {'/'.join(map(str, self._scope))}"
        _checked(_ask(PutVariable(key=self._name(key), value=json.dumps(stored), description=description)))
        self._written[key] = value

    def delete(self, key: str) -> None:
        from airflow.sdk.execution_time.comms import DeleteVariable, ErrorResponse

        answer = _ask(DeleteVariable(key=self._name(key)))
        if not (isinstance(answer, ErrorResponse) and answer.error.value == "VARIABLE_NOT_FOUND"):
            _checked(answer)
        self._written.pop(key, None)

    def _name(self, key: str) -> str:
        """Short, and free of ``/`` (which some versions' Variable route refuses) and of secret-like words."""
        digest = hashlib.sha256(json.dumps([*self._scope, key]).encode()).hexdigest()
        return VARIABLE_PREFIX + digest


def _supervisor() -> Any:
    """The running task's line to its supervisor (None outside a task run)."""
    from airflow.sdk.execution_time import task_runner

    return getattr(task_runner, "SUPERVISOR_COMMS", None)


def _ask(message: Any) -> Any:
    return _supervisor().send(message)


def _checked(answer: Any) -> None:
    from airflow.sdk.execution_time.comms import ErrorResponse

    if isinstance(answer, ErrorResponse):
        raise RuntimeError(f"Writing an Airflow Variable failed: {answer!r}")

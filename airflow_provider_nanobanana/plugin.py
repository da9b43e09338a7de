"""The webhook route: APIXO's callback wakes the one deferred task instance it was minted for.

Mounted on the api-server at ``/nanobanana`` through the ``airflow.plugins`` entry point. Airflow
puts no auth in front of plugin apps, so the URL's token is the only guard: checked in constant
time against the hash in the waiting trigger's kwargs. The route trusts nothing in the payload but
the task id it names: it only wakes the task, whose ``execute_complete`` reads the status with the
API key. Every Airflow component imports this module, so it imports Airflow's DB layer only when
a call comes in.

Answers: 200 when woken, and for duplicates, stale and unknown calls (so APIXO stops retrying);
403 for a wrong token; 503 while the task has not deferred yet, deferred less than
:data:`DEFERRAL_SETTLING` ago, or :data:`MAX_CONCURRENT_WAKES` calls are being checked (APIXO
retries); 413 for a body larger than :data:`MAX_CALLBACK_BYTES`. Answers name no task state.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import anyio
import anyio.to_thread
from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from airflow_provider_nanobanana.callbacks import (
    CALLBACK_PATH,
    CALLBACK_PREFIX,
    MAX_CALLBACK_BYTES,
    TOKEN_PARAM,
    check_call,
    wake_event,
)
from airflow_provider_nanobanana.compat import task_instance_key

log = logging.getLogger(__name__)

_NOT_DEFERRED_YET = frozenset({None, "scheduled", "queued", "running"})
DEFERRAL_SETTLING = timedelta(seconds=5)
"""A task woken while the scheduler has not yet read the executor's report on the workload that
deferred is failed by Airflow 3.3 (apache/airflow#72716). Waiting this long after the deferral makes
that rarer, not impossible: APIXO is asked to call again meanwhile, and tasks should have retries."""
MAX_CONCURRENT_WAKES = 8
"""Calls checked at once, each with a thread and a DB connection: a flood (or a thousand tasks
ending together) waits for APIXO's retries instead of starving the api-server's shared thread pool."""
_WAKES = anyio.CapacityLimiter(MAX_CONCURRENT_WAKES)

app = FastAPI(title="APIXO callbacks", docs_url=None, redoc_url=None, openapi_url=None)


@app.post(CALLBACK_PATH + "/{ti_id}")
async def callback(ti_id: str, request: Request, token: str = Query("", alias=TOKEN_PARAM)) -> JSONResponse:
    body = await _read_body(request)
    if body is None:
        return _answer(413, f"body over {MAX_CALLBACK_BYTES} bytes")
    if _WAKES.available_tokens == 0:
        log.warning(
            "APIXO callback for %s: %d calls already being checked, asking for a retry",
            ti_id,
            MAX_CONCURRENT_WAKES,
        )
        return _answer(503, "busy: call again")
    status, detail = await anyio.to_thread.run_sync(wake, ti_id, token, body, limiter=_WAKES)
    log.info("APIXO callback for task instance %s: %d %s", ti_id, status, detail)
    return _answer(status, detail)


def wake(ti_id: str, token: str, body: bytes) -> tuple[int, str]:
    """Wake the task instance if the call passes the check of the trigger it waits on; (HTTP status, why).

    On databases with row locks the task instance's row is locked; the triggerer's own event (the
    polling net firing at the same moment) can still land too, and the task then resumes once
    either way, on ``execute_complete``.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    try:
        key = uuid.UUID(ti_id)
    except ValueError:
        return 200, "ignored"
    with create_session() as session:  # committed before the answer
        ti = session.get(TaskInstance, task_instance_key(key), with_for_update={"of": TaskInstance})
        if ti is None:
            return 200, "ignored"
        if ti.state != TaskInstanceState.DEFERRED:
            if ti.next_method is None and ti.state in _NOT_DEFERRED_YET:
                return 503, "not ready: call again"
            return 200, "ignored"
        if ti.trigger is None:
            return 200, "ignored"
        if refused := check_call(ti.trigger.classpath, ti.trigger.kwargs, token, body):
            return refused
        if datetime.now(UTC) - ti.trigger.created_date < DEFERRAL_SETTLING:
            return 503, "not ready: call again"
        handle_event_submit(TriggerEvent(wake_event(ti.try_number)), task_instance=ti, session=session)
    return 200, "woken"


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it passes the limit (counted as it comes, whatever it declares)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CALLBACK_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CALLBACK_BYTES:
            return None
    return bytes(body)


def _answer(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class NanoBananaCallbackPlugin(AirflowPlugin):
    """Registers the webhook route on the api-server (entry point ``airflow.plugins``)."""

    name = "nanobanana_callbacks"
    fastapi_apps = [  # noqa: RUF012 - the shape AirflowPlugin declares
        {"app": app, "url_prefix": CALLBACK_PREFIX, "name": "APIXO callbacks"}
    ]

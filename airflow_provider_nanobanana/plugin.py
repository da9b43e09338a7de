"""The webhook route: APIXO's callback wakes the one deferred task instance it was minted for.

Mounted on the api-server at ``/nanobanana`` through the ``airflow.plugins`` entry point. Airflow
puts no auth in front of plugin apps, so the URL's token is the only guard: checked in constant
time against the hash in the waiting trigger's kwargs. The route trusts nothing in the payload but
the task id it names: it only wakes the task, whose ``execute_complete`` reads the status with the
API key. Every Airflow component imports this module, so it imports Airflow's DB layer only when
a call comes in.

Answers: 200 when woken, and for duplicates, stale and unknown calls (so APIXO stops retrying);
403 for a wrong token; 503 while the task has not deferred yet, or deferred less than
:data:`DEFERRAL_SETTLING` ago (APIXO retries); 413 for a body larger than :data:`MAX_CALLBACK_BYTES`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from airflow_provider_nanobanana.callbacks import (
    CALLBACK_PATH,
    CALLBACK_PREFIX,
    CALLBACK_STATUS,
    MAX_CALLBACK_BYTES,
    TRIGGER_CLASSPATH,
    token_matches,
)

app = FastAPI(title="APIXO callbacks", docs_url=None, redoc_url=None, openapi_url=None)


@app.post(CALLBACK_PATH + "/{ti_id}")
async def callback(ti_id: str, request: Request, token: str = "") -> JSONResponse:
    body = await _read_body(request)
    if body is None:
        return _answer(413, f"body over {MAX_CALLBACK_BYTES} bytes")
    status, detail = await run_in_threadpool(wake, ti_id, token, _task_id_of(body))
    return _answer(status, detail)


def wake(ti_id: str, token: str, apixo_task_id: str | None) -> tuple[int, str]:
    """Wake the task instance if it waits on our trigger for this task; (HTTP status, why)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    try:
        key = uuid.UUID(ti_id)
    except ValueError:
        return 200, "unknown task instance"
    with create_session() as session:  # committed before the answer
        ti = session.get(TaskInstance, key, with_for_update={"of": TaskInstance})
        if ti is None:
            return 200, "unknown task instance"
        if ti.state != TaskInstanceState.DEFERRED:
            if ti.next_method is None and ti.state in _NOT_DEFERRED_YET:
                return 503, "not deferred yet: call again"
            return 200, f"not waiting ({ti.state})"
        trigger = ti.trigger
        if trigger is None or trigger.classpath != TRIGGER_CLASSPATH:
            return 200, "not waiting for an APIXO callback"
        kwargs = trigger.kwargs
        expected = kwargs.get("callback_token_sha256")
        if not expected or not token_matches(token, expected):
            return 403, "wrong token"
        if apixo_task_id != kwargs.get("apixo_task_id"):
            return 200, "another APIXO task"
        if datetime.now(UTC) - trigger.created_date < DEFERRAL_SETTLING:
            return 503, "deferral still settling: call again"
        event = {"status": CALLBACK_STATUS, "apixo_task_id": apixo_task_id, "model": kwargs.get("model")}
        handle_event_submit(TriggerEvent(event), task_instance=ti, session=session)
    return 200, "woken"


_NOT_DEFERRED_YET = frozenset({None, "scheduled", "queued", "running", "restarting"})
DEFERRAL_SETTLING = timedelta(seconds=3)
"""A task woken this soon after deferring may be failed by Airflow 3.3's scheduler, which can still
be reaping the worker that deferred (apache/airflow#72716): until then, APIXO is asked to call again."""


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it passes the limit (counted as it comes, whatever it declares)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CALLBACK_BYTES:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CALLBACK_BYTES:
            return None
    return body


def _task_id_of(body: bytes) -> str | None:
    """``data.taskId`` of APIXO's status envelope, if the body is one."""
    try:
        envelope: Any = json.loads(body)
    except ValueError:
        return None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    task_id = data.get("taskId") if isinstance(data, dict) else None
    return task_id if isinstance(task_id, str) else None


def _answer(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class NanoBananaCallbackPlugin(AirflowPlugin):
    """Registers the webhook route on the api-server (entry point ``airflow.plugins``)."""

    name = "nanobanana_callbacks"
    fastapi_apps = [  # noqa: RUF012 - the shape AirflowPlugin declares
        {"app": app, "url_prefix": CALLBACK_PREFIX, "name": "APIXO callbacks"}
    ]

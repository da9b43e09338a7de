"""The emulator's HTTP face: APIXO's task API, result downloads, admin endpoints and callbacks.

The provider is tested end to end against this app over real HTTP, so it answers exactly as the
contract says (envelopes, status codes, resultJson as a string) and lets tests inject the failures a
real service produces: failed tasks, 429/5xx answers and slow responses. Any model id is served
(only ``nano-banana``'s input is validated; every result is an image), each model optionally with a
generation time of its own, as a video model takes far longer than an image model. Callback-mode tasks are
delivered as APIXO does (POST, 200 within 30 s or retried up to 3 times), and the deliveries can be
lost, delayed, doubled or preceded by a forgery, so webhook receivers can be tested against what a
real network (and an attacker on it) does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_nanobanana.emulator.images import render_image
from airflow_provider_nanobanana.emulator.references import fetch_references
from airflow_provider_nanobanana.emulator.state import (
    CallbackOutcome,
    CallbackPlan,
    CallbackRecord,
    EmulatedTask,
    Emulator,
    EmulatorSettings,
    HttpErrorRule,
    envelope,
)
from airflow_provider_nanobanana.emulator.validation import validate_create_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

__all__ = ["API_PREFIX", "Emulator", "EmulatorSettings", "create_app"]

API_PREFIX = "/api/v1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CALLBACK_CHECK_SECONDS = 0.1
BALANCE = 1000.0

_ERROR_MESSAGES = {
    400: "Invalid request",
    401: "Invalid or missing API key",
    402: "Insufficient balance",
    403: "Forbidden",
    404: "Not found",
    429: "Rate limit exceeded",
    500: "Internal server error",
    503: "Service unavailable",
}


# --- admin request bodies -------------------------------------------------------------------------


class _FailNextTasks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail_code: str = Field(min_length=1)
    fail_msg: str = "Emulated generation failure"
    count: int = Field(default=1, ge=1)


class _HttpErrors(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: int = Field(ge=400, le=599)
    times: int = Field(ge=1)
    endpoint: Literal["submit", "status", "any"] = "any"
    retry_after: float | None = Field(default=None, ge=0)
    retry_after_format: Literal["seconds", "http-date"] = "seconds"


class _CallbackFaults(BaseModel):
    """Replaces all callback faults at once: a field left out is 0 (off)."""

    model_config = ConfigDict(extra="forbid")
    drop: int = Field(default=0, ge=0)
    delay_seconds: float = Field(default=0.0, ge=0)
    duplicate: int = Field(default=0, ge=0)
    forge: int = Field(default=0, ge=0)


class _FaultsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail_next_tasks: _FailNextTasks | None = None
    http_errors: _HttpErrors | list[_HttpErrors] | None = None
    callbacks: _CallbackFaults | None = None


_ModelId = Annotated[str, Field(min_length=1)]
_ModelSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
"""A per-model generation time: a finite JSON number, never a numeric string or a boolean."""


class _SettingsPatch(BaseModel):
    """Only the fields sent change; ``model_generation_seconds`` replaces the whole mapping."""

    model_config = ConfigDict(extra="forbid")
    generation_seconds: float | None = Field(default=None, ge=0)
    pending_seconds: float | None = Field(default=None, ge=0)
    latency_seconds: float | None = Field(default=None, ge=0)
    generation_seconds_max: float | None = Field(default=None, ge=0)
    model_generation_seconds: dict[_ModelId, _ModelSeconds] | None = None
    requests_per_minute: int | None = Field(default=None, ge=1)
    callback_timeout_seconds: float | None = Field(default=None, gt=0)
    callback_retry_delays: tuple[NonNegativeFloat, ...] | None = Field(default=None, max_length=10)
    reference_timeout_seconds: float | None = Field(default=None, gt=0)


# --- helpers --------------------------------------------------------------------------------------


def error_response(status: int, message: str | None = None, error: str | None = None) -> JSONResponse:
    """The contract's error envelope; ``error`` goes to ``data.error`` (400 answers)."""
    body: dict[str, Any] = {"code": status, "message": message or _ERROR_MESSAGES.get(status, "Error")}
    if error is not None:
        body["data"] = {"error": error}
    return JSONResponse(body, status_code=status)


def _injected_response(rule: HttpErrorRule) -> JSONResponse:
    response = error_response(rule.status)
    if rule.retry_after is not None:
        seconds = float(rule.retry_after)
        if rule.retry_after_format == "http-date":
            when = datetime.now(UTC) + timedelta(seconds=seconds)
            response.headers["Retry-After"] = format_datetime(when, usegmt=True)
        else:
            response.headers["Retry-After"] = str(int(seconds)) if seconds.is_integer() else f"{seconds:g}"
    return response


def _endpoint_kind(path: str) -> str:
    if path.startswith(f"{API_PREFIX}/generateTask/"):
        return "submit"
    if path.startswith(f"{API_PREFIX}/statusTask/"):
        return "status"
    return "other"


def _authorized(request: Request, settings: EmulatorSettings) -> bool:
    """Bearer auth; constant-time comparison, and the key is never echoed anywhere."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    return settings.api_key is None or secrets.compare_digest(token.encode(), settings.api_key.encode())


def _settings_view(settings: EmulatorSettings) -> dict[str, Any]:
    """Settings as admin answers show them: without the key."""
    view = asdict(settings)
    view["any_key"] = view.pop("api_key") is None
    return view


def _task_view(emulator: Emulator, task: EmulatedTask) -> dict[str, Any]:
    return {
        "id": task.task_id,
        "model": task.model,
        "state": emulator.state_of(task.task_id),
        "request_type": task.request_type,
        "callback_url": task.callback_url,
        "provider": task.body.get("provider"),
        "input": task.input,
    }


# --- callbacks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Delivery:
    """One task's callback on its way: what goes where, the plan it follows and the client it uses."""

    emulator: Emulator
    client: httpx.AsyncClient
    task_id: str
    url: str
    payload: dict[str, Any]
    plan: CallbackPlan

    def record(self, outcome: CallbackOutcome, **fields: Any) -> bool:
        """Record one event; False when a reset made this delivery stale (it must stop)."""
        record = CallbackRecord(self.task_id, self.url, self.payload, outcome, **fields)
        return self.emulator.record_callback(record, self.plan.epoch)


async def deliver_callback(
    emulator: Emulator, client: httpx.AsyncClient, task: EmulatedTask, payload: dict[str, Any]
) -> None:
    """Deliver a task's status envelope as APIXO does, with the ``callbacks`` faults applied.

    Only loopback URLs are called: the emulator must never POST task data to the internet.
    """
    url = task.callback_url or ""
    if urlsplit(url).hostname not in LOOPBACK_HOSTS:
        error = "not delivered: the emulator only calls back to loopback hosts"
        emulator.record_callback(CallbackRecord(task.task_id, url, payload, "refused", error=error))
        return
    delivery = _Delivery(emulator, client, task.task_id, url, payload, emulator.plan_callback())
    if delivery.plan.dropped:
        delivery.record("dropped", error="not sent: dropped by the callbacks fault")
        return
    await asyncio.sleep(delivery.plan.delay_seconds)
    if delivery.plan.forged and not await _post_forged(delivery):
        return
    for copy in range(delivery.plan.copies):
        if not await _post_with_retries(delivery, duplicate=copy > 0):
            return


async def _post_forged(delivery: _Delivery) -> bool:
    """POST a copy once as an attacker who knows the URL's shape but not its secret would."""
    if not delivery.emulator.is_current(delivery.plan.epoch):
        return False
    forged = replace(delivery, url=forged_url(delivery.url))
    at = time.time()
    status_code, error = await _post_once(forged)
    return forged.record("forged", attempt=1, status_code=status_code, error=error, at=at)


def forged_url(url: str) -> str:
    """``url`` with its ``token`` query parameter (added when absent) set to a random wrong value."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "token"]
    query.append(("token", f"forged-{secrets.token_urlsafe(16)}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _post_with_retries(delivery: _Delivery, *, duplicate: bool) -> bool:
    """POST until the receiver answers 200 or the retries run out; False once the delivery is stale."""
    plan = delivery.plan
    waits: tuple[float | None, ...] = (*plan.retry_delays, None)
    for attempt, wait in enumerate(waits, start=1):
        if not delivery.emulator.is_current(plan.epoch):
            return False
        at = time.time()
        status_code, error = await _post_once(delivery)
        delivered = status_code == 200
        outcome: CallbackOutcome = "delivered" if delivered else "gave_up" if wait is None else "retrying"
        fields = {"attempt": attempt, "status_code": status_code, "error": error, "at": at}
        if not delivery.record(outcome, duplicate=duplicate, **fields):
            return False
        if wait is None or delivered:
            return True
        await asyncio.sleep(wait)
    return True


async def _post_once(delivery: _Delivery) -> tuple[int | None, str | None]:
    """One POST: the answer's status, or why there was none. The plan's timeout caps the exchange."""
    timeout = delivery.plan.timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            answer = await delivery.client.post(delivery.url, json=delivery.payload, timeout=None)
    except TimeoutError:
        return None, f"no answer within {timeout:g} s"
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
    return answer.status_code, None


class _Background:
    """Fire-and-forget deliveries: holds references so they are not garbage-collected mid-flight,
    and one HTTP client for all of them (a client per delivery costs a TLS context each, ~40 ms of
    CPU: at 60 deliveries a second that alone would saturate two cores)."""

    client: httpx.AsyncClient
    """Made when the app starts serving (``open``), closed when it stops."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        self.client = httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=None))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def dispatch_due(self, emulator: Emulator, task_id: str | None = None) -> None:
        for task, payload in emulator.claim_due_callbacks(task_id):
            self.spawn(deliver_callback(emulator, self.client, task, payload))

    async def watch(self, emulator: Emulator) -> None:
        """The small background check: callbacks fire even if nobody polls."""
        while True:
            self.dispatch_due(emulator)
            await asyncio.sleep(CALLBACK_CHECK_SECONDS)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()


# --- the app --------------------------------------------------------------------------------------


def create_app(emulator: Emulator) -> FastAPI:
    """A FastAPI app serving ``emulator``'s state."""
    background = _Background()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        background.open()
        watcher = asyncio.get_running_loop().create_task(background.watch(emulator))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await background.close()

    app = FastAPI(title="APIXO emulator", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.closing = threading.Event()  # set by EmulatorServer.stop()
    _install_gate(app, emulator)
    _install_api(app, emulator, background)
    _install_files(app, emulator)
    _install_admin(app, emulator)
    return app


async def _delay(seconds: float, closing: threading.Event) -> None:
    """The injected latency, cut short when the server is stopping so shutdown stays fast."""
    deadline = time.monotonic() + seconds
    while not closing.is_set() and (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.05))


def _install_gate(app: FastAPI, emulator: Emulator) -> None:
    """Every API request: logged, then injected errors, then auth, then the extra latency."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, _ERROR_MESSAGES.get(exc.status_code, str(exc.detail)))

    @app.middleware("http")
    async def gate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if not path.startswith(f"{API_PREFIX}/"):
            return await call_next(request)
        emulator.record_request(request.method, path)
        rule = emulator.take_http_error(_endpoint_kind(path))
        if rule is not None:
            response: Response = _injected_response(rule)
        elif not _authorized(request, emulator.settings):
            response = error_response(401)
        elif emulator.over_rate_limit(request.headers["authorization"], path):
            response = error_response(429)  # the contract documents no rate-limit headers
        else:
            response = await call_next(request)
        await _delay(emulator.settings.latency_seconds, app.state.closing)
        return response


def _install_api(app: FastAPI, emulator: Emulator, background: _Background) -> None:
    """The three contract endpoints (auth, faults and latency are handled by the gate)."""

    @app.post(API_PREFIX + "/generateTask/{model}")
    async def generate_task(model: str, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error_response(400, error="Request body must be valid JSON")
        error = validate_create_body(model, body)
        if error is not None:
            return error_response(400, error=error)
        task = emulator.create_task(model, body, str(request.base_url))
        if not task.references_fetched:
            background.spawn(fetch_references(emulator, task))
        return JSONResponse(envelope({"taskId": task.task_id}))

    @app.get(API_PREFIX + "/statusTask/{model}")
    async def status_task(model: str, request: Request) -> Response:
        task_id = request.query_params.get("taskId")
        if not task_id:
            return error_response(400, error="Missing required query parameter: taskId")
        task = emulator.task(task_id)
        if task is None or task.model != model:
            return error_response(404, "Task not found")
        data = emulator.status_data(task)
        background.dispatch_due(emulator, task.task_id)
        return JSONResponse(envelope(data))

    @app.get(API_PREFIX + "/apikeys/current-balance")
    async def balance() -> Response:
        return JSONResponse(envelope({"balance": BALANCE}))


def _install_files(app: FastAPI, emulator: Emulator) -> None:
    """Result downloads: public (no auth), like the CDN links the real service returns."""

    @app.get("/files/{task_id}/{name}")
    def download(task_id: str, name: str, request: Request) -> Response:
        credentials = {"authorization", "cookie"} & {header.lower() for header in request.headers}
        emulator.record_download(with_credentials=bool(credentials))
        task = emulator.task(task_id)
        if task is None or emulator.state_of(task_id) != "success":
            return error_response(404, "File not found")
        fmt = task.output_format
        if name not in {f"0.{fmt}", "0.jpg" if fmt == "jpeg" else "0.png"}:
            return error_response(404, "File not found")
        content = render_image(
            fmt,
            prompt=task.prompt,
            aspect_ratio=task.aspect_ratio,
            task_id=task.task_id,
            source=task.source_thumbnail,
        )
        return Response(content, media_type=f"image/{fmt}")


def _install_admin(app: FastAPI, emulator: Emulator) -> None:
    """Steering for tests in other processes (DAG runs): not part of the APIXO contract.

    ``POST /_emulator/faults`` takes ``fail_next_tasks``, ``http_errors`` and ``callbacks``
    (``drop``, ``delay_seconds``, ``duplicate``, ``forge``: replaces the callback faults); ``GET
    /_emulator/reference-fetches`` lists the reference image URLs fetched, as requested; ``PATCH
    /_emulator/settings`` changes the settings sent (``callback_retry_delays``,
    ``callback_timeout_seconds``, ``reference_timeout_seconds`` and ``model_generation_seconds``, a
    model id to seconds mapping that replaces the previous one, among them) and ``GET`` shows them
    without the key; ``GET /_emulator/callbacks`` lists every delivery attempt (a forged copy with
    the outcome ``forged``); ``POST /_emulator/reset`` clears tasks, faults and records (not
    settings) and stops deliveries in flight.
    """

    @app.get("/_emulator/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/_emulator/reset")
    async def reset() -> dict[str, str]:
        emulator.reset()
        return {"status": "ok"}

    @app.post("/_emulator/faults")
    async def faults(body: _FaultsBody) -> dict[str, str]:
        if body.fail_next_tasks is not None:
            emulator.fail_next_tasks(**body.fail_next_tasks.model_dump())
        rules = body.http_errors if isinstance(body.http_errors, list) else [body.http_errors]
        for rule in rules:
            if rule is not None:
                emulator.inject_http_errors(**rule.model_dump())
        if body.callbacks is not None:
            emulator.fault_callbacks(**body.callbacks.model_dump())
        return {"status": "ok"}

    @app.get("/_emulator/settings")
    async def get_settings() -> dict[str, Any]:
        return _settings_view(emulator.settings)

    @app.patch("/_emulator/settings")
    async def patch_settings(body: _SettingsPatch) -> dict[str, Any]:
        for key, value in body.model_dump(exclude_none=True).items():
            setattr(emulator.settings, key, value)
        return _settings_view(emulator.settings)

    @app.get("/_emulator/tasks")
    async def tasks() -> dict[str, Any]:
        return {"tasks": [_task_view(emulator, task) for task in emulator.tasks]}

    @app.get("/_emulator/stats")
    async def stats() -> dict[str, int]:
        return {
            "requests": emulator.request_count(),
            "rate_limited": len(emulator.rate_limited),
            "tasks": emulator.submissions(),
            "downloads": emulator.downloads[0],
            "downloads_with_credentials": emulator.downloads[1],
        }

    @app.get("/_emulator/requests")
    async def requests() -> dict[str, Any]:
        return {"requests": [{"method": m, "path": p, "at": at} for m, p, at in emulator.requests]}

    @app.get("/_emulator/rate-limited")
    async def rate_limited() -> dict[str, Any]:
        return {"rate_limited": [{"at": at, "path": path} for at, path in emulator.rate_limited]}

    @app.get("/_emulator/reference-fetches")
    async def reference_fetches() -> dict[str, Any]:
        return {"urls": emulator.reference_fetches}

    @app.get("/_emulator/callbacks")
    async def callbacks() -> dict[str, Any]:
        return {"callbacks": [_callback_view(record) for record in emulator.callbacks]}


def _callback_view(record: CallbackRecord) -> dict[str, Any]:
    """One callback record as the admin API shows it (without the payload: the receiver has that)."""
    view = asdict(record)
    del view["payload"]
    return view

"""The emulator's state: settings, the task table, the request log, the fault switches and callbacks.

Kept apart from the HTTP layer so tests (and the app) share one thread-safe object: the server runs
in a background thread while tests read and steer it from the main thread.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from limits import RateLimitItemPerMinute, storage, strategies

__all__ = [
    "DEFAULT_API_KEY",
    "CallbackOutcome",
    "CallbackPlan",
    "CallbackRecord",
    "EmulatedTask",
    "Emulator",
    "EmulatorSettings",
    "HttpErrorRule",
]

DEFAULT_API_KEY = "apixo-emulator-key"

Endpoint = Literal["submit", "status", "any"]
ENDPOINTS: tuple[str, ...] = ("submit", "status", "any")
RetryAfterFormat = Literal["seconds", "http-date"]
CallbackOutcome = Literal["delivered", "retrying", "gave_up", "dropped", "refused", "forged"]

_FAIL_MARKER = re.compile(r"\[emulator:fail=([A-Za-z0-9_.\-]+)\]")
_SECONDS_MARKER = re.compile(r"\[emulator:seconds=(\d+(?:\.\d+)?)\]")


@dataclass
class EmulatorSettings:
    """Runtime-tunable behaviour; tests mutate the fields directly on ``Emulator.settings``.

    A task's generation time, first match wins: the prompt's ``[emulator:seconds=N]`` marker, then
    ``model_generation_seconds`` for its model, then ``generation_seconds`` (up to
    ``generation_seconds_max``).
    """

    api_key: str | None = DEFAULT_API_KEY
    """The only accepted bearer token; None accepts any non-empty token."""
    generation_seconds: float = 3.0
    """Time from creation to the terminal state (snapshotted per task at creation)."""
    pending_seconds: float = 0.5
    """Time spent in ``pending`` before ``processing``; clamped to ``generation_seconds``."""
    latency_seconds: float = 0.0
    """Extra delay before every API answer, to provoke client read timeouts."""
    generation_seconds_max: float | None = None
    """When set, each task's generation time is drawn uniformly from ``generation_seconds`` to this."""
    model_generation_seconds: dict[str, float] = field(default_factory=dict)
    """Model id to its generation time, overriding the two above for that model: APIXO serves many
    models through the same endpoints, and a video model such as ``veo-3-1`` takes far longer."""
    requests_per_minute: int | None = None
    """APIXO's per-key limit, enforced over any rolling minute (429 beyond it); None for no limit."""
    callback_timeout_seconds: float = 30.0
    """How long a callback receiver has to answer (APIXO: 200 within 30 s); slower counts as failed."""
    callback_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    """The wait before each retry of a failed callback: APIXO retries up to 3 times with growing
    delays. Its length is the number of retries; tests shorten it to stay fast."""
    reference_timeout_seconds: float = 10.0
    """How long the fetch of one reference image (``image_urls``) may take before the task fails."""


@dataclass(frozen=True)
class EmulatedTask:
    """One created task, as the emulator recorded it."""

    task_id: str
    model: str
    body: dict[str, Any]
    created_at: float
    """Wall-clock creation time (Unix seconds)."""
    created_monotonic: float
    pending_seconds: float
    generation_seconds: float
    base_url: str
    """Scheme and host the task was submitted to; result URLs are built from it."""
    fail_code: str | None = None
    fail_msg: str | None = None
    references_fetched: bool = True
    """False while the task's reference images are being fetched: it cannot end before."""
    source_thumbnail: bytes | None = None
    """The first reference image, shrunk (PNG), drawn into the result so an edit shows its source."""

    @property
    def id(self) -> str:
        return self.task_id

    @property
    def input(self) -> dict[str, Any]:
        value = self.body.get("input")
        return value if isinstance(value, dict) else {}

    @property
    def prompt(self) -> str:
        value = self.input.get("prompt")
        return value if isinstance(value, str) else ""

    @property
    def request_type(self) -> str:
        value = self.body.get("request_type")
        return value if isinstance(value, str) else "async"

    @property
    def callback_url(self) -> str | None:
        value = self.body.get("callback_url")
        return value if isinstance(value, str) else None

    @property
    def image_urls(self) -> list[str]:
        value = self.input.get("image_urls")
        return [url for url in value if isinstance(url, str)] if isinstance(value, list) else []

    @property
    def output_format(self) -> str:
        """``png`` or ``jpeg``; the docs disagree on the default, the emulator picks png."""
        value = self.input.get("output_format")
        return "jpeg" if value in ("jpeg", "jpg") else "png"

    @property
    def aspect_ratio(self) -> str:
        value = self.input.get("aspect_ratio")
        return value if isinstance(value, str) else "1:1"

    @property
    def create_time_ms(self) -> int:
        return int(self.created_at * 1000)

    @property
    def complete_time_ms(self) -> int:
        return self.create_time_ms + self.cost_time_ms

    @property
    def cost_time_ms(self) -> int:
        return int(self.generation_seconds * 1000)

    def state_at(self, now_monotonic: float) -> str:
        """``pending``, ``processing``, then ``success`` or ``failed``, by time since creation."""
        elapsed = now_monotonic - self.created_monotonic
        if elapsed < self.pending_seconds:
            return "pending"
        if elapsed < self.generation_seconds or not self.references_fetched:
            return "processing"
        return "failed" if self.fail_code else "success"


@dataclass
class HttpErrorRule:
    """An injected HTTP failure: the next ``remaining`` matching API requests answer ``status``."""

    status: int
    remaining: int
    endpoint: Endpoint = "any"
    retry_after: float | None = None
    retry_after_format: RetryAfterFormat = "seconds"
    """``Retry-After`` as delta-seconds or as an HTTP-date; HTTP allows both."""

    def matches(self, endpoint: str) -> bool:
        return self.remaining > 0 and self.endpoint in ("any", endpoint)


@dataclass(frozen=True)
class CallbackRecord:
    """One callback POST (``attempt`` 1, then 2.. for retries), or a delivery nothing was sent for.

    ``outcome``: ``delivered`` (answered 200), ``retrying`` (failed, another attempt follows),
    ``gave_up`` (failed, retries exhausted), ``dropped`` (lost on purpose by the ``callbacks``
    fault), ``refused`` (not a loopback URL) or ``forged`` (the ``forge`` fault's copy with a wrong
    token, sent once; ``status_code`` is the receiver's answer). Tests read these to see what a
    receiver was sent.
    """

    task_id: str
    url: str
    payload: dict[str, Any]
    outcome: CallbackOutcome
    attempt: int | None = None
    """1 for the first POST, 2 and up for retries; None when nothing was POSTed."""
    status_code: int | None = None
    error: str | None = None
    """Why the POST got no answer (connection error, timeout); a non-200 answer sets ``status_code``."""
    at: float = field(default_factory=time.time)
    """Wall-clock time (Unix seconds) the attempt started."""
    duplicate: bool = False
    """True for the second copy of a delivery the ``duplicate`` fault doubled."""


@dataclass(frozen=True)
class CallbackPlan:
    """How one delivery goes, fixed when it starts, so later setting or fault changes do not bend it."""

    epoch: int
    """The emulator's reset count: a delivery from before a reset stops and records nothing."""
    dropped: bool = False
    forged: bool = False
    delay_seconds: float = 0.0
    copies: int = 1
    timeout_seconds: float = 30.0
    retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)


@dataclass
class _Faults:
    fail_next: deque[tuple[str, str]] = field(default_factory=deque)
    http_errors: list[HttpErrorRule] = field(default_factory=list)
    callback_drop: int = 0
    callback_delay: float = 0.0
    callback_duplicate: int = 0
    callback_forge: int = 0


class Emulator:
    """Thread-safe in-memory APIXO: tasks, request log, fault switches and callback bookkeeping."""

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings if settings is not None else EmulatorSettings()
        self._lock = threading.RLock()
        self._tasks: dict[str, EmulatedTask] = {}
        self._requests: list[tuple[str, str, float]] = []
        self._faults = _Faults()
        self._callbacks: list[CallbackRecord] = []
        self._callbacks_due: set[str] = set()
        self._epoch = 0
        self._rate_limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._rate_limited: list[tuple[float, str]] = []
        self._downloads = 0
        self._downloads_with_credentials = 0
        self._reference_fetches: list[str] = []

    # --- read access ----------------------------------------------------------------------------

    @property
    def tasks(self) -> list[EmulatedTask]:
        """A snapshot of created tasks, in creation order."""
        with self._lock:
            return list(self._tasks.values())

    def task(self, task_id: str) -> EmulatedTask | None:
        with self._lock:
            return self._tasks.get(task_id)

    def submissions(self, model: str | None = None) -> int:
        """How many tasks were created (for one model, or all)."""
        with self._lock:
            return sum(1 for task in self._tasks.values() if model is None or task.model == model)

    @property
    def requests(self) -> list[tuple[str, str, float]]:
        """A snapshot of ``(method, path, Unix time)`` for every API request (not downloads or admin
        calls)."""
        with self._lock:
            return list(self._requests)

    def request_count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """How many API requests matched the method and path prefix (e.g. ``/api/v1/statusTask``)."""
        with self._lock:
            return sum(
                1
                for m, p, _ in self._requests
                if (method is None or m == method.upper())
                and (path_prefix is None or p.startswith(path_prefix))
            )

    @property
    def downloads(self) -> tuple[int, int]:
        """Result downloads served, and how many of them carried credentials (which they never need)."""
        with self._lock:
            return self._downloads, self._downloads_with_credentials

    @property
    def reference_fetches(self) -> list[str]:
        """Every reference image URL fetched, as requested (signed URLs with their signature)."""
        with self._lock:
            return list(self._reference_fetches)

    @property
    def rate_limited(self) -> list[tuple[float, str]]:
        """When, and on which path, API requests were answered 429 because of ``requests_per_minute``."""
        with self._lock:
            return list(self._rate_limited)

    @property
    def callbacks(self) -> list[CallbackRecord]:
        with self._lock:
            return list(self._callbacks)

    def state_of(self, task_id: str) -> str | None:
        task = self.task(task_id)
        return None if task is None else task.state_at(time.monotonic())

    # --- steering -------------------------------------------------------------------------------

    def fail_next_tasks(
        self, fail_code: str, fail_msg: str = "Emulated generation failure", count: int = 1
    ) -> None:
        """The next ``count`` created tasks end in ``failed`` with this failCode/failMsg."""
        if not fail_code:
            raise ValueError("fail_code must be a non-empty string")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.fail_next.extend([(fail_code, fail_msg)] * count)

    def inject_http_errors(
        self,
        status: int,
        times: int,
        endpoint: Endpoint = "any",
        retry_after: float | None = None,
        retry_after_format: RetryAfterFormat = "seconds",
    ) -> None:
        """The next ``times`` matching API requests answer ``status`` (error envelope), creating nothing."""
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if times < 1:
            raise ValueError("times must be at least 1")
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must not be negative")
        with self._lock:
            seconds = None if retry_after is None else float(retry_after)
            rule = HttpErrorRule(status, times, endpoint, seconds, retry_after_format)
            self._faults.http_errors.append(rule)

    def fault_callbacks(
        self, drop: int = 0, delay_seconds: float = 0.0, duplicate: int = 0, forge: int = 0
    ) -> None:
        """Replace the callback faults: the next ``drop`` deliveries are lost (never POSTed), every
        delivery waits ``delay_seconds`` before its first attempt (until reset or set to 0), the
        next ``duplicate`` deliveries that are sent are POSTed twice, and the next ``forge`` are
        preceded by a forged copy (a wrong ``token``). What a receiver must survive."""
        if min(drop, duplicate, forge) < 0:
            raise ValueError("drop, duplicate and forge must not be negative")
        if delay_seconds < 0:
            raise ValueError("delay_seconds must not be negative")
        with self._lock:
            self._faults.callback_drop = drop
            self._faults.callback_delay = float(delay_seconds)
            self._faults.callback_duplicate = duplicate
            self._faults.callback_forge = forge

    def reset(self) -> None:
        """Forget tasks, the request log, pending faults and callbacks (settings are kept).

        Deliveries still in flight (waiting to retry) stop: they belong to the test that is over.
        """
        with self._lock:
            self._epoch += 1
            self._tasks.clear()
            self._requests.clear()
            self._faults = _Faults()
            self._callbacks.clear()
            self._callbacks_due.clear()
            self._rate_limiter.storage.reset()
            self._rate_limited.clear()
            self._downloads = self._downloads_with_credentials = 0
            self._reference_fetches.clear()

    # --- used by the HTTP layer -----------------------------------------------------------------

    def record_request(self, method: str, path: str) -> None:
        with self._lock:
            self._requests.append((method.upper(), path, time.time()))

    def record_download(self, *, with_credentials: bool) -> None:
        with self._lock:
            self._downloads += 1
            self._downloads_with_credentials += with_credentials

    @property
    def epoch(self) -> int:
        """The reset count: work started before a reset records nothing after it."""
        with self._lock:
            return self._epoch

    def record_reference_fetch(self, url: str, epoch: int) -> None:
        with self._lock:
            if epoch == self._epoch:
                self._reference_fetches.append(url)

    def references_fetched(
        self, task_id: str, failure: tuple[str, str] | None, thumbnail: bytes | None
    ) -> None:
        """The task's references were fetched: it may end, failed with ``failure`` if the fetch failed
        (unless it was already set to fail). A task forgotten by a reset meanwhile is left alone."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return
            if task.fail_code is not None:  # a queued or requested failure comes first
                failure = (task.fail_code, task.fail_msg or "")
            fail_code, fail_msg = failure or (None, None)
            self._tasks[task_id] = replace(
                task,
                references_fetched=True,
                fail_code=fail_code,
                fail_msg=fail_msg,
                source_thumbnail=thumbnail,
            )

    def over_rate_limit(self, token: str, path: str) -> bool:
        """Count one request of ``token``'s key; True if it exceeds ``requests_per_minute``."""
        limit = self.settings.requests_per_minute
        if limit is None:
            return False
        key = hashlib.sha256(token.encode()).hexdigest()
        if self._rate_limiter.hit(RateLimitItemPerMinute(limit), key):
            return False
        with self._lock:
            self._rate_limited.append((time.time(), path))
        return True

    def take_http_error(self, endpoint: str) -> HttpErrorRule | None:
        """Consume one injected error matching this endpoint kind, if any is armed."""
        with self._lock:
            for rule in self._faults.http_errors:
                if rule.matches(endpoint):
                    rule.remaining -= 1
                    return HttpErrorRule(
                        rule.status, 1, rule.endpoint, rule.retry_after, rule.retry_after_format
                    )
            return None

    def create_task(self, model: str, body: dict[str, Any], base_url: str) -> EmulatedTask:
        """Record a new task; queued failures apply first, then a ``[emulator:fail=CODE]`` prompt marker."""
        prompt = _prompt_of(body)
        generation = _marker_seconds(prompt, self._drawn_generation_seconds(model))
        with self._lock:
            fail = self._faults.fail_next.popleft() if self._faults.fail_next else _marker_failure(prompt)
            task = EmulatedTask(
                task_id=f"task_{secrets.token_hex(12)}",
                model=model,
                body=copy.deepcopy(body),
                created_at=time.time(),
                created_monotonic=time.monotonic(),
                pending_seconds=max(0.0, min(self.settings.pending_seconds, generation)),
                generation_seconds=generation,
                base_url=base_url.rstrip("/"),
                fail_code=fail[0] if fail else None,
                fail_msg=fail[1] if fail else None,
                references_fetched=not names_references(body),
            )
            self._tasks[task.task_id] = task
            if task.request_type == "callback" and task.callback_url:
                self._callbacks_due.add(task.task_id)
            return task

    def _drawn_generation_seconds(self, model: str) -> float:
        """The model's own time if it has one, else the default (or a draw from its range)."""
        per_model = self.settings.model_generation_seconds.get(model)
        if per_model is not None:
            return per_model
        low, high = self.settings.generation_seconds, self.settings.generation_seconds_max
        return low if high is None or high <= low else random.uniform(low, high)

    def status_data(self, task: EmulatedTask, now_monotonic: float | None = None) -> dict[str, Any]:
        """The ``data`` object of a statusTask answer for this task, right now."""
        state = task.state_at(time.monotonic() if now_monotonic is None else now_monotonic)
        data: dict[str, Any] = {"taskId": task.task_id, "state": state, "createTime": task.create_time_ms}
        if state == "success":
            data["resultJson"] = _result_json(task)
            data["completeTime"] = task.complete_time_ms
            data["costTime"] = task.cost_time_ms
        elif state == "failed":
            data["failCode"] = task.fail_code
            data["failMsg"] = task.fail_msg
            data["completeTime"] = task.complete_time_ms
        return data

    def claim_due_callbacks(self, task_id: str | None = None) -> list[tuple[EmulatedTask, dict[str, Any]]]:
        """Terminal callback-mode tasks not yet handled, each claimed once, with the payload to POST."""
        now = time.monotonic()
        due: list[tuple[EmulatedTask, dict[str, Any]]] = []
        with self._lock:
            candidates = self._callbacks_due if task_id is None else self._callbacks_due & {task_id}
            for candidate in list(candidates):
                task = self._tasks[candidate]
                if task.state_at(now) in ("success", "failed"):
                    self._callbacks_due.discard(candidate)
                    due.append((task, envelope(self.status_data(task, now))))
        return due

    def plan_callback(self) -> CallbackPlan:
        """Start one delivery: take its share of the callback faults and the current settings."""
        with self._lock:
            faults = self._faults
            dropped = faults.callback_drop > 0
            doubled = not dropped and faults.callback_duplicate > 0
            forged = not dropped and faults.callback_forge > 0
            faults.callback_drop -= int(dropped)
            faults.callback_duplicate -= int(doubled)
            faults.callback_forge -= int(forged)
            return CallbackPlan(
                epoch=self._epoch,
                dropped=dropped,
                forged=forged,
                delay_seconds=faults.callback_delay,
                copies=2 if doubled else 1,
                timeout_seconds=self.settings.callback_timeout_seconds,
                retry_delays=tuple(self.settings.callback_retry_delays),
            )

    def is_current(self, epoch: int) -> bool:
        """False once a reset happened after the delivery of this epoch started."""
        with self._lock:
            return epoch == self._epoch

    def record_callback(self, record: CallbackRecord, epoch: int | None = None) -> bool:
        """Keep one callback record; refused (False) when it comes from before the last reset."""
        with self._lock:
            if epoch is not None and epoch != self._epoch:
                return False
            self._callbacks.append(record)
            return True


def envelope(data: dict[str, Any]) -> dict[str, Any]:
    """The success envelope every API answer shares."""
    return {"code": 200, "message": "success", "data": data}


def _result_json(task: EmulatedTask) -> str:
    """The resultJson *string* the real API returns: one absolute URL per task."""
    url = f"{task.base_url}/files/{task.task_id}/0.{task.output_format}"
    return json.dumps({"resultUrls": [url]}, separators=(",", ":"))


def names_references(body: dict[str, Any]) -> bool:
    """Whether a request body names reference images the emulator must fetch."""
    value = body.get("input")
    return isinstance(value, dict) and bool(value.get("image_urls"))


def _prompt_of(body: dict[str, Any]) -> str:
    value = body.get("input")
    prompt = value.get("prompt") if isinstance(value, dict) else None
    return prompt if isinstance(prompt, str) else ""


def _marker_failure(prompt: str) -> tuple[str, str] | None:
    match = _FAIL_MARKER.search(prompt)
    return (match.group(1), f"Emulated failure requested by the prompt: {match.group(1)}") if match else None


def _marker_seconds(prompt: str, default: float) -> float:
    """``[emulator:seconds=N]`` overrides the generation time of one task (e.g. to provoke timeouts)."""
    match = _SECONDS_MARKER.search(prompt)
    return float(match.group(1)) if match else max(0.0, default)

"""APIXO's task API as it is on the wire: paths, envelopes, request bodies, task states, fail codes.

The one module that knows names such as ``/statusTask``, ``taskId`` or ``resultJson``, and what a
status or a fail code means. The hook moves these shapes over HTTP, :func:`.callbacks.check_call`
reads the webhook's with them, and the rules for what a caller may ask live in :mod:`.validation`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from airflow_provider_nanobanana.exceptions import ApixoMalformedResponseError

DEFAULT_BASE_URL = "https://api.apixo.ai/api/v1"
NANO_BANANA = "nano-banana"
SUBMIT_PATH = "/generateTask/{model}"
STATUS_PATH = "/statusTask/{model}"
BALANCE_PATH = "/apikeys/current-balance"

PROVIDERS = ("auto", "value", "official")
REQUEST_TYPES = ("async", "callback")


class TaskState(StrEnum):
    """Lifecycle of an APIXO task."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskState.SUCCESS, TaskState.FAILED)


# Words of failCodes that say the service went wrong (a new task may succeed), checked first ...
_TRANSIENT_FAIL_WORDS = frozenset({"timeout", "unavailable", "internal", "overloaded", "busy", "generation"})
# ... then words that blame the input (content, prompt, image) or the account (credits).
_INPUT_FAIL_WORDS = frozenset(
    {
        "content",
        "nsfw",
        "prompt",
        "image",
        "format",
        "credit",
        "credits",
        "balance",
        "prohibited",
        "sensitive",
    }
)


_ACCOUNT_FAIL_WORDS = frozenset({"credit", "credits", "balance"})


def _fail_code_words(fail_code: str | None) -> set[str]:
    return {word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", fail_code or "")}


def is_input_fail_code(fail_code: str | None) -> bool:
    """Whether a failCode is caused by the request or the account, so resubmitting cannot help.

    Two naming styles are in use (``PROMPT_TOO_LONG``, ``PromptLengthExceeded``), so codes are judged
    by their words; a code with no known word counts as transient.
    """
    words = _fail_code_words(fail_code)
    return not words & _TRANSIENT_FAIL_WORDS and bool(words & _INPUT_FAIL_WORDS)


def is_content_rejection(fail_code: str | None) -> bool:
    """An input-caused failure of this request alone (content, prompt, image), not of the account.

    The ones a batch may skip: the next prompt can still succeed, unlike after ``INSUFFICIENT_CREDITS``.
    """
    return is_input_fail_code(fail_code) and not _fail_code_words(fail_code) & _ACCOUNT_FAIL_WORDS


def status_query(task_id: str) -> dict[str, str]:
    """Query parameters of a ``statusTask`` read."""
    return {"taskId": task_id}


@dataclass(frozen=True)
class Envelope:
    """APIXO's answer wrapper ``{"code", "message", "data"}``; ``code`` is None when a body is not one."""

    code: int | None
    message: str | None
    data: Any

    @classmethod
    def parse(cls, body: Any) -> Envelope:
        if not isinstance(body, Mapping) or isinstance(body.get("code"), bool):
            return cls(None, None, None)
        code = body.get("code")
        message = body.get("message")
        return cls(
            code if isinstance(code, int) else None,
            None if message is None else str(message),
            body.get("data"),
        )

    @property
    def error_detail(self) -> str | None:
        """``data.error``: what a 400 answer says is wrong."""
        detail = self.data.get("error") if isinstance(self.data, Mapping) else None
        return None if detail is None else str(detail)


@dataclass(frozen=True)
class TaskStatus:
    """One ``statusTask`` answer, parsed and typed."""

    task_id: str
    state: TaskState
    result_urls: tuple[str, ...] = ()
    fail_code: str | None = None
    fail_message: str | None = None
    create_time: int | None = None
    complete_time: int | None = None
    cost_time: int | None = None

    @classmethod
    def from_api(cls, data: Any) -> TaskStatus:
        """Parse the ``data`` object of a ``statusTask`` envelope."""
        task_id = _read_task_id(data, "statusTask")
        try:
            state = TaskState(str(data.get("state")))
        except ValueError:
            raise ApixoMalformedResponseError(
                f"statusTask for {task_id} has an unknown state {data.get('state')!r}"
            ) from None
        result_urls = (
            _parse_result_urls(task_id, data.get("resultJson")) if state is TaskState.SUCCESS else ()
        )
        return cls(
            task_id=task_id,
            state=state,
            result_urls=result_urls,
            fail_code=_optional_str(data.get("failCode")),
            fail_message=_optional_str(data.get("failMsg")),
            create_time=_optional_int(data.get("createTime")),
            complete_time=_optional_int(data.get("completeTime")),
            cost_time=_optional_int(data.get("costTime")),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for trigger events."""
        return {**self.result(), "fail_code": self.fail_code, "fail_message": self.fail_message}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> TaskStatus:
        """Inverse of :meth:`to_dict`."""
        return cls(
            task_id=value["apixo_task_id"],
            state=TaskState(value["state"]),
            result_urls=tuple(value.get("result_urls") or ()),
            fail_code=value.get("fail_code"),
            fail_message=value.get("fail_message"),
            create_time=value.get("create_time"),
            complete_time=value.get("complete_time"),
            cost_time=value.get("cost_time"),
        )

    def result(self) -> dict[str, Any]:
        """What the operators return (and so push to XCom): ids, URLs and times, never bytes."""
        return {
            "apixo_task_id": self.task_id,
            "state": self.state.value,
            "result_urls": list(self.result_urls),
            "create_time": self.create_time,
            "complete_time": self.complete_time,
            "cost_time": self.cost_time,
        }


def _parse_result_urls(task_id: str, result_json: Any) -> tuple[str, ...]:
    """``resultJson`` is documented as a JSON string; accept an already-decoded object too."""
    try:
        result = json.loads(result_json) if isinstance(result_json, str) else result_json
    except json.JSONDecodeError:
        raise ApixoMalformedResponseError(f"resultJson of task {task_id} is not valid JSON") from None
    urls = result.get("resultUrls") if isinstance(result, Mapping) else None
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise ApixoMalformedResponseError(f"resultJson of task {task_id} has no resultUrls list")
    return tuple(urls)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def parse_task_id(data: Any) -> str:
    """Read the task id from the ``data`` of a ``generateTask`` envelope."""
    return _read_task_id(data, "generateTask")


def _read_task_id(data: Any, endpoint: str) -> str:
    """Task ids are opaque (``task_1234``, 32 hex digits, maybe a number): kept as strings."""
    task_id = data.get("taskId") if isinstance(data, Mapping) else None
    if isinstance(task_id, bool) or not isinstance(task_id, str | int) or task_id == "":
        raise ApixoMalformedResponseError(f"{endpoint} answer has no taskId: {data!r:.200}")
    return str(task_id)


def build_task_body(
    task_input: Mapping[str, Any], *, provider: str = "auto", callback_url: str | None = None
) -> dict[str, Any]:
    """The ``generateTask`` body: callback mode exactly when a callback URL is given."""
    body: dict[str, Any] = {
        "request_type": "callback" if callback_url else "async",
        "provider": provider,
        "input": dict(task_input),
    }
    if callback_url:
        body["callback_url"] = callback_url
    return body


def webhook_task_id(body: bytes) -> str | None:
    """``data.taskId`` of a webhook call: APIXO posts the task's status envelope, or None if not one."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return None
    data = payload.get("data") if isinstance(payload, Mapping) else None  # whatever its ``code``
    task_id = data.get("taskId") if isinstance(data, Mapping) else None
    return task_id if isinstance(task_id, str) else None

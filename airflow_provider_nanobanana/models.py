"""The shapes of APIXO's task API: paths, envelopes, request bodies, task states and fail codes.

This is the one module that knows names such as ``/statusTask``, ``taskId`` or ``resultJson``; the
hook moves them over HTTP and the operators speak Airflow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_nanobanana.exceptions import ApixoInputError, ApixoMalformedResponseError

DEFAULT_BASE_URL = "https://api.apixo.ai/api/v1"
NANO_BANANA = "nano-banana"
SUBMIT_PATH = "/generateTask/{model}"
STATUS_PATH = "/statusTask/{model}"
BALANCE_PATH = "/apikeys/current-balance"

PROVIDERS = ("auto", "value", "official")
REQUEST_TYPES = ("async", "callback")
MODES = ("text-to-image", "image-to-image")
ASPECT_RATIOS = ("1:1", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto")
OUTPUT_FORMATS = ("png", "jpeg")
MAX_PROMPT_CHARS = 5000
MAX_IMAGE_URLS = 5

# The Nano Banana operator's wait: the documented cadence for fast image models (first poll after
# 5-10 s, then every 3 s), but longer than their "about 2 minutes": a scheduled batch can queue at
# the API, and these defaults predate the per-model table below.
DEFAULT_INITIAL_DELAY = 5.0
DEFAULT_POLL_INTERVAL = 3.0
DEFAULT_TIMEOUT = 300.0
MAX_INPUT_BYTES = 1_000_000


@dataclass(frozen=True)
class WaitCadence:
    """How to wait for one model's tasks: seconds before the first poll, between polls, in all."""

    initial_delay: float
    poll_interval: float
    timeout: float


# The API's polling guidance by model family; a model not listed waits as a quality image model.
FAST_IMAGE = WaitCadence(initial_delay=5, poll_interval=3, timeout=120)
QUALITY_IMAGE = WaitCadence(initial_delay=10, poll_interval=5, timeout=180)
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


@dataclass(frozen=True)
class NanoBananaRequest:
    """A validated ``nano-banana`` task: build it with :meth:`validated`, send :meth:`task_input`."""

    prompt: str
    mode: str
    image_urls: tuple[str, ...]
    aspect_ratio: str
    output_format: str
    provider: str | None
    callback_url: str | None

    @classmethod
    def validated(
        cls,
        *,
        prompt: Any,
        image_urls: Sequence[str] | None = None,
        mode: str | None = None,
        aspect_ratio: str = "1:1",
        output_format: str = "png",
        provider: str | None = None,
        request_type: str | None = None,
        callback_url: str | None = None,
    ) -> NanoBananaRequest:
        """Check every field against the contract, naming the field and the rule on failure.

        An empty string (what a template renders for "nothing") counts as not set.
        """
        urls = _check_image_urls(image_urls or None)
        return cls(
            prompt=_check_prompt(prompt),
            mode=_check_mode(mode or None, urls),
            image_urls=urls,
            aspect_ratio=check_choice("aspect_ratio", aspect_ratio, ASPECT_RATIOS),
            output_format=check_choice("output_format", output_format, OUTPUT_FORMATS),
            provider=check_choice("provider", provider, PROVIDERS) if provider else None,
            callback_url=_check_callback(request_type or None, callback_url or None),
        )

    def task_input(self) -> dict[str, Any]:
        """The ``input`` object of the request body."""
        task_input: dict[str, Any] = {
            "mode": self.mode,
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio,
            "output_format": self.output_format,
        }
        if self.image_urls:
            task_input["image_urls"] = list(self.image_urls)
        return task_input


@dataclass(frozen=True)
class TaskRequest:
    """A task for any model: its ``input`` object, passed through as given once it is known to be a
    JSON object of at most :data:`MAX_INPUT_BYTES`; the model checks the rest."""

    model: str
    input: Mapping[str, Any]
    provider: str | None
    callback_url: str | None

    @classmethod
    def validated(
        cls,
        *,
        model: Any,
        task_input: Any,
        provider: str | None = None,
        request_type: str | None = None,
        callback_url: str | None = None,
    ) -> TaskRequest:
        return cls(
            model=check_model_id(model),
            input=check_task_input(task_input),
            provider=check_choice("provider", provider, PROVIDERS) if provider else None,
            callback_url=_check_callback(request_type or None, callback_url or None),
        )

    def task_input(self) -> dict[str, Any]:
        """The ``input`` object of the request body."""
        return dict(self.input)


def check_task_input(value: Any) -> dict[str, Any]:
    """A mapping that serialises to a JSON object of at most 1 MB; errors never quote the value."""
    if isinstance(value, str):
        rule = (
            "must be a mapping of the model's input fields; got str (a template renders text: pass a "
            "dict, an XComArg, or set render_template_as_native_obj=True on the DAG)"
        )
        raise ApixoInputError("input", rule)
    if not isinstance(value, Mapping):
        raise ApixoInputError(
            "input", f"must be a mapping of the model's input fields; got {type(value).__name__}"
        )
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as error:
        raise ApixoInputError("input", f"must be JSON-serialisable: {error}") from None
    if len(encoded) > MAX_INPUT_BYTES:
        rule = f"must be at most {MAX_INPUT_BYTES:,} bytes as JSON (1 MB); got {len(encoded):,}"
        raise ApixoInputError("input", rule)
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


SubmittableRequest = TaskRequest | NanoBananaRequest
"""What the operators submit: a request for any model, or a typed one."""

_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def check_model_id(model: Any) -> str:
    """Model ids go into the URL path: allow only what APIXO's ids look like."""
    if not isinstance(model, str) or not _MODEL_ID.fullmatch(model):
        raise ApixoInputError(
            "model", f"must be an APIXO model id such as {NANO_BANANA!r}; got {model!r:.80}"
        )
    return model


def check_choice(field: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ApixoInputError(field, f"must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApixoInputError("prompt", "must be a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ApixoInputError("prompt", f"must be at most {MAX_PROMPT_CHARS} characters; got {len(prompt)}")
    return prompt


def _check_image_urls(image_urls: Sequence[str] | None) -> tuple[str, ...]:
    if image_urls is None:
        return ()
    if isinstance(image_urls, str) or not isinstance(image_urls, Sequence):
        raise ApixoInputError(
            "image_urls", "must be a list of URLs (templated: set render_template_as_native_obj=True)"
        )
    if len(image_urls) > MAX_IMAGE_URLS:
        raise ApixoInputError("image_urls", f"must hold at most {MAX_IMAGE_URLS} URLs; got {len(image_urls)}")
    for index, url in enumerate(image_urls):
        check_http_url(f"image_urls[{index}]", url)
    return tuple(image_urls)


def check_http_url(field: str, url: Any) -> str:
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApixoInputError(field, f"must be an absolute http(s) URL; got {shown_url(url)}")
    return str(url)


def shown_url(url: Any) -> str:
    """``url`` as an error message may show it: without credentials or query, which can hold secrets."""
    if not isinstance(url, str):
        return f"{url!r:.100}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "an unparseable URL"
    host = parts.netloc.rpartition("@")[2]
    query = "?…" if parts.query else ""
    return f"{parts._replace(netloc=host, query='', fragment='').geturl() + query!r:.100}"


def _check_mode(mode: str | None, image_urls: tuple[str, ...]) -> str:
    inferred = "image-to-image" if image_urls else "text-to-image"
    if mode is None:
        return inferred
    check_choice("mode", mode, MODES)
    if mode != inferred:
        rule = "needs 1 to 5 image_urls" if image_urls == () else "takes no image_urls"
        raise ApixoInputError("mode", f"{mode} {rule}; got {len(image_urls)}")
    return mode


# http callbacks are allowed to these, for the emulator and local tests only.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _check_callback(request_type: str | None, callback_url: str | None) -> str | None:
    if request_type is not None:
        check_choice("request_type", request_type, REQUEST_TYPES)
    if callback_url is None:
        if request_type == "callback":
            raise ApixoInputError("callback_url", "is required when request_type is 'callback'")
        return None
    if request_type == "async":
        raise ApixoInputError("callback_url", "must not be set when request_type is 'async'")
    return check_webhook_url("callback_url", callback_url)


def check_webhook_url(field: str, url: Any) -> str:
    """A URL APIXO may call: https, or http on this machine (the emulator, local tests)."""
    parts = urlsplit(check_http_url(field, url))
    if parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ApixoInputError(field, f"must be an https URL (http only on localhost); got {shown_url(url)}")
    return str(url)

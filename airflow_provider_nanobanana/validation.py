"""Input rules: what a DAG author or a connection may ask for, checked before any HTTP call.

Every check names the field and the rule it breaks (:class:`~.exceptions.ApixoInputError`) and never
quotes a secret. The operators, the sensor, the hook and the connection settings all check here.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_nanobanana.api import NANO_BANANA, PROVIDERS, REQUEST_TYPES
from airflow_provider_nanobanana.exceptions import ApixoInputError, shown_url
from airflow_provider_nanobanana.references import ImageReference, given_urls, image_references

MODES = ("text-to-image", "image-to-image")
ASPECT_RATIOS = ("1:1", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto")
OUTPUT_FORMATS = ("png", "jpeg")
MAX_PROMPT_CHARS = 5000
MAX_IMAGE_URLS = 5
MAX_INPUT_BYTES = 1_000_000
CONTENT_VIOLATION_POLICIES = ("fail", "skip")
REQUEST_FIELDS = ("prompt", "image_urls", "mode", "aspect_ratio", "output_format", "provider")
"""What the function may return in a dict: the request. Waiting, storage and the connection are
fixed when the DAG is parsed, so they are the decorator's arguments."""


@dataclass(frozen=True)
class NanoBananaRequest:
    """A validated ``nano-banana`` task: build it with :meth:`validated`, send :meth:`task_input`."""

    prompt: str
    mode: str
    references: tuple[ImageReference, ...]
    aspect_ratio: str
    output_format: str
    provider: str | None
    callback_url: str | None

    @classmethod
    def validated(
        cls,
        *,
        prompt: Any,
        image_urls: Sequence[Any] | None = None,
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
        references = image_references(image_urls or None, maximum=MAX_IMAGE_URLS)
        return cls(
            prompt=_check_prompt(prompt),
            mode=_check_mode(mode or None, len(references)),
            references=references,
            aspect_ratio=check_choice("aspect_ratio", aspect_ratio, ASPECT_RATIOS),
            output_format=check_choice("output_format", output_format, OUTPUT_FORMATS),
            provider=check_choice("provider", provider, PROVIDERS) if provider else None,
            callback_url=_check_callback(request_type or None, callback_url or None),
        )

    def task_input(self, image_urls: Sequence[str] | None = None) -> dict[str, Any]:
        """The ``input`` object of the request body, with the references as given unless ``image_urls``
        (the URLs to send) replaces them."""
        task_input: dict[str, Any] = {
            "mode": self.mode,
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio,
            "output_format": self.output_format,
        }
        if self.references:
            task_input["image_urls"] = list(image_urls or given_urls(self.references))
        return task_input


@dataclass(frozen=True)
class TaskRequest:
    """A task for any model: its ``input`` object, passed through as given once it is known to be a
    JSON object of at most :data:`MAX_INPUT_BYTES`; the model checks the rest. Its ``image_urls``, if
    it has them, are references as for Nano Banana (objects signed at submission)."""

    model: str
    input: Mapping[str, Any]
    references: tuple[ImageReference, ...]
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
        references: tuple[ImageReference, ...] = ()
        if isinstance(task_input, Mapping) and task_input.get("image_urls") is not None:
            references = image_references(task_input["image_urls"])
            task_input = {**task_input, "image_urls": given_urls(references)}
        return cls(
            model=check_model_id(model),
            input=check_task_input(task_input),
            references=references,
            provider=check_choice("provider", provider, PROVIDERS) if provider else None,
            callback_url=_check_callback(request_type or None, callback_url or None),
        )

    def task_input(self, image_urls: Sequence[str] | None = None) -> dict[str, Any]:
        """The ``input`` object of the request body; ``image_urls`` (the URLs to send) replaces the
        references as given."""
        if image_urls is None:
            return dict(self.input)
        return {**self.input, "image_urls": list(image_urls)}


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


def check_http_url(field: str, url: Any) -> str:
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApixoInputError(field, f"must be an absolute http(s) URL; got {shown_url(url)}")
    return str(url)


def _check_mode(mode: str | None, image_count: int) -> str:
    inferred = "image-to-image" if image_count else "text-to-image"
    if mode is None:
        return inferred
    check_choice("mode", mode, MODES)
    if mode != inferred:
        rule = "needs 1 to 5 image_urls" if image_count == 0 else "takes no image_urls"
        raise ApixoInputError("mode", f"{mode} {rule}; got {image_count}")
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


def check_callback_base_url(value: Any, field: str = "callback_base_url") -> str:
    """The public URL of the api-server: https (http only on loopback), without a query."""
    url = check_webhook_url(field, value).rstrip("/")
    parts = urlsplit(url)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ApixoInputError(field, f"must have no query, fragment or credentials; got {shown_url(value)}")
    return url


def check_seconds(field: str, value: timedelta | float, *, minimum: float) -> float:
    """A duration in seconds (or a timedelta), at least ``minimum``."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < minimum:
        raise ApixoInputError(field, f"must be at least {minimum:g} seconds; got {value!r}")
    return float(seconds)


def check_error_budget(max_consecutive_errors: int) -> int:
    if isinstance(max_consecutive_errors, bool) or not isinstance(max_consecutive_errors, int):
        raise ApixoInputError(
            "max_consecutive_errors", f"must be a whole number; got {max_consecutive_errors!r}"
        )
    if max_consecutive_errors < 1:
        raise ApixoInputError("max_consecutive_errors", f"must be at least 1; got {max_consecutive_errors}")
    return max_consecutive_errors


def check_max_image_bytes(max_image_bytes: int) -> int:
    if isinstance(max_image_bytes, bool) or not isinstance(max_image_bytes, int) or max_image_bytes < 1:
        raise ApixoInputError("max_image_bytes", f"must be a whole number above 0; got {max_image_bytes!r}")
    return max_image_bytes


def check_whole_number(field: str, value: Any, *, maximum: int) -> int:
    """A whole number from 1 to ``maximum``; the UI may store it as text."""
    with contextlib.suppress(TypeError, ValueError):
        value = int(str(value))
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ApixoInputError(field, f"must be a whole number from 1 to {maximum}; got {value!r}")
    return value


def check_waiting(
    *,
    deferrable: bool,
    wait_for_completion: bool,
    callback_base_url: str | None,
    output_path: Any,
    makes_images: bool,
    model: str,
) -> None:
    """The generating operators' arguments that only work together, checked when the DAG is parsed."""
    if callback_base_url and not (deferrable and wait_for_completion):
        rule = "needs deferrable=True and wait_for_completion=True: the webhook wakes a deferred task"
        raise ApixoInputError("callback_base_url", rule)
    if output_path is not None and not wait_for_completion:
        raise ApixoInputError("output_path", "needs wait_for_completion=True: nothing is stored otherwise")
    if output_path is not None and not makes_images:
        rule = f"stores images; {model} makes videos: store its result_urls yourself"
        raise ApixoInputError("output_path", rule)


def check_one_webhook(callback_base_url: str | None, callback_url: str | None) -> None:
    """APIXO calls one URL: the task's own endpoint, or the api-server's route that wakes it."""
    if callback_base_url and callback_url is not None:
        raise ApixoInputError("callback_base_url", "cannot be combined with callback_url")


def check_apixo_task_id(task_id: Any) -> str:
    """A task id to wait for, as rendered from a template: empty or "None" means none was pushed."""
    if not task_id or task_id == "None":
        raise ApixoInputError(
            "apixo_task_id", f"is empty ({task_id!r}): did the upstream task push it to XCom?"
        )
    return str(task_id)


def requested_fields(returned: Any) -> dict[str, Any]:
    """The function's return value as request fields: a prompt, or a dict of :data:`REQUEST_FIELDS`."""
    if isinstance(returned, str):
        return {"prompt": returned}
    if not isinstance(returned, Mapping):
        kind = type(returned).__name__
        rule = f"must be a prompt (a string) or a dict of {', '.join(REQUEST_FIELDS)}; got {kind}"
        raise ApixoInputError("the @task.nanobanana function's return value", rule)
    unknown = sorted(set(returned) - set(REQUEST_FIELDS))
    if unknown:
        rule = (
            f"may only set {', '.join(REQUEST_FIELDS)}; got {', '.join(map(str, unknown))} "
            "(set waiting, storage and the connection as arguments of the decorator)"
        )
        raise ApixoInputError("the @task.nanobanana function's return value", rule)
    return dict(returned)

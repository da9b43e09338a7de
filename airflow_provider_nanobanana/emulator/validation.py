"""Create-task body validation, per the APIXO API contract.

Only ``nano-banana`` has a known schema; other models need just an ``input`` object. Each check returns
the message the emulator puts in ``data.error``, naming the offending field, or None when it is fine.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

# The contract's rules, read from the API docs independently of the client's ``models``: the
# emulator checks the client, so it must not share the client's mistakes.
ASPECT_RATIOS = ("1:1", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto")
REQUEST_TYPES = ("async", "callback")
PROVIDERS = ("auto", "value", "official")
MODES = ("text-to-image", "image-to-image")
OUTPUT_FORMATS = ("png", "jpeg")
MAX_PROMPT_CHARS = 5000
MAX_IMAGE_URLS = 5

__all__ = ["ASPECT_RATIOS", "validate_create_body"]


def validate_create_body(model: str, body: Any) -> str | None:
    """The first problem with a create-task body, or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if not isinstance(body.get("input"), dict):
        return "Missing required field: input" if "input" not in body else "Field input must be an object"
    if model != "nano-banana":
        return None
    for check in (_check_envelope, _check_mode_and_prompt, _check_image_urls, _check_options):
        error = check(body)
        if error:
            return error
    return None


def _one_of(body: dict[str, Any], key: str, allowed: tuple[str, ...], label: str) -> str | None:
    """An optional enum field: absent is fine, otherwise it must be one of ``allowed``."""
    if key in body and (not isinstance(body[key], str) or body[key] not in allowed):
        return f"Invalid value for field: {label} (expected one of: {', '.join(allowed)})"
    return None


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_envelope(body: dict[str, Any]) -> str | None:
    """request_type, callback_url and provider."""
    error = _one_of(body, "request_type", REQUEST_TYPES, "request_type")
    if error:
        return error
    if body.get("request_type") == "callback" and not body.get("callback_url"):
        return "Missing required field: callback_url (required when request_type is callback)"
    if body.get("callback_url") is not None and not _is_http_url(body["callback_url"]):
        return "Invalid value for field: callback_url (must be an http(s) URL)"
    return _one_of(body, "provider", PROVIDERS, "provider")


def _check_mode_and_prompt(body: dict[str, Any]) -> str | None:
    """input.mode and input.prompt, both required."""
    data = body["input"]
    if "mode" not in data:
        return "Missing required field: input.mode"
    error = _one_of(data, "mode", MODES, "input.mode")
    if error:
        return error
    prompt = data.get("prompt")
    if prompt is None:
        return "Missing required field: input.prompt"
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= MAX_PROMPT_CHARS:
        return f"Invalid value for field: input.prompt (must be 1 to {MAX_PROMPT_CHARS} characters)"
    return None


def _check_image_urls(body: dict[str, Any]) -> str | None:
    """input.image_urls: required for image-to-image, 1 to 5 http(s) URLs."""
    data = body["input"]
    if data.get("mode") != "image-to-image":
        return None
    urls = data.get("image_urls")
    if urls is None:
        return "Missing required field: input.image_urls (required for image-to-image)"
    if not isinstance(urls, list) or not 1 <= len(urls) <= MAX_IMAGE_URLS:
        return f"Invalid value for field: input.image_urls (must be a list of 1 to {MAX_IMAGE_URLS} URLs)"
    for index, url in enumerate(urls):
        if not _is_http_url(url):
            return f"Invalid value for field: input.image_urls[{index}] (must be an http(s) URL)"
    return None


def _check_options(body: dict[str, Any]) -> str | None:
    """input.aspect_ratio and input.output_format, both optional."""
    data = body["input"]
    error = _one_of(data, "aspect_ratio", ASPECT_RATIOS, "input.aspect_ratio")
    if error:
        return error
    return _one_of(data, "output_format", OUTPUT_FORMATS, "input.output_format")

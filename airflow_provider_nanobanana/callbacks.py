"""Callback mode: the webhook URL a try mints, and the check the plugin's route makes of a call.

The URL is ``<callback_base_url>/nanobanana/callback/<task instance id>?token=<secret>``. The task
instance id is new for every try, and so is the token; only the token's sha256 leaves the worker
(in the trigger's kwargs, which Airflow stores as JSON, encrypted only where a Fernet key is set).
The secret travels as the ``token`` query parameter: a name the api-server's access log masks.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_nanobanana.exceptions import ApixoInputError
from airflow_provider_nanobanana.models import check_webhook_url, shown_url

CALLBACK_PREFIX = "/nanobanana"
CALLBACK_PATH = "/callback"
TOKEN_PARAM = "token"
MAX_CALLBACK_BYTES = 64 * 1024
"""APIXO's envelope is well under a kilobyte; anything this large is not APIXO."""
DEFAULT_CALLBACK_POLL_INTERVAL = 60.0
"""In callback mode the trigger still polls, this rarely, in case a webhook is lost."""
CALLBACK_STATUS = "callback"
"""The status of the event the route wakes a task with: "APIXO says it ended", to be verified."""
TRIGGER_CLASSPATH = "airflow_provider_nanobanana.triggers.nanobanana.NanoBananaTaskTrigger"
"""What a task waiting for a callback is deferred on (a string: the route must not import it)."""


@dataclass(frozen=True)
class CallbackTicket:
    """One try's webhook: the URL handed to APIXO and its token (secret), and the token's hash."""

    url: str = field(repr=False)
    token: str = field(repr=False)
    token_sha256: str


def check_callback_base_url(value: Any, field: str = "callback_base_url") -> str:
    """The public URL of the api-server: https (http only on loopback), without a query."""
    url = check_webhook_url(field, value).rstrip("/")
    parts = urlsplit(url)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ApixoInputError(field, f"must have no query, fragment or credentials; got {shown_url(value)}")
    return url


def mint_ticket(callback_base_url: str, ti_id: str) -> CallbackTicket:
    token = secrets.token_urlsafe(32)
    url = f"{callback_base_url.rstrip('/')}{CALLBACK_PREFIX}{CALLBACK_PATH}/{ti_id}?{TOKEN_PARAM}={token}"
    return CallbackTicket(url, token, token_sha256(token))


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, expected_sha256: str) -> bool:
    """Constant-time: the time taken says nothing about how much of a guess was right."""
    return hmac.compare_digest(token_sha256(token), expected_sha256)

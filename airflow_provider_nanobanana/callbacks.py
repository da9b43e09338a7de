"""Callback mode: the webhook URL a try mints, and the check a call to it must pass.

The URL is ``<callback_base_url>/nanobanana/callback/<task instance id>?token=<secret>``. The task
instance id is new for every try, and so is the token; only the token's sha256 leaves the worker
(in the trigger's kwargs, which Airflow stores as JSON, encrypted only where a Fernet key is set).
The secret travels as the ``token`` query parameter: a name the api-server's access log masks.
:mod:`.plugin` is only the route: it finds the waiting task and asks :func:`check_call`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_nanobanana.api import webhook_task_id
from airflow_provider_nanobanana.compat import DEFERRING_TRY

if TYPE_CHECKING:
    from collections.abc import Mapping

CALLBACK_PREFIX = "/nanobanana"
CALLBACK_PATH = "/callback"
TOKEN_PARAM = "token"
MAX_CALLBACK_BYTES = 64 * 1024
"""APIXO's envelope is well under a kilobyte; anything this large is not APIXO."""
DEFAULT_CALLBACK_POLL_INTERVAL = 60.0
"""In callback mode the trigger still polls, this rarely, in case a webhook is lost."""
CALLBACK_STATUS = "callback"
"""The status of the event the route wakes a task with: "APIXO says it ended", to be verified."""
TRIGGER_CLASSPATHS = frozenset(
    {
        "airflow_provider_nanobanana.triggers.apixo.ApixoTaskTrigger",
        # What tasks deferred before the rename wait on: they must still be woken after an upgrade.
        "airflow_provider_nanobanana.triggers.nanobanana.NanoBananaTaskTrigger",
    }
)
"""What a task waiting for a callback is deferred on (strings: the route must not import them)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallbackTicket:
    """One try's webhook: the URL handed to APIXO and its token (secret), and the token's hash."""

    url: str = field(repr=False)
    token: str = field(repr=False)
    token_sha256: str


def mint_ticket(callback_base_url: str, ti_id: str) -> CallbackTicket:
    token = secrets.token_urlsafe(32)
    url = f"{callback_base_url.rstrip('/')}{CALLBACK_PREFIX}{CALLBACK_PATH}/{ti_id}?{TOKEN_PARAM}={token}"
    return CallbackTicket(url, token, token_sha256(token))


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, expected_sha256: str) -> bool:
    """Constant-time: the time taken says nothing about how much of a guess was right."""
    return hmac.compare_digest(token_sha256(token), expected_sha256)


def check_call(
    classpath: str, trigger_kwargs: Mapping[str, Any], token: str, body: bytes
) -> tuple[int, str] | None:
    """Whether a call may wake the task deferred on this trigger: None if so, else (HTTP status, why).

    The kwargs are read by the trigger's parameter names, which its serialized form fixes for good.
    Only the token proves the call; of the payload, only the task id it names is read.
    """
    if classpath not in TRIGGER_CLASSPATHS:
        return 200, "ignored"
    expected = trigger_kwargs.get("callback_token_sha256")
    if not expected or not token_matches(token, expected):
        return 403, "wrong token"
    named, waited_for = webhook_task_id(body), trigger_kwargs.get("apixo_task_id")
    if named != waited_for:
        log.warning("APIXO callback with a valid token names task %r, not %r: ignored", named, waited_for)
        return 200, "ignored"
    return None


def wake_event(try_number: int) -> dict[str, Any]:
    """The event a checked call wakes the task with; the operator confirms it by a status read."""
    return {"status": CALLBACK_STATUS, DEFERRING_TRY: try_number}

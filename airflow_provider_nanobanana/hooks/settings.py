"""The settings of an ``apixo`` connection: read once, checked, named as the form names them.

Host, schema and port make the base URL; the password is the API key; the extras tune routing,
timeouts, the request budget and callback mode. A bad value fails before any request, naming the
form's field and where it is stored.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk.log import mask_secret

from airflow_provider_nanobanana.api import DEFAULT_BASE_URL, PROVIDERS
from airflow_provider_nanobanana.exceptions import ApixoError, ApixoInputError
from airflow_provider_nanobanana.get_provider_info import CONN_FIELDS
from airflow_provider_nanobanana.pacing import (
    APIXO_REQUESTS_PER_MINUTE,
    DEFAULT_REQUESTS_PER_MINUTE,
    PacerConfig,
    key_fingerprint,
)
from airflow_provider_nanobanana.validation import (
    check_callback_base_url,
    check_choice,
    check_seconds,
    check_whole_number,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_IN_FLIGHT = 32
REDIS_SCHEMES = ("redis", "rediss")


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook reads from an ``apixo`` connection."""

    base_url: str
    api_key: str = field(repr=False)
    provider: str
    timeout: float
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    rate_limit_storage: str | None = field(default=None, repr=False)
    callback_base_url: str | None = None

    @classmethod
    def from_connection(cls, conn: Connection, timeout: float | None = None) -> ConnectionSettings:
        """Read and check ``conn``; a bad value is named as the form shows it. ``timeout``, the
        hook's own, wins over the connection's."""
        if not conn.password:
            raise ApixoError(f"The API key field of the APIXO connection {conn.conn_id!r} is empty")
        if timeout is not None:
            check_seconds("timeout", timeout, minimum=0.1)
        try:
            return cls._read(conn, conn.password, timeout)
        except ApixoInputError as error:
            raise ApixoInputError(
                error.field, error.rule, label=_form_label(error.field, conn.conn_id)
            ) from None

    @classmethod
    def _read(cls, conn: Connection, api_key: str, timeout: float | None) -> ConnectionSettings:
        extra = conn.extra_dejson
        return cls(
            base_url=_base_url(conn.host, conn.port, _api_path(conn.schema)),
            api_key=api_key,
            provider=check_choice("extra.provider", extra.get("provider") or "auto", PROVIDERS),
            timeout=_request_timeout(timeout or extra.get("timeout") or DEFAULT_REQUEST_TIMEOUT),
            requests_per_minute=check_whole_number(
                "extra.requests_per_minute",
                _given(extra.get("requests_per_minute"), DEFAULT_REQUESTS_PER_MINUTE),
                maximum=APIXO_REQUESTS_PER_MINUTE,
            ),
            max_in_flight=check_whole_number(
                "extra.max_in_flight", _given(extra.get("max_in_flight"), DEFAULT_MAX_IN_FLIGHT), maximum=1000
            ),
            rate_limit_storage=_storage_uri(extra.get("rate_limit_storage")),
            callback_base_url=_callback_base_url(extra.get("callback_base_url")),
        )

    @property
    def fingerprint(self) -> str:
        """Names this key at this API in registries and Redis: a hash, never the key."""
        return key_fingerprint(self.base_url, self.api_key)

    @property
    def client_key(self) -> tuple[str, float, int]:
        """Hooks whose settings give the same key share one client."""
        return (self.fingerprint, self.timeout, self.max_in_flight)

    def pacer_config(self) -> PacerConfig:
        return PacerConfig(self.fingerprint, self.requests_per_minute, self.rate_limit_storage)


def _form_label(field: str, conn_id: str) -> str:
    """``extra.timeout`` as the connection form names it: its label, then where it is stored."""
    name = field.removeprefix("extra.")
    label = CONN_FIELDS[name]["label"] if name in CONN_FIELDS else name  # schema: not in the form
    return f"{label!r} field ({field}) of the APIXO connection {conn_id!r}"


def _api_path(schema: str | None) -> str | None:
    """The connection's schema is the API path (where a URI's path lands), never a protocol."""
    if schema and schema.strip("/").lower() in ("http", "https"):
        rule = f"is the API path, not the protocol; got {schema!r}: put the protocol in the Base URL"
        raise ApixoInputError("schema", rule)
    return schema


def _given(value: Any, default: int) -> Any:
    """An extra's value, or the default where the form left it empty (0 is a value, and wrong)."""
    return default if value is None or value == "" else value


def _storage_uri(value: Any) -> str | None:
    """``rate_limit_storage``: empty for this process's memory, else a Redis URL. Never echoed back,
    and its password is masked in logs."""
    if not value:
        return None
    if not isinstance(value, str) or urlsplit(value).scheme not in REDIS_SCHEMES:
        raise ApixoInputError(
            "extra.rate_limit_storage", "must be empty or a redis:// or rediss:// URL (redis://host:6379/0)"
        )
    if password := urlsplit(value).password:
        mask_secret(password)
    return value


def _callback_base_url(value: Any) -> str | None:
    """``callback_base_url``: where APIXO reaches the api-server's webhook route; empty to poll."""
    return check_callback_base_url(value, "extra.callback_base_url") if value else None


def _request_timeout(value: Any) -> float:
    """The ``timeout`` extra: the UI may store it as text."""
    with contextlib.suppress(TypeError, ValueError):
        value = float(value)
    return check_seconds("extra.timeout", value, minimum=0.1)


def _base_url(host: str | None, port: int | None, path: str | None = None) -> str:
    """The connection's host is a full base URL; a bare host name means HTTPS. The API path is the
    host's own, else the connection's schema (where a URI's path lands), else ``/api/v1``."""
    if not host:
        return DEFAULT_BASE_URL
    url = host if "://" in host else f"https://{host}"
    parts = urlsplit(url)
    if port and not parts.port:
        url = url.replace(parts.netloc, f"{parts.netloc}:{port}", 1)
    if not parts.path.strip("/"):
        url = url.rstrip("/") + "/" + ((path or "").strip("/") or "api/v1")
    return url.rstrip("/")

"""What APIXO's answers mean for the caller: the envelope's data, or the typed error it describes.

Also the errors of requests that got no answer. A submission that may have reached APIXO is never
reported as resendable (:class:`~..exceptions.ApixoSubmissionUncertainError`), whatever went wrong.
"""

from __future__ import annotations

import ssl
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from airflow_provider_nanobanana.api import Envelope
from airflow_provider_nanobanana.exceptions import (
    ApixoApiError,
    ApixoAuthError,
    ApixoBadRequestError,
    ApixoError,
    ApixoInsufficientBalanceError,
    ApixoMalformedResponseError,
    ApixoNotFoundError,
    ApixoRateLimitError,
    ApixoServerError,
    ApixoSubmissionUncertainError,
    ApixoTransportError,
)

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


# What OpenSSL reports when the server answers a TLS handshake in plain HTTP (OpenSSL 3.0; 3.2 and later).
_PLAIN_HTTP_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})


def transport_error(error: httpx.HTTPError, method: str, what: str, conn_id: str) -> ApixoError:
    """Name what went wrong on the wire (or in decoding); a POST that may have been received is final."""
    if method == "POST" and not isinstance(error, _NOT_SENT):
        return ApixoSubmissionUncertainError(what, f"{type(error).__name__}: {error}")
    try:
        url: Any = error.request.url.copy_with(query=None)
    except RuntimeError:  # an error built without its request
        url = "APIXO"
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
    message = f"{what}: request to {url} {kind} ({type(error).__name__}: {error})"
    if _answered_in_plain_http(error):
        message += (
            ". The server did not answer in TLS: if it serves plain HTTP, write http:// before the host "
            f"in the Base URL field of the APIXO connection {conn_id!r} (a host without one means https://)"
        )
    return ApixoTransportError(message)


def _answered_in_plain_http(error: BaseException) -> bool:
    """Whether the TLS handshake failed because the server answered it in plain HTTP."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:  # a chain may loop back on itself
        if isinstance(cause, ssl.SSLError):
            return getattr(cause, "reason", None) in _PLAIN_HTTP_REASONS  # None when built in Python
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


# 5xx map to ApixoServerError; other codes without an entry to the base ApixoApiError.
_ERRORS_BY_STATUS: dict[int, type[ApixoApiError]] = {
    400: ApixoBadRequestError,
    401: ApixoAuthError,
    402: ApixoInsufficientBalanceError,
    403: ApixoAuthError,
    404: ApixoNotFoundError,
    429: ApixoRateLimitError,
}


def read_envelope(response: httpx.Response, what: str, conn_id: str) -> Any:
    """Return the envelope's ``data``, or raise the error it describes.

    APIXO may signal an error in the envelope's ``code`` under HTTP 200: that counts as the status.
    """
    try:
        envelope = Envelope.parse(response.json())
    except ValueError:
        envelope = Envelope.parse(None)
    status = response.status_code if response.status_code != 200 else envelope.code
    if status == 200:
        return envelope.data
    if response.status_code == 200 and envelope.code is None:
        raise ApixoMalformedResponseError(f"{what}: APIXO answered HTTP 200 without a JSON envelope")
    error = _api_error(status, envelope, response, conn_id)
    if response.request.method == "POST" and not _rejected(error):
        raise ApixoSubmissionUncertainError(what, str(error)) from error
    raise error


def _api_error(status: Any, envelope: Envelope, response: httpx.Response, conn_id: str) -> ApixoError:
    if not isinstance(status, int) or not 400 <= status <= 599:
        return ApixoMalformedResponseError(f"APIXO answered an envelope with code {status!r}")
    message = envelope.message or response.reason_phrase or "error"
    error_class = ApixoServerError if status >= 500 else _ERRORS_BY_STATUS.get(status, ApixoApiError)
    return error_class(status, message, envelope.error_detail, _retry_after(response), conn_id=conn_id)


def _rejected(error: ApixoError) -> bool:
    """Whether APIXO turned a submission away, so no task can exist.

    A 4xx says so. A 503 may come from a proxy that already forwarded the request, so only one
    that asks to come back later (``Retry-After``) counts.
    """
    if not isinstance(error, ApixoApiError):
        return False
    return error.http_status < 500 or (error.http_status == 503 and error.retry_after is not None)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None

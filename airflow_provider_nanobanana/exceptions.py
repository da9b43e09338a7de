"""Errors the provider raises, shaped so callers can act on them.

Every error says what happened and what to do about it. ``transient`` tells whether the very same
request may succeed if sent again: the hook retries only those. Errors that an Airflow retry cannot
fix, or that a retry could pay twice for, are also ``AirflowFailException``: the task fails for good.
No message ever contains the API key.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

from airflow_provider_nanobanana.compat import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
)


class ApixoError(AirflowException):
    """Base class of every error raised by this provider."""

    transient: ClassVar[bool] = False


class ApixoInputError(ApixoError, AirflowFailException, ValueError):
    """A parameter breaks the API's rules; raised before any HTTP request, and never retried."""

    def __init__(self, field: str, rule: str, *, label: str | None = None) -> None:
        """``field`` is the parameter's name for code; ``label``, when given, names it for people
        (a connection field as the form shows it)."""
        super().__init__(f"Invalid {label or field}: {rule}")
        self.field = field
        self.rule = rule


class ApixoConnectionNotFoundError(ApixoError, AirflowNotFoundException):
    """The APIXO connection is not defined where the hook looks it up: nothing was sent."""

    def __init__(self, conn_id: str, where: str) -> None:
        variable = f"AIRFLOW_CONN_{conn_id.upper()}"
        super().__init__(
            f"The APIXO connection {conn_id!r} is not defined {where}. Save it in Airflow (Admin > "
            f"Connections, or `airflow connections add {conn_id} --conn-type apixo ...`), which every "
            f"worker and triggerer reads; {variable} or a secrets backend must be set for each of them"
        )
        self.conn_id = conn_id


class ApixoApiError(ApixoError):
    """APIXO answered with an error envelope.

    ``hint`` says what to do; ``{connection}`` in it names the connection the request went through.
    """

    hint: ClassVar[str] = ""

    def __init__(
        self,
        status_code: int,
        message: str,
        detail: str | None = None,
        retry_after: float | None = None,
        *,
        conn_id: str | None = None,
    ) -> None:
        text = f"APIXO answered {status_code} ({message})"
        if detail:
            text += f": {detail}"
        if self.hint:
            connection = "the APIXO connection" + (f" {conn_id!r}" if conn_id else "")
            text += ". " + self.hint.format(connection=connection)
        super().__init__(text)
        self.http_status = status_code
        self.api_message = message
        self.detail = detail
        self.retry_after = retry_after


class ApixoBadRequestError(ApixoApiError, AirflowFailException):
    """HTTP 400: the request does not match the API's rules."""

    hint = "Fix the request parameters; resending the same request cannot succeed"


class ApixoAuthError(ApixoApiError):
    """HTTP 401/403: the key is missing, wrong, or not allowed to do this."""

    hint = "Check the API key field of {connection}"


class ApixoInsufficientBalanceError(ApixoApiError):
    """HTTP 402: the account has no credit left for this task."""

    hint = "Top up the APIXO account balance, then clear the task"


class ApixoNotFoundError(ApixoApiError):
    """HTTP 404: unknown task id, model or endpoint."""

    hint = "Check the task id, the model id and the Base URL field of {connection}"


class ApixoRateLimitError(ApixoApiError):
    """HTTP 429: too many requests for this key; the request was not processed."""

    transient = True
    hint = "Retried with backoff; lower the number of concurrent tasks if this persists"


class ApixoServerError(ApixoApiError):
    """HTTP 5xx: APIXO failed on its side."""

    transient = True
    hint = "Usually temporary; retried with backoff"


class ApixoMalformedResponseError(ApixoError):
    """The answer is not the documented envelope (not JSON, missing fields, unknown values)."""


class ApixoTransportError(ApixoError):
    """No usable HTTP answer: host unreachable, TLS failure, timeout or dropped connection."""

    transient = True


class ApixoSubmissionUncertainError(ApixoError, AirflowFailException):
    """A task submission may have reached APIXO but its answer was lost.

    Sending it again could pay for the same image twice, so it is never resent automatically.
    """

    def __init__(self, what: str, cause: str) -> None:
        super().__init__(
            f"{what} may have succeeded but its answer was lost ({cause}). "
            "It was not resent, to avoid paying twice: check the task list in the APIXO dashboard, "
            "then clear this Airflow task if no task was created."
        )


class ApixoTaskFailedError(ApixoError):
    """The APIXO task ended in state ``failed`` for a transient reason: a new task may succeed."""

    hint: ClassVar[str] = "a transient failure: a new task may succeed"

    def __init__(self, task_id: str, fail_code: str | None, fail_message: str | None) -> None:
        code = fail_code or "no failCode"
        super().__init__(f"APIXO task {task_id} failed: {code}: {fail_message or ''} ({self.hint})")
        self.task_id = task_id
        self.fail_code = fail_code
        self.fail_message = fail_message


class ApixoTaskRejectedError(ApixoTaskFailedError, AirflowFailException):
    """The APIXO task failed because of its input or the account (content, prompt, image, credits).

    The same request would fail again, so the Airflow task fails without retries.
    """

    hint = "caused by the input or the account: retrying cannot help"


class ApixoStorageError(ApixoError):
    """A result image could not be downloaded or stored; nothing partial was left behind.

    ``retryable`` tells whether downloading it again may succeed (a dropped connection, a 5xx).
    """

    def __init__(self, url: str, problem: str, *, retryable: bool = False) -> None:
        super().__init__(f"Result image {url:.300} {problem}; nothing was stored for it")
        self.url = url
        self.retryable = retryable


class ApixoReferenceError(ApixoError):
    """A reference image could not be read right now (no answer, a 5xx): nothing was submitted, so an
    Airflow retry is safe and may find it."""

    def __init__(self, field: str, url: str, problem: str) -> None:
        super().__init__(f"{field} {shown_url(url)} {problem}; nothing was submitted")
        self.field = field


class ApixoWaitError(ApixoError):
    """Waiting for an APIXO task ended without an outcome: polling kept failing."""

    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class ApixoWaitTimeoutError(ApixoWaitError):
    """The APIXO task did not finish before the wait's deadline; it may still finish later."""


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

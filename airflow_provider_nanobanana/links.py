"""The "Generated image" button on a task's page in the Airflow UI.

Airflow 3 computes operator links on the worker when the task ends, on the very operator that ran,
and keeps them as XCom, so the UI never imports this module. The operator or sensor keeps the URL to
open on itself (:func:`remember_image_link`); the link reads it from there. Reading it from an XCom
instead would make every finalize before success (each deferral, each reschedule) look up an XCom
that does not exist yet, which Airflow logs as an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

IMAGE_LINK_ATTRIBUTE = "generated_image_url"
"""Where a finished operator keeps the URL the link opens."""

# Object stores whose objects have a page a signed-in person can open; anything else that is not
# http(s) (a local file, memory) is not reachable from a browser.
_BROWSER_URLS = {
    "s3": "https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}",
    "gs": "https://storage.cloud.google.com/{bucket}/{key}",
    "gcs": "https://storage.cloud.google.com/{bucket}/{key}",
}


class GeneratedImageLink(BaseOperatorLink):
    """Opens the first generated image: where it was stored, if a browser reaches it; else APIXO's URL."""

    name = "Generated image"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        # "" (not None) hides the button: a None would be shown as the text "None".
        return getattr(operator, IMAGE_LINK_ATTRIBUTE, None) or ""


def remember_image_link(operator: BaseOperator, result: Mapping[str, Any]) -> None:
    """Keep the URL the link opens on the operator; the worker turns it into the link when the task ends."""
    link = image_link(result.get("stored_paths", []), result["result_urls"])
    setattr(operator, IMAGE_LINK_ATTRIBUTE, link)


def image_link(stored_paths: Sequence[str], result_urls: Sequence[str]) -> str | None:
    """The URL a person can open for the first image; result URLs expire, so a stored copy wins."""
    for uri in stored_paths:
        if url := _browser_url(uri):
            return url
    return result_urls[0] if result_urls else None


def _browser_url(uri: str) -> str | None:
    """The stored URI as a browser opens it; the connection id before ``@`` is Airflow's, not the store's."""
    if uri.startswith(("https://", "http://")):
        return uri
    parts = urlsplit(uri)
    template = _BROWSER_URLS.get(parts.scheme)
    bucket, key = parts.netloc.rpartition("@")[2], unquote(parts.path).lstrip("/")
    return template.format(bucket=quote(bucket), key=quote(key)) if template else None

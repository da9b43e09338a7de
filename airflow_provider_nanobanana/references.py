"""Reference images: what ``image_urls`` may name, and the URL APIXO is given for each.

APIXO fetches each reference itself, so it takes only http(s) URLs its servers can reach. Pipelines
keep their images in object stores: an ``ObjectStoragePath`` or an object-store URI as Airflow writes
it (``s3://conn_id@bucket/key``, what ``stored_paths`` holds) is signed on the worker just before
submitting, through the store's own provider, for the task's whole wait plus a margin. The signed
form exists only in the request body: the fingerprint that reattaching compares, lineage and every
message use the reference as given, and its signature is registered with Airflow's secrets masker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from airflow.sdk import ObjectStoragePath
from airflow.sdk.log import mask_secret

from airflow_provider_nanobanana.compat import object_location
from airflow_provider_nanobanana.exceptions import ApixoInputError, shown_url

if TYPE_CHECKING:
    from collections.abc import Callable

REFERENCE_MARGIN = 900.0
"""Seconds a signed reference stays valid after the task's wait could end: APIXO may fetch it late."""
MAX_SIGNED_SECONDS = 7 * 24 * 3600
"""S3's and GCS's V4 signatures last at most 7 days."""

_LOCAL_SCHEMES = ("", "file", "local")
_INSTEAD = (
    "pass a public http(s) URL, an ObjectStoragePath or s3://conn_id@bucket/key (the provider signs it), "
    "or the stored_paths of an upstream generation that stored to an object store (output_path)"
)


@dataclass(frozen=True)
class ImageReference:
    """One entry of ``image_urls``: a URL sent as given, or an object the worker signs."""

    field: str
    """``image_urls[<index>]``: what every message about it names."""
    given: str
    """The reference as the DAG gave it (an object as its URI): stable across tries, never signed here."""
    path: ObjectStoragePath | None = None
    """The object to sign; None for a URL APIXO fetches as is."""

    def url(self, valid_for: float) -> str:
        """The URL to send: a signed one, valid for ``valid_for`` seconds, for an object."""
        if self.path is None:
            return self.given
        seconds = min(MAX_SIGNED_SECONDS, max(1, round(valid_for)))
        try:
            signed = _SIGNERS[self.path.protocol](self.field, self.path, seconds)
        except ApixoInputError:
            raise
        except Exception as error:  # the store's library: no credentials, a key that cannot sign
            problem = f"{shown_url(self.given)} could not be signed ({type(error).__name__}: {error})"
            raise ApixoInputError(self.field, problem) from error
        _mask_signature(signed)
        return signed


def image_references(value: Any, *, maximum: int | None = None) -> tuple[ImageReference, ...]:
    """``image_urls`` as references, each checked, naming ``image_urls[<index>]`` on failure."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):  # an XCom list is a Sequence
        rule = "must be a list of URLs or objects (templated: set render_template_as_native_obj=True)"
        raise ApixoInputError("image_urls", rule)
    if maximum is not None and len(value) > maximum:
        raise ApixoInputError("image_urls", f"must hold at most {maximum} images; got {len(value)}")
    return tuple(image_reference(f"image_urls[{index}]", item) for index, item in enumerate(value))


def image_reference(field: str, value: Any) -> ImageReference:
    """One reference: an http(s) URL, or an object in a store the provider can sign for."""
    if isinstance(value, ObjectStoragePath):
        return _object_reference(field, value, str(value))
    if not isinstance(value, str):
        raise ApixoInputError(field, f"must be a URL or an ObjectStoragePath; got {type(value).__name__}")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ApixoInputError(field, f"is not a URL; {_INSTEAD}") from None
    if parts.scheme in ("http", "https") and parts.netloc:
        return ImageReference(field, value)
    if parts.scheme in _LOCAL_SCHEMES and (parts.scheme or value.startswith(("/", "~", "."))):
        raise ApixoInputError(field, _local_rule(value))
    if parts.scheme not in _SIGNERS or not parts.netloc:
        scheme = f"{parts.scheme}://" if parts.scheme else "a string without a scheme"
        rule = f"is {scheme} ({shown_url(value)}), which APIXO cannot fetch; {_INSTEAD}"
        raise ApixoInputError(field, rule)
    try:
        path = ObjectStoragePath(value)
    except ValueError as error:
        raise ApixoInputError(field, f"is not an object Airflow can read ({error}); {_INSTEAD}") from None
    return _object_reference(field, path, value)


def _object_reference(field: str, path: ObjectStoragePath, given: str) -> ImageReference:
    if path.protocol in _LOCAL_SCHEMES:
        raise ApixoInputError(field, _local_rule(given))
    if path.protocol not in _SIGNERS:
        rule = (
            f"is a {path.protocol}:// object, which the provider cannot sign (it signs s3:// and gs://); "
            "sign it yourself and pass the https URL, or copy it to S3 or GCS"
        )
        raise ApixoInputError(field, rule)
    return ImageReference(field, given, path)


def _local_rule(value: str) -> str:
    return (
        f"is a file on this machine ({value!r:.100}), which APIXO's servers cannot reach: store it in an "
        "object store (output_path=s3://conn_id@bucket/folder upstream) and pass that object, or pass a "
        "public http(s) URL"
    )


def _presign_s3(field: str, path: ObjectStoragePath, seconds: int) -> str:
    """A presigned GET through the Amazon provider, with the connection the path names."""
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    except ImportError:
        raise ApixoInputError(field, _needs("s3", "amazon")) from None
    conn_id, bucket, key = object_location(path)
    hook = S3Hook(aws_conn_id=conn_id)
    params = {"Bucket": bucket, "Key": key}
    url = hook.generate_presigned_url("get_object", params=params, expires_in=seconds)
    if not url:  # the hook logs the client error and answers None
        who = f"the AWS connection {conn_id!r}" if conn_id else "the default AWS credentials"
        raise ApixoInputError(field, f"could not be signed with {who}")
    return str(url)


def _sign_gcs(field: str, path: ObjectStoragePath, seconds: int) -> str:
    """A V4 signed GET URL through the Google provider's connection (a service account signs it)."""
    try:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook
    except ImportError:
        raise ApixoInputError(field, _needs("gs", "google")) from None
    conn_id, bucket, key = object_location(path)
    hook = GCSHook(gcp_conn_id=conn_id or "google_cloud_default")
    blob = hook.get_conn().bucket(bucket).blob(key)
    return str(blob.generate_signed_url(version="v4", expiration=timedelta(seconds=seconds), method="GET"))


def _needs(scheme: str, extra: str) -> str:
    return (
        f"is a {scheme}:// object, signed with the {extra.title()} provider, which is not installed: "
        f"pip install 'airflow-provider-nanobanana[{extra}]'"
    )


_SIGNERS: dict[str, Callable[[str, ObjectStoragePath, int], str]] = {
    "s3": _presign_s3,
    "gs": _sign_gcs,
    "gcs": _sign_gcs,
}


def _mask_signature(url: str) -> None:
    """Register the query (and any signature in it) with Airflow's masker: task logs redact it."""
    query = urlsplit(url).query
    if query:
        mask_secret(query)
    for name, value in parse_qsl(query):
        if "signature" in name.lower() or name.lower() == "sig":
            mask_secret(value)


def given_urls(references: Sequence[ImageReference]) -> list[str]:
    """The references as given: what the request's fingerprint and lineage name."""
    return [reference.given for reference in references]


def signed_urls(references: Sequence[ImageReference], valid_for: float) -> list[str]:
    """The URLs to send for ``references``, objects signed for ``valid_for`` seconds."""
    return [reference.url(valid_for) for reference in references]

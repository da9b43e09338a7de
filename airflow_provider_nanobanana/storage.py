"""Keeping what was generated: result images written under ``output_path`` on the worker.

APIXO's result URLs expire (24 hours to 15 days), so a pipeline that needs the image stores it
right after success. This module says where (a local folder or any store ``ObjectStoragePath``
reaches) and under which name: deterministic, so a re-run overwrites its own outputs; the bytes
come through :mod:`.downloads`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import ObjectStoragePath

from airflow_provider_nanobanana.downloads import ImageDownloader, StoredImage
from airflow_provider_nanobanana.exceptions import ApixoInputError

if TYPE_CHECKING:
    from airflow.sdk import Context

logger = logging.getLogger(__name__)

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_WHERE_CHARS = 150
_LOCAL_PROTOCOLS = ("", "file", "local")


def output_location(output_path: str | ObjectStoragePath) -> ObjectStoragePath:
    """The folder to store into; a plain path (no scheme) is a local directory. A local folder must be
    absolute: a relative one would resolve against each worker's working directory."""
    if isinstance(output_path, ObjectStoragePath):
        if output_path.protocol in _LOCAL_PROTOCOLS and not output_path.is_absolute():
            raise ApixoInputError("output_path", _must_be_absolute(str(output_path)))
        return output_path
    if not isinstance(output_path, str) or not output_path.strip():
        raise ApixoInputError("output_path", f"must be a non-empty path or URI; got {output_path!r}")
    if "://" not in output_path:
        folder = Path(output_path).expanduser()
        if not folder.is_absolute():
            raise ApixoInputError("output_path", _must_be_absolute(output_path))
        # Not Path.as_uri(): ObjectStoragePath keeps percent-escapes literally ("my%20dir").
        return ObjectStoragePath(f"file://{folder.resolve()}")
    parts = urlsplit(output_path)
    if parts.scheme in _LOCAL_PROTOCOLS and parts.netloc not in ("", "localhost"):  # file://covers/
        raise ApixoInputError("output_path", _must_be_absolute(output_path))
    try:
        return ObjectStoragePath(output_path)
    except ValueError as error:
        raise ApixoInputError("output_path", f"is not a location Airflow can store to ({error})") from None


def _must_be_absolute(output_path: str) -> str:
    return (
        "must be an absolute folder (/data/covers, ~/covers, file:///data/covers) or an object store URI "
        f"(s3://conn_id@bucket/covers); got {output_path!r}, which would resolve against each worker's "
        "working directory"
    )


def prepared_location(output_path: str | ObjectStoragePath) -> ObjectStoragePath:
    """The folder, checked usable before anything is paid for: a known store, a local folder made."""
    folder = output_location(output_path)
    try:
        folder.fs  # noqa: B018 - resolving the filesystem is the check
    except (ValueError, ImportError) as error:
        rule = f"no filesystem for {folder.protocol or 'file'}:// ({error}); see the README's extras"
        raise ApixoInputError("output_path", rule) from None
    if _is_local(folder):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ApixoInputError("output_path", f"cannot create {folder}: {error}") from None
    return folder


def stored_name(context: Context, apixo_task_id: str, index: int) -> str:
    """``<dag>__<run>__<task>[__<map index>]__<APIXO task>_<index>``, safe on every store.

    Airflow ids may be 250 characters each; a long ``<dag>__<run>__<task>`` part is cut and a hash
    of it appended, so the name stays unique and under common 255-byte limits.
    """
    ti = context["ti"]
    parts = [ti.dag_id, ti.run_id, ti.task_id]
    if ti.map_index is not None and ti.map_index >= 0:
        parts.append(str(ti.map_index))
    where = "__".join(_UNSAFE_NAME_CHARS.sub("-", part) for part in parts)
    if len(where) > _MAX_WHERE_CHARS:
        digest = hashlib.sha256(where.encode()).hexdigest()[:12]
        where = f"{where[: _MAX_WHERE_CHARS - 13]}-{digest}"
    return f"{where}__{_UNSAFE_NAME_CHARS.sub('-', apixo_task_id)}_{index}"


def store_results(
    result: dict[str, Any],
    output_path: str | ObjectStoragePath,
    context: Context,
    max_image_bytes: int,
    log: logging.Logger | Any = logger,
) -> dict[str, Any]:
    """``result`` with its images stored: adds ``stored_paths``, ``content_types``, ``sizes``, ``sha256``."""
    folder = prepared_location(output_path)
    stored: list[StoredImage] = []
    with ImageDownloader(max_image_bytes, log=log) as downloader:
        for index, url in enumerate(result["result_urls"]):
            name = stored_name(context, result["apixo_task_id"], index)
            stored.append(downloader.store(url, folder, name))
            log.info("Stored %s (%d bytes)", stored[-1].uri, stored[-1].size)
    return {
        **result,
        "stored_paths": [image.uri for image in stored],
        "content_types": [image.content_type for image in stored],
        "sizes": [image.size for image in stored],
        "sha256": [image.sha256 for image in stored],
    }


def _is_local(folder: ObjectStoragePath) -> bool:
    return folder.protocol in ("", "file", "local")

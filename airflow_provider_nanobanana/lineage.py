"""OpenLineage for one generation: the reference images in, the stored images out, APIXO's task as a
run facet.

The OpenLineage provider (the ``openlineage`` extra) calls the operator's
``get_openlineage_facets_on_complete``, which imports this module; without that provider nothing
here runs. Datasets are named as OpenLineage's naming spec says (``https://host`` + path, ``s3://bucket``
+ key, ``file://`` + path), never with a URL's query, which may hold a signature. Stored images are
reported here: OpenLineage reads the hook-level lineage that ``ObjectStoragePath`` feeds only for
operators that report nothing, so they are never counted twice. The prompt is sent as its SHA-256
unless the operator's ``lineage_prompt`` says otherwise.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.event_v2 import Dataset
from openlineage.client.facet_v2 import RunFacet

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@attrs.define
class ApixoRunFacet(RunFacet):
    """APIXO's side of the run: which task made the images, and whether this try paid for it."""

    # OpenLineage facets name their fields in camelCase.
    apixoTaskId: str
    model: str
    promptSha256: str | None
    costTime: int | None
    tryNumber: int
    reattached: bool
    prompt: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return "https://github.com/apixo/airflow-provider-nanobanana/ApixoRunFacet.json"


def generation_lineage(
    model: str,
    result: Mapping[str, Any] | None,
    image_urls: Sequence[str],
    prompt: str | None,
    *,
    include_prompt: bool = False,
) -> OperatorLineage:
    """What one generation read and wrote; ``result`` is None when the task did not wait for one."""
    inputs = [dataset(url) for url in image_urls]
    if result is None:
        return OperatorLineage(inputs=inputs)
    facet = ApixoRunFacet(
        apixoTaskId=result["apixo_task_id"],
        model=model,
        promptSha256=None if prompt is None else hashlib.sha256(prompt.encode()).hexdigest(),
        costTime=result.get("cost_time"),
        tryNumber=result["try_number"],
        reattached=result["reattached"],
        prompt=prompt if include_prompt else None,
    )
    outputs = [dataset(uri) for uri in result.get("stored_paths", [])]
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets={"apixo": facet})


def dataset(location: str) -> Dataset:
    """A URL or storage URI as an OpenLineage dataset, without its query or credentials."""
    parts = urlsplit(location)
    if not parts.scheme:  # a plain local path
        return Dataset(namespace="file://", name=location)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    name = parts.path.lstrip("/") if parts.scheme not in ("file", "http", "https") else parts.path
    return Dataset(namespace=f"{parts.scheme}://{host}", name=name)

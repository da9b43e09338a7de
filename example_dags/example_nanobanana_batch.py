"""Many images at once: one mapped task per prompt, a rejected prompt skipped, every image stored.

The ``apixo`` pool counts deferred tasks too, so its slots cap the APIXO tasks in flight (the API
allows 1,000 per key). Create it once::

    airflow pools set apixo 1000 "APIXO tasks in flight" --include-deferred

Trigger with ``{"prompts": [...]}`` to generate your own list.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator

PROMPTS = [
    "a lighthouse at dawn, oil painting",
    "a paper boat on a puddle, macro photo",
    "a fox reading a newspaper, ink sketch",
]

with DAG(
    dag_id="example_nanobanana_batch",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"prompts": Param(PROMPTS, type="array", items={"type": "string", "minLength": 1}, minItems=1)},
    tags=["example", "apixo"],
    doc_md=__doc__,
):

    @task
    def read_prompts(params: Any = None) -> list[str]:
        return list(params["prompts"])

    images = NanoBananaGenerateOperator.partial(
        task_id="generate",
        map_index_template="{{ task.prompt | truncate(40) }}",  # the prompt names each mapped task
        pool="apixo",
        output_path=os.path.join(os.environ.get("NANOBANANA_OUTPUT_DIR", "/tmp/nanobanana-output"), "batch"),
        on_content_violation="skip",  # a refused prompt ends skipped; the rest of the batch goes on
        retries=2,
    ).expand(prompt=read_prompts())

    @task(trigger_rule="none_failed")  # run even when some prompts were skipped
    def summarize(results: list[dict]) -> list[str]:
        stored = [path for result in results for path in result["stored_paths"]]
        print(f"{len(stored)} image(s) stored:", *stored, sep="\n  ")
        return stored

    summarize(images.output)

"""TaskFlow: a Python function writes the prompt; ``@task.nanobanana`` generates and stores the image.

The function runs on the worker when the task starts, with the task's context (``ds``, params,
upstream XComs as arguments). It returns the prompt, or a dict of request fields (``prompt``,
``image_urls``, ``mode``, ``aspect_ratio``, ``output_format``, ``provider``). The decorator takes
the operator's other arguments; the task's result is the operator's.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="example_nanobanana_taskflow",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"subject": Param("a lighthouse", type="string", minLength=1)},
    tags=["example", "apixo"],
    doc_md=__doc__,
):

    @task
    def pick_style(ds: str | None = None) -> str:
        return "gouache" if ds is None or int(ds[-2:]) % 2 else "linocut print"

    @task.nanobanana(output_path=os.environ.get("NANOBANANA_OUTPUT_DIR", "/tmp/nanobanana-output"), retries=2)
    def cover(style: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"prompt": f"{params['subject']} at dawn, {style}", "aspect_ratio": "16:9"}

    @task
    def report(result: dict[str, Any]) -> list[str]:
        return list(result["stored_paths"])

    report(cover(pick_style()))

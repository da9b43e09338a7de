"""Text to image: generate a picture with Nano Banana and save it locally before its URL expires.

`make demo` runs this DAG with `airflow dags test`. Images are written to ``$NANOBANANA_OUTPUT_DIR``
(default ``./output``).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import httpx
from airflow.sdk import DAG, Param, task

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator

with DAG(
    dag_id="example_nanobanana_text_to_image",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"prompt": Param("a watercolor fox in a misty forest", type="string", minLength=1)},
    tags=["example", "apixo"],
    doc_md=__doc__,
):
    generate = NanoBananaGenerateOperator(
        task_id="generate",
        prompt="{{ params.prompt }}",
        aspect_ratio="16:9",
        output_format="png",
        retries=2,  # safe: a retry waits for the task already paid for, never submits it twice
    )

    @task
    def save_images(result: dict, run_id: str | None = None) -> list[str]:
        """Download each result URL into the output folder; return the files' paths."""
        folder = Path(os.environ.get("NANOBANANA_OUTPUT_DIR", "output")).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        with httpx.Client(timeout=60, follow_redirects=True) as client:
            for index, url in enumerate(result["result_urls"]):
                response = client.get(url)
                response.raise_for_status()
                suffix = Path(httpx.URL(url).path).suffix or ".png"
                path = folder / f"{result['apixo_task_id']}-{index}{suffix}"
                path.write_bytes(response.content)
                print(f"Saved {path}")
                paths.append(str(path))
        return paths

    save_images(generate.output)

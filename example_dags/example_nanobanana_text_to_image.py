"""Text to image: generate a picture with Nano Banana and store it before its URL expires.

`make demo` runs this DAG with `airflow dags test`. ``output_path`` downloads the image on the worker
right after success into ``$NANOBANANA_OUTPUT_DIR`` (default ``/tmp/nanobanana-output``); any
``ObjectStoragePath`` works there too, such as ``s3://aws_default@bucket/covers/``.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Param

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
    NanoBananaGenerateOperator(
        task_id="generate",
        prompt="{{ params.prompt }}",
        aspect_ratio="16:9",
        output_format="png",
        output_path=os.environ.get("NANOBANANA_OUTPUT_DIR", "/tmp/nanobanana-output"),
        retries=2,  # safe: a retry waits for the task already paid for, never submits it twice
    )

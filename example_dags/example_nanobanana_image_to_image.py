"""Image to image: generate a base picture, then edit it.

With ``NANOBANANA_IMAGE_STORE`` set to an object-store folder (``s3://aws_default@my-bucket/covers``),
both images are kept there and the edit reads the stored base image: ``stored_paths`` go straight into
``image_urls``, and each is signed on the worker just before submitting. Without it, the edit reads
the base image's result URL (APIXO's, which expires).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator

IMAGE_STORE = os.environ.get("NANOBANANA_IMAGE_STORE")

with DAG(
    dag_id="example_nanobanana_image_to_image",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "apixo"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
):
    base = NanoBananaGenerateOperator(
        task_id="base_image",
        prompt="a plain ceramic mug on a wooden table, studio light",
        aspect_ratio="1:1",
        output_path=f"{IMAGE_STORE}/base" if IMAGE_STORE else None,
        retries=2,  # safe: a retry waits for the task already paid for
    )
    # mode is inferred as image-to-image because image_urls is set.
    edit = NanoBananaGenerateOperator(
        task_id="edit_image",
        prompt="paint the mug cobalt blue and add steam rising from it",
        image_urls=base.output["stored_paths"]
        if IMAGE_STORE
        else "{{ ti.xcom_pull(task_ids='base_image')['result_urls'] }}",
        aspect_ratio="1:1",
        output_format="jpeg",
        output_path=f"{IMAGE_STORE}/edits" if IMAGE_STORE else None,
        retries=2,
    )
    base >> edit

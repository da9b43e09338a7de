"""Image to image: generate a base picture, then edit it, feeding the first result URL to the second task."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator

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
        retries=2,  # safe: a retry waits for the task already paid for
    )
    # mode is inferred as image-to-image because image_urls is set.
    edit = NanoBananaGenerateOperator(
        task_id="edit_image",
        prompt="paint the mug cobalt blue and add steam rising from it",
        image_urls="{{ ti.xcom_pull(task_ids='base_image')['result_urls'] }}",
        aspect_ratio="1:1",
        output_format="jpeg",
        retries=2,
    )
    base >> edit

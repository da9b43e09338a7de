"""Scheduled content: a daily cover image, published to a CMS webhook with the HTTP provider.

The ``content_publish`` HTTP connection points at the CMS; the POST carries the result URLs and
times returned by the generate task (URLs, not image bytes, travel through XCom).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.http.operators.http import HttpOperator
from airflow.sdk import DAG

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator

with DAG(
    dag_id="example_nanobanana_publish",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "apixo"],
    doc_md=__doc__,
):
    cover = NanoBananaGenerateOperator(
        task_id="generate_cover",
        prompt="editorial cover illustration for {{ ds }}: autumn city skyline, flat colours",
        aspect_ratio="3:2",
        retries=2,  # safe: a retry waits for the task already paid for
    )
    publish = HttpOperator(
        task_id="publish",
        http_conn_id="content_publish",
        endpoint="/covers",
        method="POST",
        headers={"Content-Type": "application/json"},
        data="""{"date": "{{ ds }}", "image": {{ ti.xcom_pull(task_ids='generate_cover') | tojson }}}""",
        response_check=lambda response: response.status_code in (200, 201),
    )
    cover >> publish

"""Submit now, wait elsewhere: fire-and-forget generation, then a sensor on the APIXO task id from XCom."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from airflow_provider_nanobanana.sensors.nanobanana import NanoBananaTaskSensor

with DAG(
    dag_id="example_nanobanana_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "apixo"],
    doc_md=__doc__,
):
    submit = NanoBananaGenerateOperator(
        task_id="submit",
        prompt="an isometric pixel-art lighthouse at dusk",
        wait_for_completion=False,
        retries=2,  # safe: a retry finds the task already submitted
    )
    wait = NanoBananaTaskSensor(
        task_id="wait",
        apixo_task_id="{{ ti.xcom_pull(task_ids='submit', key='apixo_task_id') }}",
        timeout=300,
        retries=2,
    )
    submit >> wait

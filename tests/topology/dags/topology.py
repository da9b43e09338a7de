"""The topology test's blocking batch: mapped over the run's prompts, polled on the worker, through
the connection the run names."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator

with DAG(
    dag_id="topology_blocking",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"prompts": ["a kite"], "conn_id": "apixo_default"},
):

    @task
    def read_prompts(params: Any = None) -> list[str]:
        return list(params["prompts"])

    NanoBananaGenerateOperator.partial(
        task_id="generate",
        apixo_conn_id="{{ params.conn_id }}",
        deferrable=False,
        retries=2,
        retry_delay=timedelta(seconds=1),
    ).expand(prompt=read_prompts())

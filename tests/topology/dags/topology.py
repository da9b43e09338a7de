"""The topology test's blocking batch: mapped over the run's prompts, polled on the worker."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator

with DAG(dag_id="topology_blocking", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def read_prompts(params: Any = None) -> list[str]:
        return list(params["prompts"])

    NanoBananaGenerateOperator.partial(
        task_id="generate",
        pool="apixo",
        deferrable=False,
        initial_delay=2,
        poll_interval=2,
        retries=2,
        retry_delay=timedelta(seconds=1),
    ).expand(prompt=read_prompts())

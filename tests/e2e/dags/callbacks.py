"""DAGs for callback mode under ``airflow standalone``: APIXO's webhook wakes the deferred task.

``apixo_callback`` is the emulator's connection with ``callback_base_url`` set to the api-server.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator


def _callback_dag(dag_id: str, callback_poll_interval: float) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        params={"prompt": "a kite"},
    ) as dag:
        NanoBananaGenerateOperator(
            task_id="generate",
            prompt="{{ params.prompt }}",
            apixo_conn_id="apixo_callback",
            callback_poll_interval=callback_poll_interval,
            timeout=120,
            # As in the examples: Airflow 3.3 may fail a task resumed soon after it deferred
            # (apache/airflow#72716), whether a trigger or the webhook resumes it; the retry reattaches.
            retries=1,
            retry_delay=timedelta(seconds=1),
        )
    return dag


# Only the webhook can finish this one in time: its polling net would first read after 10 minutes.
webhook_only = _callback_dag("e2e_callback", callback_poll_interval=600)
# A polling net fine enough to finish the task soon when the webhook is lost.
with_net = _callback_dag("e2e_callback_net", callback_poll_interval=3)

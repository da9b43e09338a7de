"""DAGs for the fault drills and callback mode under ``airflow standalone``; the prompt is run conf."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from airflow_provider_nanobanana.triggers.nanobanana import NanoBananaTaskTrigger


class DeferredAsBeforeTheRename(NanoBananaGenerateOperator):
    """Defers on the trigger's old classpath, as tasks deferred by earlier releases wait on it."""

    def defer(self, *, trigger: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        _, trigger_kwargs = trigger.serialize()
        return super().defer(trigger=NanoBananaTaskTrigger(**trigger_kwargs), **kwargs)


def _drill(dag_id: str, operator_class: type = NanoBananaGenerateOperator, **operator: object) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        params={"prompt": "a kite"},
    ) as dag:
        operator_class(
            task_id="generate",
            prompt="{{ params.prompt }}",
            initial_delay=1,
            poll_interval=1,
            retry_delay=timedelta(seconds=1),
            **operator,  # type: ignore[arg-type]
        )
    return dag


blocking = _drill("e2e_blocking", deferrable=False, retries=1, timeout=120)
# Retries as the examples have them: Airflow 3.3 may fail a task whose trigger fires right after it
# deferred (apache/airflow#72716); the retry then reattaches, so the drills still see one payment.
deferred = _drill("e2e_deferred", deferrable=True, retries=1, timeout=120)
short_wait = _drill("e2e_short_wait", deferrable=True, retries=0, timeout=4)

# Callback mode: ``apixo_callback`` is the emulator with ``callback_base_url`` set to the api-server.
# Only the webhook can finish this one in time: its polling net would first read after 10 minutes.
callback = _drill(
    "e2e_callback", apixo_conn_id="apixo_callback", callback_poll_interval=600, retries=1, timeout=120
)
# A polling net fine enough to finish the task soon when the webhook is lost.
callback_net = _drill(
    "e2e_callback_net", apixo_conn_id="apixo_callback", callback_poll_interval=3, retries=1, timeout=120
)

# A provider upgrade while tasks wait: the triggerer re-creates the old trigger, the route wakes it.
upgraded = _drill("e2e_upgraded", DeferredAsBeforeTheRename, deferrable=True, retries=1, timeout=120)
upgraded_callback = _drill(
    "e2e_upgraded_callback",
    DeferredAsBeforeTheRename,
    apixo_conn_id="apixo_callback",
    callback_poll_interval=600,
    retries=1,
    timeout=120,
)

"""Downstream of the covers: runs when new ones are stored, and reads what they are from the event.

Each stored cover updates the ``nanobanana_covers`` asset (``example_nanobanana_publish``); the
event's ``extra`` carries the stored URIs, the APIXO task id, the model, a hash of the prompt and
APIXO's times, so this DAG needs no XCom from the producer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, task

COVERS = Asset("nanobanana_covers")

with DAG(
    dag_id="example_nanobanana_asset_consumer",
    schedule=[COVERS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "apixo"],
    doc_md=__doc__,
):

    @task
    def new_covers(triggering_asset_events: Any = None) -> list[str]:
        stored = []
        for event in sorted(triggering_asset_events[COVERS], key=lambda event: event.timestamp):
            extra = event.extra
            print(f"APIXO task {extra['apixo_task_id']} ({extra['model']}) stored {extra['stored_paths']}")
            stored.extend(extra["stored_paths"])
        return stored

    new_covers()

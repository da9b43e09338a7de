"""Other APIXO models through ``ApixoGenerateOperator``: one image model, one video model.

``input`` is sent as the request's ``input`` object, as the model's page in APIXO's docs describes
it; the provider checks only that it is a JSON object of at most 1 MB, and APIXO answers a wrong
field with a 400 naming it. The wait follows the model's family: a quality image model is first
read after 10 s, then every 5 s, for 3 minutes; a video model after 60 s, every 15 s, for 10
minutes. Video results are not images: store them yourself from ``result_urls``.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_nanobanana.operators.apixo import ApixoGenerateOperator

with DAG(
    dag_id="example_apixo_models",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "apixo"],
    doc_md=__doc__,
):
    ApixoGenerateOperator(
        task_id="seedream_image",
        model="seedream-4-5",
        input={"prompt": "a paper boat on a rainy street, {{ ds }}"},
        output_path=os.environ.get("NANOBANANA_OUTPUT_DIR", "/tmp/nanobanana-output"),
        retries=2,
    )
    ApixoGenerateOperator(
        task_id="veo_video",
        model="veo-3-1",
        input={"prompt": "a paper boat drifting down a rainy street, slow pan"},
        retries=2,
    )

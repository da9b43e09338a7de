"""DAGs the tests run with ``dag.test()``: each way of waiting, with the prompt taken from the run conf."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, ObjectStoragePath, task

from airflow_provider_nanobanana.operators.apixo import ApixoGenerateOperator
from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from airflow_provider_nanobanana.sensors.nanobanana import NanoBananaTaskSensor

FAST = {"initial_delay": 0.2, "poll_interval": 0.2, "timeout": 30}
TASK_ID_FROM_XCOM = "{{ ti.xcom_pull(task_ids='generate', key='apixo_task_id') }}"


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        params={"prompt": "a lighthouse", "output_format": "png"},
    )


def _generate(task_id: str = "generate", **kwargs: object) -> NanoBananaGenerateOperator:
    return NanoBananaGenerateOperator(
        task_id=task_id,
        prompt="{{ params.prompt }}",
        output_format="{{ params.output_format }}",
        **{**FAST, **kwargs},  # type: ignore[arg-type]
    )


with _dag("test_generate_deferrable") as generate_deferrable:
    _generate(deferrable=True)

with _dag("test_generate_retrying") as generate_retrying:
    _generate(deferrable=True, retries=1, retry_delay=timedelta(0), timeout=3)

with _dag("test_generate_blocking") as generate_blocking:
    _generate(deferrable=False)

with _dag("test_generate_no_wait") as generate_no_wait:
    _generate(wait_for_completion=False)

with _dag("test_sensor_deferrable") as sensor_deferrable:
    _generate(wait_for_completion=False) >> NanoBananaTaskSensor(
        task_id="wait", apixo_task_id=TASK_ID_FROM_XCOM, poke_interval=0.2, timeout=30
    )

with _dag("test_sensor_poke") as sensor_poke:
    _generate(wait_for_completion=False) >> NanoBananaTaskSensor(
        task_id="wait", apixo_task_id=TASK_ID_FROM_XCOM, deferrable=False, poke_interval=0.2, timeout=30
    )

with _dag("test_sensor_reschedule") as sensor_reschedule:
    _generate(wait_for_completion=False) >> NanoBananaTaskSensor(
        task_id="wait",
        apixo_task_id=TASK_ID_FROM_XCOM,
        deferrable=False,
        mode="reschedule",
        poke_interval=1,
        timeout=30,
    )

with _dag("test_generate_mapped") as generate_mapped:
    NanoBananaGenerateOperator.partial(task_id="generate", **FAST).expand(
        prompt=["a red kite", "a blue kite", "a green kite"]
    )

with _dag("test_generate_blocking_timeout") as generate_blocking_timeout:
    _generate(deferrable=False, retries=1, retry_delay=timedelta(0), execution_timeout=timedelta(seconds=4))


# Any APIXO model: an image model read quickly, a video-like one on a longer cadence (the emulator
# gives it a longer generation time). The inputs are templated and passed through as given.
IMAGE_INPUT = {"prompt": "{{ params.prompt }}", "style": {"palette": ["teal", "ochre"], "seed": 7}}
VIDEO_INPUT = {"prompt": "{{ params.prompt }}, slow pan", "duration_seconds": 4, "with_audio": False}


def _any_models(deferrable: bool) -> None:
    ApixoGenerateOperator(
        task_id="image",
        model="seedream-4-5",
        input=IMAGE_INPUT,
        deferrable=deferrable,
        initial_delay=0.2,
        poll_interval=0.2,
        timeout=30,
    )
    ApixoGenerateOperator(
        task_id="video",
        model="veo-3-1",
        input=VIDEO_INPUT,
        deferrable=deferrable,
        initial_delay=1.5,
        poll_interval=1,
        timeout=30,
    )


with _dag("test_any_model_deferrable") as any_model_deferrable:
    _any_models(deferrable=True)

with _dag("test_any_model_blocking") as any_model_blocking:
    _any_models(deferrable=False)


# @task.nanobanana: the function's prompt, restored from XCom when the task resumes from the trigger
# (the asset event's prompt_sha256 proves it), and a function that returns what it may not set.
COVERS = Asset("test_taskflow_covers")

with _dag("test_taskflow_deferrable") as taskflow_deferrable:

    @task.nanobanana(outlets=[COVERS], **FAST)
    def generate(params: dict[str, Any]) -> str:
        return f"{params['prompt']}, drawn by a function"

    generate()

# The function edits an object it names as an ObjectStoragePath (params["source"], an s3:// URI):
# what it returns goes to XCom as given, and the operator signs it when it submits.
with _dag("test_taskflow_stored_edit") as taskflow_stored_edit:

    @task.nanobanana(**FAST)
    def restyle(params: dict[str, Any]) -> dict[str, Any]:
        return {"prompt": "make it blue", "image_urls": [ObjectStoragePath(params["source"])]}

    restyle()

with _dag("test_taskflow_bad_return") as taskflow_bad_return:

    @task.nanobanana(**FAST)
    def generate_badly() -> dict[str, Any]:
        return {"prompt": "a lighthouse", "timeout": 5}

    generate_badly()


# Mapped: each map index reads its own XCom when it resumes (Airflow returns every index's unless told).
with _dag("test_taskflow_mapped") as taskflow_mapped:

    @task.nanobanana(**FAST)
    def kite(colour: str) -> str:
        return f"a {colour} kite"

    kite.expand(colour=["red", "blue", "green"])

with _dag("test_generate_mapped_retrying") as generate_mapped_retrying:
    # Each first try's wait ends before its task does; the retry reattaches to that same task.
    NanoBananaGenerateOperator.partial(
        task_id="generate", **{**FAST, "timeout": 3}, retries=1, retry_delay=timedelta(0)
    ).expand(prompt=["a red kite [emulator:seconds=5]", "a blue kite [emulator:seconds=5]"])


# Every way of waiting in one run, for `airflow dags test` with a connection saved in Airflow's DB:
# deferred and blocking, the sensor on an id submitted upstream, and the decorator.
with _dag("test_every_wait") as every_wait:
    _generate("deferred", deferrable=True)
    _generate("blocking", deferrable=False)
    _generate(wait_for_completion=False) >> NanoBananaTaskSensor(
        task_id="wait", apixo_task_id=TASK_ID_FROM_XCOM, poke_interval=0.2, timeout=30
    )

    @task.nanobanana(**FAST)
    def decorated(params: dict[str, Any]) -> str:
        return f"{params['prompt']}, drawn by a function"

    decorated()


class BrokenLineageOperator(NanoBananaGenerateOperator):
    """Its lineage fails: the generation must not."""

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        raise RuntimeError("lineage broke")


# Image to image, the edit stored: what the lineage test reads (the reference image in, the stored
# image out, APIXO's task as a run facet); beside it, a generation whose lineage fails.
with DAG(
    dag_id="test_edit_stored",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"prompt": "a plain mug", "output_format": "png"},
    render_template_as_native_obj=True,  # image_urls as a list
) as edit_stored:
    _generate("base") >> _generate(
        "edit",
        image_urls="{{ ti.xcom_pull(task_ids='base')['result_urls'] }}",
        output_path=os.path.join(os.environ.get("NANOBANANA_OUTPUT_DIR", "/tmp/nanobanana-output"), "edits"),
    )
    BrokenLineageOperator(task_id="broken_lineage", prompt="{{ params.prompt }}", **FAST)  # type: ignore[arg-type]

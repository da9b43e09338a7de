"""The shipped example DAGs parse, and run end to end with `dag.test()` against the emulator."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from airflow.models.asset import AssetEvent, AssetModel
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from sqlalchemy import select

try:  # the one name these tests use that moved between Airflow versions and the package does not
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.0, 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef,attr-defined,unused-ignore]

from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from tests.support import ROOT, LocalReceiver, run

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support import EmulatorAdmin, ReceivedPost

pytestmark = [pytest.mark.dag, pytest.mark.usefixtures("airflow_db")]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def output_dir() -> Path:
    return Path(os.environ["NANOBANANA_OUTPUT_DIR"]).resolve()


def local(uri: str) -> str:
    assert uri.startswith("file://"), uri
    return uri.removeprefix("file://")


def download(url: str) -> bytes:
    return httpx.get(url, trust_env=False).raise_for_status().content


def result_url(apixo_task_id: str) -> str:
    hook = ApixoHook()
    try:
        return hook.get_task_status("nano-banana", apixo_task_id).result_urls[0]
    finally:
        hook.close()


def latest_run_id(dag_id: str) -> str:
    with create_session() as session:
        query = select(DagRun.run_id).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1)
        return str(session.scalars(query).one())


def mapped_task_instances(dag_id: str, task_id: str) -> list[TaskInstance]:
    """The task's mapped instances in the DAG's latest run, by map index."""
    run_id = latest_run_id(dag_id)
    with create_session() as session:
        query = select(TaskInstance).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
        )
        return list(session.scalars(query.order_by(TaskInstance.map_index)).all())


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "example_dags"))


def test_every_example_parses(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {
        "example_nanobanana_text_to_image",
        "example_nanobanana_image_to_image",
        "example_nanobanana_sensor",
        "example_nanobanana_publish",
        "example_nanobanana_batch",
        "example_nanobanana_asset_consumer",
        "example_nanobanana_taskflow",
        "example_apixo_models",
    }


def test_text_to_image_stores_the_images(dagbag: DagBag, emulator_admin: EmulatorAdmin) -> None:
    state, xcoms = run(dagbag.dags["example_nanobanana_text_to_image"])

    assert state == "success"
    (uri,) = xcoms[("generate", "return_value")]["stored_paths"]
    assert Path(local(uri)).parent == output_dir()
    assert Path(local(uri)).read_bytes().startswith(PNG_SIGNATURE)
    assert emulator_admin.tasks()[0]["input"]["aspect_ratio"] == "16:9"
    # The task page's "Generated image" link: a local file is not web-reachable, so APIXO's URL.
    result_urls = xcoms[("generate", "return_value")]["result_urls"]
    assert xcoms[("generate", "_link_GeneratedImageLink")] == result_urls[0]


def test_taskflow_example_generates_the_functions_prompt(
    dagbag: DagBag, emulator_admin: EmulatorAdmin
) -> None:
    state, xcoms = run(dagbag.dags["example_nanobanana_taskflow"], subject="a heron")

    assert state == "success"
    style = xcoms[("pick_style", "return_value")]
    (task,) = emulator_admin.tasks()
    assert task["input"]["prompt"] == f"a heron at dawn, {style}"
    assert task["input"]["aspect_ratio"] == "16:9"
    (uri,) = xcoms[("report", "return_value")]
    assert Path(local(uri)).read_bytes().startswith(PNG_SIGNATURE)


def test_image_to_image_edits_the_first_result(dagbag: DagBag, emulator_admin: EmulatorAdmin) -> None:
    state, xcoms = run(dagbag.dags["example_nanobanana_image_to_image"])

    assert state == "success"
    _, edit = (task["input"] for task in emulator_admin.tasks())
    assert edit["mode"] == "image-to-image"
    assert edit["image_urls"] == xcoms[("base_image", "return_value")]["result_urls"]
    assert xcoms[("edit_image", "return_value")]["result_urls"][0].endswith(".jpeg")


def test_sensor_example_waits_for_the_submitted_task(dagbag: DagBag, emulator_admin: EmulatorAdmin) -> None:
    state, xcoms = run(dagbag.dags["example_nanobanana_sensor"])

    assert state == "success"
    assert xcoms[("wait", "return_value")]["apixo_task_id"] == xcoms[("submit", "apixo_task_id")]


@pytest.fixture
def cms(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ReceivedPost]]:
    """A local stand-in for the CMS the publish example posts to."""
    with LocalReceiver(status=201) as receiver:
        connection = {"conn_type": "http", "host": "127.0.0.1", "port": receiver.port, "schema": "http"}
        monkeypatch.setenv("AIRFLOW_CONN_CONTENT_PUBLISH", json.dumps(connection))
        yield receiver.received


def test_batch_skips_the_rejected_prompt_and_stores_the_rest(
    dagbag: DagBag, emulator_admin: EmulatorAdmin
) -> None:
    long_prompt = "a green kite above a harbour full of sailing boats, at dusk, in gouache"
    prompts = ["a red kite over dunes", "a blue kite [emulator:fail=CONTENT_VIOLATION]", long_prompt]

    state, xcoms = run(dagbag.dags["example_nanobanana_batch"], prompts=prompts)

    assert state == "success"
    generated = mapped_task_instances("example_nanobanana_batch", "generate")
    assert [(ti.state, ti.rendered_map_index) for ti in generated] == [
        ("success", "a red kite over dunes"),
        ("skipped", "a blue kite [emulator:fail=CONTENT_VIOLATION]"),
        ("success", "a green kite above a harbour full of..."),
    ]
    stored = xcoms[("summarize", "return_value")]
    assert len(stored) == 2
    assert all(Path(local(uri)).parent == output_dir() / "batch" for uri in stored)
    assert all(Path(local(uri)).read_bytes().startswith(PNG_SIGNATURE) for uri in stored)
    assert emulator_admin.submissions() == 3


def test_content_pipeline_stores_covers_and_posts_their_manifest(
    dagbag: DagBag, emulator_admin: EmulatorAdmin, cms: list[ReceivedPost]
) -> None:
    plan = json.loads((ROOT / "example_dags" / "content_prompts.json").read_text())["prompts"]
    emulator_admin.fail_next_tasks("CONTENT_VIOLATION")  # the moderation refuses one prompt

    state, _ = run(dagbag.dags["example_nanobanana_publish"])

    assert state == "success"
    ((_, path, manifest),) = cms
    assert path == "/covers"
    assert [cover["prompt"] for cover in manifest["covers"]] == [
        p.format(date=manifest["date"]) for p in plan
    ]
    refused = [cover for cover in manifest["covers"] if "skipped" in cover]
    stored = [cover for cover in manifest["covers"] if "skipped" not in cover]
    assert len(refused) == 1 and len(stored) == 2
    served = {task["id"]: task for task in emulator_admin.tasks()}
    for cover in stored:
        image = Path(local(cover["stored_path"]))
        assert image.parent == output_dir() / "covers" / manifest["date"]
        assert hashlib.sha256(image.read_bytes()).hexdigest() == cover["sha256"]
        assert image.read_bytes() == download(result_url(cover["apixo_task_id"]))
        assert served[cover["apixo_task_id"]]["input"]["prompt"] == cover["prompt"]

    # Every stored cover updated the asset, with what it is in the event's extra.
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(
                AssetModel.name == "nanobanana_covers",
                AssetEvent.source_run_id == latest_run_id("example_nanobanana_publish"),
            )
        ).all()

    covers = {cover["apixo_task_id"]: cover for cover in stored}
    assert len(events) == len(covers) == 2
    for event in events:
        cover = covers[event.extra["apixo_task_id"]]
        assert event.source_dag_id == "example_nanobanana_publish"
        assert event.extra["stored_paths"] == [cover["stored_path"]]
        assert event.extra["prompt_sha256"] == hashlib.sha256(cover["prompt"].encode()).hexdigest()
        assert event.extra["model"] == "nano-banana"
        assert {"result_urls", "create_time", "complete_time", "cost_time"} <= set(event.extra)

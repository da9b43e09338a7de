"""The shipped example DAGs parse, and run end to end with `dag.test()` against the emulator."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.conftest import ROOT
from tests.support import LocalReceiver, run

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support import EmulatorAdmin

pytestmark = [pytest.mark.dag, pytest.mark.usefixtures("airflow_db")]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    }


def test_text_to_image_saves_the_images(dagbag: DagBag, emulator_admin: EmulatorAdmin) -> None:
    state, xcoms = run(dagbag.dags["example_nanobanana_text_to_image"])

    assert state == "success"
    (path,) = xcoms[("save_images", "return_value")]
    assert Path(path).parent == Path(os.environ["NANOBANANA_OUTPUT_DIR"]).resolve()
    assert Path(path).read_bytes().startswith(PNG_SIGNATURE)
    assert emulator_admin.tasks()[0]["input"]["aspect_ratio"] == "16:9"


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
def cms(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """A local stand-in for the CMS the publish example posts to."""
    with LocalReceiver(status=201) as receiver:
        connection = {"conn_type": "http", "host": "127.0.0.1", "port": receiver.port, "schema": "http"}
        monkeypatch.setenv("AIRFLOW_CONN_CONTENT_PUBLISH", json.dumps(connection))
        yield receiver.received


def test_publish_posts_the_result_with_http_operator(
    dagbag: DagBag, emulator_admin: EmulatorAdmin, cms: list[tuple[str, Any]]
) -> None:
    state, xcoms = run(dagbag.dags["example_nanobanana_publish"])

    assert state == "success"
    ((path, body),) = cms
    assert path == "/covers"
    assert body["image"] == xcoms[("generate_cover", "return_value")]
    assert body["date"] in emulator_admin.tasks()[0]["input"]["prompt"]

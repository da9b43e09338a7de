"""OpenLineage from a real run: ``airflow dags test`` with the OpenLineage provider writing its events
to a file, as users configure its transport."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.support import dags_test

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support import EmulatorAdmin

pytest.importorskip("airflow.providers.openlineage", reason="the openlineage extra is not installed")
pytestmark = [pytest.mark.dag, pytest.mark.usefixtures("airflow_db")]


def completed(events_file: Path, task_id: str) -> dict[str, Any]:
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    [event] = [
        event
        for event in events
        if event["eventType"] == "COMPLETE" and event["job"]["name"] == f"test_edit_stored.{task_id}"
    ]
    return event


def test_a_stored_edit_reports_its_reference_its_image_and_the_apixo_task(
    emulator_admin: EmulatorAdmin, tmp_path: Path
) -> None:
    events_file, output = tmp_path / "lineage.jsonl", tmp_path / "output"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    environment = {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "nanobanana-tests",
        "NANOBANANA_OUTPUT_DIR": str(output),
    }
    prompt = "a plain mug"

    log = dags_test("test_edit_stored", {"prompt": prompt}, environment)

    [edit] = [task for task in emulator_admin.tasks() if task["input"].get("image_urls")]
    event = completed(events_file, "edit")
    [reference] = edit["input"]["image_urls"]  # the base image's result URL, as sent
    where = urlsplit(reference)
    assert [(each["namespace"], each["name"]) for each in event["inputs"]] == [
        (f"http://{where.netloc}", where.path)  # never the query: it may be a signature
    ]
    [image] = (output / "edits").iterdir()
    assert [(each["namespace"], each["name"]) for each in event["outputs"]] == [("file://", str(image))]
    facet = event["run"]["facets"]["apixo"]
    assert facet["apixoTaskId"] == edit["id"]
    assert facet["model"] == "nano-banana"
    assert facet["promptSha256"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert facet.get("prompt") is None  # not without lineage_prompt=True
    assert (facet["tryNumber"], facet["reattached"]) == (1, False)
    assert isinstance(facet["costTime"], int)

    # The generation whose lineage failed succeeded (dags_test checks the run), logged once.
    assert log.count("lineage broke") == 1
    assert "apixo" not in completed(events_file, "broken_lineage")["run"]["facets"]

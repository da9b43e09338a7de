"""Generate, store to S3, then edit the stored image: the image-to-image example with a bucket
configured, run with ``dag.test()`` against a real S3 API (moto's server) and the emulator.

APIXO (the emulator) must fetch the stored object through a signed URL, and the signature must stay
out of everything Airflow keeps or prints, searched like the API key is (``tests/test_secrets.py``).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from PIL import Image, ImageChops, ImageStat

try:  # the one name these tests use that moved between Airflow versions and the package does not
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.0, 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef,attr-defined,unused-ignore]

from airflow_provider_nanobanana.compat import TaskDeferred
from airflow_provider_nanobanana.emulator.images import THUMBNAIL_SIDE
from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from tests.dags import provider_dags
from tests.support import AIRFLOW_HOME, ROOT, FakeTaskInstance, run, without_airflow_mask_requests

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import EmulatorServer
    from tests.support import EmulatorAdmin, S3Store

pytestmark = [pytest.mark.dag, pytest.mark.usefixtures("airflow_db")]
EXAMPLE = ROOT / "example_dags" / "example_nanobanana_image_to_image.py"


def key_of(uri: str, store: S3Store) -> str:
    prefix = store.uri()
    assert uri.startswith(prefix), uri
    return uri.removeprefix(prefix)


def signature_forms(signed_url: str) -> list[str]:
    """The signature as the URL carries it (percent-encoded) and decoded, and the whole query."""
    query = urlsplit(signed_url).query
    [signature] = [value for name, value in parse_qsl(query) if "signature" in name.lower()]
    return [signature, quote(signature, safe=""), query]


def test_the_example_edits_the_image_it_stored(
    emulator: EmulatorServer,
    emulator_admin: EmulatorAdmin,
    s3_store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("NANOBANANA_IMAGE_STORE", s3_store.uri("covers"))
    dag = DagBag(dag_folder=str(EXAMPLE)).dags["example_nanobanana_image_to_image"]
    for task in dag.tasks:  # a failure shows at once, not after the example's retries
        task.retries = 0

    state, xcoms = run(dag)

    assert state == "success"
    [base_uri] = xcoms[("base_image", "return_value")]["stored_paths"]
    [edit_uri] = xcoms[("edit_image", "return_value")]["stored_paths"]
    assert base_uri.startswith(s3_store.uri("covers/base/")), base_uri
    assert edit_uri.startswith(s3_store.uri("covers/edits/")), edit_uri
    # APIXO was sent, and fetched, a signed URL of the stored base image.
    [_, edit] = emulator_admin.tasks()
    [signed] = edit["input"]["image_urls"]
    assert emulator_admin.reference_fetches() == [signed]
    assert signed.startswith(f"{s3_store.unsigned_url(key_of(base_uri, s3_store))}?")
    # The edit shows its source in its corner.
    source = Image.open(io.BytesIO(s3_store.get(key_of(base_uri, s3_store)))).convert("RGB")
    edited = Image.open(io.BytesIO(s3_store.get(key_of(edit_uri, s3_store)))).convert("RGB")
    thumbnail = source.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    corner = edited.crop((0, 0, THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    assert sum(ImageStat.Stat(ImageChops.difference(corner, thumbnail)).mean) / 3 < 10
    # The signature is nowhere Airflow keeps or prints: logs, XCom, rendered fields, the trigger rows.
    out, err = map(without_airflow_mask_requests, capfd.readouterr())
    places = {
        "stdout": out,
        "stderr": err,
        "log records": caplog.text,
        "xcom": repr(xcoms),
        **{
            str(path): path.read_bytes().decode("latin-1")
            for path in AIRFLOW_HOME.rglob("*")
            if path.is_file()
        },
    }
    assert "Submitted APIXO nano-banana task" in out + caplog.text  # the search saw the task logs
    assert base_uri in "".join(places.values())  # ... and the stored paths the signed URL came from
    forms = signature_forms(signed)
    assert [name for name, text in places.items() if any(form in text for form in forms)] == []


def test_the_trigger_and_lineage_carry_the_reference_unsigned(
    emulator_admin: EmulatorAdmin, s3_store: S3Store
) -> None:
    s3_store.put("mug.png", _png())
    operator = NanoBananaGenerateOperator(
        task_id="edit", prompt="make it blue", image_urls=[s3_store.uri("mug.png")]
    )

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]

    [task] = emulator_admin.tasks()
    forms = signature_forms(task["input"]["image_urls"][0])
    trigger = repr(deferred.value.trigger) + repr(deferred.value.trigger.serialize())
    assert deferred.value.trigger.apixo_task_id == task["id"]
    assert not any(form in trigger for form in forms)
    # Lineage names the object by its bucket and key (OpenLineage's naming), never signed.
    lineage = operator.get_openlineage_facets_on_complete(None)
    inputs = [(each.namespace, each.name) for each in lineage.inputs]
    assert inputs == [(f"s3://{s3_store.bucket}", "mug.png")]
    assert not any(form in repr(lineage) for form in forms)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_decorated_function_may_return_objects_to_edit(
    emulator_admin: EmulatorAdmin, s3_store: S3Store
) -> None:
    s3_store.put("mug.png", _png())

    state, xcoms = run(provider_dags.taskflow_stored_edit, source=s3_store.uri("mug.png"))

    assert state == "success"
    [task] = emulator_admin.tasks()
    assert task["input"]["image_urls"][0].startswith(f"{s3_store.unsigned_url('mug.png')}?")
    assert emulator_admin.reference_fetches() == task["input"]["image_urls"]
    assert "Signature" not in repr(xcoms)

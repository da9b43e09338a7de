"""image_urls beyond public URLs: stored objects signed on the worker, local files refused, and every
reference probed before anything is paid for. A real S3 API (moto's server) and the emulator, on loopback."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_nanobanana.compat import AirflowFailException, TaskDeferred
from airflow_provider_nanobanana.emulator.images import render_image
from airflow_provider_nanobanana.exceptions import (
    ApixoInputError,
    ApixoReferenceError,
    ApixoTaskRejectedError,
)
from airflow_provider_nanobanana.operators.apixo import ApixoGenerateOperator
from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from airflow_provider_nanobanana.reattach import RECORD_KEY
from airflow_provider_nanobanana.references import image_references
from tests.support import FakeStore, FakeTaskInstance, ended

if TYPE_CHECKING:
    from tests.support import EmulatorAdmin, S3Store

SOURCE = render_image("png", prompt="a source image", aspect_ratio="1:1", task_id="task_source")


def edit(image_urls: Any, **kwargs: Any) -> NanoBananaGenerateOperator:
    options = {"prompt": "make it blue", "initial_delay": 0.1, "poll_interval": 0.1, "timeout": 20, **kwargs}
    return NanoBananaGenerateOperator(task_id="edit", image_urls=image_urls, **options)


def submit(operator: ApixoGenerateOperator, store: FakeStore | None = None) -> str:
    """Run ``operator`` up to its deferral; the APIXO task id it waits for."""
    context = {"ti": FakeTaskInstance(), **({"task_state_store": store} if store is not None else {})}
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)  # type: ignore[arg-type]
    task_id: str = deferred.value.trigger.apixo_task_id
    return task_id


def refused(operator: NanoBananaGenerateOperator, error: type[Exception] = ApixoInputError) -> str:
    with pytest.raises(error) as raised:
        operator.execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
    return str(raised.value)


# --- refused before any request -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "rule"),
    [
        ("/data/covers/mug.png", "file on this machine"),
        ("~/covers/mug.png", "file on this machine"),
        ("file:///data/covers/mug.png", "file on this machine"),
        (ObjectStoragePath("file:///data/covers/mug.png"), "file on this machine"),
        ("ftp://files.example/a.png", "is ftp:// ('ftp://files.example/a.png'), which APIXO cannot fetch"),
        ("abfs://covers@account/mug.png", "is abfs://"),
        ("mug.png", "a string without a scheme"),
        (ObjectStoragePath("memory://covers/mug.png"), "memory:// object, which the provider cannot sign"),
        (42, "must be a URL or an ObjectStoragePath; got int"),
    ],
)
def test_what_apixo_cannot_reach_is_refused_before_any_request(
    emulator_admin: EmulatorAdmin, reference: Any, rule: str
) -> None:
    message = refused(edit(["https://img.example/ok.png", reference]))

    assert message.startswith("Invalid image_urls[1]: ")
    assert rule in message
    assert "s3://conn_id@bucket" in message or "sign it yourself" in message or "got int" in message
    assert emulator_admin.request_count() == 0


def test_a_local_file_says_what_to_pass_instead(emulator_admin: EmulatorAdmin) -> None:
    message = refused(edit(["/data/covers/mug.png"]))

    assert "APIXO's servers cannot reach" in message
    assert "output_path=s3://conn_id@bucket/folder upstream" in message
    assert "public http(s) URL" in message


# --- stored objects, signed -----------------------------------------------------------------------------


def signature_of(url: str) -> str:
    query = dict(parse_qsl(urlsplit(url).query))
    return query.get("Signature") or query["X-Amz-Signature"]


@pytest.mark.parametrize("as_path", [False, True], ids=["uri", "ObjectStoragePath"])
def test_a_stored_object_is_sent_signed_and_fetched_by_apixo(
    emulator_admin: EmulatorAdmin, s3_store: S3Store, as_path: bool
) -> None:
    s3_store.put("covers/mug.png", SOURCE)
    uri = s3_store.uri("covers/mug.png")
    reference = ObjectStoragePath(uri) if as_path else uri

    submit(edit([reference]))

    [task] = emulator_admin.tasks()
    [sent] = task["input"]["image_urls"]
    assert sent.startswith(f"{s3_store.unsigned_url('covers/mug.png')}?")
    assert signature_of(sent)
    assert emulator_admin.reference_fetches(wait_for=1) == [sent]
    assert ended(emulator_admin, task["id"]) == "success"


def test_the_generic_operator_signs_its_inputs_image_urls(
    emulator_admin: EmulatorAdmin, s3_store: S3Store
) -> None:
    s3_store.put("mug.png", SOURCE)
    operator = ApixoGenerateOperator(
        task_id="edit",
        model="seedream-4-5",
        input={"prompt": "make it blue", "image_urls": [s3_store.uri("mug.png")]},
        wait_for_completion=False,
    )

    operator.execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]

    [task] = emulator_admin.tasks()
    assert signature_of(task["input"]["image_urls"][0])


def test_a_retry_reattaches_although_each_try_would_sign_anew(
    emulator_admin: EmulatorAdmin, s3_store: S3Store
) -> None:
    """The request's fingerprint holds the reference as given, never its signature: a retry that
    signed again and compared the signed URL would pay a second time."""
    s3_store.put("mug.png", SOURCE)
    store = FakeStore()
    slow = {"prompt": "make it blue [emulator:seconds=10]"}
    first = submit(edit([s3_store.uri("mug.png")], **slow), store)
    time.sleep(1.1)  # a signature made a second later differs (it names when it expires)

    assert submit(edit([s3_store.uri("mug.png")], **slow), store) == first
    assert emulator_admin.submissions() == 1
    assert "Signature" not in repr(store.values[RECORD_KEY])


# --- probed before submitting -----------------------------------------------------------------------------


def test_a_missing_object_fails_before_anything_is_paid(
    emulator_admin: EmulatorAdmin, s3_store: S3Store
) -> None:
    message = refused(edit([s3_store.uri("covers/none.png")]))

    assert message.startswith("Invalid image_urls[0]: ")
    assert f"'s3://{s3_store.bucket}/covers/none.png' has no image (HTTP 404)" in message  # as given
    assert "Signature" not in message
    assert emulator_admin.request_count() == 0


def test_an_unsigned_private_object_is_refused_with_what_to_pass(
    emulator_admin: EmulatorAdmin, s3_store: S3Store
) -> None:
    s3_store.put("mug.png", SOURCE)

    message = refused(edit([s3_store.unsigned_url("mug.png")]))

    assert message.startswith("Invalid image_urls[0]: ")
    assert "HTTP 403" in message and "s3://conn_id@bucket/key" in message
    assert emulator_admin.request_count() == 0


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"<html>Not an image</html>", "is not a JPG, PNG or WebP image"),
        (b"GIF89a" + bytes(64), "is not a JPG, PNG or WebP image"),
        (SOURCE[:16] + bytes(10 * 1024 * 1024), "bytes; APIXO takes at most 10 MB"),
    ],
    ids=["html", "gif", "too-large"],
)
def test_what_apixo_would_fail_is_refused_before_submitting(
    emulator_admin: EmulatorAdmin, s3_store: S3Store, body: bytes, rule: str
) -> None:
    s3_store.put("mug.png", body)

    message = refused(edit([s3_store.uri("mug.png")]))

    assert message.startswith("Invalid image_urls[0]: ") and rule in message
    assert emulator_admin.request_count() == 0


def test_an_unreachable_host_is_retryable_and_nothing_is_paid(emulator_admin: EmulatorAdmin) -> None:
    message = refused(edit(["http://127.0.0.1:9/mug.png"]), ApixoReferenceError)

    assert message == (
        "image_urls[0] 'http://127.0.0.1:9/mug.png' could not be read (ConnectError); nothing was submitted"
    )
    assert emulator_admin.request_count() == 0


def test_without_the_check_apixo_fails_the_task_for_good(
    emulator_admin: EmulatorAdmin, s3_store: S3Store
) -> None:
    """Found only after paying, as APIXO finds it: an input-caused failure, never resubmitted."""
    store = FakeStore()
    operator = edit([s3_store.uri("covers/none.png")], check_image_urls=False, deferrable=False)

    with pytest.raises(ApixoTaskRejectedError) as raised:
        operator.execute({"ti": FakeTaskInstance(), "task_state_store": store})  # type: ignore[arg-type]

    assert raised.value.fail_code == "IMAGE_DOWNLOAD_FAILED"
    assert isinstance(raised.value, AirflowFailException)  # Airflow does not retry it
    assert emulator_admin.submissions() == 1


# --- gs:// objects --------------------------------------------------------------------------------------


def service_account() -> dict[str, str]:
    """A service account key made for the test: Google's library signs with it locally."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "type": "service_account",
        "project_id": "nanobanana-tests",
        "private_key_id": "k1",
        "private_key": pem.decode(),
        "client_email": "signer@nanobanana-tests.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def test_a_gs_object_is_signed_with_the_google_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow.providers.google", reason="the google extra is not installed")
    extra = {"keyfile_dict": json.dumps(service_account()), "project": "nanobanana-tests"}
    connection = {"conn_type": "google_cloud_platform", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_GCS_TEST", json.dumps(connection))
    [reference] = image_references(["gs://gcs_test@covers/2026/mug.png"])

    signed = urlsplit(reference.url(valid_for=1234.4))

    query = dict(parse_qsl(signed.query))
    assert (signed.scheme, signed.netloc) == ("https", "storage.googleapis.com")
    assert signed.path == "/covers/2026/mug.png"
    assert query["X-Goog-Expires"] == "1234"
    assert query["X-Goog-Credential"].startswith("signer@nanobanana-tests.iam.gserviceaccount.com/")
    assert len(query["X-Goog-Signature"]) == 512  # hex of a 2048-bit RSA signature
    assert reference.given == "gs://gcs_test@covers/2026/mug.png"


def test_an_object_that_cannot_be_signed_is_refused_before_any_request(
    emulator_admin: EmulatorAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv(
        "AIRFLOW_CONN_NO_KEYS", json.dumps({"conn_type": "aws", "extra": {"region_name": "us-east-1"}})
    )

    message = refused(edit(["s3://no_keys@covers/mug.png"]))

    assert message.startswith(
        "Invalid image_urls[0]: 's3://covers/mug.png' could not be signed (NoCredentialsError"
    )
    assert emulator_admin.request_count() == 0

"""What a finished task leaves: stored images, and a batch that skips a rejected prompt.

The operator and sensor run against the emulator over loopback and store into a real folder; the
stored bytes are compared with what the emulator serves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_nanobanana.compat import AirflowFailException, AirflowSkipException, TaskDeferred
from airflow_provider_nanobanana.exceptions import ApixoInputError, ApixoTaskRejectedError, ApixoWaitError
from airflow_provider_nanobanana.hooks.apixo import ApixoHook
from airflow_provider_nanobanana.links import GeneratedImageLink, image_link
from airflow_provider_nanobanana.operators.nanobanana import XCOM_TASK_ID_KEY, NanoBananaGenerateOperator
from airflow_provider_nanobanana.reattach import RECORD_KEY
from airflow_provider_nanobanana.sensors.nanobanana import NanoBananaTaskSensor
from tests.support import FakeStore, FakeTaskInstance, ended, free_port, submit

if TYPE_CHECKING:
    from tests.support import EmulatorAdmin


def operator(**kwargs: Any) -> NanoBananaGenerateOperator:
    options = {
        "prompt": "a lighthouse",
        "initial_delay": 0.1,
        "poll_interval": 0.1,
        "timeout": 20,
        "deferrable": False,
        **kwargs,
    }
    return NanoBananaGenerateOperator(task_id="generate", **options)


def sensor(**kwargs: Any) -> NanoBananaTaskSensor:
    options = {"apixo_task_id": "task_1", "deferrable": False, "poke_interval": 0.1, **kwargs}
    return NanoBananaTaskSensor(task_id="wait", **options)


def context(store: FakeStore | None = None) -> Any:
    return {"ti": FakeTaskInstance(), "task_state_store": store or FakeStore()}


def served(url: str) -> bytes:
    return httpx.get(url, trust_env=False).raise_for_status().content


def assert_stored(result: dict[str, Any], folder: Path) -> None:
    """Every result URL is in ``folder`` byte for byte, and the lists describe the files."""
    assert len(result["stored_paths"]) == len(result["result_urls"]) >= 1
    for uri, url, content_type, size, sha256 in zip(
        result["stored_paths"],
        result["result_urls"],
        result["content_types"],
        result["sizes"],
        result["sha256"],
        strict=True,
    ):
        path = Path(uri.removeprefix("file://"))
        assert path.parent == folder
        assert path.read_bytes() == served(url)
        assert (content_type, path.suffix) in {("image/png", ".png"), ("image/jpeg", ".jpg")}
        assert size == path.stat().st_size
        assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("output_format", ["png", "jpeg"])
def test_the_operator_stores_its_images(
    emulator_admin: EmulatorAdmin, tmp_path: Path, output_format: str
) -> None:
    store = FakeStore()

    result = operator(output_path=str(tmp_path), output_format=output_format).execute(context(store))

    assert_stored(result, tmp_path.resolve())
    assert result["content_types"] == [f"image/{output_format}"]
    assert store.delivered()


def test_the_sensor_stores_the_images_of_a_task_it_did_not_submit(
    emulator_admin: EmulatorAdmin, tmp_path: Path
) -> None:
    task_id = submit()

    result = sensor(apixo_task_id=task_id, output_path=f"file://{tmp_path}/covers/").execute(context())

    assert_stored(result, tmp_path / "covers")
    assert task_id in result["stored_paths"][0]


def test_the_api_key_never_reaches_the_image_host(emulator_admin: EmulatorAdmin, tmp_path: Path) -> None:
    result = operator(output_path=str(tmp_path)).execute(context())

    assert emulator_admin.downloads() == (1, 0)
    # The emulator does see credentials when a download carries them.
    httpx.get(result["result_urls"][0], headers={"Authorization": "Bearer k"}, trust_env=False)
    assert emulator_admin.downloads() == (2, 1)


def test_a_download_that_cannot_succeed_fails_for_good_and_a_clear_stores_without_paying_again(
    emulator_admin: EmulatorAdmin, tmp_path: Path
) -> None:
    store = FakeStore()

    with pytest.raises(AirflowFailException, match=r"over max_image_bytes .* Retrying cannot help"):
        operator(output_path=str(tmp_path), max_image_bytes=10).execute(context(store))
    assert list(tmp_path.iterdir()) == []
    assert RECORD_KEY in store.values

    result = operator(output_path=str(tmp_path)).execute(context(store))  # cleared, limit raised

    assert emulator_admin.submissions() == 1
    assert_stored(result, tmp_path.resolve())


def test_a_download_that_may_succeed_later_is_retried_by_airflow_after_the_deferral(
    emulator_admin: EmulatorAdmin, tmp_path: Path
) -> None:
    """The deferred path: the image host is down when the task resumes; the retry reattaches."""
    deferred = operator(output_path=str(tmp_path), deferrable=True)
    store, ti = FakeStore(), FakeTaskInstance()
    with pytest.raises(TaskDeferred):
        deferred.execute({"ti": ti, "task_state_store": store})
    task_id = ti.xcom[XCOM_TASK_ID_KEY]
    ended(emulator_admin, task_id)
    hook = ApixoHook()
    status = hook.get_task_status("nano-banana", task_id).to_dict()
    hook.close()
    unreachable = {**status, "result_urls": [f"http://127.0.0.1:{free_port()}/0.png"]}
    event = {"status": "success", "apixo_task_id": task_id, "model": "nano-banana", "task": unreachable}

    with pytest.raises(ApixoWaitError, match=r"ConnectError.* waits for that same APIXO task"):
        deferred.resume_execution("execute_complete", {"event": event}, {"ti": ti, "task_state_store": store})
    assert list(tmp_path.iterdir()) == []
    assert RECORD_KEY in store.values

    result = operator(output_path=str(tmp_path)).execute({"ti": ti, "task_state_store": store})

    assert emulator_admin.submissions() == 1
    assert_stored(result, tmp_path.resolve())


@pytest.mark.parametrize(
    "code", ["CONTENT_VIOLATION", "NSFW_DETECTED", "PromptLengthExceeded", "INVALID_IMAGE_URL"]
)
def test_skip_ends_a_rejected_prompt_as_skipped(emulator_admin: EmulatorAdmin, code: str) -> None:
    store = FakeStore()
    rejected = operator(prompt=f"a lighthouse [emulator:fail={code}]", on_content_violation="skip")

    with pytest.raises(AirflowSkipException, match=f"APIXO rejected the request: .*{code}"):
        rejected.execute(context(store))
    assert RECORD_KEY not in store.values


def test_skip_still_fails_when_the_account_is_the_cause(emulator_admin: EmulatorAdmin) -> None:
    broke = operator(prompt="a lighthouse [emulator:fail=INSUFFICIENT_CREDITS]", on_content_violation="skip")

    with pytest.raises(ApixoTaskRejectedError, match="INSUFFICIENT_CREDITS"):
        broke.execute(context())


def test_fail_is_the_default(emulator_admin: EmulatorAdmin) -> None:
    with pytest.raises(ApixoTaskRejectedError, match="CONTENT_VIOLATION"):
        operator(prompt="a lighthouse [emulator:fail=CONTENT_VIOLATION]").execute(context())


def test_skip_applies_to_a_rejection_a_retry_reattaches_to(emulator_admin: EmulatorAdmin) -> None:
    store = FakeStore()
    prompt = "a lighthouse [emulator:fail=NSFW] [emulator:seconds=5]"
    with pytest.raises(ApixoWaitError):
        operator(prompt=prompt, timeout=1).execute(context(store))

    with pytest.raises(AirflowSkipException, match="NSFW"):
        operator(prompt=prompt, on_content_violation="skip").execute(context(store))
    assert emulator_admin.submissions() == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"on_content_violation": "ignore"}, "on_content_violation"),
        ({"max_image_bytes": 0}, "max_image_bytes"),
        ({"max_image_bytes": "10MB"}, "max_image_bytes"),
    ],
)
def test_bad_storage_settings_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ApixoInputError, match=f"Invalid {field}: "):
        operator(**kwargs)


def test_output_path_needs_the_wait() -> None:
    with pytest.raises(ApixoInputError, match="Invalid output_path: needs wait_for_completion=True"):
        operator(output_path="/data", wait_for_completion=False)


@pytest.mark.parametrize(
    ("output_path", "rule"),
    [
        ("", "must be a non-empty path or URI"),
        ("covers/2026-01-01/", "must be an absolute folder .* got 'covers/2026-01-01/'"),
        ("file://covers/", "must be an absolute folder .* got 'file://covers/'"),
        # Airflow 3.3 refuses the URI itself; older versions find no filesystem for it.
        ("nosuch://bucket/covers/", "(is not a location Airflow can store to|no filesystem for nosuch://)"),
        ("abfs://covers@account/", "no filesystem for abfs://"),  # the Azure provider is not installed
        ("{tmp}/a-file/covers", "cannot create"),
    ],
)
def test_an_unusable_output_path_fails_before_any_request(
    emulator_admin: EmulatorAdmin, tmp_path: Path, output_path: str, rule: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")

    for waiting in (operator, sensor):
        with pytest.raises(ApixoInputError, match=f"Invalid output_path: {rule}"):
            waiting(output_path=output_path.format(tmp=tmp_path)).execute(context())
    assert emulator_admin.requests() == []


def test_the_image_link_opens_the_stored_copy_where_a_browser_reaches_it(
    emulator_admin: EmulatorAdmin, tmp_path: Path
) -> None:
    stored, only_urls = operator(output_path=str(tmp_path)), operator()
    stored.execute(context())
    result = only_urls.execute(context())

    # A local file is not reachable from a browser: the link opens APIXO's URL.
    link = GeneratedImageLink()
    assert link.get_link(stored, ti_key=FakeTaskInstance()).startswith(emulator_admin.root_url)  # type: ignore[arg-type]
    assert link.get_link(only_urls, ti_key=FakeTaskInstance()) == result["result_urls"][0]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stored_paths", "link"),
    [
        (["https://cdn.example/covers/a.png"], "https://cdn.example/covers/a.png"),
        (
            ["s3://aws_default@media/covers/a b.png"],
            "https://s3.console.aws.amazon.com/s3/object/media?prefix=covers/a%20b.png",
        ),
        (["gs://media/covers/a.png"], "https://storage.cloud.google.com/media/covers/a.png"),
        (["file:///data/covers/a.png"], "https://apixo.example/result.png"),
        ([], "https://apixo.example/result.png"),
    ],
)
def test_image_link_prefers_a_stored_copy_a_browser_can_open(stored_paths: list[str], link: str) -> None:
    assert image_link(stored_paths, ["https://apixo.example/result.png"]) == link


def test_without_any_url_there_is_no_link() -> None:
    assert image_link([], []) is None

"""NanoBananaGenerateOperator: validation before HTTP, submission, deferral, and the failure taxonomy."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason

from airflow_provider_nanobanana.compat import AirflowFailException, TaskDeferred
from airflow_provider_nanobanana.exceptions import (
    ApixoConnectionNotFoundError,
    ApixoInputError,
    ApixoTaskFailedError,
)
from airflow_provider_nanobanana.links import GeneratedImageLink
from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger
from tests.support import FakeTaskInstance

if TYPE_CHECKING:
    from tests.support import EmulatorAdmin


def make_operator(**kwargs: Any) -> NanoBananaGenerateOperator:
    options = {"prompt": "a lighthouse", "initial_delay": 0.1, "poll_interval": 0.1, "timeout": 20, **kwargs}
    return NanoBananaGenerateOperator(task_id="generate", **options)


def execute(operator: NanoBananaGenerateOperator) -> tuple[Any, FakeTaskInstance]:
    ti = FakeTaskInstance()
    return operator.execute({"ti": ti}), ti  # type: ignore[arg-type]


def event(status: str, task: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "status": status,
        "apixo_task_id": "task_1",
        "model": "nano-banana",
        "message": "m",
        "task": task,
        **extra,
    }


def task_dict(state: str, fail_code: str | None = None) -> dict[str, Any]:
    return {
        "apixo_task_id": "task_1",
        "state": state,
        "result_urls": ["https://cdn.example/a.png"] if state == "success" else [],
        "create_time": 1,
        "complete_time": 2,
        "cost_time": 1,
        "fail_code": fail_code,
        "fail_message": "why" if fail_code else None,
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 5001}, "prompt"),
        ({"image_urls": [f"https://img.example/{i}.png" for i in range(6)]}, "image_urls"),
        ({"image_urls": ["ftp://img.example/a.png"]}, "image_urls[0]"),
        ({"image_urls": ["not a url"]}, "image_urls[0]"),
        ({"image_urls": "https://img.example/a.png"}, "image_urls"),
        ({"aspect_ratio": "7:5"}, "aspect_ratio"),
        ({"output_format": "gif"}, "output_format"),
        ({"provider": "cheapest"}, "provider"),
        ({"mode": "image-to-image"}, "mode"),
        ({"mode": "text-to-image", "image_urls": ["https://img.example/a.png"]}, "mode"),
        ({"mode": "sketch"}, "mode"),
        ({"request_type": "callback"}, "callback_url"),
        ({"request_type": "async", "callback_url": "https://hooks.example/x"}, "callback_url"),
        ({"callback_url": "hooks.example/x"}, "callback_url"),
        ({"callback_url": "http://hooks.example/x"}, "callback_url"),
        ({"request_type": "webhook"}, "request_type"),
    ],
)
def test_bad_input_fails_before_any_request(
    kwargs: dict[str, Any], field: str, emulator_admin: EmulatorAdmin
) -> None:
    with pytest.raises(AirflowFailException) as raised:
        execute(make_operator(**kwargs))

    assert str(raised.value).startswith(f"Invalid {field}: ")

    assert emulator_admin.requests() == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": timedelta(seconds=-5)}, "timeout"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"initial_delay": -1}, "initial_delay"),
        ({"max_consecutive_errors": 0}, "max_consecutive_errors"),
    ],
)
def test_bad_wait_settings_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ApixoInputError) as raised:
        make_operator(**kwargs)

    assert raised.value.field == field


def test_empty_rendered_strings_mean_not_set(emulator_admin: EmulatorAdmin) -> None:
    operator = make_operator(
        mode="", provider="", callback_url="", request_type="", wait_for_completion=False
    )

    execute(operator)

    (task,) = emulator_admin.tasks()
    assert task["request_type"] == "async"
    assert task["provider"] == "auto"
    assert task["input"]["mode"] == "text-to-image"


def test_http_callback_on_localhost_is_allowed(emulator_admin: EmulatorAdmin) -> None:
    execute(make_operator(callback_url="http://127.0.0.1:9/hook", wait_for_completion=False))

    assert emulator_admin.tasks()[0]["callback_url"] == "http://127.0.0.1:9/hook"


def test_deferrable_submits_pushes_the_id_then_defers(emulator_admin: EmulatorAdmin) -> None:
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        execute(operator := make_operator(timeout=120))
    (task,) = emulator_admin.tasks()

    trigger = deferred.value.trigger
    assert isinstance(trigger, ApixoTaskTrigger)
    assert trigger.apixo_task_id == task["id"]
    assert before + 120 <= trigger.end_time <= time.time() + 120
    assert deferred.value.timeout is not None and deferred.value.timeout.total_seconds() > 120
    assert deferred.value.method_name == operator.execute_complete.__name__
    assert (task["request_type"], task["provider"], task["callback_url"]) == ("async", "auto", None)
    assert task["input"] == {
        "mode": "text-to-image",
        "prompt": "a lighthouse",
        "aspect_ratio": "1:1",
        "output_format": "png",
    }


def test_id_is_in_xcom_before_the_wait(emulator_admin: EmulatorAdmin) -> None:
    ti = FakeTaskInstance()
    with pytest.raises(TaskDeferred):
        make_operator().execute({"ti": ti})  # type: ignore[arg-type]

    assert ti.xcom == {"apixo_task_id": emulator_admin.tasks()[0]["id"]}


def test_image_to_image_with_callback(emulator_admin: EmulatorAdmin) -> None:
    urls = ["https://img.example/a.png", "https://img.example/b.webp"]
    operator = make_operator(
        image_urls=urls,
        check_image_urls=False,  # nothing serves them: this test is about what is sent
        callback_url="https://hooks.example/apixo",
        provider="official",
        wait_for_completion=False,
    )

    task_id, _ = execute(operator)

    (task,) = emulator_admin.tasks()
    assert task_id == task["id"]
    assert task["request_type"] == "callback"
    assert task["callback_url"] == "https://hooks.example/apixo"
    assert task["provider"] == "official"
    assert task["input"]["mode"] == "image-to-image"
    assert task["input"]["image_urls"] == urls


def test_blocking_polls_to_the_result(emulator_admin: EmulatorAdmin) -> None:
    result, ti = execute(make_operator(deferrable=False))

    assert result["state"] == "success"
    assert result["apixo_task_id"] == ti.xcom["apixo_task_id"]
    assert emulator_admin.request_count("GET") >= 2


def test_blocking_input_caused_failure_is_final(emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.fail_next_tasks("CONTENT_VIOLATION", fail_msg="blocked by policy")

    with pytest.raises(AirflowFailException, match="CONTENT_VIOLATION: blocked by policy"):
        execute(make_operator(deferrable=False))


def test_lost_submission_answer_is_not_resent(emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.configure(latency_seconds=1.0)
    operator = make_operator()
    operator.hook.timeout = 0.3

    with pytest.raises(AirflowFailException, match="not resent"):
        execute(operator)

    # The emulator creates the task when the POST reaches its handler: late on a loaded machine.
    deadline = time.monotonic() + 10
    while emulator_admin.submissions() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert emulator_admin.submissions() == 1


@pytest.mark.parametrize("deferrable", [True, False])
def test_a_connection_not_defined_fails_before_anything_is_sent(
    emulator_admin: EmulatorAdmin, deferrable: bool
) -> None:
    with pytest.raises(ApixoConnectionNotFoundError) as caught:
        execute(make_operator(apixo_conn_id="apixo_nowhere", deferrable=deferrable))

    assert "The APIXO connection 'apixo_nowhere' is not defined for this task" in str(caught.value)
    assert "airflow connections add apixo_nowhere --conn-type apixo" in str(caught.value)
    assert "AIRFLOW_CONN_APIXO_NOWHERE" in str(caught.value)
    assert emulator_admin.requests() == []


def test_rejected_request_is_final(emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.inject_http_errors(400, times=1, endpoint="submit")

    with pytest.raises(AirflowFailException, match="400"):
        execute(make_operator())


def test_success_event_returns_the_result() -> None:
    ti, op = FakeTaskInstance(), make_operator()
    result = op.execute_complete({"ti": ti}, event("success", task_dict("success")))  # type: ignore[arg-type]

    assert result == {
        "apixo_task_id": "task_1",
        "state": "success",
        "result_urls": ["https://cdn.example/a.png"],
        "create_time": 1,
        "complete_time": 2,
        "cost_time": 1,
        "try_number": 1,
        "reattached": False,
    }
    assert GeneratedImageLink().get_link(op, ti_key=ti) == "https://cdn.example/a.png"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "code", ["NSFW_DETECTED", "INVALID_IMAGE_URL", "PromptLengthExceeded", "INSUFFICIENT_CREDITS"]
)
def test_input_caused_fail_codes_fail_for_good(code: str) -> None:
    with pytest.raises(AirflowFailException, match=code):
        make_operator().execute_complete({}, event("failed", task_dict("failed", code)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "code",
    [
        "GENERATION_FAILED",
        "MODEL_UNAVAILABLE",
        "PROCESSING_TIMEOUT",
        "SOMETHING_NEW",
        "IMAGE_GENERATION_FAILED",
        "CONTENT_GENERATION_TIMEOUT",
        "INFORMATION_MISSING",
    ],
)
def test_transient_fail_codes_are_retryable(code: str) -> None:
    with pytest.raises(ApixoTaskFailedError, match=code) as raised:
        make_operator().execute_complete({}, event("failed", task_dict("failed", code)))  # type: ignore[arg-type]

    assert not isinstance(raised.value, AirflowFailException)


def resume(event: Any) -> Any:
    """Resume as the task runner does after a trigger event, with the task id in XCom."""
    ti = FakeTaskInstance()
    ti.xcom_push("apixo_task_id", "task_1")
    return make_operator().resume_execution("execute_complete", {"event": event}, {"ti": ti})  # type: ignore[arg-type]


@pytest.mark.parametrize("status", ["timeout", "error"])
def test_wait_without_outcome_is_not_retried_into_a_second_payment(status: str) -> None:
    with pytest.raises(
        AirflowFailException, match=r"ApixoTaskSensor\(apixo_task_id='task_1', model='nano-banana'\)"
    ):
        resume(event(status, task_dict("processing")))


@pytest.mark.parametrize(
    "bad_event",
    [
        {},
        {"status": "weird", "apixo_task_id": "t", "model": "nano-banana"},
        {"status": "success", "apixo_task_id": "t"},
        event("success", None),
        event("success", task_dict("processing")),
        event("failed", {**task_dict("failed", "NSFW"), "state": "exploded"}),
        "success",
    ],
)
def test_malformed_event_fails_without_resubmitting(bad_event: Any) -> None:
    with pytest.raises(
        AirflowFailException,
        match=r"ApixoMalformedResponseError: (Unexpected trigger event|Trigger event contradicts)",
    ):
        resume(bad_event)


def test_transient_failure_event_stays_retryable() -> None:
    with pytest.raises(ApixoTaskFailedError) as raised:
        resume(event("failed", task_dict("failed", "GENERATION_FAILED")))

    assert not isinstance(raised.value, AirflowFailException)


@pytest.mark.parametrize("error", [TriggerFailureReason.TRIGGER_TIMEOUT, "the trigger crashed"])
def test_lost_trigger_is_not_retried_into_a_second_payment(error: str) -> None:
    """Airflow's defer timeout or a dead trigger: the paid task may still finish, so no resubmission."""
    ti = FakeTaskInstance()
    ti.xcom_push("apixo_task_id", "task_9")

    with pytest.raises(AirflowFailException, match=r"task_9.*Not retried"):
        make_operator().resume_execution(TRIGGER_FAIL_REPR, {"error": error}, {"ti": ti})  # type: ignore[arg-type]

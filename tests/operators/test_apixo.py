"""ApixoGenerateOperator: any model, ``input`` passed through, checked before HTTP, waits by model family."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_nanobanana.exceptions import ApixoInputError
from airflow_provider_nanobanana.operators.apixo import ApixoGenerateOperator
from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from airflow_provider_nanobanana.validation import MAX_INPUT_BYTES
from tests.dags import provider_dags
from tests.support import FakeTaskInstance, run

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from tests.support import EmulatorAdmin


def make_operator(**kwargs: Any) -> ApixoGenerateOperator:
    options = {"model": "seedream-4-5", "input": {"prompt": "a lighthouse"}, **kwargs}
    return ApixoGenerateOperator(task_id="generate", wait_for_completion=False, **options)


@pytest.mark.parametrize(
    ("model", "cadence"),
    [
        ("nano-banana", (5, 3, 300)),
        ("nano-banana-2", (5, 3, 300)),
        ("nano-banana-pro", (10, 5, 300)),
        ("flux-2", (10, 5, 300)),
        ("veo-3-1", (60, 15, 600)),
        ("a-model-from-next-year", (10, 5, 300)),
    ],
)
def test_the_wait_defaults_follow_the_models_family(model: str, cadence: tuple[float, ...]) -> None:
    operator = ApixoGenerateOperator(task_id="generate", model=model, input={})

    assert (operator.initial_delay, operator.poll_interval, operator.timeout) == cadence


def test_nano_banana_waits_the_same_whichever_operator_runs_it() -> None:
    typed = NanoBananaGenerateOperator(task_id="typed", prompt="a lighthouse")
    generic = ApixoGenerateOperator(task_id="generic", model="nano-banana", input={})

    wait = ("initial_delay", "poll_interval", "timeout")
    assert [getattr(typed, name) for name in wait] == [getattr(generic, name) for name in wait]


def test_wait_settings_given_win_over_the_models() -> None:
    operator = ApixoGenerateOperator(
        task_id="generate", model="veo-3-1", input={}, initial_delay=1, poll_interval=2, timeout=30
    )

    assert (operator.initial_delay, operator.poll_interval, operator.timeout) == (1, 2, 30)


@pytest.mark.parametrize("model", ["Nano Banana", "../admin", ""])
def test_the_model_id_is_checked_when_the_dag_is_parsed(model: str) -> None:
    with pytest.raises(ApixoInputError) as raised:
        ApixoGenerateOperator(task_id="generate", model=model, input={})

    assert raised.value.field == "model"


class NotJson:
    def __repr__(self) -> str:
        return "NotJson(secret-ish)"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (
            "{'prompt': 'x'}",
            "must be a mapping of the model's input fields; got str (a template renders text",
        ),
        (["a", "list"], "must be a mapping of the model's input fields; got list"),
        (None, "must be a mapping of the model's input fields; got NoneType"),
        ({"prompt": "x", "seed": NotJson()}, "must be JSON-serialisable: Object of type NotJson"),
        ({"prompt": "x", "strength": float("nan")}, "must be JSON-serialisable: Out of range float"),
        ({"prompt": "x" * MAX_INPUT_BYTES}, "must be at most 1,000,000 bytes as JSON (1 MB); got 1,000,013"),
        # 500,013 characters: a limit counted in characters would let it through.
        ({"prompt": "é" * 500_000}, "must be at most 1,000,000 bytes as JSON (1 MB); got 1,000,013"),
    ],
    ids=["string", "list", "none", "object", "nan", "too-large", "too-large-in-bytes-not-characters"],
)
def test_bad_input_fails_before_any_request_naming_the_field(
    value: Any, rule: str, emulator_admin: EmulatorAdmin
) -> None:
    with pytest.raises(ApixoInputError) as raised:
        make_operator(input=value).execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]

    assert raised.value.field == "input"
    assert str(raised.value).startswith(f"Invalid input: {rule}")
    assert "secret-ish" not in str(raised.value) and "xxxx" not in str(raised.value)
    assert emulator_admin.requests() == []


def test_input_of_exactly_1_mb_is_sent_counted_as_sent(emulator_admin: EmulatorAdmin) -> None:
    """Counted as UTF-8, as httpx sends it: "é" is 2 bytes, not the 6 of its ASCII escape."""
    padding = MAX_INPUT_BYTES - len(json.dumps({"prompt": ""}, separators=(",", ":")))

    make_operator(input={"prompt": "é" * (padding // 2)}).execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]

    assert len(emulator_admin.tasks()[0]["input"]["prompt"]) == padding // 2


def test_a_secret_in_a_callback_url_is_not_repeated_in_the_error(emulator_admin: EmulatorAdmin) -> None:
    operator = make_operator(callback_url="http://me:hunter2@hooks.example/apixo?token=s3cret")

    with pytest.raises(ApixoInputError) as raised:
        operator.execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]

    assert str(raised.value) == (
        "Invalid callback_url: must be an https URL (http only on localhost); got 'http://hooks.example/apixo?…'"
    )
    assert emulator_admin.requests() == []


def test_a_video_models_result_is_not_stored_as_an_image() -> None:
    with pytest.raises(ApixoInputError) as raised:
        ApixoGenerateOperator(task_id="generate", model="veo-3-1", input={}, output_path="/tmp/out")

    assert raised.value.field == "output_path"


@pytest.mark.dag
@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize(
    "dag",
    [provider_dags.any_model_deferrable, provider_dags.any_model_blocking],
    ids=["deferred", "blocking"],
)
def test_an_image_and_a_video_model_succeed(
    dag: DAG, emulator_admin: EmulatorAdmin, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator_admin.configure(generation_seconds=0.6, model_generation_seconds={"veo-3-1": 3})

    state, xcoms = run(dag, prompt="a paper boat")

    assert state == "success"
    deferrals = capfd.readouterr().out.count("Pausing task as DEFERRED")
    assert deferrals == (2 if dag is provider_dags.any_model_deferrable else 0)
    tasks = {task["model"]: task for task in emulator_admin.tasks()}
    assert set(tasks) == {"seedream-4-5", "veo-3-1"}
    image_input = {"prompt": "a paper boat", "style": {"palette": ["teal", "ochre"], "seed": 7}}
    assert tasks["seedream-4-5"]["input"] == image_input
    assert tasks["veo-3-1"]["input"] == {
        "prompt": "a paper boat, slow pan",
        "duration_seconds": 4,
        "with_audio": False,
    }
    for task_id, model in (("image", "seedream-4-5"), ("video", "veo-3-1")):
        result = xcoms[(task_id, "return_value")]
        assert (result["state"], result["apixo_task_id"]) == ("success", tasks[model]["id"])
        assert xcoms[(task_id, "apixo_task_id")] == tasks[model]["id"]
    video = xcoms[("video", "return_value")]
    assert video["complete_time"] - video["create_time"] == 3000
    assert emulator_admin.request_count("GET", "/api/v1/statusTask/veo-3-1") >= 1

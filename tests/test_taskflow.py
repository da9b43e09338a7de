"""``@task.nanobanana``: the function builds the request on the worker; the operator does the rest."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import pytest
from airflow.models.asset import AssetEvent, AssetModel
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from sqlalchemy import select

from airflow_provider_nanobanana.exceptions import ApixoInputError
from airflow_provider_nanobanana.validation import REQUEST_FIELDS, requested_fields
from tests.dags import provider_dags
from tests.support import run

if TYPE_CHECKING:
    from tests.support import EmulatorAdmin

FIELD = "the @task.nanobanana function's return value"


def test_a_string_is_the_prompt_and_a_dict_sets_request_fields() -> None:
    assert requested_fields("a kite") == {"prompt": "a kite"}
    assert requested_fields({"prompt": "a kite", "aspect_ratio": "16:9"}) == {
        "prompt": "a kite",
        "aspect_ratio": "16:9",
    }
    assert set(REQUEST_FIELDS) == {
        "prompt",
        "image_urls",
        "mode",
        "aspect_ratio",
        "output_format",
        "provider",
    }


@pytest.mark.parametrize(
    ("returned", "rule"),
    [
        (None, "must be a prompt (a string) or a dict of prompt, image_urls"),
        (["a kite"], "must be a prompt (a string) or a dict of prompt, image_urls"),
        ({"prompt": "a kite", "output_path": "/tmp"}, "may only set prompt, image_urls"),
    ],
    ids=["none", "list", "output-path"],
)
def test_anything_else_is_refused_naming_the_return_value(returned: Any, rule: str) -> None:
    with pytest.raises(ApixoInputError) as raised:
        requested_fields(returned)

    assert raised.value.field == FIELD
    assert raised.value.rule.startswith(rule)


@pytest.mark.dag
@pytest.mark.usefixtures("airflow_db")
def test_the_decorated_task_defers_and_resumes_with_the_functions_prompt(
    emulator_admin: EmulatorAdmin, capfd: pytest.CaptureFixture[str]
) -> None:
    state, xcoms = run(provider_dags.taskflow_deferrable, prompt="a heron")

    assert state == "success"
    assert "Pausing task as DEFERRED" in capfd.readouterr().out
    prompt = "a heron, drawn by a function"
    (task,) = emulator_admin.tasks()
    assert task["input"]["prompt"] == prompt
    assert xcoms[("generate", "return_value")]["apixo_task_id"] == task["id"]
    assert xcoms[("generate", "nanobanana_request")] == {"prompt": prompt}
    with create_session() as session:
        event = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "test_taskflow_covers")
            .order_by(AssetEvent.id.desc())
            .limit(1)
        ).one()
    assert event.extra["prompt_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()


@pytest.mark.dag
@pytest.mark.usefixtures("airflow_db")
def test_a_bad_return_value_fails_before_any_request(emulator_admin: EmulatorAdmin) -> None:
    state, _ = run(provider_dags.taskflow_bad_return)

    assert state == "failed"
    with create_session() as session:
        (ti,) = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == "test_taskflow_bad_return")
        ).all()
    assert ti.state == "failed"
    assert emulator_admin.requests() == []


@pytest.mark.dag
@pytest.mark.usefixtures("airflow_db")
def test_each_mapped_instance_resumes_with_its_own_prompt(emulator_admin: EmulatorAdmin) -> None:
    state, _ = run(provider_dags.taskflow_mapped)

    assert state == "success"
    prompts = sorted(task["input"]["prompt"] for task in emulator_admin.tasks())
    assert prompts == ["a blue kite", "a green kite", "a red kite"]

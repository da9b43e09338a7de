"""A task deferred before an upgrade resumes after it: triggers serialised under the old name.

Airflow stores a deferred task's trigger as a classpath and kwargs, and the triggerer re-creates it
from them (``import_string(classpath)(**kwargs)``): those of every earlier release must still load
and run to their single event.
"""

from __future__ import annotations

import importlib
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import submit

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import EmulatorServer

OLD_CLASSPATH = "airflow_provider_nanobanana.triggers.nanobanana.NanoBananaTaskTrigger"
FIRST_RELEASE = {
    "apixo_task_id": "task_abc",
    "end_time": 1_900_000_000.5,
    "model": "nano-banana",
    "apixo_conn_id": "apixo_default",
    "poll_interval": 3.0,
    "initial_delay": 5.0,
    "max_consecutive_errors": 5,
}
LAST_RELEASE = {
    **FIRST_RELEASE,
    "submitted_at": 1_899_999_990.25,
    "callback_token_sha256": "ab" * 32,
    "deferring_try": 2,
}


def import_string(classpath: str) -> Any:
    """What the triggerer does with a stored classpath."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("serialised", [FIRST_RELEASE, LAST_RELEASE], ids=["first-release", "last-release"])
def test_kwargs_serialised_under_the_old_name_still_load(serialised: dict[str, Any]) -> None:
    trigger = import_string(OLD_CLASSPATH)(**serialised)

    assert trigger.serialize() == (
        OLD_CLASSPATH,
        {
            "submitted_at": None,
            "callback_token_sha256": None,
            "deferring_try": None,
            "reattached": False,
            **serialised,
        },
    )


async def test_a_trigger_serialised_under_the_old_name_runs_to_its_event(emulator: EmulatorServer) -> None:
    task_id = submit()
    serialised = {**LAST_RELEASE, "apixo_task_id": task_id, "end_time": time.time() + 20}
    serialised |= {"submitted_at": time.time(), "poll_interval": 0.1, "initial_delay": 0.0}

    events = [event async for event in import_string(OLD_CLASSPATH)(**serialised).run()]

    assert [event.payload["status"] for event in events] == ["success"]
    assert events[0].payload["apixo_task_id"] == task_id
    assert events[0].payload["deferring_try"] == 2

"""The API key never reaches a log line, XCom, trigger kwargs, rendered template, the DB or an error.

Real runs with a distinctive key; afterwards every output is searched for it: captured stdout and
stderr, log records, every file under the Airflow home (SQLite DB with XCom, rendered fields and
trigger rows, task logs), the serialised trigger, and the text of each error raised.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from airflow_provider_nanobanana.compat import TaskDeferred
from airflow_provider_nanobanana.exceptions import ApixoError
from airflow_provider_nanobanana.hooks.apixo import ApixoHook, RetryPolicy
from airflow_provider_nanobanana.operators.nanobanana import NanoBananaGenerateOperator
from tests.dags import provider_dags
from tests.support import (
    AIRFLOW_HOME,
    TEST_API_KEY,
    WRONG_KEY,
    apixo_connection,
    run,
    without_airflow_mask_requests,
)

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import EmulatorServer
    from tests.support import EmulatorAdmin


def error_texts(emulator: EmulatorServer, admin: EmulatorAdmin, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Provoke the errors whose text could carry a key: rejected key, lost answer, unreachable host."""
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_WRONG", apixo_connection(emulator.base_url, WRONG_KEY))
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_DOWN", apixo_connection("http://127.0.0.1:9/api/v1"))
    quick = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01)
    texts = []
    for conn_id, timeout in (("apixo_wrong", None), ("apixo_default", 0.2), ("apixo_down", None)):
        hook = ApixoHook(conn_id, retry_policy=quick, timeout=timeout)
        admin.configure(latency_seconds=0.5 if timeout else 0.0)
        with pytest.raises(ApixoError) as raised:
            hook.submit_task("nano-banana", {"mode": "text-to-image", "prompt": "x"})
        texts += [str(raised.value), repr(raised.value), str(raised.value.__cause__)]
        texts.append(hook.test_connection()[1])
        hook.close()
    return texts


@pytest.mark.dag
@pytest.mark.usefixtures("airflow_db")
def test_api_key_appears_nowhere(
    emulator: EmulatorServer,
    emulator_admin: EmulatorAdmin,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for dag in (
        provider_dags.generate_deferrable,
        provider_dags.generate_blocking,
        provider_dags.sensor_deferrable,
    ):
        assert run(dag)[0] == "success"
    with pytest.raises(TaskDeferred) as deferred:
        NanoBananaGenerateOperator(task_id="t", prompt="x").execute({"ti": _NoXCom()})  # type: ignore[arg-type]
    texts = error_texts(emulator, emulator_admin, monkeypatch)
    out, err = map(without_airflow_mask_requests, capfd.readouterr())

    places = {
        "stdout": out,
        "stderr": err,
        "log records": caplog.text,
        "trigger": repr(deferred.value.trigger) + repr(deferred.value.trigger.serialize()),
        "errors": "\n".join(texts),
        **{
            str(path): path.read_bytes().decode("latin-1")
            for path in AIRFLOW_HOME.rglob("*")
            if path.is_file()
        },
    }
    # The search saw the logs and the XCom rows: the task ids pushed to XCom are in the DB files.
    assert "Submitted APIXO nano-banana task" in places["stdout"] + places["log records"]
    database = "".join(
        text for name, text in places.items() if name.startswith(str(AIRFLOW_HOME / "airflow.db"))
    )
    assert all(task["id"] in database for task in emulator_admin.tasks()[:3])
    for key in (TEST_API_KEY, WRONG_KEY):
        assert [name for name, text in places.items() if key in text] == []


class _NoXCom:
    try_number = 1

    def xcom_push(self, key: str, value: object) -> None:
        pass


def test_hook_state_does_not_print_the_key(emulator: EmulatorServer) -> None:
    hook = ApixoHook()
    client = hook.get_conn()

    assert hook.settings.api_key == TEST_API_KEY
    for text in (repr(hook.settings), repr(client.headers), repr(vars(hook))):
        assert TEST_API_KEY not in text
    hook.close()

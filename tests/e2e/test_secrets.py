"""The API key stays out of everything Airflow keeps: metadata DB, task and trigger logs, its output."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.support import TEST_API_KEY

if TYPE_CHECKING:
    from tests.e2e.standalone import Standalone

pytestmark = pytest.mark.e2e


@pytest.mark.usefixtures("emulator_admin")
def test_the_api_key_is_in_no_file_airflow_wrote(standalone: Standalone) -> None:
    """Checked after a run of its own (and after the drills, when run with them)."""
    standalone.wait_for_dags("e2e_deferred")
    run_id = standalone.trigger("e2e_deferred", prompt="a kite")
    assert standalone.wait_for_run("e2e_deferred", run_id) == "success"

    written = [path for path in standalone.home.rglob("*") if path.is_file()]
    assert any(path.name == "airflow.db" for path in written)
    assert any(path.suffix == ".log" and "run_id=" in str(path) for path in written)
    assert [path for path in written if TEST_API_KEY.encode() in path.read_bytes()] == []

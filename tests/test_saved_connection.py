"""A connection saved in Airflow's database, as users save it, under ``airflow dags test``.

``dags test`` runs each deferred task's trigger in-process, where Airflow 3.3.2 cannot look a saved
connection up asynchronously; every way of waiting must still find it, pay once per task and log no
error on the way.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import TEST_API_KEY, error_lines, without_airflow_mask_requests

if TYPE_CHECKING:
    from airflow_provider_nanobanana.emulator import EmulatorServer
    from tests.support import EmulatorAdmin

pytestmark = pytest.mark.dag
AIRFLOW = Path(sys.executable).parent / "airflow"


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A metadata DB of its own: the suite's is shared with tests that must not see this connection."""
    home = tmp_path_factory.mktemp("saved-connection")
    airflow(home, "db", "migrate")
    return home


def airflow(home: Path, *args: str) -> str:
    """Run the Airflow CLI on ``home`` with no connection in the environment; its output."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW_CONN_")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db")
    done = subprocess.run(
        [str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_every_way_of_waiting_finds_a_connection_saved_in_the_database(
    airflow_home: Path, emulator_server: EmulatorServer, emulator_admin: EmulatorAdmin
) -> None:
    conn = ["--conn-type", "apixo", "--conn-host", emulator_server.base_url, "--conn-password", TEST_API_KEY]
    airflow(airflow_home, "connections", "add", "apixo_default", *conn)

    output = airflow(airflow_home, "dags", "test", "test_every_wait")

    assert "state=success" in "".join(line for line in output.splitlines() if "DagRun Finished" in line)
    assert output.count("Pausing task as DEFERRED") == 3  # the deferred operator, the sensor, the decorator
    # One paid task per generating task: deferred, blocking, submitted for the sensor, decorated.
    assert emulator_admin.submissions() == 4
    assert error_lines(output) == []
    assert TEST_API_KEY not in without_airflow_mask_requests(output)
    # Each waiting task's "Generated image" link, computed when it ended, opens its image.
    links = image_links(airflow_home)
    assert set(links) == {"deferred", "blocking", "wait", "decorated"}
    assert all(link.startswith(emulator_server.root_url) for link in links.values()), links


def image_links(home: Path) -> dict[str, str]:
    """The links Airflow stored for the UI, by task, read from the metadata DB as the UI reads them."""
    with contextlib.closing(sqlite3.connect(home / "airflow.db")) as db:
        rows = db.execute("SELECT task_id, value FROM xcom WHERE key = '_link_GeneratedImageLink'").fetchall()
    return {task_id: json.loads(value) for task_id, value in rows if json.loads(value)}
